"""What the hardening role promises, checked on the converged Debian 13 host.

The host is a container: its kernel is the machine's, so only the settings of its network namespace
are live (toolkit_sysctl_apply: namespaced) and auditd cannot run; the tests say so where that
decides what they can check. Alerts go to the webhook receiver the tests start on the host's
loopback (conftest.webhook).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import webhook_posts

MODULES = ["dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core", "firewire-ohci"]
SYSCTL_FILE = "/etc/sysctl.d/61-toolkit-hardening.conf"
PROBE_USER = "hardening-probe"
AIDE_CONFIG = "/etc/aide/aide.conf"


def _login_defs(host) -> dict[str, str]:
    settings = {}
    for line in host.file("/etc/login.defs").content_string.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            settings[fields[0]] = fields[1]
    return settings


def test_login_defs_hashes_slowly_and_ages_passwords(host) -> None:
    settings = _login_defs(host)
    assert settings["SHA_CRYPT_MIN_ROUNDS"] == settings["SHA_CRYPT_MAX_ROUNDS"] == "65536"
    assert settings["YESCRYPT_COST_FACTOR"] == "8"
    ages = (settings["PASS_MAX_DAYS"], settings["PASS_MIN_DAYS"], settings["PASS_WARN_AGE"])
    assert ages == ("365", "1", "14")
    assert settings["UMASK"] == "027"


@pytest.fixture
def probe_user(host) -> Iterator[str]:
    """A throwaway account made the way an operator would (useradd -m)."""
    host.run(f"userdel -r {PROBE_USER}")
    host.check_output(f"useradd -m -s /bin/bash {PROBE_USER}")
    yield PROBE_USER
    host.run(f"userdel -r {PROBE_USER}")


def test_a_new_home_is_private_and_existing_ones_were_closed(host, probe_user: str) -> None:
    assert host.file(f"/home/{probe_user}").mode == 0o750
    assert host.file("/home/deploy").mode == 0o750
    assert host.file("/root").mode == 0o700


def test_an_account_with_a_password_gets_its_password_aged(host, probe_user: str, run_playbook) -> None:
    """login.defs covers accounts made later; the role ages the existing ones that have a password."""
    host.check_output(f"echo '{probe_user}:Violet-Harbour-Lantern-42' | chpasswd")
    host.check_output(f"chage --maxdays 99999 --mindays 0 --warndays 7 {probe_user}")
    run = run_playbook("logins.yml")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap.get("changed") == 1, run.output[-3000:]
    shadow = host.check_output(f"getent shadow {probe_user}").split(":")
    assert (shadow[3], shadow[4], shadow[5]) == ("1", "365", "14")
    # The deploy user has no password: left alone.
    assert host.check_output("getent shadow deploy").split(":")[4] in ("", "99999")


@pytest.mark.parametrize("path", ["/etc/cron.d", "/etc/cron.daily"])
def test_crons_jobs_are_root_only(host, path: str) -> None:
    # sshd_config (no sshd on this host) is checked by Lynis in the production scenario (FILE-7524).
    assert host.file(path).mode == 0o700


def test_a_weak_password_is_refused_and_a_strong_one_accepted(host, probe_user: str) -> None:
    weak = host.run(f"printf 'short1\\nshort1\\n' | passwd {probe_user}")
    assert weak.rc != 0
    assert "shorter than 14 characters" in weak.stdout + weak.stderr
    strong_password = "Violet-Harbour-Lantern-42"
    strong = host.run(f"printf '{strong_password}\\n{strong_password}\\n' | passwd {probe_user}")
    assert strong.rc == 0, strong.stdout + strong.stderr


def test_a_login_session_gets_a_private_tmpdir_no_core_dumps_and_an_idle_timeout(host) -> None:
    shown = host.check_output(
        "su - deploy -c 'echo $TMPDIR; ulimit -c; echo $TMOUT; readonly -p | grep -c TMOUT'"
    )
    tmpdir, core, timeout, readonly = shown.splitlines()
    uid = host.user("deploy").uid
    assert tmpdir == f"/tmp/user/{uid}"
    assert host.file(tmpdir).mode == 0o700
    assert core == "0"
    assert timeout == "900"
    assert readonly == "1", "TMOUT can be unset by the user"
    assert "hard  core  0" in host.file("/etc/security/limits.d/toolkit.conf").content_string
    coredump = host.file("/etc/systemd/coredump.conf.d/toolkit.conf").content_string
    assert "Storage=none" in coredump
    assert "ProcessSizeMax=0" in coredump


@pytest.mark.parametrize("path", ["/etc/issue", "/etc/issue.net"])
def test_the_legal_banner_replaces_the_distribution_name(host, path: str) -> None:
    banner = host.file(path).content_string
    assert banner.startswith("Authorized access only.")
    assert "Debian" not in banner


@pytest.mark.parametrize("module", MODULES)
def test_an_unused_module_cannot_load(host, module: str) -> None:
    # modprobe --dry-run prints what it would do: the install command instead of the module.
    assert host.check_output(f"modprobe --dry-run --verbose {module}").strip() == "install /bin/true"
    assert f"blacklist {module}" in host.file("/etc/modprobe.d/toolkit-hardening.conf").content_string


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("net.ipv4.conf.all.accept_redirects", 0),
        ("net.ipv4.conf.all.send_redirects", 0),
        ("net.ipv4.conf.all.accept_source_route", 0),
        ("net.ipv4.conf.default.accept_source_route", 0),
        ("net.ipv4.conf.all.log_martians", 1),
        ("net.ipv4.conf.all.rp_filter", 1),
        ("net.ipv4.icmp_echo_ignore_broadcasts", 1),
        ("net.ipv4.tcp_syncookies", 1),
        ("net.ipv6.conf.all.accept_redirects", 0),
    ],
)
def test_network_hardening_is_live(host, name: str, value: int) -> None:
    assert host.sysctl(name) == value
    assert re.search(rf"^-?{re.escape(name)} = {value}$", host.file(SYSCTL_FILE).content_string, re.MULTILINE)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kernel.kptr_restrict", 2),
        ("kernel.dmesg_restrict", 1),
        ("kernel.unprivileged_bpf_disabled", 1),
        ("kernel.yama.ptrace_scope", 2),
        ("fs.protected_fifos", 2),
        ("fs.suid_dumpable", 0),
        ("dev.tty.ldisc_autoload", 0),
    ],
)
def test_machine_wide_hardening_is_written_for_boot_but_not_set_here(host, name: str, value: int) -> None:
    """kernel.*, fs.* and dev.* are the machine's: written to the file, never set on this kernel."""
    assert re.search(rf"^{re.escape(name)} = {value}$", host.file(SYSCTL_FILE).content_string, re.MULTILINE)
    machine = Path("/proc/sys", *name.split("."))
    if machine.exists():
        assert host.run(f"sysctl -n {name}").stdout.split() == machine.read_text().split()


