"""A real Alertmanager on loopback for the tests, and a webhook sink beside it.

Debian's prometheus-alertmanager, started on 127.0.0.1 on a free port with its cluster port
off; stopped when the `with` block ends. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("alertmanager") or "/usr/bin/prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(base: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@contextmanager
def running_alertmanager(config: Path, storage: Path, port: int | None = None) -> Iterator[str]:
    """The base URL of an Alertmanager running `config`, ready to take alerts."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={storage}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


class Sink(BaseHTTPRequestHandler):
    """Collects the webhook notifications Alertmanager sends."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Sink.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def webhook_sink() -> Iterator[str]:
    Sink.received = []
    server = HTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


def alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary_el": name, "summary_en": name, "runbook": "x"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
