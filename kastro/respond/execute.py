"""One kastro-firewall command on many gateways at once, with pyinfra (parallel SSH).

Each gateway answers with kastro-firewall's JSON (the blocklist as it is after the change),
so a result is what the gateway says, not what was sent. A gateway that cannot be reached
or refuses is named with the reason; nothing is retried silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kastro.respond.gateways import Gateway


@dataclass
class Result:
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def run(gateways: Sequence[Gateway], argv: Sequence[str], parallel: int = 50) -> dict[str, Result]:
    """`kastro-firewall ARGV...` on every gateway, in parallel; a result per gateway."""
    return _run(gateways, argv, parallel, helper=True)


def run_command(hosts: Sequence[Gateway], argv: Sequence[str]) -> dict[str, Result]:
    """ARGV itself (every word checked by the caller) on each host; a result whatever its
    exit status: {"stdout": ..., "succeeded": bool}."""
    return _run(hosts, argv, 50, helper=False)


def _run(
    gateways: Sequence[Gateway], argv: Sequence[str], parallel: int, helper: bool
) -> dict[str, Result]:
    if not gateways:
        return {}
    from pyinfra.api.config import Config
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.inventory import Inventory
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import State
    from pyinfra.operations import server

    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    inventory = Inventory(([(g.name, g.connector_data()) for g in gateways], {}))  # type: ignore[no-untyped-call]
    # Every host is tried whatever the others do: one gateway down must not stop the rest.
    config = Config(PARALLEL=parallel, FAIL_PERCENT=100, CONNECT_TIMEOUT=5)  # type: ignore[no-untyped-call]
    state = State(inventory, config)
    with contextlib.suppress(PyinfraError):  # every host down: each is named below
        connect_all(state)
    ops = {}
    helpers = sorted({g.helper for g in gateways})  # one operation for all (in parallel)
    for program in helpers if helper else [""]:
        hosts = [inventory.get_host(g.name) for g in gateways if g.helper == program or not helper]
        command = shlex.join([program, *argv] if helper else argv)
        ops.update(
            add_op(
                state,
                server.shell,
                name="kastro-firewall",
                commands=[command],
                _ignore_errors=True,
                host=hosts,
            )
        )
    try:
        with contextlib.suppress(PyinfraError):  # what failed where is read from each host below
            run_ops(state)
    finally:
        disconnect_all(state)
    results = {}
    for host in inventory:
        meta = ops.get(host)
        results[host.name] = _result(host in state.failed_hosts, meta, helper)
    return results


def _result(failed_to_connect: bool, meta: Any, helper: bool = True) -> Result:
    if meta is None or failed_to_connect or not meta.is_complete():
        return Result(False, error="not reachable over SSH")
    if not helper:
        return Result(True, data={"stdout": meta.stdout, "succeeded": meta.did_succeed()})
    if not meta.did_succeed():
        return Result(False, error=(meta.stderr or meta.stdout or "failed").strip()[-500:])
    try:
        return Result(True, data=json.loads(meta.stdout))
    except ValueError:
        return Result(False, error=f"unexpected answer: {meta.stdout[-200:]!r}")
