"""The inventories resolve to what the roles need, checked with Ansible itself (no host is contacted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = {"local": "sandbox", "production": "vps1"}


def resolve(inventory: str, host: str, expression: str, *extra: str) -> object:
    """Evaluate a Jinja expression in ``host``'s variables (the debug module runs on the controller)."""
    done = subprocess.run(
        [
            "ansible",
            host,
            "-i",
            str(ROOT / "inventories" / inventory / "hosts.yml"),
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={{{{ {expression} | to_json }}}}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"][host]
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
