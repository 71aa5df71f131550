"""Kastro's controller functions as Ansible filters, through one wrapper.

Each role's filter plugin is a table of names; what a filter does lives in the kastro package
and is tested there. The wrapper gives a function the typed model when its first argument is
a host's variables, plain Python data instead of Ansible's tagged strings and lazy
containers, and turns the errors the function is known to raise into AnsibleFilterError, so
that Ansible prints the message (which names the field and the fix) instead of a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from kastro.controller.model_vars import with_model
from kastro.controller.secrets import SecretsDirError, secrets_dir


def plain(value: Any) -> Any:
    """Ansible's tagged strings and lazy containers as plain Python data (YAML can dump it)."""
    return json.loads(json.dumps(value))


def ansible_filter(
    function: Callable[..., Any],
    *errors: type[Exception],
    model: bool = True,
    prefix: str = "",
) -> Callable[..., Any]:
    """function as a filter: the host's variables first (given `with_model` when model),
    every further argument as plain data, `errors` reported as the filter's error."""

    def run(first: Any, *args: Any) -> Any:
        try:
            return function(with_model(first) if model else first, *plain(list(args)))
        except errors as exc:
            raise AnsibleFilterError(f"{prefix}{exc}") from exc

    run.__doc__ = function.__doc__
    run.__name__ = function.__name__
    return run


def secrets_dir_filter(
    municipality: dict[str, Any] | None, part: str, optional: bool = False
) -> str:
    """~/.kastro/secrets/DOMAIN/PART; with optional, empty for a host without the model (a
    sensor alone, as in molecule/monitor) instead of an error."""
    if optional and not (municipality or {}).get("domain"):
        return ""
    try:
        return secrets_dir(municipality, part)
    except SecretsDirError as exc:
        raise AnsibleFilterError(str(exc)) from exc
