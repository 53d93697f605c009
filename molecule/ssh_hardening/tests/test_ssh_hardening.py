"""What the ssh_hardening role promises, checked on the converged Debian 13 host.

Logins and scans run from the controller (this machine) against the test host's address, as an
operator's would.
"""

from __future__ import annotations

import itertools
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT, PlaybookRun, playbook_runner

DEPLOY_USER = "deploy"
SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"
DROP_IN = "/etc/ssh/sshd_config.d/10-hardening.conf"
WATCHED_FILES = f"{DROP_IN} /etc/ssh/sshd_config /etc/ssh/ssh_host_rsa_key.pub /etc/ssh/moduli"

# ssh-audit 3.9.0's built-in policies, copied here rather than read from the role: the test states
# the promise. kex-strict-s-v00@openssh.com and ext-info-s are announced by OpenSSH, not configured.
CIPHERS = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-gcm@openssh.com",
    "aes128-ctr",
]
HOST_KEY_ALGORITHMS = ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
POLICY = {
    "bookworm": {
        "name": "Hardened Debian 12 (version 3)",
        "kexalgorithms": [
            "sntrup761x25519-sha512",
            "sntrup761x25519-sha512@openssh.com",
            "curve25519-sha256",
            "curve25519-sha256@libssh.org",
            "diffie-hellman-group16-sha512",
            "diffie-hellman-group18-sha512",
            "diffie-hellman-group-exchange-sha256",
        ],
        "ciphers": CIPHERS,
        "macs": [
            "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-512-etm@openssh.com",
            "umac-128-etm@openssh.com",
        ],
        "hostkeyalgorithms": HOST_KEY_ALGORITHMS,
    },
    "trixie": {
        "name": "Hardened Debian 13 (version 1)",
        "kexalgorithms": [
            "mlkem768x25519-sha256",
            "sntrup761x25519-sha512",
            "sntrup761x25519-sha512@openssh.com",
        ],
        "ciphers": CIPHERS,
        "macs": [
            "hmac-sha2-512-etm@openssh.com",
            "hmac-sha2-256-etm@openssh.com",
            "umac-128-etm@openssh.com",
        ],
        "hostkeyalgorithms": HOST_KEY_ALGORITHMS,
    },
}


def _address(host) -> str:
    """The test host's IPv4 address, as the controller reaches it."""
    return next(a for a in host.interface("eth0").addresses if ":" not in a)


def _policy(host) -> dict:
    return POLICY[host.system_info.codename]


def _sshd_settings(host) -> dict[str, list[str]]:
    """``sshd -T``: the effective settings, keyword -> values (some keywords repeat)."""
    settings: dict[str, list[str]] = {}
    for line in host.check_output("/usr/sbin/sshd -T").splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def _ssh(
    host, user: str, *options: str, key: Path | None = None, port: int = 22
) -> subprocess.CompletedProcess:
    """Run ``true`` over SSH from the controller; no agent, no config, no known_hosts."""
    command = ["ssh", "-F", "/dev/null", "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    command += [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentityAgent=none",
    ]
    if key is not None:
        command += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    command += [*options, f"{user}@{_address(host)}", "true"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_sshd_runs_as_a_systemd_service(host) -> None:
    ssh = host.service("ssh")
    assert ssh.is_running
    assert ssh.is_enabled
    assert host.check_output("systemctl show ssh.service --property=MainPID --value") != "0"


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("port", "22"),
        ("permitrootlogin", "no"),
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("pubkeyauthentication", "yes"),
        ("permitemptypasswords", "no"),
        ("maxauthtries", "3"),
        ("logingracetime", "30"),
        ("clientaliveinterval", "300"),
        ("clientalivecountmax", "2"),
        ("x11forwarding", "no"),
        ("compression", "no"),
        ("tcpkeepalive", "no"),
        ("maxsessions", "2"),
        ("allowtcpforwarding", "no"),
        ("allowstreamlocalforwarding", "no"),
        ("allowagentforwarding", "no"),
        ("permittunnel", "no"),
        ("loglevel", "VERBOSE"),
    ],
)
def test_sshd_effective_setting(host, keyword: str, value: str) -> None:
    assert _sshd_settings(host).get(keyword) == [value]


