"""`kastro teleworker add | revoke | rekey`: the daily job, as edits of the admin's own file.

The file that holds `kastro_teleworkers` is edited round-trip (ruamel.yaml: comments, order
and layout stay as the admin wrote them), then the whole inventory is validated and planned;
if the result is not valid the file is put back as it was, so nothing is half-applied. What
to run next (the telework playbook) is printed, never run.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from kastro.i18n import t
from kastro.inventory.errors import InvalidInventoryError
from kastro.inventory.project import plan_inventory, write_plan

KEY = "kastro_teleworkers"
ID = re.compile(r"tw-(\d{4,})")


class TeleworkerError(ValueError):
    """The command cannot be done as asked; the message says what to give instead."""


@dataclass
class Done:
    message: str
    next_steps: list[str]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments and order survive
    yaml.preserve_quotes = True
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _file(inventory: Path) -> Path:
    """The model file that defines kastro_teleworkers (teleworkers.yml in the example)."""
    for path in sorted((inventory / "group_vars" / "all").glob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        if re.search(rf"^{KEY}:", text, re.MULTILINE):
            return path
    raise TeleworkerError(
        t(
            "no file in {inventory}/group_vars/all defines {key}: add '{key}: []' "
            "to teleworkers.yml (kastro init writes it)",
            inventory=inventory,
            key=KEY,
        )
    )


def _edit(inventory: Path, change: Any) -> Path:
    """Apply `change(people)` to the list in the file, then validate and plan; on any error the
    file is restored and the error raised. Returns the file's path."""
    path = _file(inventory)
    before = path.read_text(encoding="utf-8")
    yaml = _yaml()
    data = yaml.load(before)
    people = data.get(KEY)
    if people is None or not isinstance(people, list):
        people = CommentedSeq()
        data[KEY] = people
    change(people)
    yaml.explicit_start = before.lstrip().startswith("---")
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue(), encoding="utf-8")
    try:
        write_plan(inventory, plan_inventory(inventory))
    except (InvalidInventoryError, OSError):
        path.write_text(before, encoding="utf-8")
        raise
    return path


def _find(people: list[Any], person_id: str) -> Any:
    for person in people:
        if isinstance(person, dict) and person.get("id") == person_id:
            return person
    known = ", ".join(str(p.get("id")) for p in people if isinstance(p, dict)) or "none"
    raise TeleworkerError(
        t(
            "no teleworker with id '{person_id}'; the ids are: {known}",
            person_id=person_id,
            known=known,
        )
    )


def next_id(people: list[Any]) -> str:
    numbers = [int(m.group(1)) for p in people if isinstance(p, dict)
               if (m := ID.fullmatch(str(p.get("id", ""))))]  # fmt: skip
    return f"tw-{max(numbers, default=0) + 1:04d}"


def _playbook(inventory: Path, extra: str = "") -> str:
    return f"ansible-playbook -i {inventory} playbooks/telework.yml{extra}"


def add(inventory: Path, name: str, group: str, public_key: str | None = None) -> Done:
    chosen: dict[str, str] = {}

    def change(people: list[Any]) -> None:
        entry = CommentedMap()
        entry["id"] = chosen["id"] = next_id(people)
        entry["name"] = name
        entry["group"] = group
        if public_key:
            entry["public_key"] = public_key
        people.append(entry)

    path = _edit(inventory, change)
    return Done(
        t(
            "{id} ({name}, group {group}) added to {path}; plan updated",
            id=chosen["id"],
            name=name,
            group=group,
            path=path,
        ),
        [t("review: git diff"), t("then: {playbook}", playbook=_playbook(inventory))],
    )


def revoke(inventory: Path, person_id: str) -> Done:
    def change(people: list[Any]) -> None:
        person = _find(people, person_id)
        if person.get("state") == "revoked":
            raise TeleworkerError(t("{person_id} is already revoked", person_id=person_id))
        person["state"] = "revoked"  # the entry stays: an id is never reused

    path = _edit(inventory, change)
    return Done(
        t(
            "{person_id} revoked in {path} (the entry stays, so the id is never reused)",
            person_id=person_id,
            path=path,
        ),
        [t("review: git diff"), t("then, at once: {playbook}", playbook=_playbook(inventory))],
    )


def rekey(inventory: Path, person_id: str, public_key: str | None = None) -> Done:
    """New keys: the employee's own new public key goes into the file; keys Kastro generated
    are replaced by the telework role on its next run (telework_rekey)."""
    found: dict[str, bool] = {}

    def change(people: list[Any]) -> None:
        person = _find(people, person_id)
        found["own"] = "public_key" in person
        if found["own"] and not public_key:
            raise TeleworkerError(
                t(
                    "{person_id} brought their own key: give the new one with --public-key",
                    person_id=person_id,
                )
            )
        if public_key:
            person["public_key"] = public_key

    if public_key:
        path = _edit(inventory, change)
        return Done(
            t("{person_id}: new public key in {path}", person_id=person_id, path=path),
            [t("review: git diff"), t("then: {playbook}", playbook=_playbook(inventory))],
        )
    data = _yaml().load(_file(inventory).read_text(encoding="utf-8"))
    change(list(data.get(KEY) or []))
    extra = f' -e \'{{"telework_rekey": ["{person_id}"]}}\''
    return Done(
        t(
            "{person_id}: Kastro made this person's keys; the next run replaces "
            "them (the old certificate is revoked, the new files are written for "
            "the employee)",
            person_id=person_id,
        ),
        [f"run: {_playbook(inventory, extra)}"],
    )
