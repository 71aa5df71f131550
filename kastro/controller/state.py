"""Each host's desired state, compiled on the controller from the model and the plan.

What one role does on a host that another role must know (the VPN's interfaces and ports,
the link tunnels, the ports WireGuard and OSPF arrive on) follows from the inventory alone, so
it is worked out here, once, and every role reads it from here. No role reads what another
role left on a host: the firewall compiled for a fresh gateway by firewall.yml alone is the
one site.yml compiles.

`variables` are the host's inventory variables (group_vars and host_vars: the model, the plan,
kastro_interfaces, and any role setting the admin overrides there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kastro.inventory.plan import runs_vpn
from kastro.inventory.published import gateway_uplinks
from kastro.links.config import link_ends

# The telework settings other roles depend on, with the telework role's defaults (a test
# checks they match roles/telework/defaults/main.yml). An override in group_vars or host_vars
# reaches both roles through the variables.
TELEWORK_DEFAULTS: dict[str, Any] = {
    "telework_interface": "wg-tw",
    "telework_port": 51820,
    "telework_openvpn_enabled": True,
    "telework_openvpn_port": 443,
    "telework_openvpn_interface": "tun-tw",
}


def _setting(variables: Mapping[str, Any], name: str) -> Any:
    return variables.get(name, TELEWORK_DEFAULTS[name])


def vpn_server(variables: Mapping[str, Any], host: str) -> bool:
    """Whether `host` runs the teleworkers' VPN: the city-hall gateway, when the municipality
    has teleworker groups. The one place this rule lives."""
    planned = ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}
    building = (variables.get("kastro_buildings") or {}).get(str(planned.get("building"))) or {}
    return runs_vpn(
        str(planned.get("role")),
        bool(building.get("city_hall")),
        len(variables.get("kastro_teleworker_groups") or {}),
    )


def telework_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The VPN on this host: its interfaces and the ports it listens on (on the uplink)."""
    if not vpn_server(variables, host):
        return {"server": False, "interfaces": [], "input_allow": [], "wireguard_port": None}
    # Teleworkers reach the VPN on whichever uplink is alive.
    uplinks = [up["interface"] for up in gateway_uplinks(variables, host)]
    if not uplinks and (variables.get("kastro_interfaces") or {}).get("wan"):
        uplinks = [str(variables["kastro_interfaces"]["wan"])]
    openvpn = bool(_setting(variables, "telework_openvpn_enabled"))
    interfaces = [str(_setting(variables, "telework_interface"))]
    allow = [
        {
            "name": "wireguard",
            "ports": [f"udp/{int(_setting(variables, 'telework_port'))}"],
            "interfaces": uplinks,
        }
    ]
    if openvpn:
        interfaces.append(str(_setting(variables, "telework_openvpn_interface")))
        allow.append(
            {
                "name": "openvpn",
                "ports": [f"tcp/{int(_setting(variables, 'telework_openvpn_port'))}"],
                "interfaces": uplinks,
            }
        )
    return {
        "server": True,
        "interfaces": interfaces,
        "input_allow": allow,
        "wireguard_port": int(_setting(variables, "telework_port")),
    }


def links_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """This gateway's links as the firewall sees them: the tunnel of each encrypted link,
    WireGuard on the underlays, OSPF on every routed link interface."""
    planned = ((variables.get("kastro_plan") or {}).get("hosts") or {}).get(host) or {}
    ends = link_ends(host, variables) if planned.get("role") == "gateway" else []
    if not ends:
        return {"linked": False, "interfaces": {}, "input_allow": []}
    tunnels = [e for e in ends if e["encrypted"]]
    allow: list[dict[str, Any]] = []
    if tunnels:
        allow.append(
            {
                "name": "wireguard_links",
                "ports": [f"udp/{e['wireguard']['port']}" for e in tunnels],
                "interfaces": [e["underlay"] for e in tunnels],
            }
        )
    allow.append(
        {"name": "ospf", "ports": ["proto/ospf"], "interfaces": [e["interface"] for e in ends]}
    )
    return {
        "linked": True,
        "interfaces": {e["name"]: e["interface"] for e in tunnels},
        "input_allow": allow,
    }


def management_networks(variables: Mapping[str, Any]) -> list[str]:
    """Every building's management zone, IPv4 prefixes first, then IPv6 (plan order): where
    admins may come from, on every host."""
    zones = (variables.get("kastro_plan") or {}).get("zones") or {}
    managed = [z for z in zones.values() if z.get("kind") == "management"]
    return [str(z[f]) for f in ("ipv4", "ipv6") for z in managed if z.get(f)]


def host_state(variables: Mapping[str, Any], host: str) -> dict[str, Any]:
    """Everything about `host` that more than one role needs, as plain data."""
    telework = telework_state(variables, host)
    links = links_state(variables, host)
    return {
        "telework": telework,
        "links": links,
        "uplinks": gateway_uplinks(variables, host),
        "firewall": {
            "management_networks": management_networks(variables),
            "vpn_interfaces": telework["interfaces"],
            "link_interfaces": links["interfaces"],
            "input_allow": telework["input_allow"] + links["input_allow"],
            # Where teleworkers' WireGuard handshakes arrive: counted, so that a device whose
            # key was removed (revoked) and keeps knocking is seen.
            "handshake_ports": [p for p in [telework["wireguard_port"]] if p],
            "uplinks": [
                {"interface": up["interface"], "mark": up["mark"]}
                for up in gateway_uplinks(variables, host)
            ],
        },
    }
