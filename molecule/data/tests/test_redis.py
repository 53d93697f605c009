"""What the redis role promises, checked on the converged Debian 13 host (beside PostgreSQL).

The expected limits are computed again here, from the same inventory and group_vars converge
used (the memory budget's plan), not copied from the rendered file.
"""

from __future__ import annotations

import pytest
from conftest import host_address, resolve, tcp_state

PASSWORD = "molecule-test-only-redis-password"  # molecule/shared/group_vars/vps.yml
BRIDGE = "172.30.0.1"
CONF = "/etc/redis/redis.conf"
# roles/redis/defaults/main.yml's redis_disabled_commands.
DISABLED = [
    "CONFIG", "DEBUG", "FLUSHALL", "FLUSHDB", "KEYS", "MODULE", "SHUTDOWN", "SLAVEOF", "REPLICAOF", "MIGRATE",
    "BGREWRITEAOF", "BGSAVE", "SAVE",
]  # fmt: skip


def _cli(host, *args: str, password: str | None = PASSWORD) -> str:
    """redis-cli against 127.0.0.1, authenticated unless ``password`` is None; its output."""
    env = f"REDISCLI_AUTH={password} " if password else ""
    quoted = " ".join(["%s"] * len(args))
    return host.check_output(f"{env}redis-cli --no-auth-warning -h 127.0.0.1 {quoted}", *args)


def _config(host, name: str) -> str:
    """``name``'s value in /etc/redis/redis.conf, the file redis-server runs with ("" unquoted to
    nothing). CONFIG GET is disabled (redis_disabled_commands): what the running server reports is
    read with INFO (``_info``)."""
    lines = [line.split(None, 1) for line in host.file(CONF).content_string.splitlines() if line.strip()]
    values = [rest[0] if rest else "" for word, *rest in lines if word == name]
    assert len(values) == 1, f"redis.conf sets {name} {len(values)} times"
    return values[0].strip().removeprefix('"').removesuffix('"')


def _info(host, section: str) -> dict[str, str]:
    """INFO ``section`` of the running server, as a dict."""
    lines = _cli(host, "INFO", section).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def _pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value redis-server")


def _conf_checksum(host) -> str:
    return host.check_output("md5sum /etc/redis/redis.conf")


def _from_container(host, image: str, lines: list[str], network: str = "bridge") -> str:
    """Send RESP inline commands to Redis on the bridge from a container; the replies."""
    payload = "\\r\\n".join(lines) + "\\r\\n"
    return host.run(
        f"docker run --rm --network {network} {image} sh -c 'printf \"{payload}\" | nc -w 2 {BRIDGE} 6379'"
    ).stdout


def test_distribution_server_runs_and_starts_at_boot(host) -> None:
    assert host.package("redis-server").is_installed
    service = host.service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_maxmemory_is_the_budgets(host) -> None:
    maxmemory_mb = int(resolve(host, "budget_plan.redis.maxmemory_mb"))
    assert maxmemory_mb > 0
    memory = _info(host, "memory")
    assert memory["maxmemory"] == str(maxmemory_mb * 1024 * 1024)
    assert memory["maxmemory_policy"] == "allkeys-lru"


def test_memory_ceiling_is_the_budget_share(host) -> None:
    share = int(resolve(host, "budget_plan.redis.memory_mb")) * 1024 * 1024
    assert host.check_output("systemctl show -p MemoryMax --value redis-server") == str(share)
    cgroup = host.check_output("systemctl show -p ControlGroup --value redis-server")
    limit = host.check_output(f"cat /sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes")
    assert int(limit) == share
    assert "After=docker.service" in host.check_output("systemctl cat redis-server")


def test_commands_need_the_password(host) -> None:
    assert "NOAUTH" in _cli(host, "PING", password=None)
    wrong = host.run("REDISCLI_AUTH=not-the-password-at-all redis-cli --no-auth-warning -h 127.0.0.1 PING")
    assert "WRONGPASS" in wrong.stdout + wrong.stderr
    assert "PONG" not in wrong.stdout
    assert _cli(host, "PING") == "PONG"


def test_nothing_is_persisted(host) -> None:
    assert _config(host, "save") == ""
    assert _config(host, "appendonly") == "no"
    assert _info(host, "persistence")["aof_enabled"] == "0"
    _cli(host, "SET", "persistence-probe", "1")
    host.check_output("systemctl restart redis-server")
    assert _cli(host, "EXISTS", "persistence-probe") == "0"
    assert not host.file("/var/lib/redis/dump.rdb").exists


def test_bound_to_loopback_and_the_docker_bridge_only(host) -> None:
    assert _config(host, "bind") == f"127.0.0.1 {BRIDGE}"
    assert _config(host, "protected-mode") == "yes"
    lines = host.check_output("ss -Hltn 'sport = :6379'").splitlines()
    assert {line.split()[3].rsplit(":", 1)[0] for line in lines} == {"127.0.0.1", BRIDGE}


