"""Inventory errors that a municipal admin can act on: where, what is wrong, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

from kastro.i18n import _, t, tr


@dataclass(frozen=True, order=True)
class InventoryError:
    file: str
    line: int
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        label = _("fix")
        return f"{where}: {self.path}: {tr(self.message)}\n    {label}: {tr(self.fix)}"


class InvalidInventoryError(Exception):
    """Raised with every error found, so the admin sees them all at once."""

    def __init__(self, errors: list[InventoryError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__(f"{len(self.errors)} error(s) in the inventory")

    def report(self) -> str:
        lines = [str(e) for e in self.errors]
        lines.append(
            tr(
                t(
                    "{count} error(s); nothing was changed on any host. "
                    "Fix them and run 'kastro validate' again.",
                    count=len(self.errors),
                )
            )
        )
        return "\n".join(lines)
