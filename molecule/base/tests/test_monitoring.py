"""What the alerting and monitoring roles promise, checked on the converged Debian 13 host.

Converge left no API, PostgreSQL or Redis on the hosts (those checks must FAIL and say why), the
timer's checks set to providers, disk, backup, drill, tls and units, the disk check pointed at
/mnt/toolkit-small-disk (a 2 MB tmpfs the tests mount and fill), and alerts going to
http://127.0.0.1:8766/toolkit-alerts, where the tests start a listener that records each POST.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from conftest import WEBHOOK_PORT, WEBHOOK_RECORD, webhook_posts

SMALL_DISK = "/mnt/toolkit-small-disk"
BACKUP_DIR = "/var/backups/toolkit"
STATE = "/var/lib/toolkit/healthcheck-alert.json"


def _set_name(hours_ago: float) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _make_backup_set(host, hours_ago: float) -> str:
    """A backup set as toolkit-backup lays it out (<UTC time>/manifest.json), dated hours_ago."""
    name = _set_name(hours_ago)
    stamp = f"{hours_ago:.0f} hours ago"
    host.check_output(
        f"mkdir -p {BACKUP_DIR}/{name} && echo '{{}}' > {BACKUP_DIR}/{name}/manifest.json"
        f" && touch -d '{stamp}' {BACKUP_DIR}/{name}/manifest.json {BACKUP_DIR}/{name}"
    )
    return name


def _timer_run(host) -> str:
    """Run the unit the timer runs, now; its output."""
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output("systemctl start toolkit-healthcheck.service")
    return host.check_output(f"journalctl -u toolkit-healthcheck.service --since '{since}' --no-pager -o cat")


@pytest.fixture
def healthy(host) -> Iterator[None]:
    """A host on which every timer check passes: empty small disk, a fresh backup, no failed unit."""
    if host.run(f"mountpoint -q {SMALL_DISK}").rc != 0:
        host.check_output(f"mkdir -p {SMALL_DISK} && mount -t tmpfs -o size=2M toolkit-test {SMALL_DISK}")
    host.check_output(f"rm -rf {SMALL_DISK}/* {BACKUP_DIR} {STATE} {WEBHOOK_RECORD}")
    _make_backup_set(host, 1)
    host.run("systemctl reset-failed")
    yield
    host.run(f"rm -rf {SMALL_DISK}/*")
    host.run("systemctl reset-failed")


@pytest.fixture
def listener(healthy: None, webhook: str) -> str:
    """The webhook receiver, started after the host was made healthy."""
    return webhook


def test_timer_is_enabled_on_its_interval(host) -> None:
    timer = host.service("toolkit-healthcheck.timer")
    assert timer.is_enabled
    assert timer.is_running
    shown = host.check_output("systemctl show toolkit-healthcheck.timer -p TimersMonotonic")
    assert "OnUnitActiveUSec=1h" in shown, shown
    assert (
        host.check_output("systemctl show toolkit-healthcheck.service -p ExecStart")
        .split("argv[]=")[1]
        .startswith("/usr/local/sbin/toolkit-healthcheck --alert ")
    )


@pytest.mark.parametrize("path", ["/etc/toolkit/healthcheck.json", "/etc/toolkit/alert.json"])
def test_settings_are_root_only(host, path: str) -> None:
    settings = host.file(path)
    assert settings.user == "root"
    assert settings.mode == 0o600


def test_missing_services_fail_clearly(host) -> None:
    run = host.run("toolkit-healthcheck --only api,postgres,redis")
    assert run.rc == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("FAIL api       http://127.0.0.1:8000/health/ready did not answer"), lines
    assert lines[1].startswith("FAIL postgres  pg_isready not found"), lines
    assert lines[2].startswith("FAIL redis     127.0.0.1:6379 did not answer"), lines
    assert len(lines) == 3


def test_api_check_passes_when_the_api_is_ready(host, listener: str) -> None:
    host.check_output(
        "python3 -c 'import json, sys; c = json.load(open(sys.argv[1]));"
        f' c["api_url"] = "http://127.0.0.1:{WEBHOOK_PORT}/health/ready"; print(json.dumps(c))\''
        " /etc/toolkit/healthcheck.json > /var/tmp/healthcheck-api.json"
    )
    run = host.run("toolkit-healthcheck --config /var/tmp/healthcheck-api.json --only api")
    assert run.rc == 0, run.stdout + run.stderr
    assert run.stdout.strip() == f"PASS api       http://127.0.0.1:{WEBHOOK_PORT}/health/ready answered 200"


def test_an_unreachable_provider_only_warns(host) -> None:
    run = host.run("toolkit-healthcheck --only providers")
    assert run.rc == 0, run.stdout + run.stderr
    assert run.stdout.startswith("WARN providers unreachable (non-blocking): 127.0.0.1:9: ")


def test_healthy_host_passes_with_exit_code_0(host, healthy: None) -> None:
    run = host.run("toolkit-healthcheck")
    assert run.rc == 0, run.stdout + run.stderr
    statuses = {line.split()[1]: line.split()[0] for line in run.stdout.splitlines()}
    assert statuses == {
        "providers": "WARN",
        "disk": "PASS",
        "backup": "PASS",
        "drill": "SKIP",
        "tls": "SKIP",
        "units": "PASS",
    }, run.stdout
    assert "not checked: no TLS endpoint on 127.0.0.1:443" in run.stdout
    report = json.loads(host.check_output("toolkit-healthcheck --json"))
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]] == [
        "providers",
        "disk",
        "backup",
        "drill",
        "tls",
        "units",
    ]


def test_unknown_check_name_is_refused(host) -> None:
    run = host.run("toolkit-healthcheck --only api,dsik")
    assert run.rc == 2
    assert "unknown check dsik" in run.stderr


def test_full_disk_alerts_once_then_recovers(host, listener: str) -> None:
    host.run(f"dd if=/dev/zero of={SMALL_DISK}/fill bs=64k count=64")  # ENOSPC at 2 MB is expected
    check = host.run("toolkit-healthcheck --only disk")
    assert check.rc == 1
    assert check.stdout.startswith(f"FAIL disk      above 80%: {SMALL_DISK} 100%"), check.stdout

    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    output = _timer_run(host)
    assert "sent alert (disk)" in output, output
    posts = webhook_posts(host)
    assert len(posts) == 1, posts
    assert posts[0]["path"] == "/toolkit-alerts"
    assert posts[0]["title"].endswith(": FAIL disk")
    assert posts[0]["priority"] == "high"
    assert f"FAIL disk      above 80%: {SMALL_DISK} 100%" in posts[0]["body"]
    errors = host.check_output(f"journalctl -t toolkit-alert -p err --since '{since}' --no-pager -o cat")
    assert "ALERT toolkit health on" in errors

    # Rate limit: the same failing set within the hour sends nothing new.
    output = _timer_run(host)
    assert "no alert (still failing, already sent)" in output, output
    assert len(webhook_posts(host)) == 1

    # Recovery: one message when all checks pass again, then silence.
    host.check_output(f"rm -f {SMALL_DISK}/fill")
    _timer_run(host)
    posts = webhook_posts(host)
    assert len(posts) == 2, posts
    assert posts[1]["title"].endswith(": all checks pass again")
    assert posts[1]["priority"] == "default"
    _timer_run(host)
    assert len(webhook_posts(host)) == 2


def test_the_same_failure_alerts_again_after_the_repeat_interval(host, listener: str) -> None:
    host.run(f"dd if=/dev/zero of={SMALL_DISK}/fill bs=64k count=64")
    _timer_run(host)
    assert len(webhook_posts(host)) == 1
    # As if the alert had been sent 61 minutes ago (monitoring_alert_repeat_seconds = 3600).
    host.check_output(f"""python3 -c 'import json, time; p = "{STATE}"; s = json.load(open(p));