def test_forwarding_is_left_to_docker(host) -> None:
    assert "forwarding" not in host.file(SYSCTL_FILE).content_string
    assert "ip_forward" not in host.file(SYSCTL_FILE).content_string


def test_upgrades_restart_what_uses_an_old_library_and_packages_are_verified_weekly(host) -> None:
    assert "$nrconf{restart} = 'a';" in host.file("/etc/needrestart/conf.d/toolkit.conf").content_string
    assert "CRON_CHECK=weekly" in host.file("/etc/default/debsums").content_string.splitlines()
    for package in ("apt-listchanges", "apt-show-versions", "debsums", "needrestart", "lynis"):
        assert host.package(package).is_installed, package


def test_sysstat_collects(host) -> None:
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string.splitlines()
    assert host.service("sysstat").is_enabled
    assert host.service("sysstat").is_running


def test_audit_rules_cover_identity_sudo_ssh_and_docker(host) -> None:
    rules = host.file("/etc/audit/rules.d/toolkit.rules")
    assert rules.mode == 0o640
    text = rules.content_string
    for rule in (
        "-w /etc/passwd -p wa -k identity",
        "-w /etc/shadow -p wa -k identity",
        "-w /etc/sudoers.d -p wa -k sudoers",
        "-w /etc/ssh/sshd_config -p wa -k sshd",
        "-w /var/lib/docker -p wa -k docker",
        "-w /etc/docker -p wa -k docker",
        "-w /usr/sbin/dockerd -p x -k docker-exec",
        "-w /usr/bin/sudo -p x -k sudo-exec",
    ):
        assert rule in text.splitlines(), rule


