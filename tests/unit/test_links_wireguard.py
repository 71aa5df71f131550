"""kastro/links/wireguard.py: a gateway's tunnel settings, with keys made by the real wg tool.

The text is what roles/links/templates/wireguard.conf.j2 wrote before it moved here; the lab
(molecule/links) brings the tunnels up from it.
"""

import subprocess
from pathlib import Path

import pytest

from kastro.inventory.model import wireguard_key_problem
from kastro.links.wireguard import WireguardKeyError, read_key, tunnel_files

LINK = {
    "name": "hall-library",
    "peer_building": "library",
    "peer_gateway": "library-gw",
    "interface": "wg-library",
    "encrypted": True,
    "wireguard": {"port": 51871, "peer_endpoint": "10.255.0.2:51871"},
}


def wg(*argv: str, stdin: str = "") -> str:
    return subprocess.run(["wg", *argv], input=stdin, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    for name in ("hall-gw", "library-gw"):
        private = wg("genkey")
        (tmp_path / f"{name}.key").write_text(private)
        (tmp_path / f"{name}.pub").write_text(wg("pubkey", stdin=private))
    (tmp_path / "hall-library.psk").write_text(wg("genpsk"))
    return tmp_path


def key(secrets: Path, name: str) -> str:
    return (secrets / name).read_text().strip()


def test_one_0600_file_per_encrypted_link_holding_the_right_keys(secrets):
    plain = {**LINK, "name": "hall-school", "interface": "eth3", "encrypted": False}
    files = tunnel_files([LINK, plain], "hall-gw", str(secrets))
    assert [(f["dest"], f["mode"]) for f in files] == [
        ("/etc/kastro/links/wg-library.conf", "0600")
    ]
    assert files[0]["content"] == (
        "# Written by Kastro's links role: link hall-library to library.\n"
        "[Interface]\n"
        f"PrivateKey = {key(secrets, 'hall-gw.key')}\n"
        "ListenPort = 51871\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {key(secrets, 'library-gw.pub')}\n"
        f"PresharedKey = {key(secrets, 'hall-library.psk')}\n"
        "Endpoint = 10.255.0.2:51871\n"
        "# One peer per tunnel: whatever OSPF routes over this link may pass.\n"
        "AllowedIPs = 0.0.0.0/0, ::/0\n"
        "PersistentKeepalive = 25\n"
    )


@pytest.mark.parametrize(
    "planted",
    [
        "",                                                    # emptied
        "not a key\n",
        "AAAA\nEndpoint = 192.0.2.66:51820\n",                 # a line smuggled in
        "-----BEGIN PRIVATE KEY-----\n",
        "A" * 43 + "B=\n",                                     # one character too many
        "A" * 42 + "B=\n",                                     # 32 bytes, bits wg refuses
    ],
)  # fmt: skip
def test_a_damaged_or_planted_key_file_is_refused_without_showing_it(secrets, planted):
    (secrets / "library-gw.pub").write_text(planted)
    with pytest.raises(WireguardKeyError, match=r"library-gw\.pub") as err:
        tunnel_files([LINK], "hall-gw", str(secrets))
    assert "192.0.2.66" not in str(err.value)


def test_a_missing_key_file_is_named(secrets):
    (secrets / "hall-library.psk").unlink()
    with pytest.raises(WireguardKeyError, match=r"hall-library\.psk"):
        read_key(secrets, "hall-library.psk")


@pytest.mark.parametrize("key", ["A" * 42 + "B=", "A" * 42 + "F="])
def test_keys_wg_refuses_are_refused_in_the_inventory_too(key):
    """A teleworker's public key that base64 decodes to 32 bytes but wg will not take would
    have passed validation and failed on the host."""
    refused = subprocess.run(["wg", "pubkey"], input=key + "\n", capture_output=True, text=True)
    assert refused.returncode != 0
    assert wireguard_key_problem(key) == (
        "is not a WireGuard public key (its last character is not one wg accepts)"
    )


def test_a_key_wg_makes_passes_the_inventory_check():
    assert wireguard_key_problem(wg("pubkey", stdin=wg("genkey")).strip()) is None
