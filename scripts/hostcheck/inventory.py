"""What the checks need to know about each host: its address and the values the roles ran with.

The inventory's values (hosts.yml, its group_vars, group_vars/all) come from Ansible itself (an
ad-hoc `debug`, which contacts no host; the vault is opened through ANSIBLE_VAULT_PASSWORD_FILE
like any other run); a variable the inventory does not set takes its role default, read from
roles/<role>/defaults/main.yml.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hostcheck.ports import RELEVANT_PORTS

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("traefik", "app", "ssh_hardening")
NAMES = (
    "ansible_host",
    "ansible_port",
    "app_domain",
    "app_env_extra",
    "app_publish_port",
    "app_db_port",
    "app_redis_port",
    "ssh_hardening_port",
    "traefik_image_required",
    "traefik_acme_enabled",
    "traefik_acme_staging",
    "traefik_http_port",
    "traefik_https_port",
    "traefik_ping_port",
    "traefik_rate_limit_average",
    "traefik_rate_limit_burst",
    "traefik_rate_limit_period",
)
# The app's settings module: the login limit's default when app_env_extra does not set one.
APP_SETTINGS = ROOT / "app" / "src" / "invoice_service" / "settings.py"


@dataclass(frozen=True)
class Target:
    """One host as the checks see it."""

    name: str
    address: str
    domain: str
    ssh_port: int
    http_port: int
    https_port: int
    ping_port: int
    publish_port: int
    db_port: int
    redis_port: int
    traefik_image_required: bool
    acme_enabled: bool
    acme_staging: bool
    rate_average: int
    rate_burst: int
    rate_period: str
    login_limit: str
    api_limits_enabled: bool

    @property
    def scan_ports(self) -> set[int]:
        """The relevant ports plus every port the inventory names."""
        own = {self.ssh_port, self.http_port, self.https_port, self.ping_port, self.publish_port}
        return set(RELEVANT_PORTS) | own | {self.db_port, self.redis_port}

    @property
    def host_header(self) -> str:
        """The public name, or the address where the inventory names none (the sandbox)."""
        return self.domain or self.address


def role_defaults(root: Path = ROOT, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """The roles' literal defaults (a templated default depends on other variables: left out)."""
    values: dict[str, Any] = {}
    for role in roles:
        data = yaml.safe_load((root / "roles" / role / "defaults" / "main.yml").read_text()) or {}
        values.update({k: v for k, v in data.items() if not (isinstance(v, str) and "{{" in v)})
    return values


def settings_default(path: Path, name: str) -> str:
    """The `default=` of a pydantic field `name` in a settings module, read without importing it."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            call = node.value
            if isinstance(call, ast.Call):
                for keyword in call.keywords:
                    if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                        return str(keyword.value.value)
    raise LookupError(f"{path}: no default for {name}")


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def build_target(
    name: str, inventory: Mapping[str, Any], defaults: Mapping[str, Any], login_default: str
) -> Target:
    """Inventory values over role defaults, as the roles saw them."""
    values = {**defaults, **inventory}
    extra = values.get("app_env_extra") or {}
    return Target(
        name=name,
        address=str(values.get("ansible_host") or name),
        domain=str(values.get("app_domain") or ""),
        ssh_port=int(values.get("ansible_port") or values.get("ssh_hardening_port") or 22),
        http_port=int(values.get("traefik_http_port", 80)),
        https_port=int(values.get("traefik_https_port", 443)),
        ping_port=int(values.get("traefik_ping_port", 8082)),
        publish_port=int(values.get("app_publish_port", 80)),
        db_port=int(values.get("app_db_port", 5432)),
        redis_port=int(values.get("app_redis_port", 6379)),
        traefik_image_required=_bool(values.get("traefik_image_required", True)),
        acme_enabled=_bool(values.get("traefik_acme_enabled", True)),
        acme_staging=_bool(values.get("traefik_acme_staging", False)),
        rate_average=int(values.get("traefik_rate_limit_average", 100)),
        rate_burst=int(values.get("traefik_rate_limit_burst", 50)),
        rate_period=str(values.get("traefik_rate_limit_period", "1m")),
        login_limit=str(extra.get("RATE_LIMIT_LOGIN", login_default)),
        api_limits_enabled=_bool(extra.get("RATE_LIMIT_ENABLED", True)),
    )


def _debug_template(names: tuple[str, ...]) -> str:
    """A debug msg that returns the names the host defines, templated (undefined ones left out)."""
    listed = json.dumps(list(names))
    return (
        "msg={% set hv = hostvars[inventory_hostname] %}{% set wanted = "
        + listed
        + " | select('in', hv) | list %}"
        "{{ dict(wanted | zip(wanted | map('extract', hv))) | to_json }}"
    )


def parse_adhoc_json(output: str) -> dict[str, dict[str, Any]]:
    """Host -> values from the json callback's output of the debug call."""
    data = json.loads(output[output.index("{") :])
    hosts: dict[str, dict[str, Any]] = {}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    raise RuntimeError(f"{host}: {result.get('msg', result)}")
                message = result.get("msg", {})
                hosts[host] = json.loads(message) if isinstance(message, str) else dict(message)
    return hosts


def inventory_values(inventory: Path, pattern: str = "all") -> dict[str, dict[str, Any]]:
    """Ask Ansible for each host's values (contacts no host)."""
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CONFIG": os.environ.get("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg")),
    }
    ansible = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible"
    command = [
        str(ansible) if ansible.exists() else "ansible",
        "-i",
        str(inventory),
        pattern,
        "-m",
        "ansible.builtin.debug",
        "-a",
        _debug_template(NAMES),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if run.returncode != 0 or "{" not in run.stdout:
        raise RuntimeError(f"{' '.join(command[:5])}: {(run.stdout + run.stderr).strip()[-800:]}")
    return parse_adhoc_json(run.stdout)


def load_targets(inventory: Path, pattern: str = "all") -> list[Target]:
    """Every host of the inventory, with the values the checks need."""
    defaults = role_defaults()
    login_default = settings_default(APP_SETTINGS, "RATE_LIMIT_LOGIN")
    hosts = inventory_values(inventory, pattern)
    return [build_target(name, values, defaults, login_default) for name, values in sorted(hosts.items())]
