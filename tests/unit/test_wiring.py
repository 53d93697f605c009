"""Roles are wired together in group_vars/all only, and lists an inventory extends stay additive.

Checked with Ansible itself against the real inventories and roles; no host is contacted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from ansible_json import inventory_file, run_json

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "defaults" / "main.yml").is_file())
INVENTORIES = {"local": "sandbox", "production": "vps1"}
# The rules group_vars/all/data.yml builds: PostgreSQL and Redis from the Docker address pool.
DATA_RULES = [
    {"rule": "allow", "port": 5432, "from": "172.30.0.0/16", "comment": "postgres from docker"},
    {"rule": "allow", "port": 6379, "from": "172.30.0.0/16", "comment": "redis from docker"},
]
WIREGUARD = {"rule": "allow", "port": 51820, "proto": "udp", "comment": "wireguard"}


def _names_in_templates(value: object) -> set[str]:
    """Every identifier used inside {{ }} or {% %} anywhere in a YAML value."""
    if isinstance(value, dict):
        return set().union(*(_names_in_templates(item) for item in value.values()), set())
    if isinstance(value, list):
        return set().union(*(_names_in_templates(item) for item in value), set())
    if not isinstance(value, str):
        return set()
    found: set[str] = set()
    for expression in re.findall(r"{[{%](.*?)[}%]}", value, flags=re.S):
        # String literals are not variables.
        expression = re.sub(r"'[^']*'|\"[^\"]*\"", "''", expression)
        found |= set(re.findall(r"\b[a-z][a-z0-9_]*\b", expression))
    return found


def _spec_defaults(role: str) -> dict[str, object]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    return {name: option.get("default") for name, option in options.items()}


@pytest.mark.parametrize("role", ROLES)
def test_a_role_default_never_reads_another_roles_variable(role: str) -> None:
    """Cross-role wiring lives in group_vars/all: a default that reads another role's variable
    silently takes a fallback whenever that role is not in the play."""
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    others = tuple(f"{other}_" for other in ROLES if other != role)
    for source, values in (("defaults/main.yml", defaults), ("argument_specs.yml", _spec_defaults(role))):
        for name, value in values.items():
            foreign = sorted(word for word in _names_in_templates(value) if word.startswith(others))
            assert not foreign, f"roles/{role}/{source}: {name} reads {foreign}; wire it in group_vars/all"


def _playbook_run(tmp_path: Path, inventory: str, host: str, tasks: list[dict], extra: dict) -> dict:
    """Run a throwaway play of ``tasks`` against ``host``; the JSON msg of each debug task by name."""
    names = {task["name"] for task in tasks if "ansible.builtin.debug" in task}
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": host, "gather_facts": False, "tasks": tasks}]))
    output = run_json(
        [
            "ansible-playbook",
            "-i",
            inventory_file(inventory),
            str(playbook),
            "--extra-vars",
            json.dumps(extra),
        ]
    )
    tasks_run = output["plays"][0]["tasks"]
    return {
        task["task"]["name"]: json.loads(task["hosts"][host]["msg"])
        for task in tasks_run
        if task["task"]["name"] in names
    }


def _ufw_loop(task_name: str) -> str:
    """The loop expression of one task of roles/ufw/tasks/main.yml, without its braces."""
    tasks = yaml.safe_load((ROOT / "roles" / "ufw" / "tasks" / "main.yml").read_text())
    loop = next(task["loop"] for task in tasks if task["name"] == task_name)
    return loop.strip().removeprefix("{{").removesuffix("}}").strip()


def _applied(tmp_path: Path, inventory: str, host: str, extra: dict) -> dict:
    """The rules and routes the ufw role would apply on ``host``: its own loop expressions, with its
    defaults in scope (its validate tasks imported, which change nothing) and ``extra`` vars."""
    rules = _ufw_loop("Add the further rules")
    routes = _ufw_loop("Let outside traffic reach the allowed container ports")
    tasks = [
        {
            "name": "Load the ufw role",
            "ansible.builtin.import_role": {"name": "ufw", "tasks_from": "validate"},
        },
        {
            "name": "rules",
            "ansible.builtin.debug": {"msg": f"{{{{ ({rules}) | to_json }}}}"},
        },
        {
            "name": "routes",
            "ansible.builtin.debug": {"msg": f"{{{{ ({routes}) | to_json }}}}"},
        },
    ]
    return _playbook_run(tmp_path, inventory, host, tasks, extra)


@pytest.mark.parametrize(("inventory", "host"), INVENTORIES.items())
def test_an_inventorys_extra_rule_keeps_the_database_rules(tmp_path: Path, inventory: str, host: str) -> None:
    applied = _applied(tmp_path, inventory, host, {"ufw_rules_extra": [WIREGUARD]})
    assert applied["rules"] == [*DATA_RULES, WIREGUARD]


def test_each_inventory_routes_its_container_ports(tmp_path: Path) -> None:
    """Traefik's 80 and 443 everywhere, nothing more: no container publishes another port (the
    sandbox's API port is the app role's socket on the host, not a container's)."""
    tcp = [{"port": 80, "proto": "tcp"}, {"port": 443, "proto": "tcp"}]
    assert _applied(tmp_path, "local", "sandbox", {})["routes"] == tcp
    assert _applied(tmp_path, "production", "vps1", {})["routes"] == tcp


