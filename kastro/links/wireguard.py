"""The WireGuard settings of a gateway's encrypted links, rendered on the controller.

One file per tunnel (``/etc/kastro/links/<interface>.conf``, 0600), read by
``kastro-links apply`` with ``wg setconf``. The keys come from the controller's secrets
directory (made by the links role with ``wg genkey``/``wg genpsk``); each is checked to be one
WireGuard key, so a damaged or planted key file cannot add lines to the settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# 32 bytes in base64: 43 characters, the last of which carries 4 bits, and one '='.
_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")

_SETTINGS = """\
# Written by Kastro's links role: link {name} to {peer_building}.
[Interface]
PrivateKey = {private_key}
ListenPort = {port}

[Peer]
PublicKey = {peer_public_key}
PresharedKey = {preshared_key}
Endpoint = {endpoint}
# One peer per tunnel: whatever OSPF routes over this link may pass.
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
"""


class WireguardKeyError(ValueError):
    """A key file that does not hold one WireGuard key; the message names the file."""


def read_key(secrets: Path, name: str) -> str:
    """The key in secrets/name, checked; the message never shows the file's content."""
    path = secrets / name
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.__class__.__name__
        raise WireguardKeyError(f"{path}: cannot be read as a key file ({reason})") from None
    if not _KEY.match(key):
        raise WireguardKeyError(
            f"{path}: δεν είναι κλειδί WireGuard / is not a WireGuard key (44 characters of "
            "base64); remove it and run the links role again to make a new one"
        )
    return key


def settings(link: Mapping[str, Any], host: str, key: Callable[[str], str]) -> str:
    """One tunnel's settings; key(file name) returns a checked key."""
    return _SETTINGS.format(
        name=link["name"],
        peer_building=link["peer_building"],
        private_key=key(f"{host}.key"),
        port=int(link["wireguard"]["port"]),
        peer_public_key=key(f"{link['peer_gateway']}.pub"),
        preshared_key=key(f"{link['name']}.psk"),
        endpoint=link["wireguard"]["peer_endpoint"],
    )


def tunnel_files(
    links: Sequence[Mapping[str, Any]], host: str, secrets: str
) -> list[dict[str, str]]:
    """kastro_files entries: one 0600 settings file per encrypted link, in the links' order."""
    directory = Path(secrets)
    return [
        {
            "dest": f"/etc/kastro/links/{link['interface']}.conf",
            "mode": "0600",
            "content": settings(link, host, lambda name: read_key(directory, name)),
        }
        for link in links
        if link["encrypted"]
    ]
