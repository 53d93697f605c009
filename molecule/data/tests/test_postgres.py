"""What the postgres role promises, checked on the converged Debian 13 host (beside Redis).

The expected settings are computed again here, from the same inventory and group_vars converge
used (the memory budget's plan), not copied from the rendered file.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import host_address, resolve, tcp_state

APP_USER = "invoice"
APP_DATABASE = "invoice"
APP_PASSWORD = "molecule-test-only-postgres-password"  # molecule/shared/group_vars/vps.yml
BRIDGE = "172.30.0.1"


def _psql(host, sql: str, database: str = "postgres") -> str:
    """Run SQL as the postgres superuser over the local socket; unaligned, tuples only."""
    return host.check_output("runuser -u postgres -- psql -XAtq -d %s -c %s", database, sql)


def _major(host) -> int:
    return int(_psql(host, "SHOW server_version_num")) // 10000


def _postmaster_pid(host) -> str:
    return host.check_output(f"head -1 /var/lib/postgresql/{_major(host)}/main/postmaster.pid")


def _conf_checksum(host) -> str:
    return host.check_output(f"md5sum /etc/postgresql/{_major(host)}/main/conf.d/toolkit.conf")


def _memory_limit(host) -> int:
    """The memory limit of the running cluster's cgroup in bytes (cgroup v2, or v1 as on this bench)."""
    unit = f"postgresql@{_major(host)}-main"
    cgroup = host.check_output(f"systemctl show -p ControlGroup --value {unit}")
    v2, v1 = f"/sys/fs/cgroup{cgroup}/memory.max", f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes"
    return int(host.check_output(f"cat {v2} 2>/dev/null || cat {v1}"))


