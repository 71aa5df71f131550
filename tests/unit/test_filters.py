"""kastro/controller/filters.py: the one wrapper that makes Kastro's functions Ansible filters."""

import pytest
from ansible.errors import AnsibleFilterError

from kastro.controller.filters import ansible_filter, plain
from kastro.controller.model_vars import with_model


class Tagged(str):
    """Stands for Ansible's tagged strings: a str subclass the functions must not see."""


def test_arguments_arrive_as_plain_data_and_the_variables_with_the_model():
    seen = []

    def function(model, *args):
        seen.append((model, args))
        return "ok"

    variables = {"kastro_host": {"inventory": ""}}
    assert ansible_filter(function)(variables, Tagged("a"), {"k": [Tagged("b")]}) == "ok"
    model, args = seen[0]
    assert model == with_model(variables)
    assert args == ("a", {"k": ["b"]})
    assert type(args[0]) is str and type(args[1]["k"][0]) is str


def test_the_named_errors_become_the_filters_error_with_their_message():
    def function(_first, field):
        raise ValueError(f"{field}: use a CIDR prefix")

    wrapped = ansible_filter(function, ValueError, model=False, prefix="group 'staff': ")
    with pytest.raises(AnsibleFilterError, match=r"^group 'staff': subnet: use a CIDR prefix$"):
        wrapped({}, "subnet")


def test_other_errors_are_not_hidden():
    def function(_first):
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        ansible_filter(function, ValueError, model=False)({})


def test_plain_copies_nested_data():
    value = {"a": [Tagged("x"), 1, None, True]}
    assert plain(value) == {"a": ["x", 1, None, True]}
    assert type(plain(value)["a"][0]) is str
