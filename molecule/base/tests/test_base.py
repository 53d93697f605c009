"""What the base role promises, checked on the converged Debian 13 host."""

from __future__ import annotations

import re

import pytest

DEPLOY_USER = "deploy"
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOh2WFq36peQ4eLirg69vMkNOEmVl0a5gJXt/jnk1v6E molecule-test"
SWAP_DIR = "/var/lib/swap"
SWAP_BYTES = 64 * 1024 * 1024
TIMEZONE = "America/Sao_Paulo"


def test_deploy_user_exists_with_its_key(host, test_key) -> None:
    user = host.user(DEPLOY_USER)
    assert user.exists, f"user {DEPLOY_USER} was not created"
    assert user.shell == "/bin/bash"
    assert "sudo" in user.groups
    ssh_dir = host.file(f"{user.home}/.ssh")
    assert ssh_dir.is_directory
    assert ssh_dir.user == DEPLOY_USER
    assert ssh_dir.mode == 0o700
    keys = host.file(f"{user.home}/.ssh/authorized_keys")
    assert keys.user == DEPLOY_USER
    assert keys.mode == 0o600
    expected = test_key.with_suffix(".pub").read_text().strip()
    assert keys.content_string.strip().splitlines() == [expected]


def test_deploy_user_has_no_password_but_can_log_in_with_a_key(host) -> None:
    # "*": no password matches, yet the account is not locked ("!") so key logins work.
    shadow = host.check_output(f"getent shadow {DEPLOY_USER}").split(":")
    assert shadow[1] == "*"


def test_deploy_user_runs_sudo_without_a_password(host) -> None:
    result = host.run(f"runuser -u {DEPLOY_USER} -- sudo -n id -u")
    assert result.rc == 0, f"sudo as {DEPLOY_USER} failed: {result.stderr}"
    assert result.stdout.strip() == "0"
    assert host.file(f"/etc/sudoers.d/90-{DEPLOY_USER}").mode == 0o440
    assert host.run("visudo -c").rc == 0


def test_hostname_is_set_and_resolves(host) -> None:
    expected = "vps-" + host.backend.host.rsplit("-", 1)[1]
    assert host.check_output("hostname") == expected
    assert host.check_output(f"getent hosts {expected}").split()[0] == "127.0.1.1"


def test_timezone_is_sao_paulo(host) -> None:
    assert host.check_output("timedatectl show --property=Timezone --value") == TIMEZONE
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{TIMEZONE}"
    # Sao Paulo has had no daylight saving time since 2019: always UTC-3.
    assert host.check_output("date +%z") == "-0300"


def test_time_sync_is_enabled_with_the_configured_servers(host) -> None:
    assert host.service("systemd-timesyncd").is_enabled
    config = host.check_output("systemd-analyze cat-config systemd/timesyncd.conf")
    assert "NTP=0.debian.pool.ntp.org 1.debian.pool.ntp.org 2.debian.pool.ntp.org" in config


def test_unattended_upgrades_install_security_updates_daily(host) -> None:
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert 'APT::Periodic::Update-Package-Lists "1";' in periodic
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled, f"{timer} is not enabled"
    codename = host.system_info.codename
    dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    assert (
        f"origin=Debian,codename={codename}-security,label=Debian-Security" in dry_run.stdout + dry_run.stderr
    )


def _active_swap(host) -> dict[str, int]:
    lines = host.check_output("swapon --show=NAME,SIZE --bytes --noheadings --raw").splitlines()
    return {name: int(size) for name, size in (line.split() for line in lines)}


def _swap_file(host) -> str:
    return f"{SWAP_DIR}/{host.backend.host}.swap"


def test_swap_file_is_active_with_the_configured_size(host) -> None:
    swap_file = _swap_file(host)
    swap = host.file(swap_file)
    assert swap.size == SWAP_BYTES
    assert swap.mode == 0o600
    assert swap.user == "root"
    active = _active_swap(host)
    assert swap_file in active, f"{swap_file} is not active swap: {active}"
    # swapon reports the usable size: the file less its one-page header.
    assert SWAP_BYTES - 65536 <= active[swap_file] < SWAP_BYTES
    fstab = host.file("/etc/fstab").content_string
    assert re.search(rf"^{re.escape(swap_file)}\s+none\s+swap\s+sw\s", fstab, re.MULTILINE)