def _said(run) -> str:
    """The run's output without colours, every run of whitespace made one space: the callback folds
    long messages (and colours each line of them when colour is forced, as the Makefile does)."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", run.output).split())


def _plan(host) -> dict:
    """The budget's PostgreSQL plan for this host's version (the role sets postgres_version)."""
    plan = resolve(host, "budget_plan.postgres", {"postgres_version": _major(host)})
    assert isinstance(plan, dict)
    return plan


def _app_psql(host, image: str, conninfo: str, network: str = "bridge") -> subprocess.CompletedProcess:
    """psql from a container on the host's Docker engine (the host's binaries, mounted read-only).

    No registry is reachable: the tiny busybox image runs the host's psql through the host's
    dynamic loader, so the client is a real process on a Docker network.
    """
    psql = f"/usr/lib/postgresql/{_major(host)}/bin/psql"
    command = (
        f"docker run --rm --network {network} -v /usr:/usr:ro {image}"
        f" /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 {psql} -XAt"
    )
    return host.run(f"{command} %s -c 'SELECT current_user, inet_client_addr()'", conninfo)


def _app_conninfo(address: str, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
    return f"host={address} user={user} password={password} dbname={APP_DATABASE} connect_timeout=5"


def test_distribution_server_runs_and_starts_at_boot(host) -> None:
    expected = 15 if host.system_info.release.startswith("12") else 17
    assert _major(host) == expected
    assert host.package(f"postgresql-{expected}").is_installed
    service = host.service(f"postgresql@{expected}-main")
    assert service.is_running
    assert host.service("postgresql").is_enabled


def test_show_returns_every_budget_setting(host) -> None:
    settings = _plan(host)["settings"]
    assert "shared_buffers" in settings, settings
    shown = {name: _psql(host, f"SHOW {name}") for name in settings}
    assert shown == {name: str(value) for name, value in settings.items()}


def test_rendered_file_holds_exactly_the_budget_and_role_settings(host) -> None:
    content = host.file(f"/etc/postgresql/{_major(host)}/main/conf.d/toolkit.conf").content_string
    rendered = dict(
        line.split(" = ", 1) for line in content.splitlines() if line and not line.startswith("#")
    )
    expected = {name: f"'{value}'" for name, value in _plan(host)["settings"].items()}
    assert {name: rendered[name] for name in expected} == expected
    role_own = set(rendered) - set(expected)
    assert role_own <= {
        "listen_addresses",
        "port",
        "password_encryption",
        "log_min_duration_statement",
        "shared_preload_libraries",
        # WAL archiving (postgres_archive_command): archive_mode alone while it is off, as here.
        "archive_mode",
        "archive_command",
        "archive_timeout",
    }, role_own


def test_role_settings_are_in_effect(host) -> None:
    assert _psql(host, "SHOW listen_addresses") == f"localhost,{BRIDGE}"
    assert _psql(host, "SHOW password_encryption") == "scram-sha-256"
    assert _psql(host, "SHOW log_min_duration_statement") == "1s"
    assert _psql(host, "SHOW shared_preload_libraries") == "pg_stat_statements"


def test_configuration_files_are_not_world_readable(host) -> None:
    """Lynis DBS-1828: every file of the cluster's configuration (the package's postgresql.conf,
    start.conf, pg_ctl.conf, environment, pg_ident.conf; the role's pg_hba.conf and conf.d/toolkit.conf)
    is 0640 postgres:postgres."""
    directory = f"/etc/postgresql/{_major(host)}/main"
    listed = host.check_output(f"find {directory} -type f -printf '%m %u:%g %P\\n'").splitlines()
    files = {name: (mode, owner) for mode, owner, name in (line.split(" ", 2) for line in listed)}
    for name in (
        "postgresql.conf",
        "start.conf",
        "pg_ctl.conf",
        "pg_hba.conf",
        "pg_ident.conf",
        "conf.d/toolkit.conf",
    ):
        assert name in files, f"{directory}/{name} is missing: {sorted(files)}"
    loose = {name: found for name, found in files.items() if found != ("640", "postgres:postgres")}
    assert not loose, f"not 0640 postgres:postgres in {directory}: {loose}"
    # The server still reads them: it answers, with the role's settings.
    assert _psql(host, "SHOW password_encryption") == "scram-sha-256"


def test_listens_on_loopback_and_the_docker_bridge_only(host) -> None:
    lines = host.check_output("ss -Hltn 'sport = :5432'").splitlines()
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in lines}
    assert addresses <= {"127.0.0.1", "[::1]", BRIDGE}, addresses
    assert {"127.0.0.1", BRIDGE} <= addresses, addresses


def test_memory_ceiling_is_the_budget_share(host) -> None:
    share_mb = int(_plan(host)["memory_mb"])
    unit = f"postgresql@{_major(host)}-main"
    assert host.check_output(f"systemctl show -p MemoryMax --value {unit}") == str(share_mb * 1024 * 1024)
    # The kernel enforces it: the running cluster's cgroup has the limit (cgroup v1 memory here).
    cgroup = host.check_output(f"systemctl show -p ControlGroup --value {unit}")
    limit = host.check_output(f"cat /sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes")
    assert int(limit) == share_mb * 1024 * 1024
    assert "After=docker.service" in host.check_output(f"systemctl cat {unit}")


def test_slow_statements_are_logged(host) -> None:
    _psql(host, "SELECT pg_sleep(1.2) AS slow_statement_probe")
    log = host.check_output(f"tail -n 50 /var/log/postgresql/postgresql-{_major(host)}-main.log")
    assert "SELECT pg_sleep(1.2) AS slow_statement_probe" in log
    assert "duration: 1" in log


def test_pg_stat_statements_records_the_apps_queries(host) -> None:
    assert _psql(host, "SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'", APP_DATABASE)
    _psql(host, "SELECT 4242 AS stat_statements_probe", APP_DATABASE)
    query = "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%stat_statements_probe%'"
    found = _psql(host, query, APP_DATABASE)
    assert int(found) >= 1


def test_app_role_connects_from_docker_networks(host, tiny_image) -> None:
    on_bridge = _app_psql(host, tiny_image, _app_conninfo(BRIDGE))
    assert on_bridge.rc == 0, on_bridge.stderr
    user, client = on_bridge.stdout.strip().split("|")
    assert user == APP_USER
    assert client.startswith("172.30.0."), client
    # A user-defined network (the app's compose network) comes from the same pool.
    host.check_output("docker network create pg-client-check")
    try:
        on_network = _app_psql(host, tiny_image, _app_conninfo(BRIDGE), network="pg-client-check")
    finally:
        host.run("docker network rm pg-client-check")
    assert on_network.rc == 0, on_network.stderr
    assert on_network.stdout.strip().split("|")[1].startswith("172.30."), on_network.stdout


def test_nothing_else_can_log_in(host, tiny_image) -> None:
    wrong_password = _app_psql(host, tiny_image, _app_conninfo(BRIDGE, password="not-the-password"))
    assert wrong_password.rc != 0
    assert "password authentication failed" in wrong_password.stderr
    superuser = _app_psql(host, tiny_image, _app_conninfo(BRIDGE, user="postgres"))
    assert superuser.rc != 0
    assert "no pg_hba.conf entry" in superuser.stderr
    # The app's role from the host itself over TCP: no rule allows it.
    local_tcp = host.run(
        f"/usr/lib/postgresql/{_major(host)}/bin/psql -XAt %s -c 'SELECT 1'", _app_conninfo("127.0.0.1")
    )
    assert local_tcp.rc != 0
    assert "no pg_hba.conf entry" in local_tcp.stderr


def test_unreachable_from_other_machines(host) -> None:
    """A sibling container on the controller's network is another machine: 5432 stays closed."""
    assert tcp_state(host_address(host), 5432) != "open"