def test_auditd_runs_with_the_rules_loaded(host) -> None:
    status = host.run("auditctl -s")
    if status.rc != 0:
        # auditd is masked there, and leaves no failed unit behind.
        assert host.run("systemctl is-enabled auditd.service").stdout.strip() == "masked"
        states = host.run("systemctl is-failed auditd.service audit-rules.service").stdout.split()
        assert "failed" not in states, states
        refusal = (status.stderr or status.stdout).strip()
        pytest.skip(
            f"this test host cannot load audit rules (auditctl -s: {refusal}): a container shares the"
            " machine's audit subsystem; the role masked auditd here"
        )
    assert host.service("auditd").is_running
    loaded = host.check_output("auditctl -l")
    assert "-w /etc/passwd -p wa -k identity" in loaded
    assert "-w /usr/sbin/sshd -p x -k sshd-exec" in loaded


def _aide_check(host) -> None:
    host.check_output("systemctl start toolkit-aide-check.service")


def test_aide_watches_the_system_daily(host) -> None:
    timer = host.service("toolkit-aide-check.timer")
    assert timer.is_enabled
    assert timer.is_running
    assert host.file("/var/lib/aide/aide.db").exists
    config = host.file("/etc/aide/aide.conf")
    assert config.mode == 0o600
    watched = [line.split()[0] for line in config.content_string.splitlines() if line.endswith(" Toolkit")]
    # Docker's data and the databases are under /var, which AIDE does not watch at all.
    assert not [path for path in watched if path.startswith("/var")], watched
    assert "!/etc/traefik/dynamic" in config.content_string.splitlines()


def test_aide_reports_a_changed_file_once_and_skips_the_stacks_own_paths(host, webhook: str) -> None:
    _aide_check(host)  # accept whatever earlier tests changed
    host.check_output(f"rm -f {webhook}")
    try:
        host.check_output("echo tampered > /etc/toolkit-aide-probe")
        host.check_output("sed -i '$a # aide probe' /etc/issue.net")
        host.check_output("mkdir -p /etc/traefik/dynamic")
        host.check_output("echo release > /etc/traefik/dynamic/aide-probe.yml")
        _aide_check(host)
        posts = webhook_posts(host)
        assert len(posts) == 1, posts
        assert posts[0]["title"].startswith("AIDE on ")
        assert "Added: /etc/toolkit-aide-probe" in posts[0]["body"]
        assert "Changed: /etc/issue.net" in posts[0]["body"]
        assert "aide-probe.yml" not in posts[0]["body"], "a release's route file was reported"

        _aide_check(host)
        assert len(webhook_posts(host)) == 1, "the same change was reported twice"
    finally:
        host.run("rm -f /etc/toolkit-aide-probe /etc/traefik/dynamic/aide-probe.yml")
        host.run("sed -i '/# aide probe/d' /etc/issue.net")
        _aide_check(host)


def test_a_broken_aide_check_alerts_through_the_failed_unit(host, webhook: str) -> None:
    host.check_output("mv /var/lib/aide/aide.db /var/lib/aide/aide.db.moved")
    try:
        failed = host.run("systemctl start toolkit-aide-check.service")
        assert failed.rc != 0
        for _ in range(50):
            if webhook_posts(host):
                break
            host.run("sleep 0.2")
        posts = webhook_posts(host)
        assert posts, "no alert for the failed check"
        assert "toolkit-aide-check.service" in posts[-1]["title"], posts
    finally:
        host.check_output("mv /var/lib/aide/aide.db.moved /var/lib/aide/aide.db")
        host.run("systemctl reset-failed toolkit-aide-check.service")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"hardening_umask": "abc"}, 'hardening_umask like "027"'),
        ({"hardening_kept_modules": ["bluetooth"]}, "hardening_kept_modules may only name modules"),
        ({"hardening_sysctl_extra": {"kernel sysrq": 1}}, "is not a kernel setting name"),
        (
            {"hardening_sysctl_extra": {"kernel.toolkit_no_such_setting": 1}},
            "has no kernel.toolkit_no_such_setting: remove them from hardening_sysctl_extra",
        ),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch=f"md5sum /etc/login.defs /etc/modprobe.d/toolkit-hardening.conf {SYSCTL_FILE} {AIDE_CONFIG}",
    )
