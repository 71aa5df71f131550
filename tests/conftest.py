"""Shared test settings: podman needs the project's containers.conf on these machines."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "kastro" / "lab" / "containers.conf"))
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
# Molecule writes its own ansible.cfg: the model's vars plugin reaches it through these.
os.environ.setdefault("ANSIBLE_VARS_PLUGINS", str(ROOT / "plugins" / "vars"))
os.environ.setdefault("ANSIBLE_VARS_ENABLED", "kastro_model")
os.environ.setdefault("ANSIBLE_LIBRARY", str(ROOT / "plugins" / "modules"))
os.environ.setdefault("ANSIBLE_ACTION_PLUGINS", str(ROOT / "plugins" / "action"))
os.environ.setdefault("ANSIBLE_FILTER_PLUGINS", str(ROOT / "plugins" / "filter"))
os.environ.setdefault("ANSIBLE_STRATEGY_PLUGINS", str(ROOT / "plugins" / "strategy"))