def test_firewall_admits_the_docker_networks_only(host) -> None:
    status = [" ".join(line.split()) for line in host.check_output("ufw status").splitlines()]
    assert "5432/tcp ALLOW 172.30.0.0/16 # postgres from docker" in status, status
    assert not [line for line in status if line.startswith("5432") and "Anywhere" in line], status


def test_a_reloadable_setting_applies_without_a_restart_and_a_restart_setting_restarts(
    host, run_playbook
) -> None:
    """One role run changes a setting a reload applies (the server keeps running), the next one a
    setting that needs a restart (the server restarts), a third puts the plan back. (Three runs of
    the role instead of four: each costs half a minute.)"""
    plan = _plan(host)["settings"]
    reloadable = {**plan, "work_mem": "7MB" if plan.get("work_mem") != "7MB" else "6MB"}
    restarting = {**reloadable, "shared_buffers": "160MB"}
    before = _postmaster_pid(host)
    try:
        run = run_playbook("apply.yml", {"postgres_settings": reloadable})
        assert run.rc == 0, run.output[-3000:]
        assert _psql(host, "SHOW work_mem") == reloadable["work_mem"]
        assert _postmaster_pid(host) == before, "the server restarted for a setting a reload applies"

        run = run_playbook("apply.yml", {"postgres_settings": restarting})
        assert run.rc == 0, run.output[-3000:]
        assert _psql(host, "SHOW shared_buffers") == "160MB"
        assert _postmaster_pid(host) != before, "the server kept the old shared_buffers"
        # Announced before it happened (postgres_restart_policy: now, the default).
        said = _said(run)
        announced = f"needs a RESTART to apply: shared_buffers ({plan['shared_buffers']} now, 160MB after"
        assert announced in said, run.output[-3000:]
        assert "every open connection is dropped" in said, run.output[-3000:]
        assert "Restarting it now: postgres_restart_policy is now." in said, run.output[-3000:]
    finally:
        assert run_playbook("apply.yml").rc == 0
    assert _psql(host, "SHOW work_mem") == plan["work_mem"]
    assert _psql(host, "SHOW shared_buffers") == plan["shared_buffers"]


RESTART_RECORD = "/var/lib/toolkit/postgres-restart-pending"