@pytest.mark.parametrize(("inventory", "host"), INVENTORIES.items())
def test_group_vars_wire_the_roles_together(inventory: str, host: str) -> None:
    from test_inventories import resolve

    wired = {
        "monitoring_api_url": "http://127.0.0.1:8000/health/ready",
        "monitoring_backup_dir": "/var/backups/toolkit",
        "monitoring_postgres_port": 5432,
        "monitoring_redis_port": 6379,
        "monitoring_tls_port": 443,
        "backup_database": "invoice",
        "app_db_name": "invoice",
        "app_host_address": "172.30.0.1",
        "app_traefik_network": "edge",
        "app_traefik_container": "traefik",
        "ssh_hardening_deploy_user": "deploy",
        # Only the edge network is a trusted proxy; the edge's body limit is the API's upload bound.
        "app_trusted_proxy_networks": ["172.30.255.0/24"],
        "app_metrics_networks": ["127.0.0.0/8", "172.30.255.0/24"],
        "traefik_network_subnet": "172.30.255.0/24",
        "traefik_max_request_body_bytes": 5 * 10 * 1024 * 1024 + 65536,
    }
    resolved = resolve(inventory, host, "[" + ", ".join(wired) + "]")
    assert dict(zip(wired, resolved, strict=True)) == wired
    # Wired, not copied: the value follows its source.
    moved = resolve(
        inventory,
        host,
        "[monitoring_api_url, ssh_hardening_deploy_user, monitoring_tls_domain, backup_database,"
        " app_trusted_proxy_networks, traefik_max_request_body_bytes]",
        "-e",
        "app_local_port=8100 base_deploy_user=ops app_domain=api.invoices.test postgres_app_database=billing"
        " traefik_network_subnet=172.30.200.0/24 app_max_upload_files=2",
    )
    assert moved == [
        "http://127.0.0.1:8100/health/ready",
        "ops",
        "api.invoices.test",
        "billing",
        ["172.30.200.0/24"],
        2 * 10 * 1024 * 1024 + 65536,
    ]


def test_group_vars_wire_what_the_monitoring_stack_scrapes() -> None:
    """The monitoring role's targets come from the other roles' ports (defined in group_vars/all, where
    the monitoring role can read them), per inventory: Traefik is scraped where production runs it."""
    from test_inventories import resolve

    names = [
        "monitoring_api_metrics_targets",
        "monitoring_worker_metrics_targets",
        "monitoring_traefik_metrics_targets",
        "monitoring_probe_urls",
        "monitoring_postgres_enabled",
        "monitoring_redis_enabled",
        "monitoring_memory_max_mb",
        "postgres_monitor_users",
    ]
    expected = {
        "monitoring_api_metrics_targets": ["127.0.0.1:8000"],
        "monitoring_worker_metrics_targets": ["127.0.0.1:9111"],
        "monitoring_probe_urls": ["http://127.0.0.1:8000/health/ready"],
        "monitoring_postgres_enabled": True,
        "monitoring_redis_enabled": True,
        "monitoring_memory_max_mb": 320,
        "postgres_monitor_users": ["prometheus"],
    }
    for inventory, host, traefik in (("production", "vps1", ["127.0.0.1:8082"]), ("local", "sandbox", [])):
        resolved = dict(zip(names, resolve(inventory, host, "[" + ", ".join(names) + "]"), strict=True))
        resolved["monitoring_memory_max_mb"] = int(resolved["monitoring_memory_max_mb"])
        assert resolved == {**expected, "monitoring_traefik_metrics_targets": traefik}, inventory
    # Two worker replicas: two ports.
    two = resolve("production", "vps1", "monitoring_worker_metrics_targets", "-e", "app_worker_replicas=2")
    assert two == ["127.0.0.1:9111", "127.0.0.1:9112"]
