"""strategy_plugins/toolkit_linear.py: the inventory's StrictHostKeyChecking decides Mitogen's
host key policy (Mitogen's own "StrictHostKeyChecking yes" would otherwise win)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from role_scripts import load_plugin

toolkit_linear = load_plugin("strategy_plugins", "toolkit_linear")


def _arguments(check: str, *ssh_args: str) -> dict[str, Any]:
    return {"method": "ssh", "kwargs": {"check_host_keys": check, "ssh_args": list(ssh_args)}}


@pytest.mark.parametrize(
    ("ssh_args", "expected"),
    [
        # the sandbox: record a new host's key, refuse a changed one
        (("-o", "UserKnownHostsFile=.local/known_hosts", "-o", "StrictHostKeyChecking=accept-new"), "accept"),
        # the test bench
        (("-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"), "ignore"),
        (("-o", "StrictHostKeyChecking yes"), "enforce"),
        # nothing stated: Ansible's host_key_checking (enforce) stands
        (("-o", "IdentitiesOnly=yes"), "enforce"),
        # OpenSSH's first value counts
        (("-o", "StrictHostKeyChecking=accept-new", "-o", "StrictHostKeyChecking=no"), "accept"),
    ],
)
def test_the_inventorys_policy_decides_where_mitogen_would_enforce(
    ssh_args: tuple[str, ...], expected: str
) -> None:
    assert (
        toolkit_linear.host_key_policy(_arguments("enforce", *ssh_args))["kwargs"]["check_host_keys"]
        == expected
    )


def test_host_key_checking_off_is_left_off() -> None:
    arguments = _arguments("ignore", "-o", "StrictHostKeyChecking=accept-new")
    assert toolkit_linear.host_key_policy(arguments)["kwargs"]["check_host_keys"] == "ignore"


def test_the_wrapper_replaces_every_method_name_that_used_the_ssh_function() -> None:
    def original(spec: object) -> dict[str, Any]:
        return _arguments("enforce", "-o", "StrictHostKeyChecking=no")

    def other(spec: object) -> dict[str, Any]:
        return {}

    connection = SimpleNamespace(
        _connect_ssh=original, CONNECTION_METHOD={"ssh": original, "smart": original, "local": other}
    )
    toolkit_linear.honour_host_key_policy(connection)
    assert connection.CONNECTION_METHOD["local"] is other
    for method in ("ssh", "smart"):
        assert connection.CONNECTION_METHOD[method]("spec")["kwargs"]["check_host_keys"] == "ignore"
    assert connection._connect_ssh("spec")["kwargs"]["check_host_keys"] == "ignore"
