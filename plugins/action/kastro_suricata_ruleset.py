"""kastro_suricata_ruleset: a sensor's Suricata ruleset, built on the controller (offline).

Runs kastro.suricata.ruleset in the controller's process: the admin's sources and tuning are
checked first (a bad entry fails the task with its name and the fix, before any host
changes), then suricata-update builds the ruleset into ``dest`` on the controller; the file is
rewritten only when its content changes, so a second run reports no change.

    - name: Build the ruleset
      kastro_suricata_ruleset:
        dest: ~/.kastro/build/suricata/DOMAIN/sensor1.rules
        sources: "{{ suricata_rule_sources }}"
        enable: [...]
        disable: [...]
        drop: [...]
        modify: [{match: ..., from: ..., to: ...}]
        variables: {address-groups: {...}, port-groups: {...}}

Returns: path, sha256, canary (the token the sensor proves the reload with), enabled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

ARGS = ("dest", "sources", "enable", "disable", "drop", "modify", "variables")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        from kastro.suricata import ruleset

        result = super().run(tmp, task_vars)
        args = json.loads(json.dumps(dict(self._task.args)))  # plain data
        unknown = set(args) - set(ARGS)
        if unknown or "dest" not in args:
            return {**result, "failed": True, "msg": f"unknown {sorted(unknown)} or no dest"}
        try:
            found = ruleset.sources(args.get("sources") or [])
            tuned = ruleset.tuning(
                args.get("enable") or [],
                args.get("disable") or [],
                args.get("drop") or [],
                args.get("modify") or [],
            )
            built = ruleset.build(found, tuned, args.get("variables") or {})
        except ruleset.RulesetError as error:
            return {
                **result,
                "failed": True,
                "msg": f"Τίποτα δεν άλλαξε / Nothing was changed: {error}",
            }
        dest = Path(str(args["dest"])).expanduser()
        changed = not dest.is_file() or dest.read_text(encoding="utf-8") != built.text
        if changed and not self._task.check_mode:
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            staged = dest.with_name(f".{dest.name}.tmp")
            staged.write_text(built.text, encoding="utf-8")
            staged.replace(dest)
        return {
            **result,
            "changed": changed,
            "path": str(dest),
            "sha256": built.sha256,
            "canary": built.canary,
            "enabled": built.enabled,
        }
