"""What differs between Debian 12 and Debian 13, checked on both production hosts.

The role scenarios (molecule/<role>) converge a Debian 13 host only; these are the promises whose
outcome depends on what the release ships: its PostgreSQL and Redis take the budget's settings, its
security archive feeds unattended-upgrades, and its OpenSSH passes ssh-audit's hardened policy for
that release. The file sorts last on purpose: ssh-audit's scan is the last thing that connects to
sshd, as in `make verify`.
"""

from __future__ import annotations

import sys

import pytest
from conftest import PROJECT, resolve

sys.path.insert(0, str(PROJECT / "scripts"))
from hostcheck import ssh  # scripts/ is not a package: the path above finds it
from hostcheck.results import Status

SSH_PORT = 22


def _psql(host, sql: str) -> str:
    return host.check_output("runuser -u postgres -- psql -XAtq -d postgres -c %s", sql)


@pytest.fixture(scope="module")
def address(host) -> str:
    return str(resolve(host, "ansible_host"))


def test_the_distributions_postgresql_reports_the_budgets_settings(host) -> None:
    major = int(_psql(host, "SHOW server_version_num")) // 10000
    assert major == (15 if host.system_info.codename == "bookworm" else 17)
    plan = resolve(host, "budget_plan.postgres", {"postgres_version": major})
    assert isinstance(plan, dict)
    settings = plan["settings"]
    assert "shared_buffers" in settings, settings
    shown = {name: _psql(host, f"SHOW {name}") for name in settings}
    assert shown == {name: str(value) for name, value in settings.items()}


def test_the_distributions_redis_takes_the_budgets_maxmemory(host) -> None:
    maxmemory_mb = int(resolve(host, "budget_plan.redis.maxmemory_mb"))
    password = str(resolve(host, "redis_password"))
    # INFO, not CONFIG GET: the redis role disables CONFIG (redis_disabled_commands).
    reply = host.check_output(
        "REDISCLI_AUTH=%s redis-cli --no-auth-warning -h 127.0.0.1 INFO memory", password
    )
    assert f"maxmemory:{maxmemory_mb * 1024 * 1024}" in reply.splitlines()


def test_security_updates_come_from_this_releases_security_archive(host) -> None:
    codename = host.system_info.codename
    dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    origin = f"origin=Debian,codename={codename}-security,label=Debian-Security"
    assert origin in dry_run.stdout + dry_run.stderr


def test_sshd_passes_ssh_audits_policy_for_its_release_and_still_greets_the_controller(
    host, address: str
) -> None:
    """`make verify`'s own checks (scripts/hostcheck/ssh.py): the banner names the release, the
    release's hardened policy passes, and the scan got the controller neither penalised nor banned."""
    banner = ssh.read_banner(address, SSH_PORT)
    assert ssh.debian_release(banner) == (12 if host.system_info.codename == "bookworm" else 13), banner
    audit = ssh.check_ssh_audit(address, SSH_PORT, banner)
    assert audit.status is Status.PASS, audit.reason
    after = ssh.check_still_reachable(address, SSH_PORT)
    assert after.status is Status.PASS, after.reason
