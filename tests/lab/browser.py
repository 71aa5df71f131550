"""A real browser on the lab: Debian's chromium, driven by selenium (no driver download).

The browser runs on this machine and reaches the monitoring host's Prometheus through an SSH
tunnel to the host itself (it listens on its management address only). It sends the password
as a header with every request (the Chrome DevTools protocol) and accepts the lab's
certificate for 127.0.0.1 (the certificate names the management address; TLS itself is tested
in test_alerting.py). Pages are the daemon's own web interface, rendered with its JavaScript.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kastro.controller.model_vars import model_variables
from kastro.controller.secrets import secrets_dir
from kastro.inventory.plan import management_address
from kastro.lab import hosts
from tests.lab.conftest import INVENTORY, LAB

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="apt install chromium chromium-driver (make deps)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def tunnel(port: int) -> Iterator[int]:
    """127.0.0.1:LOCAL on this machine -> the monitoring host's management address:port."""
    variables = model_variables(INVENTORY)
    address = management_address(variables["kastro_plan"], "web")
    local = free_port()
    proc = subprocess.Popen(
        ["ssh", "-F", str(hosts.state_dir(LAB) / "ssh_config"), "-N",
         "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:{address}:{port}", "web"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            time.sleep(0.3)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium sending the lab's monitoring password with every request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    municipality = model_variables(INVENTORY)["kastro_municipality"]
    password = (Path(secrets_dir(municipality, "monitoring")) / "web.password").read_text()
    token = base64.b64encode(f"kastro:{password.strip()}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: Any, seconds: float, ready: Callable[[str], bool]) -> str:
    """The page's visible text once `ready(text)` holds (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if ready(text):
            break
        time.sleep(0.5)
    return text
