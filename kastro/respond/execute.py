"""One kastro-firewall command on many gateways at once, with pyinfra (parallel SSH).

Each gateway answers with kastro-firewall's JSON (the blocklist as it is after the change),
so a result is what the gateway says, not what was sent. A gateway that cannot be reached
or refuses is named with the reason; nothing is retried silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shlex
from collections.abc import Iterator, Sequence
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


def put(hosts: Sequence[Gateway], content: bytes, dest: str) -> dict[str, Result]:
    """CONTENT as DEST (root's, 0644) on each host: written beside it, then renamed, so a
    reader (node_exporter's textfile collector) never sees half a file; a result per host."""
    from pyinfra.api.operation import add_op
    from pyinfra.operations import files, server

    if not PATH.fullmatch(dest) or "/." in dest:
        raise ValueError(f"{dest!r}: not a plain absolute path")
    folder, name = dest.rsplit("/", 1)
    temporary = f"{folder}/.{name}.tmp"
    with _connected(hosts, 50) as (state, inventory):
        connected = set(state.activated_hosts) - set(state.failed_hosts)
        # files.put reads the remote file's facts as it is added: only for hosts that answered.
        targets = [h for h in inventory if h in connected]
        if not targets:
            return {h.name: Result(False, error="not reachable over SSH") for h in hosts}
        sudo = {"_sudo": True} if any(h.user != "root" for h in hosts) else {}
        uploads = add_op(state, files.put, io.BytesIO(content), temporary, user="root",
                         group="root", mode="0644", create_remote_dir=False, host=targets,
                         **sudo)  # fmt: skip
        moves = add_op(state, server.shell, commands=[shlex.join(["mv", "-f", temporary, dest])],
                       host=targets, **sudo)  # fmt: skip
        _run_ops(state)
        results = {}
        for host in inventory:
            if host not in connected:
                results[host.name] = Result(False, error="not reachable over SSH")
            elif not (moves.get(host) and moves[host].did_succeed()):
                meta = moves.get(host) if uploads[host].did_succeed() else uploads[host]
                text = (meta.stderr or meta.stdout) if meta and meta.is_complete() else ""
                results[host.name] = Result(
                    False, error=f"{dest}: {text.strip()[-300:] or 'not written'}"
                )
            else:
                results[host.name] = Result(True)
        return results


PATH = re.compile(r"/[A-Za-z0-9._/-]+")


@contextlib.contextmanager
def _connected(hosts: Sequence[Gateway], parallel: int) -> Iterator[tuple[Any, Any]]:
    """A pyinfra state with every host connected that answers; disconnected at the end."""
    from pyinfra.api.config import Config
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.inventory import Inventory
    from pyinfra.api.state import State

    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    inventory = Inventory(([(g.name, g.connector_data()) for g in hosts], {}))  # type: ignore[no-untyped-call]
    # Every host is tried whatever the others do: one host down must not stop the rest.
    config = Config(PARALLEL=parallel, FAIL_PERCENT=100, CONNECT_TIMEOUT=5)  # type: ignore[no-untyped-call]
    state = State(inventory, config)
    with contextlib.suppress(PyinfraError):  # every host down: each is named by the caller
        connect_all(state)
    try:
        yield state, inventory
    finally:
        disconnect_all(state)


def _run_ops(state: Any) -> None:
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    with contextlib.suppress(PyinfraError):  # what failed where is read from each host
        run_ops(state)


def _run(
    gateways: Sequence[Gateway], argv: Sequence[str], parallel: int, helper: bool
) -> dict[str, Result]:
    if not gateways:
        return {}
    with _connected(gateways, parallel) as (state, inventory):
        return _run_on(state, inventory, gateways, argv, helper)


def _run_on(
    state: Any, inventory: Any, gateways: Sequence[Gateway], argv: Sequence[str], helper: bool
) -> dict[str, Result]:
    from pyinfra.api.operation import add_op
    from pyinfra.operations import server

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
    _run_ops(state)
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
