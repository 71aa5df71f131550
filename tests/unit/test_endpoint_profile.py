"""The endpoint role's kernel settings, compiled per host from the plan: gateways forward and
keep their modules, servers and sensors get the strictest profile, overrides are checked.
The kernel itself reads these files in tests/vm (a VM of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kastro.endpoint.profile import (
    BLACKLIST,
    EndpointConfigError,
    blocked_modules,
    sysctl_settings,
)
from kastro.endpoint.profile import kernel_state as endpoint_state

ROOT = Path(__file__).resolve().parents[2]


def model(inventory: str = "inventory/example") -> dict:
    variables: dict = {}
    for path in sorted((ROOT / inventory / "group_vars" / "all").glob("*.yml")):
        variables.update(yaml.safe_load(path.read_text()) or {})
    return variables


def hosts(variables: dict) -> dict[str, str]:
    return {name: e["role"] for name, e in variables["kastro_plan"]["hosts"].items()}


def test_every_example_host_gets_the_profile_of_its_role() -> None:
    variables = model()
    for name, role in hosts(variables).items():
        state = endpoint_state(variables, name)
        assert state["profile"] == role
        forward = "1" if role == "gateway" else "0"
        assert state["sysctl"]["net.ipv4.ip_forward"] == forward, name
        assert state["sysctl"]["net.ipv6.conf.all.forwarding"] == forward, name
        assert state["sysctl"]["kernel.kptr_restrict"] == "2"
        assert f"net.ipv4.ip_forward = {forward}" in state["sysctl_file"]
        assert "install usb-storage /bin/false" in state["modprobe_file"]


def test_forwarding_is_set_before_the_settings_it_would_reset() -> None:
    """Writing ip_forward or all.forwarding resets redirects and the like: in the file (which
    `sysctl --load` applies top-down) they come first, overrides after (tests/vm measures a
    gateway turned server converging to zero changes)."""
    variables = {**model(), "endpoint_sysctl_extra": {"net.ipv4.conf.all.accept_local": 0}}
    for name in hosts(variables):
        keys = list(endpoint_state(variables, name)["sysctl"])
        assert keys[:2] == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"], name
        assert keys[2:] == sorted(keys[2:]) and "net.ipv4.conf.all.accept_local" in keys


def test_a_gateway_keeps_what_its_links_and_telework_load() -> None:
    variables = {**model(), "endpoint_modules_allowed": ["udf"]}
    gateway = next(n for n, r in hosts(variables).items() if r == "gateway")
    modules = blocked_modules(variables, gateway)
    assert "udf" not in modules and "cramfs" in modules
    assert not {"wireguard", "8021q", "tun"} & set(modules)
    assert set(modules) <= set(BLACKLIST)


def test_the_same_module_spelled_two_ways_is_one() -> None:
    variables = {**model(), "endpoint_modules_allowed": ["usb_storage"]}
    server = next(n for n, r in hosts(variables).items() if r == "server")
    assert "usb-storage" not in blocked_modules(variables, server)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"endpoint_sysctl_extra": {"kernel.sysrq; reboot": 1}}, "not a sysctl name"),
        ({"endpoint_sysctl_extra": {"kernel.sysrq": "1\nkernel.x = 2"}}, "not a number"),
        ({"endpoint_sysctl_extra": ["kernel.sysrq=1"]}, "a mapping"),
        ({"endpoint_modules_allowed": ["udf install"]}, "module names"),
        ({"endpoint_modules_allowed": "udf"}, "module names"),
    ],
)
def test_bad_overrides_name_the_variable(extra: dict, message: str) -> None:
    variables = {**model(), **extra}
    server = next(n for n, r in hosts(variables).items() if r == "server")
    with pytest.raises(EndpointConfigError, match=message):
        endpoint_state(variables, server)


def test_an_override_replaces_a_setting() -> None:
    variables = {**model(), "endpoint_sysctl_extra": {"kernel.sysrq": 176}}
    server = next(n for n, r in hosts(variables).items() if r == "server")
    assert sysctl_settings(variables, server)["kernel.sysrq"] == "176"


def test_a_host_outside_the_plan_is_refused() -> None:
    with pytest.raises(EndpointConfigError, match="kastro apply"):
        endpoint_state(model(), "no-such-host")
