"""What every host program's `needs-apply` answers, so roles read them all the same way.

`PROGRAM needs-apply` prints one JSON object, {"needs_apply": true|false, "reasons": [...]}
(why the host differs from its configuration, in words), and exits 0; it exits non-zero only
when it cannot tell (a configuration it cannot read). A role runs `apply` when needs_apply is
true, so a run that stopped half-way is finished by the next one even though the files it
wrote no longer change.
"""

from __future__ import annotations

import json
from typing import Any


def needs_apply(reasons: list[str]) -> dict[str, Any]:
    return {"needs_apply": bool(reasons), "reasons": reasons}


def needs_apply_json(reasons: list[str]) -> str:
    return json.dumps(needs_apply(reasons), sort_keys=True)