def test_kernel_settings_are_persistent(host) -> None:
    persisted = host.file("/etc/sysctl.d/60-toolkit-base.conf").content_string
    for name, value in (("vm.swappiness", 10), ("vm.overcommit_memory", 1), ("net.core.somaxconn", 1024)):
        assert f"{name}={value}" in persisted


def test_the_network_namespace_setting_is_live(host) -> None:
    assert host.sysctl("net.core.somaxconn") == 1024


def test_machine_wide_settings_are_not_set_on_the_machine_running_the_tests(host) -> None:
    """The test host is a container (toolkit_sysctl_apply: namespaced): vm.* belongs to the machine.

    Its kernel is this machine's, so the role only checked that the kernel knows vm.swappiness; the
    image keeps /proc/sys/vm read-only, so nothing on the test host could have set it.
    """
    refused = host.run("sysctl -w vm.swappiness=10")
    assert refused.rc != 0, "a test host can change the machine's vm.swappiness"
    assert 'denied on key "vm.swappiness"' in refused.stderr


def _bytes(size: str) -> float:
    """Read a journald size such as ``500.0M`` or ``500M`` (systemd 252 and 257 print them differently)."""
    units = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return float(size[:-1]) * units[size[-1]]


def test_journal_is_persistent_and_capped(host) -> None:
    # journald states its own limits when it starts: "System Journal (...) is 8M, max 500M, ...".
    messages = host.check_output("journalctl -b --no-pager -o cat SYSLOG_IDENTIFIER=systemd-journald")
    limits = re.findall(r"System Journal \(/var/log/journal/[^)]*\) is [^,]+, max ([0-9.]+[KMG])", messages)
    assert limits, f"journald never reported a persistent journal:\n{messages[-2000:]}"
    assert _bytes(limits[-1]) == 500 * 1024**2


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"base_swap_size_mb": "lots"}, "base_swap_size_mb"),
        ({"base_deploy_user": ""}, "base_deploy_user must be a lowercase login name"),
        ({"base_deploy_user": "Bad User"}, "base_deploy_user must be a lowercase login name"),
        ({"base_timezone": "Mars/Olympus_Mons"}, 'base_timezone "Mars/Olympus_Mons" is not an IANA'),
        ({"base_sysctl_vm_overcommit_memory": 5}, "base_sysctl_vm_overcommit_memory"),
        ({"base_deploy_authorized_keys": ["hunter2"]}, "is not an SSH public key"),
        ({"base_swap_size_mb": -1}, "base_swap_size_mb must be >= 0"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch="md5sum /etc/passwd /etc/fstab /etc/sysctl.d/60-toolkit-base.conf",
    )


def test_swap_file_follows_a_new_size_and_goes_away_at_zero(host, run_playbook) -> None:
    """Last test of the file: it changes the swap and puts the converged size back."""
    swap_file = _swap_file(host)
    small = 32 * 1024 * 1024
    try:
        resized = run_playbook("swap.yml", {"base_swap_size_mb": 32})
        assert resized.rc == 0, resized.output[-3000:]
        assert host.file(swap_file).size == small
        assert small - 65536 <= _active_swap(host)[swap_file] < small

        removed = run_playbook("swap.yml", {"base_swap_size_mb": 0})
        assert removed.rc == 0, removed.output[-3000:]
        assert swap_file not in _active_swap(host)
        assert not host.file(swap_file).exists
        assert swap_file not in host.file("/etc/fstab").content_string
    finally:
        restored = run_playbook("swap.yml")
    assert restored.rc == 0, restored.output[-3000:]
    assert host.file(swap_file).size == SWAP_BYTES
    assert swap_file in _active_swap(host)