s["sent"] = time.time() - 3660; json.dump(s, open(p, "w"))'""")
    _timer_run(host)
    assert len(webhook_posts(host)) == 2


def test_stale_backup_alerts(host, listener: str) -> None:
    host.check_output(f"rm -rf {BACKUP_DIR}/*")
    name = _make_backup_set(host, 30)
    check = host.run("toolkit-healthcheck --only backup")
    assert check.rc == 1
    assert f"FAIL backup    newest set {name} is 30.0 h old (more than 26 h)" in check.stdout
    _timer_run(host)
    posts = webhook_posts(host)
    assert len(posts) == 1, posts
    assert posts[0]["title"].endswith(": FAIL backup")
    assert "more than 26 h" in posts[0]["body"]


def test_failed_unit_alerts(host, listener: str) -> None:
    host.run("systemd-run --unit toolkit-test-broken --property=Type=oneshot false")
    check = host.run("toolkit-healthcheck --only units")
    assert check.rc == 1
    assert "FAIL units     failed: toolkit-test-broken.service" in check.stdout
    _timer_run(host)
    posts = webhook_posts(host)
    assert len(posts) == 1, posts
    assert posts[0]["title"].endswith(": FAIL units")
    assert "toolkit-test-broken.service" in posts[0]["body"]


def test_logrotate_rotates_on_a_timer(host) -> None:
    assert host.package("logrotate").is_installed
    assert host.service("logrotate.timer").is_enabled


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"monitoring_disk_max_percent": 120}, "Out of range: monitoring_disk_max_percent 1-99"),
        ({"monitoring_interval": "every five"}, "monitoring_interval must be a systemd time span"),
        ({"monitoring_interval": "10s"}, "monitoring_interval must be a systemd time span from 1min to 1d"),
        ({"monitoring_api_url": "ftp://example.org/health"}, "monitoring_api_url must be an http(s) URL"),
        ({"monitoring_checks": ["disk", "dsik"]}, "monitoring_checks"),
        ({"alerting_webhook_url": "ntfy.sh/topic"}, "alerting_webhook_url must be an http(s) URL"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch=(
            "md5sum /etc/toolkit/healthcheck.json /etc/toolkit/alert.json"
            " /etc/systemd/system/toolkit-healthcheck.timer"
        ),
    )
