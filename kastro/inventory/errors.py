"""Inventory errors that a municipal admin can act on: where, what is wrong, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class InventoryError:
    file: str
    line: int
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}\n    fix: {self.fix}"


class InvalidInventoryError(Exception):
    """Raised with every error found, so the admin sees them all at once."""

    def __init__(self, errors: list[InventoryError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__(f"{len(self.errors)} error(s) in the inventory")

    def report(self) -> str:
        lines = [str(e) for e in self.errors]
        lines.append(
            f"{len(self.errors)} error(s); nothing was changed on any host. "
            "Fix them and run 'kastro validate' again."
        )
        return "\n".join(lines)
