"""The containers' limits and confinement, the addresses ports are published on and the data
services' hardening, as the roles render them with the sandbox inventory's real group_vars.

Each run is a throwaway play on the controller (no host is contacted): the host's facts are
pretended with set_fact (cacheable, so they land in ansible_facts as gathered ones would), the roles'
validate entry points load their defaults and check the values, and the roles' own templates and
task expressions are rendered with Ansible (the template lookup renders what the template tasks
write). This machine's kernel has no AppArmor, so the profile is checked as rendered, both ways.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_json import inventory_file, run_json

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "roles/app/templates/opt/invoice-service/releases/compose.yaml.j2"
SOCKET = ROOT / "roles/app/templates/etc/systemd/system/app-publish.socket.j2"
REDIS_CONF = ROOT / "roles/redis/templates/etc/redis/redis.conf.j2"
REDIS_CHECK = ROOT / "roles/redis/templates/usr/local/sbin/toolkit-redis-check-config.j2"
TRAEFIK_CONTAINER = ROOT / "roles/traefik/tasks/container.yml"
HOST = "sandbox"
# The vault's secrets (the sandbox inventory would make files in .local/ for them).
SECRETS = {
    "postgres_app_password": "render-check-" + "p" * 24,
    "redis_password": "render-check-" + "r" * 24,
    "app_jwt_secret": "render-check-" + "j" * 40,
}
# A Debian 12 host without AppArmor, reached at one IPv4 address (TEST-NET-2), with an IPv6 one too.
PLAIN_HOST = {
    "distribution": "Debian",
    "distribution_major_version": "12",
    "distribution_version": "12.8",
    "distribution_release": "bookworm",
    "apparmor": {"status": "disabled"},
    "default_ipv4": {"address": "198.51.100.7"},
    "default_ipv6": {"address": "2001:db8::7"},
}
APPARMOR_HOST = {**PLAIN_HOST, "apparmor": {"status": "enabled"}}
# The memory budget's figures for the 8 GB, 2 vCPU host (tests/unit/test_memory_budget.py explains them).
BUDGET_LIMITS = {
    "api": {"pids_limit": 158, "cpu_shares": 1024},
    "worker": {"pids_limit": 127, "cpu_shares": 512},
    "migrate": {"pids_limit": 95, "cpu_shares": 512},
}


def _expression(template: str) -> str:
    """The Jinja expression of a ``{{ ... }}`` task argument, without its braces."""
    return template.strip().removeprefix("{{").removesuffix("}}").strip()


def _traefik_run_task() -> dict[str, Any]:
    tasks = yaml.safe_load(TRAEFIK_CONTAINER.read_text())
    return next(task for task in tasks if task["name"] == "Run Traefik")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release manifest and (empty) tarball, so the app role's checks pass without `make package`."""
    directory = tmp_path_factory.mktemp("dist")
    (directory / "invoice-service-9.9.9.tar.gz").write_bytes(b"")
    manifest = {
        "version": "9.9.9",
        "image": "invoice-service:9.9.9",
        "image_id": "sha256:" + "0" * 64,
        "tarball": "invoice-service-9.9.9.tar.gz",
    }
    (directory / "invoice-service-9.9.9.json").write_text(json.dumps(manifest))
    return directory / "invoice-service-9.9.9.tar.gz"


def _play(tmp_path: Path, facts: dict[str, Any], tasks: list[dict[str, Any]], extra: dict[str, Any]) -> dict:
    """Run ``tasks`` on the sandbox (locally) with ``facts``; the msg of each task named ``out:*``."""
    pretend = {"name": "Pretend the host's facts", "ansible.builtin.set_fact": {**facts, "cacheable": True}}
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": HOST, "gather_facts": False, "tasks": [pretend, *tasks]}]))
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    output = run_json(
        [
            "ansible-playbook",
            "-i",
            inventory_file("local"),
            str(playbook),
            "--extra-vars",
            json.dumps({**local, **SECRETS, **extra}),
        ]
    )
    return {
        task["task"]["name"].removeprefix("out:"): json.loads(task["hosts"][HOST]["msg"])
        for task in output["plays"][0]["tasks"]
        if task["task"]["name"].startswith("out:") and "msg" in task["hosts"][HOST]
    }


def _load_roles(*roles: str) -> list[dict[str, Any]]:
    """Each role's validate entry point, public: its defaults under the inventory's values, checked."""
    return [
        {
            "name": f"Check and load the {role} role",
            "ansible.builtin.include_role": {"name": role, "tasks_from": "validate.yml", "public": True},
        }
        for role in roles
    ]


