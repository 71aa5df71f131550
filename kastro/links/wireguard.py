"""The WireGuard settings of a gateway's encrypted links, rendered on the controller.

One file per tunnel (``/etc/kastro/links/<interface>.conf``, 0600), read by
``kastro-links apply`` with ``wg setconf``. The keys come from the controller's secrets
directory (made by the links role with ``wg genkey``/``wg genpsk``); each is checked to be one
WireGuard key, so a damaged or planted key file cannot add lines to the settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kastro.inventory.model import wireguard_key_problem

_SETTINGS = """\
# Written by Kastro's links role: link {name} to {peer_building}.
[Interface]
PrivateKey = {private_key}
ListenPort = {port}

[Peer]
PublicKey = {peer_public_key}
PresharedKey = {preshared_key}
{endpoint}# One peer per tunnel: whatever OSPF routes over this link may pass.
AllowedIPs = 0.0.0.0/0, ::/0
{keepalive}"""


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
    if wireguard_key_problem(key):
        raise WireguardKeyError(
            f"{path}: δεν είναι κλειδί WireGuard / is not a WireGuard key (44 characters of "
            "base64); remove it and run the links role again to make a new one"
        )
    return key


def settings(link: Mapping[str, Any], private_key: str, secrets: Path) -> str:
    """One tunnel's settings: this gateway's private key, the peer's and the link's from secrets."""
    return _SETTINGS.format(
        name=link["name"],
        peer_building=link["peer_building"],
        private_key=private_key,
        port=int(link["wireguard"]["port"]),
        peer_public_key=read_key(secrets, f"{link['peer_gateway']}.pub"),
        preshared_key=read_key(secrets, f"{link['name']}.psk"),
        endpoint=_line("Endpoint", link["wireguard"].get("peer_endpoint")),
        keepalive=_line("PersistentKeepalive", link["wireguard"].get("keepalive", 25)),
    )


def _line(key: str, value: Any) -> str:
    """`Key = value` and a newline; nothing for an empty value (a hub of internet links
    learns each branch's endpoint from its packets and keeps nothing alive itself)."""
    return f"{key} = {value}\n" if value else ""


def tunnel_files(
    links: Sequence[Mapping[str, Any]], host: str, secrets: str
) -> list[dict[str, str]]:
    """kastro_files entries: one 0600 settings file per encrypted link, in the links' order."""
    encrypted = [link for link in links if link["encrypted"]]
    if not encrypted:
        return []
    directory = Path(secrets)
    private_key = read_key(directory, f"{host}.key")
    return [
        {
            "dest": f"/etc/kastro/links/{link['interface']}.conf",
            "mode": "0600",
            "content": settings(link, private_key, directory),
        }
        for link in encrypted
    ]