def test_dangerous_commands_are_disabled_even_with_the_password(host) -> None:
    """Lynis DBS-1886: rename-command CONFIG (and the others) to nothing. The app's own credentials
    (redis_password, what app_redis_password is wired to) get "unknown command"."""
    conf = host.file(CONF).content_string.splitlines()
    assert [f'rename-command {command} ""' for command in DISABLED] == [
        line for line in conf if line.startswith("rename-command ")
    ]
    for command in (["CONFIG", "GET", "maxmemory"], ["FLUSHALL"], ["KEYS", "*"], ["DEBUG", "SLEEP", "0"]):
        reply = _cli(host, *command)
        assert reply.startswith(f"ERR unknown command '{command[0]}'"), (command, reply)
    assert _cli(host, "SET", "still-a-cache", "1") == "OK"
    assert _cli(host, "GET", "still-a-cache") == "1"
    # SHUTDOWN is disabled; systemd stops Redis with SIGTERM.
    before = _pid(host)
    host.check_output("systemctl restart redis-server")
    assert _pid(host) != before
    assert _cli(host, "PING") == "PONG"


def test_the_configuration_is_not_world_readable(host) -> None:
    """redis.conf holds requirepass: readable by the redis user only (and root)."""
    conf = host.file(CONF)
    assert (conf.user, conf.group) == ("redis", "redis")
    assert conf.mode == 0o640


def test_containers_reach_it_with_the_password(host, tiny_image) -> None:
    replies = _from_container(host, tiny_image, [f"AUTH {PASSWORD}", "PING"])
    assert replies.split() == ["+OK", "+PONG"], replies
    anonymous = _from_container(host, tiny_image, ["PING"])
    assert anonymous.startswith("-NOAUTH"), anonymous
    host.check_output("docker network create redis-client-check")
    try:
        on_network = _from_container(host, tiny_image, [f"AUTH {PASSWORD}", "PING"], "redis-client-check")
    finally:
        host.run("docker network rm redis-client-check")
    assert on_network.split() == ["+OK", "+PONG"], on_network


def test_unreachable_from_other_machines(host) -> None:
    """A sibling container on the controller's network is another machine: 6379 stays closed."""
    assert tcp_state(host_address(host), 6379) != "open"


def test_firewall_admits_the_docker_networks_only(host) -> None:
    status = [" ".join(line.split()) for line in host.check_output("ufw status").splitlines()]
    assert "6379/tcp ALLOW 172.30.0.0/16 # redis from docker" in status, status
    assert not [line for line in status if line.startswith("6379") and "Anywhere" in line], status


def test_config_checker_accepts_the_live_file_and_refuses_a_bad_one(host) -> None:
    """The check the role runs before installing redis.conf (template validate)."""
    checker = "/usr/local/sbin/toolkit-redis-check-config"
    assert host.run(f"{checker} /etc/redis/redis.conf").rc == 0
    host.check_output("sed 's/^maxmemory .*/maxmemory lots/' /etc/redis/redis.conf > /root/bad-redis.conf")
    try:
        bad = host.run(f"{checker} /root/bad-redis.conf")
    finally:
        host.run("rm -f /root/bad-redis.conf")
    assert bad.rc != 0
    assert "maxmemory lots" in bad.stderr
    assert PASSWORD not in bad.stderr + bad.stdout


def test_overcommitted_budget_fails_before_any_change(host, run_playbook) -> None:
    before = (_conf_checksum(host), _pid(host))
    run = run_playbook("converge.yml", {"budget_total_mb": 1024})
    assert run.rc != 0, run.output[-3000:]
    assert "memory budget refused" in run.output, run.output[-3000:]
    assert "Memory plan: 1024 MB host" in run.output, "the refusal should show the whole table"
    assert run.recap.get("changed") == 0, run.output[-3000:]
    assert (_conf_checksum(host), _pid(host)) == before


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"redis_password": "Sh0rt-Secret"}, "redis_password is too weak"),
        ({"redis_password": "has spaces in the password"}, "redis_password is too weak"),
        ({"redis_maxmemory_policy": "noeviction"}, "redis_maxmemory_policy"),
        ({"redis_maxmemory_mb": 512, "redis_memory_max_mb": 256}, "redis_maxmemory_mb must be at least 1"),
        ({"redis_bind_addresses": ["0.0.0.0/0"]}, "redis_bind_addresses"),
        ({"redis_bind_addresses": ["0.0.0.0"]}, "redis_bind_addresses"),
        ({"redis_disabled_commands": ["CONFIG", "PING"]}, "redis_disabled_commands"),
        ({"redis_disabled_commands": ["KEYS", "keys"]}, "redis_disabled_commands"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch="md5sum /etc/redis/redis.conf; systemctl show -p MainPID --value redis-server",
        secrets=("Sh0rt-Secret",),
    )