def _rendered(tmp_path: Path, manifest: Path, facts: dict[str, Any], **extra: Any) -> dict:
    """The compose project, the publishing socket, Traefik's container arguments and the wiring."""
    traefik = _traefik_run_task()
    module = traefik["community.docker.docker_container"]
    arguments = {key: module[key] for key in ("published_ports", "security_opts", "pids_limit", "cpu_shares")}
    wired = [
        "docker_apparmor_enabled",
        "app_apparmor_profile",
        "traefik_apparmor_profile",
        "traefik_bind_addresses",
        "app_publish_address",
    ]
    tasks = [
        *_load_roles("traefik", "app"),
        {
            "name": "out:compose",
            "ansible.builtin.debug": {
                "msg": f"{{{{ lookup('ansible.builtin.template', '{COMPOSE}') | from_yaml | to_json }}}}"
            },
            "vars": {
                "app__image": "invoice-service:9.9.9",
                "app__version": "9.9.9",
                "app__image_id": "sha256:0",
            },
        },
        {
            "name": "out:socket",
            "ansible.builtin.debug": {
                "msg": f"{{{{ lookup('ansible.builtin.template', '{SOCKET}') | to_json }}}}"
            },
            "vars": {"app__publish_direct": True},
        },
        {
            "name": "out:traefik",
            "ansible.builtin.debug": {
                "msg": "{{ {"
                + ", ".join(f"'{key}': ({_expression(str(value))})" for key, value in arguments.items())
                + "} | to_json }}"
            },
            "vars": traefik["vars"],
        },
        {
            "name": "out:wired",
            "ansible.builtin.debug": {
                "msg": "{{ {" + ", ".join(f"'{name}': {name}" for name in wired) + "} | to_json }}"
            },
        },
    ]
    return _play(tmp_path, facts, tasks, {"app_image_tarball": str(manifest), **extra})


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, manifest: Path) -> dict:
    """What the roles render on a host without AppArmor (one run for the tests that read it)."""
    return _rendered(tmp_path_factory.mktemp("plain"), manifest, PLAIN_HOST)


def test_every_app_container_gets_the_budgets_pids_limit_and_cpu_shares(plain: dict) -> None:
    services = plain["compose"]["services"]
    for service, limits in BUDGET_LIMITS.items():
        assert {key: services[service][key] for key in limits} == limits, service
        assert services[service]["mem_limit"].endswith("m")
    # The API is favoured over the background work under contention.
    assert services["api"]["cpu_shares"] > services["worker"]["cpu_shares"]


def test_without_apparmor_the_containers_keep_no_new_privileges_only(plain: dict) -> None:
    rendered = plain
    for service in ("api", "worker", "migrate"):
        assert rendered["compose"]["services"][service]["security_opt"] == ["no-new-privileges:true"]
    assert rendered["traefik"]["security_opts"] == ["no-new-privileges:true"]
    assert rendered["wired"]["docker_apparmor_enabled"] is False
    assert rendered["wired"]["app_apparmor_profile"] == rendered["wired"]["traefik_apparmor_profile"] == ""


def test_with_apparmor_every_container_runs_under_docker_default(tmp_path: Path, manifest: Path) -> None:
    rendered = _rendered(tmp_path, manifest, APPARMOR_HOST)
    both = ["no-new-privileges:true", "apparmor=docker-default"]
    for service in ("api", "worker", "migrate"):
        assert rendered["compose"]["services"][service]["security_opt"] == both
    assert rendered["traefik"]["security_opts"] == both
    assert rendered["wired"]["docker_apparmor_enabled"] is True


def test_traefik_publishes_on_the_hosts_address_and_loopback_never_a_wildcard(plain: dict) -> None:
    rendered = plain
    # The IPv6 address only where Docker can forward it (the userland proxy, off by default).
    assert rendered["wired"]["traefik_bind_addresses"] == ["198.51.100.7"]
    assert rendered["traefik"]["published_ports"] == [
        "198.51.100.7:80:80",
        "198.51.100.7:443:443",
        "127.0.0.1:80:80",
        "127.0.0.1:443:443",
        "127.0.0.1:8082:8082",
    ]
    assert (rendered["traefik"]["pids_limit"], rendered["traefik"]["cpu_shares"]) == (96, 1024)


def test_with_the_userland_proxy_traefik_also_publishes_on_the_hosts_ipv6_address(
    tmp_path: Path, manifest: Path
) -> None:
    rendered = _rendered(tmp_path, manifest, PLAIN_HOST, docker_userland_proxy=True)
    assert rendered["wired"]["traefik_bind_addresses"] == ["198.51.100.7", "2001:db8::7"]
    assert "[2001:db8::7]:443:443" in rendered["traefik"]["published_ports"]


def test_the_direct_publishing_socket_binds_the_hosts_address(
    plain: dict, tmp_path: Path, manifest: Path
) -> None:
    rendered = plain
    assert rendered["wired"]["app_publish_address"] == "198.51.100.7"
    listen = [line for line in rendered["socket"].splitlines() if line.startswith("ListenStream=")]
    assert listen == ["ListenStream=127.0.0.1:8000", "ListenStream=198.51.100.7:80"]
    assert "FreeBind=true" in rendered["socket"].splitlines()
    # Overridable: an inventory names another of the host's addresses (IPv6 in brackets).
    moved = _rendered(tmp_path, manifest, PLAIN_HOST, app_publish_address="2001:db8::8")
    assert "ListenStream=[2001:db8::8]:80" in moved["socket"].splitlines()