def test_only_the_deploy_group_may_log_in(host) -> None:
    assert _sshd_settings(host).get("allowgroups") == [DEPLOY_USER]


@pytest.mark.parametrize("keyword", ["ciphers", "kexalgorithms", "macs", "hostkeyalgorithms"])
def test_algorithms_are_the_hardened_policy_in_order(host, keyword: str) -> None:
    settings = _sshd_settings(host)
    assert settings[keyword][0].split(",") == _policy(host)[keyword]


def _ssh_audit(host, port: int = 22) -> tuple[str, int, str]:
    """ssh-audit's hardened policy for the host's release against the sshd answering on ``port``:
    the policy's name, ssh-audit's exit code and its report."""
    policy = _policy(host)["name"]
    audit = subprocess.run(
        [str(SSH_AUDIT), "--no-colors", "--timeout=15", "-p", str(port), "-P", policy, _address(host)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return policy, audit.returncode, audit.stdout + audit.stderr


def _assert_policy_passed(audit: tuple[str, int, str]) -> None:
    policy, returncode, report = audit
    assert returncode == 0, report
    assert f"Policy: {policy}" in report
    assert "Result: ✔ Passed" in report, report


def test_ssh_audit_hardened_policy_passes(host) -> None:
    _assert_policy_passed(_ssh_audit(host))


def test_host_offers_a_4096_bit_rsa_and_an_ed25519_key_and_no_ecdsa(host, tmp_path) -> None:
    scan = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "rsa,ecdsa,ed25519", _address(host)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    keys = [line for line in scan.stdout.splitlines() if line and not line.startswith("#")]
    assert sorted(line.split()[1] for line in keys) == ["ssh-ed25519", "ssh-rsa"], scan.stdout + scan.stderr
    rsa = tmp_path / "rsa.pub"
    rsa.write_text(next(line for line in keys if line.split()[1] == "ssh-rsa") + "\n")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(rsa)], capture_output=True, text=True, check=True
    )
    assert fingerprint.stdout.split()[0] == "4096"
    assert not host.file("/etc/ssh/ssh_host_ecdsa_key").exists


def test_no_moduli_below_3072_bits_remain(host) -> None:
    # Column 5 is the size in bits less one: a 3072-bit modulus reads 3071.
    small = host.check_output("awk '!/^#/ && NF >= 7 && $5 < 3071' /etc/ssh/moduli | wc -l")
    left = host.check_output("awk '!/^#/ && NF >= 7' /etc/ssh/moduli | wc -l")
    assert int(small) == 0
    assert int(left) > 0, "every modulus was removed"


def test_deploy_user_logs_in_with_the_key(host, test_key) -> None:
    login = _ssh(host, DEPLOY_USER, key=test_key)
    assert login.returncode == 0, login.stderr


def test_password_login_is_refused(host) -> None:
    login = _ssh(
        host,
        DEPLOY_USER,
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    )
    assert login.returncode == 255
    assert "Permission denied (publickey)" in login.stderr, login.stderr


def _controller_address(host) -> str:
    """The address the controller's connections to the test host come from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((_address(host), 22))
        return probe.getsockname()[0]


# A login with a key the host does not know, from the host to itself: loopback is an address like
# any other for sshd. Stops at the first attempt that is not a plain "Permission denied".
_FAILING_LOGINS = """
dir=$(mktemp -d) && trap 'rm -rf "$dir"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$dir/key" || exit 2
for attempt in $(seq 10); do
    ssh -F /dev/null -i "$dir/key" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10 \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        deploy@127.0.0.1 true 2>"$dir/err" && { echo "attempt $attempt: logged in"; exit 1; }
    echo "attempt $attempt: $(tr '\\n' ' ' <"$dir/err")"
    grep -q 'Permission denied' "$dir/err" || exit 0
