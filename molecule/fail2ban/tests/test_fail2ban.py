"""What the fail2ban role promises, checked on the converged hosts and from an attacker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SIBLING_IMAGE, host_address, tcp_state


def _jails(host) -> list[str]:
    status = host.check_output("fail2ban-client status")
    listed = status.split("Jail list:", 1)[1]
    return sorted(name.strip() for name in listed.split(","))


def test_sshd_and_recidive_jails_run(host) -> None:
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled
    assert _jails(host) == ["recidive", "sshd"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("maxretry", "3"), ("findtime", "600"), ("bantime", "3600")],
)
def test_sshd_jail_settings(host, setting: str, value: str) -> None:
    assert host.check_output(f"fail2ban-client get sshd {setting}") == value


def test_sshd_jail_reads_the_journal(host) -> None:
    match = host.check_output("fail2ban-client get sshd journalmatch")
    assert "_COMM=sshd" in match


def _failures(host) -> int:
    status = host.check_output("fail2ban-client status sshd")
    return int(status.split("Total failed:", 1)[1].split()[0])


def test_an_ssh_audit_scan_counts_no_failure(host) -> None:
    """`make verify` audits sshd with ssh-audit: connections that never try to log in (banner reads,
    dropped key exchanges, DH group-exchange probes). The sshd jail's mode (normal) does not count
    them, so the operator's own audit never gets the operator banned; in "aggressive" mode each scan
    counted four failures."""
    before = _failures(host)
    program = Path(sys.executable).parent / "ssh-audit"
    scan = subprocess.run(
        [str(program), "--no-colors", "--skip-rate-test", "--timeout=15", host_address(host)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "(gen) banner: SSH-2.0-OpenSSH" in scan.stdout, scan.stdout + scan.stderr  # it really scanned
    time.sleep(3)  # fail2ban reads the journal within about a second
    assert _failures(host) == before


def test_recidive_bans_every_port_for_a_week(host) -> None:
    assert "iptables-allports" in host.check_output("fail2ban-client get recidive actions")
    assert host.check_output("fail2ban-client get recidive bantime") == str(7 * 24 * 3600)


@pytest.fixture
def attacker(host) -> Iterator[str]:
    """A sibling machine with an SSH client, its address, removed afterwards."""
    name = f"attacker-{host.backend.host}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--entrypoint", "sleep", SIBLING_IMAGE, "900"],
        capture_output=True,
        check=True,
    )
    try:
        subprocess.run(
            [
                "docker",
                "exec",
                name,
                "bash",
                "-c",
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-client",
            ],
            capture_output=True,
            check=True,
        )
        address = subprocess.run(
            ["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield address
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_failed_logins_get_an_address_banned(host, attacker: str) -> None:
    target = host_address(host)
    name = f"attacker-{host.backend.host}"
    try:
        for _ in range(4):
            subprocess.run(
                [
                    "docker",
                    "exec",
                    name,
                    "ssh",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "ConnectTimeout=3",
                    f"nosuchuser@{target}",
                    "true",
                ],
                capture_output=True,
                check=False,
            )
        banned = ""
        for _ in range(20):
            banned = host.check_output("fail2ban-client get sshd banned")
            if attacker in banned:
                break
            time.sleep(0.5)
        assert attacker in banned, f"{attacker} not banned after 4 failed logins: {banned}"
        probe = subprocess.run(
            ["docker", "exec", name, "timeout", "3", "bash", "-c", f"</dev/tcp/{target}/22"],
            capture_output=True,
            check=False,
        )
        assert probe.returncode != 0, "the banned address still reaches sshd"
        # Everyone else still does. (A fresh sibling container: retried briefly, since a loaded
        # machine can be slow to give a new container its network.)
        states = []
        for _ in range(5):
            states.append(tcp_state(target, 22))
            if states[-1] == "open":
                break
            time.sleep(2)
        rules = host.run("iptables -S; nft list ruleset 2>/dev/null | grep -i f2b").stdout
        banned = host.check_output("fail2ban-client get sshd banned")
        assert states[-1] == "open", f"another address cannot reach sshd: {states}; banned {banned}; {rules}"
    finally:
        host.run(f"fail2ban-client set sshd unbanip {attacker}")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"fail2ban_maxretry": 0}, "fail2ban_maxretry and"),
        ({"fail2ban_bantime": "forever"}, "fail2ban_bantime, fail2ban_findtime"),
        ({"fail2ban_sshd_mode": "paranoid"}, "fail2ban_sshd_mode"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml", extra_vars, message, watch="md5sum /etc/fail2ban/jail.d/toolkit.local"
    )