REFUSALS = [
    ("traefik", {"traefik_bind_addresses": ["0.0.0.0"]}, "traefik_bind_addresses must list the host's own"),
    ("traefik", {"traefik_bind_addresses": ["198.51.100.7", "::"]}, "traefik_bind_addresses must list"),
    ("traefik", {"traefik_bind_addresses": [""]}, "traefik_bind_addresses must list"),
    ("traefik", {"traefik_bind_addresses": []}, "traefik_bind_addresses must list"),
    ("traefik", {"traefik_pids_limit": 0}, "traefik_pids_limit must be a positive whole number"),
    ("traefik", {"traefik_cpu_shares": 1}, "traefik_cpu_shares a whole number from 2 to 262144"),
    ("app", {"app_publish_address": "0.0.0.0"}, "app_publish_address must be one of the host's own"),
    ("app", {"app_publish_address": "::"}, "app_publish_address must be one of the host's own"),
    ("app", {"app_publish_address": ""}, "app_publish_address must be one of the host's own"),
    ("app", {"app_api_pids_limit": 0}, "app_api_pids_limit must be a whole number from 1 to"),
    ("app", {"app_worker_cpu_shares": 1}, "app_worker_cpu_shares must be a whole number from 2 to 262144"),
    (
        "docker",
        {"docker_default_bind_ip": "0.0.0.0"},
        "docker_default_bind_ip an IP address and not a wildcard",
    ),
    ("redis", {"redis_bind_addresses": ["127.0.0.1", "0.0.0.0"]}, "none a wildcard"),
    ("redis", {"redis_disabled_commands": ["CONFIG", "config"]}, "redis_disabled_commands must name"),
    ("redis", {"redis_disabled_commands": ["AUTH"]}, "redis_disabled_commands must name"),
]


def test_wildcards_and_bad_limits_are_refused_naming_the_variable(tmp_path: Path, manifest: Path) -> None:
    """One play: each bad value goes through its role's validate entry point in a block whose rescue
    reports the failure's messages (an accepted value reports "accepted")."""
    tasks = [
        {
            "name": f"Case {number}",
            "block": [
                {
                    "name": f"Validate case {number}",
                    "ansible.builtin.include_role": {"name": role, "tasks_from": "validate.yml"},
                    "vars": bad,
                },
                {"name": f"out:{number}", "ansible.builtin.debug": {"msg": '{{ "accepted" | to_json }}'}},
            ],
            "rescue": [
                {
                    "name": f"out:{number}",
                    "ansible.builtin.debug": {
                        "msg": "{{ ([ansible_failed_result.msg | default('')]"
                        " + (ansible_failed_result.results | default([]) | selectattr('failed', 'defined')"
                        " | selectattr('failed') | map(attribute='msg') | list)) | join(' ') | to_json }}"
                    },
                }
            ],
        }
        for number, (role, bad, _) in enumerate(REFUSALS)
    ]
    messages = _play(tmp_path, PLAIN_HOST, tasks, {"app_image_tarball": str(manifest)})
    for number, (_, bad, expected) in enumerate(REFUSALS):
        assert expected in messages[str(number)], (bad, messages[str(number)])


def test_redis_disables_the_dangerous_commands_and_redis_server_accepts_the_file(
    tmp_path: Path, manifest: Path
) -> None:
    tasks = [
        *_load_roles("redis"),
        {
            "name": "out:conf",
            "ansible.builtin.debug": {
                "msg": f"{{{{ lookup('ansible.builtin.template', '{REDIS_CONF}') | to_json }}}}"
            },
        },
        {
            "name": "out:check",
            "ansible.builtin.debug": {
                "msg": f"{{{{ lookup('ansible.builtin.template', '{REDIS_CHECK}') | to_json }}}}"
            },
        },
    ]
    rendered = _play(tmp_path, PLAIN_HOST, tasks, {})
    renamed = [line for line in rendered["conf"].splitlines() if line.startswith("rename-command ")]
    disabled = [
        "CONFIG",
        "DEBUG",
        "FLUSHALL",
        "FLUSHDB",
        "KEYS",
        "MODULE",
        "SHUTDOWN",
        "SLAVEOF",
        "REPLICAOF",
    ]
    disabled += ["MIGRATE", "BGREWRITEAOF", "BGSAVE", "SAVE"]
    assert renamed == [f'rename-command {command} ""' for command in disabled]
    # make unit installs redis-server first (app-apt).
    assert shutil.which("redis-server"), "no redis-server: run make unit (it installs it) or make app-apt"
    conf = tmp_path / "redis.conf"
    # The check parses the whole file; bind addresses are not checked (this machine lacks docker0's).
    conf.write_text(
        rendered["conf"].replace("pidfile /run/redis/redis-server.pid", f"pidfile {tmp_path}/pid")
    )
    check = tmp_path / "check"
    check.write_text(rendered["check"])
    done = subprocess.run(
        ["sh", str(check), str(conf)], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    conf.write_text(rendered["conf"] + 'rename-command NO-SUCH-COMMAND ""\n')
    refused = subprocess.run(
        ["sh", str(check), str(conf)], capture_output=True, text=True, check=False, timeout=30
    )
    assert refused.returncode != 0
    assert "No such command in rename-command" in refused.stderr
