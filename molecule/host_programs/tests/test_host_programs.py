"""What the host_programs role leaves on a host (testinfra over `podman exec`)."""

import hashlib
import os
from pathlib import Path

import pytest

BUILT = Path(os.environ.get("HOME", "/root")) / ".kastro" / "build" / "kastro-host.pyz"


def test_the_archive_is_the_one_built_on_the_controller(host):
    archive = host.file("/usr/lib/kastro/kastro-host.pyz")
    assert archive.user == "root" and archive.group == "root" and archive.mode == 0o644
    assert archive.sha256sum == hashlib.sha256(BUILT.read_bytes()).hexdigest()
    assert host.file("/usr/lib/kastro").mode == 0o755


@pytest.mark.parametrize(("program", "module"), [("firewall", "kastro.host.firewall"),
                                                 ("links", "kastro.host.links")])  # fmt: skip
def test_each_wrapper_runs_its_program_from_the_archive(host, program, module):
    wrapper = host.file(f"/usr/local/sbin/kastro-{program}")
    assert wrapper.user == "root" and wrapper.mode == 0o755
    text = wrapper.content_string
    assert text.startswith("#!/usr/bin/python3 -I\n")
    assert f"from {module} import main" in text
    assert host.run(f"kastro-{program} --help").rc == 0


def test_pythonpath_cannot_slip_code_into_a_program_root_runs(host):
    """The attacker who can set root's environment (a sudo rule, a unit's Environment=) puts
    a module the program imports from the standard library (argparse) first on PYTHONPATH;
    without -I it would run as root, with -I the wrapper ignores it."""
    host.run('mkdir -p /tmp/evil && echo \'open("/tmp/evil-ran", "w")\' > /tmp/evil/argparse.py')
    planted = host.run("PYTHONPATH=/tmp/evil python3 -c 'import argparse'")
    assert planted.rc == 0 and host.file("/tmp/evil-ran").exists  # the plant works
    host.run("rm -f /tmp/evil-ran")
    result = host.run("PYTHONPATH=/tmp/evil kastro-firewall --help")
    assert result.rc == 0
    assert not host.file("/tmp/evil-ran").exists
