"""The mount options each file system gets (ANSSI-BP-028 R28, CIS 1.1.2-1.1.8), compiled on
the controller and applied by kastro-mounts (kastro.host.mounts) where the host has that file
system: a host installed with one file system keeps it, a host installed with the layout of
roles/endpoint/README.md gets nodev, nosuid and noexec where nothing needs them.

`endpoint_mount_options` changes one mount point's list (an empty list leaves it as it is),
e.g. ``{/home: [nodev, nosuid]}`` on a host whose users run their own programs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.endpoint.profile import EndpointConfigError
from kastro.host.mounts import OPTIONS, MountsError, checked_want

ALL = ("nodev", "nosuid", "noexec")
# Mount points, not temporary files: S108 does not apply.
ANSSI: dict[str, tuple[str, ...]] = {
    "/boot": ALL,
    "/dev/shm": ALL,  # noqa: S108
    "/home": ALL,
    "/opt": ("nodev", "nosuid"),
    "/srv": ("nodev", "nosuid"),
    "/tmp": ALL,  # noqa: S108
    "/usr": ("nodev",),
    # Not noexec: dpkg runs the packages' maintainer scripts from /var/lib/dpkg/info.
    "/var": ("nodev", "nosuid"),
    "/var/log": ALL,
    "/var/log/audit": ALL,
    "/var/tmp": ALL,  # noqa: S108
}


def mount_options(variables: Mapping[str, Any]) -> dict[str, list[str]]:
    overrides = variables.get("endpoint_mount_options") or {}
    if not isinstance(overrides, Mapping):
        raise EndpointConfigError(
            "endpoint_mount_options: a mapping of mount point to a list of options, e.g. "
            "{/home: [nodev, nosuid]}"
        )
    wanted = {**ANSSI, **{str(k): v for k, v in overrides.items()}}
    try:
        checked = checked_want({point: list(options or []) for point, options in wanted.items()})
    except (MountsError, TypeError) as error:
        raise EndpointConfigError(
            f"endpoint_mount_options: {str(error).removeprefix('--want: ')} "
            f"(an absolute mount point other than /, options from {', '.join(OPTIONS)}; "
            "an empty list leaves the mount point as it is)"
        ) from error
    return {point: list(options) for point, options in sorted(checked.items()) if options}
