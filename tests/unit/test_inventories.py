"""The inventories resolve to what the roles need, checked with Ansible itself (no host is contacted)."""

from __future__ import annotations

import json

import pytest
from ansible_json import inventory_file, run_json

INVENTORIES = {"local": "sandbox", "production": "vps1"}


def resolve(inventory: str, host: str, expression: str, *extra: str) -> object:
    """Evaluate a Jinja expression in ``host``'s variables (the debug module runs on the controller)."""
    output = run_json(
        [
            "ansible",
            host,
            "-i",
            inventory_file(inventory),
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={{{{ {expression} | to_json }}}}",
            *extra,
        ]
    )
    result = output["plays"][0]["tasks"][0]["hosts"][host]
    return json.loads(result["msg"])


@pytest.mark.parametrize(("inventory", "host"), INVENTORIES.items())
def test_one_ssh_port_for_sshd_firewall_and_fail2ban(inventory: str, host: str) -> None:
    ports = "[ssh_hardening_port, ufw_ssh_port, fail2ban_sshd_port]"
    assert [int(port) for port in resolve(inventory, host, ports)] == [22, 22, 22]
    moved = resolve(inventory, host, ports, "-e", "ssh_hardening_port=2222")
    assert [int(port) for port in moved] == [2222, 2222, 2222]


@pytest.mark.parametrize(("inventory", "host"), INVENTORIES.items())
def test_site_wide_values_reach_every_inventory(inventory: str, host: str) -> None:
    assert resolve(inventory, host, "[base_deploy_user, base_timezone]") == ["deploy", "America/Sao_Paulo"]


def test_sandbox_uses_the_distribution_engine_and_production_dockers_repository() -> None:
    assert resolve("local", "sandbox", "docker_source") == "distribution"
    assert resolve("production", "vps1", "docker_source | default('docker')") == "docker"
