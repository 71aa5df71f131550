"""Ansible's linear strategy run over Mitogen (one Python per host, kept for the whole run).

Kastro's roles run tens of small modules per host; over plain SSH each one starts a new Python
on the host and imports Ansible's module code again (a third of a second of CPU each here,
benchmarks/module_cost.py). Mitogen keeps one interpreter per host and caches the imports, which
halves a run with nothing to change (benchmarks/rerun.py). The roles do not depend on it:
ANSIBLE_STRATEGY=linear runs them the ordinary way. Mitogen is installed from PyPI (pyproject).
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