done
"""


def test_an_address_whose_logins_keep_failing_is_shut_out(host) -> None:
    """OpenSSH's PerSourcePenalties stay on: a few failed logins get the address refused for a while.

    The test bench (converge.yml) exempts the controller alone, whose tests fail logins on purpose.
    """
    if host.system_info.codename == "bookworm":
        pytest.skip("Debian 12's OpenSSH 9.2 has no PerSourcePenalties (added in OpenSSH 9.8)")
    settings = _sshd_settings(host)
    assert settings["persourcepenalties"] != ["no"]
    assert settings["persourcepenaltyexemptlist"] == [f"{_controller_address(host)}/32"]
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    attempts = host.run(f"bash -c {shlex.quote(_FAILING_LOGINS)}")
    lines = attempts.stdout.strip().splitlines()
    assert attempts.rc == 0, attempts.stdout + attempts.stderr
    assert "Permission denied (publickey)" in lines[0], attempts.stdout
    assert "Permission denied" not in lines[-1], attempts.stdout
    journal = host.check_output(f"journalctl -u ssh --no-pager --since '{since}'")
    dropped = r"drop connection #\d+ from \[127\.0\.0\.1\]:\d+ on \S+ penalty: failed authentication"
    assert re.search(dropped, journal), journal


# Throwaway sshd instances get ports of their own, so one never meets a listener left by another.
_THROWAWAY_PORTS = itertools.count(2300)


@dataclass(frozen=True)
class ThrowawaySshd:
    """A debugging sshd (``sshd -d``) that serves one connection on ``port`` and logs to ``log``."""

    host: Any
    port: int
    pid: int
    log: str
    pid_file: str

    def finished_log(self) -> str:
        """Wait for this sshd to end (after its one connection) and return everything it logged."""
        self.host.run(f"for i in $(seq 150); do kill -0 {self.pid} 2>/dev/null || break; sleep 0.2; done")
        return self.host.check_output(f"cat {self.log}")

    def stop(self) -> None:
        self.host.run(f"kill {self.pid} 2>/dev/null; rm -f {self.log} {self.pid_file}")


def _throwaway_sshd(host, *options: str) -> ThrowawaySshd:
    """Start a one-connection sshd with the host's configuration plus ``options`` (``Keyword=value``).

    Returns once that very process logs that it listens; fails with its log if it dies first.
    """
    port = next(_THROWAWAY_PORTS)
    log = f"/tmp/sshd-{port}.log"
    pid_file = f"/tmp/sshd-{port}.pid"
    overrides = " ".join(f"-o {shlex.quote(option)}" for option in options)
    # timeout (which the shell becomes, so $$ is its PID) ends sshd if no connection comes.
    script = f"echo $$ >{pid_file}; exec timeout 120 /usr/sbin/sshd -d -e -p {port} {overrides} >{log} 2>&1"
    detached = f"setsid -f sh -c {shlex.quote(script)} </dev/null >/dev/null 2>&1"
    host.check_output(f"rm -f {log} {pid_file}; {detached}")
    started = host.run(
        "for i in $(seq 150); do"
        f" grep -q 'Server listening on .* port {port}' {log} 2>/dev/null && exit 0;"
        f" [ -s {pid_file} ] && ! kill -0 $(cat {pid_file}) 2>/dev/null && exit 1;"
        " sleep 0.2; done; exit 2"
    )
    pid = host.run(f"cat {pid_file}").stdout.strip()
    log_text = host.run(f"cat {log}").stdout
    if started.rc != 0 or not pid.isdigit():
        host.run(f"kill {pid} 2>/dev/null")
        reason = "ended before listening" if started.rc == 1 else "did not listen within 30 s"
        pytest.fail(f"throwaway sshd on port {port} {reason}; its log:\n{log_text}")
    return ThrowawaySshd(host, port, int(pid), log, pid_file)


def test_root_is_refused_even_with_an_authorized_key(host, test_key) -> None:
    public_key = test_key.with_suffix(".pub").read_text().strip()
    host.check_output("install -d -m 0700 /root/.ssh && cp -a /root/.ssh /root/.ssh.before-test")
    started: list[ThrowawaySshd] = []
    try:
        host.check_output(f"echo '{public_key}' >> /root/.ssh/authorized_keys")
        direct = _ssh(host, "root", key=test_key)
        assert direct.returncode == 255, direct.stderr
        assert "Permission denied (publickey)" in direct.stderr, direct.stderr

        # Prove the refusal is PermitRootLogin's, not AllowGroups': a throwaway sshd with the
        # host's configuration but root's group allowed still refuses root...
        strict = _throwaway_sshd(host, "AllowGroups=deploy root")
        started.append(strict)
        refused = _ssh(host, "root", key=test_key, port=strict.port)
        log = strict.finished_log()
        assert refused.returncode == 255, refused.stderr + log
        assert "ROOT LOGIN REFUSED" in log, log

        # ...and lets root in with the same key once PermitRootLogin allows keys.
        lenient = _throwaway_sshd(host, "AllowGroups=deploy root", "PermitRootLogin=prohibit-password")
        started.append(lenient)
        allowed = _ssh(host, "root", key=test_key, port=lenient.port)
        assert allowed.returncode == 0, allowed.stderr + lenient.finished_log()
    finally:
        for sshd in started:
            sshd.stop()
        host.run("rm -rf /root/.ssh && mv /root/.ssh.before-test /root/.ssh")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"ssh_hardening_port": 70000}, "ssh_hardening_port must be a TCP port from 1 to 65535; got 70000"),
        ({"ssh_hardening_port": 0}, "ssh_hardening_port must be a TCP port"),
        ({"ssh_hardening_port": "ssh"}, "ssh_hardening_port"),
        (
            {"base_deploy_authorized_keys": [], "ssh_hardening_deploy_user": "nobody-here"},
            "base_deploy_authorized_keys is empty",
        ),
        ({"ssh_hardening_allow_groups": ["wheel"]}, "ssh_hardening_allow_groups"),
        ({"ssh_hardening_max_auth_tries": 0}, "ssh_hardening_max_auth_tries must be 1-10"),
        (
            {"ssh_hardening_ciphers": ["aes256-ctr,3des-cbc"]},
            "ssh_hardening_ciphers must hold algorithm names",
        ),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change("converge.yml", extra_vars, message, watch=f"md5sum {WATCHED_FILES}")


def test_lockout_guard_accepts_keys_already_on_the_host(host, run_playbook) -> None:
    # No keys to install, but the deploy user already has one: nothing to refuse, nothing to change.
    run = run_playbook("apply.yml", {"base_deploy_authorized_keys": []})
    assert run.rc == 0, run.output[-3000:]
    assert run.recap.get("changed") == 0, run.output[-3000:]


def test_a_configuration_sshd_rejects_never_reaches_sshd(host, run_playbook, test_key) -> None:
    before = host.check_output(f"md5sum {WATCHED_FILES}")
    main_pid = host.check_output("systemctl show ssh.service --property=MainPID --value")
    run = run_playbook("apply.yml", {"ssh_hardening_ciphers": ["no-such-cipher"]})
    assert run.rc != 0, run.output[-3000:]
    assert "failed to validate" in run.output, run.output[-3000:]
    assert host.check_output(f"md5sum {WATCHED_FILES}") == before
    assert host.check_output("systemctl show ssh.service --property=MainPID --value") == main_pid
    assert _ssh(host, DEPLOY_USER, key=test_key).returncode == 0


def _listen_ports(host) -> str:
    return host.check_output("systemctl show ssh.socket --property=Listen --value")


# The server's KEXINIT proposal as ``ssh -vv`` prints it, keyword -> sshd -T keyword.
_PROPOSAL = {
    "KEX algorithms": "kexalgorithms",
    "host key algorithms": "hostkeyalgorithms",
    "ciphers stoc": "ciphers",
    "MACs stoc": "macs",
}
# Announced by OpenSSH itself, never configured.
_ANNOUNCED = {"ext-info-s", "kex-strict-s-v00@openssh.com"}


def _offered_by_running_sshd(host, test_key: Path, port: int = 22) -> dict[str, set[str]]:
    """What the sshd that answers on ``port`` offers (its KEXINIT), by sshd -T keyword."""
    probe = _ssh(host, DEPLOY_USER, "-vv", key=test_key, port=port)
    lines = probe.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "peer server KEXINIT proposal" in line)
    offered: dict[str, set[str]] = {}
    for line in lines[start + 1 : start + 12]:
        label, _, values = line.removeprefix("debug2: ").partition(": ")
        if label in _PROPOSAL:
            offered[_PROPOSAL[label]] = set(values.split(",")) - _ANNOUNCED
    assert set(offered) == set(_PROPOSAL.values()), probe.stderr
    return offered


def _provision_play_with_roles(first: str, last: str, directory: Path) -> Path:
    """playbooks/provision.yml's Provision play as it stands (its hosts, become, force_handlers and
    every other keyword), with only its roles from ``first`` to ``last``: a run that reaches and
    fails in ``last`` without spending minutes on the roles before ``first``."""
    plays = yaml.safe_load((PROJECT / "playbooks" / "provision.yml").read_text())
    play = next(play for play in plays if play.get("name") == "Provision")
    names = [role["role"] if isinstance(role, dict) else role for role in play["roles"]]
    roles = play["roles"][names.index(first) : names.index(last) + 1]
    assert roles, f"{first} does not come before {last} in playbooks/provision.yml"
    playbook = directory / "provision.yml"
    playbook.write_text(yaml.safe_dump([{**play, "roles": roles}], sort_keys=False))
    return playbook


NEW_PORT = 2222


@dataclass(frozen=True)
class FirstRun:
    """A failed first run on a new port, its re-run, and the run that puts port 22 back, with what
    was seen on the host after each (read by the last two tests of the file)."""

    failed: PlaybookRun
    drop_in_written: bool
    port_after_failed: list[str]
    listen_after_failed: str
    login_on_new_port: subprocess.CompletedProcess
    login_on_old_port: subprocess.CompletedProcess
    rerun: PlaybookRun
    audit: tuple[str, int, str]
    root_login: subprocess.CompletedProcess
    settings: dict[str, list[str]]
    offered: dict[str, set[str]]
    restored: PlaybookRun
    port_after_restore: list[str]
    listen_after_restore: str
    login_after_restore: subprocess.CompletedProcess
    login_on_new_port_after_restore: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def first_run(host, test_key: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """Moves sshd to another port and back, so only the last two tests of the file use it.

    As a first production run that stops after ssh_hardening: sshd starts on Debian's stock
    configuration, the Provision play of playbooks/provision.yml writes the hardened drop-in with
    a new port (ssh_hardening_port 2222) and then fails in the next role (fail2ban, on a bad
    value); a re-run finds nothing to change; a last run with the default port puts port 22 back.
    The play runs with its roles from ssh_hardening on: base has converged and leaves nothing
    pending, ufw flushes its own handlers (neither has a say in sshd's).

    One sequence of three ansible-playbook runs for the new port and the failed first run (each
    run costs half a minute on this machine).
    """
    run_playbook = playbook_runner(host)
    public_key = test_key.with_suffix(".pub").read_text().strip()
    assert _listen_ports(host) == "[::]:22 (Stream)"
    host.check_output("install -d -m 0700 /root/.ssh && cp -a /root/.ssh /root/.ssh.before-test")
    try:
        # Debian's stock sshd: the role's drop-in gone, the running daemon reloaded without it.
        host.check_output(f"rm -f {DROP_IN} && systemctl reload ssh.service")
        assert _sshd_settings(host)["permitrootlogin"][0] in {"without-password", "prohibit-password"}
        host.check_output(f"echo '{public_key}' >> /root/.ssh/authorized_keys")
        assert _ssh(host, "root", key=test_key).returncode == 0, "the stock sshd should let root in"

        failed = run_playbook(
            _provision_play_with_roles("ssh_hardening", "fail2ban", tmp_path_factory.mktemp("first-run")),
            # Fails at the start of the role after ssh_hardening.
            {"ssh_hardening_port": NEW_PORT, "fail2ban_sshd_mode": "not-a-mode"},
        )
        drop_in_written = host.file(DROP_IN).exists
        port_after_failed = _sshd_settings(host)["port"]
        listen_after_failed = _listen_ports(host)
        login_on_new_port = _ssh(host, DEPLOY_USER, key=test_key, port=NEW_PORT)
        login_on_old_port = _ssh(host, DEPLOY_USER, key=test_key, port=22)

        rerun = run_playbook("apply.yml", {"ssh_hardening_port": NEW_PORT})

        # What an operator checks: the policy passes and root is refused, because the running sshd
        # offers exactly what the files on disk say.
        audit = _ssh_audit(host, NEW_PORT)
        root_login = _ssh(host, "root", key=test_key, port=NEW_PORT)
        settings = _sshd_settings(host)
        offered = _offered_by_running_sshd(host, test_key, NEW_PORT)
    finally:
        host.run("rm -rf /root/.ssh && mv /root/.ssh.before-test /root/.ssh")
        restored = run_playbook("apply.yml")
    return FirstRun(
        failed=failed,
        drop_in_written=drop_in_written,
        port_after_failed=port_after_failed,
        listen_after_failed=listen_after_failed,
        login_on_new_port=login_on_new_port,
        login_on_old_port=login_on_old_port,
        rerun=rerun,
        audit=audit,
        root_login=root_login,
        settings=settings,
        offered=offered,
        restored=restored,
        port_after_restore=_sshd_settings(host)["port"],
        listen_after_restore=_listen_ports(host),
        login_after_restore=_ssh(host, DEPLOY_USER, key=test_key),
        login_on_new_port_after_restore=_ssh(host, DEPLOY_USER, key=test_key, port=NEW_PORT),
    )


def test_a_new_port_reaches_sshd_and_socket_activation(first_run: FirstRun) -> None:
    """sshd and the socket move to port 2222 (in the failed first run, whose handlers are forced),
    and back to 22 in a run that succeeds: the new port lets the deploy user in, the old refuses."""
    run = first_run
    assert run.port_after_failed == [str(NEW_PORT)], run.failed.output[-3000:]
    assert run.listen_after_failed == f"[::]:{NEW_PORT} (Stream)"
    assert run.login_on_new_port.returncode == 0, run.login_on_new_port.stderr
    assert run.login_on_old_port.returncode == 255
    assert "Connection refused" in run.login_on_old_port.stderr, run.login_on_old_port.stderr
    # Back to the default port.
    assert run.restored.rc == 0, run.restored.output[-3000:]
    assert run.port_after_restore == ["22"]
    assert run.listen_after_restore == "[::]:22 (Stream)"
    assert run.login_after_restore.returncode == 0, run.login_after_restore.stderr
    assert run.login_on_new_port_after_restore.returncode == 255
    assert "Connection refused" in run.login_on_new_port_after_restore.stderr, (
        run.login_on_new_port_after_restore.stderr
    )


def test_a_failed_first_run_still_applies_the_hardening(first_run: FirstRun) -> None:
    """The running sshd is the hardened one after a first run that failed after ssh_hardening (the
    play forces its handlers when it fails), and a re-run finds nothing to change."""
    run = first_run
    assert run.failed.rc != 0, run.failed.output[-3000:]
    assert "fail2ban_sshd_mode" in run.failed.output, run.failed.output[-3000:]
    assert run.drop_in_written, run.failed.output[-3000:]
    assert run.rerun.rc == 0, run.rerun.output[-3000:]
    assert run.rerun.recap.get("changed") == 0, run.rerun.output[-3000:]
    # What an operator checks: the policy passes and root is refused...
    _assert_policy_passed(run.audit)
    assert run.root_login.returncode == 255, run.root_login.stderr
    assert "Permission denied (publickey)" in run.root_login.stderr, run.root_login.stderr
    # ...because the running sshd offers exactly what the files on disk say.
    assert run.settings["permitrootlogin"] == ["no"]
    for keyword, values in run.offered.items():
        assert values == set(run.settings[keyword][0].split(",")), (keyword, values, run.settings[keyword])