def test_a_deferred_restart_waits_for_make_postgres_restart(host, run_playbook, run_make) -> None:
    """postgres_restart_policy: defer. A start-only setting and a new MemoryMax are announced, the
    server keeps running with its old values and the host records them; the next run finds the same
    and changes nothing. make postgres-restart then restarts once, the new values apply and the record
    goes; a second make postgres-restart has nothing to do. The role with the default policy (now)
    puts the plan back, announced and restarted."""
    plan = _plan(host)
    connections = _psql(host, "SHOW max_connections")
    more_connections = str(int(connections) + 5)
    memory_mb, more_memory_mb = int(plan["memory_mb"]), int(plan["memory_mb"]) + 64
    assert _memory_limit(host) == memory_mb * 1024 * 1024
    deferred = {
        "postgres_restart_policy": "defer",
        "postgres_settings": {**plan["settings"], "max_connections": more_connections},
        "postgres_memory_max_mb": more_memory_mb,
    }
    pending = (
        f"needs a RESTART to apply: max_connections ({connections} now, {more_connections} after the"
        f" restart), MemoryMax ({memory_mb}M now, {more_memory_mb}M after the restart)."
    )
    before = _postmaster_pid(host)
    try:
        run = run_playbook("apply.yml", deferred)
        assert run.rc == 0, run.output[-3000:]
        said = _said(run)
        assert pending in said, run.output[-3000:]
        assert "NOT restarting it: postgres_restart_policy is defer" in said, run.output[-3000:]
        assert f"WARNING: PostgreSQL {_major(host)} on" in said, run.output[-3000:]
        assert "was NOT restarted and keeps running with" in said, run.output[-3000:]
        assert "make postgres-restart ENV=" in said, run.output[-3000:]
        assert _postmaster_pid(host) == before, "the server restarted although the restart was deferred"
        assert _psql(host, "SHOW max_connections") == connections
        assert _memory_limit(host) == memory_mb * 1024 * 1024, "the running cluster got the new MemoryMax"
        record = host.file(RESTART_RECORD)
        assert (record.exists, record.user, record.group, record.mode) == (True, "root", "root", 0o600)
        assert f"max_connections: {connections} -> {more_connections}" in record.content_string
        assert f"MemoryMax: {memory_mb}M -> {more_memory_mb}M" in record.content_string
        recorded = host.check_output(f"md5sum {RESTART_RECORD}")

        # The next run finds the same changes waiting (the drop-in is already written) and changes nothing.
        run = run_playbook("apply.yml", deferred)
        assert run.rc == 0, run.output[-3000:]
        assert run.recap.get("changed") == 0, run.output[-3000:]
        assert pending in _said(run), run.output[-3000:]
        assert host.check_output(f"md5sum {RESTART_RECORD}") == recorded
        assert _postmaster_pid(host) == before

        run = run_make("postgres-restart")
        assert run.rc == 0, run.output[-3000:]
        said = _said(run)
        assert pending in said, run.output[-3000:]
        assert "Restarting it now: make postgres-restart applies what was" in said, run.output[-3000:]
        assert (
            f"restarted and accepts connections again; it now runs with max_connections {more_connections},"
            f" MemoryMax {more_memory_mb}M." in said
        ), run.output[-3000:]
        restarted = _postmaster_pid(host)
        assert restarted != before, "make postgres-restart did not restart the server"
        assert _psql(host, "SHOW max_connections") == more_connections
        assert _memory_limit(host) == more_memory_mb * 1024 * 1024
        assert not host.file(RESTART_RECORD).exists

        run = run_make("postgres-restart")
        assert run.rc == 0, run.output[-3000:]
        assert run.recap.get("changed") == 0, run.output[-3000:]
        assert "Nothing waits for a restart of PostgreSQL" in _said(run), run.output[-3000:]
        assert _postmaster_pid(host) == restarted
    finally:
        restore = run_playbook("apply.yml")
        assert restore.rc == 0, restore.output[-3000:]
    said = _said(restore)
    assert "needs a RESTART to apply: max_connections" in said, restore.output[-3000:]
    assert "Restarting it now: postgres_restart_policy is now." in said, restore.output[-3000:]
    assert _psql(host, "SHOW max_connections") == connections
    assert _memory_limit(host) == memory_mb * 1024 * 1024
    assert not host.file(RESTART_RECORD).exists


def test_bad_setting_is_refused_by_postgres_and_the_server_keeps_running(host, run_playbook) -> None:
    settings = {**_plan(host)["settings"], "shared_buffers": "lots"}
    before = (_conf_checksum(host), _postmaster_pid(host), _psql(host, "SHOW shared_buffers"))
    run = run_playbook("apply.yml", {"postgres_settings": settings})
    assert run.rc != 0, run.output[-3000:]
    assert 'invalid value for parameter "shared_buffers": "lots"' in run.output, run.output[-3000:]
    assert run.recap.get("changed") == 0, run.output[-3000:]
    assert (_conf_checksum(host), _postmaster_pid(host), _psql(host, "SHOW shared_buffers")) == before


def test_overcommitted_budget_fails_before_any_change(host, run_playbook) -> None:
    before = (_conf_checksum(host), _postmaster_pid(host))
    # The seed's 8 GB table as fixed amounts, on a 1 GB host: over-committed.
    fixed = {
        "postgres": "25%",
        "redis": 256,
        "api": 2560,
        "worker": 1024,
        "proxy": 256,
        "monitoring": 320,
        "os_reserve": 448,
    }
    shares = fixed | {"headroom": "10%"}
    run = run_playbook("converge.yml", {"budget_total_mb": 1024, "budget_shares": shares})
    assert run.rc != 0, run.output[-3000:]
    assert "memory budget refused" in run.output, run.output[-3000:]
    assert "over-committed" in run.output, run.output[-3000:]
    assert "Memory plan: 1024 MB host" in run.output, "the refusal should show the whole table"
    assert run.recap.get("changed") == 0, run.output[-3000:]
    assert (_conf_checksum(host), _postmaster_pid(host)) == before


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"postgres_app_password": "Sh0rt-Secret"}, "postgres_app_password is too weak"),
        ({"postgres_app_password": "changeme-postgres-app-password"}, "postgres_app_password is too weak"),
        ({"postgres_app_networks": ["172.30.0.0"]}, "postgres_app_networks CIDR networks"),
        ({"postgres_settings": {"Shared Buffers": "1GB"}}, "postgres_settings must map"),
        ({"postgres_memory_max_mb": "plenty"}, "postgres_memory_max_mb"),
        ({"postgres_restart_policy": "later"}, "postgres_restart_policy"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch=f"md5sum /etc/postgresql/{_major(host)}/main/conf.d/toolkit.conf",
        secrets=("Sh0rt-Secret",),
    )
