"""The AIDE configuration the endpoint role writes: valid for the real AIDE, strict about
the watched paths."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kastro.endpoint.integrity import DATABASE, config
from kastro.endpoint.profile import EndpointConfigError


@pytest.mark.skipif(shutil.which("aide") is None, reason="needs Debian's aide")
def test_the_configuration_passes_aides_own_check(tmp_path: Path) -> None:
    path = tmp_path / "aide.conf"
    path.write_text(config({}))
    done = subprocess.run(["aide", "--config-check", f"--config={path}"], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert f"database_in=file:{DATABASE}" in path.read_text()


def test_paths_replace_the_default_list() -> None:
    text = config({"endpoint_aide_paths": ["/srv/app", "/etc"]})
    assert "/srv/app Kastro" in text and "/usr/lib Kastro" not in text


@pytest.mark.parametrize(
    "paths", ["/etc", [], ["etc"], ["/etc /usr"], ["/etc\n/ R"], ["/srv/../etc"], [7]]
)
def test_bad_paths_are_refused_by_name(paths: object) -> None:
    with pytest.raises(EndpointConfigError, match="endpoint_aide_paths"):
        config({"endpoint_aide_paths": paths})
