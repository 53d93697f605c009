"""What the alerting and monitoring roles promise, checked on the converged Debian 13 host.

Converge left no API, PostgreSQL or Redis on the hosts (those checks must FAIL and say why), the
checks set to providers, disk, backup, drill, tls, units and alerts, the disk check pointed at
/mnt/toolkit-small-disk (a 2 MB tmpfs the tests mount and fill: the node exporter sees it, the
DiskFull rule watches tmpfs under /mnt), Prometheus and Alertmanager at test speed (alerts fire
10 s after their condition, repeat every minute), and alerts going to
http://127.0.0.1:8766/toolkit-alerts (the dead man's switch to /deadman), where the tests start a
listener that records each POST.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator

import pytest
from conftest import WEBHOOK_PORT, WEBHOOK_RECORD, prometheus_api, wait_for, webhook_posts

SMALL_DISK = "/mnt/toolkit-small-disk"
BACKUP_DIR = "/var/backups/toolkit"
STACK = (
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "prometheus-blackbox-exporter",
    "toolkit-alert-relay",
)


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


def _textfile(host) -> None:
    """Write the healthcheck's metrics now (the unit the timer runs)."""
    host.check_output("systemctl start toolkit-healthcheck.service")


@pytest.fixture
def healthy(host) -> Iterator[None]:
    """A host on which every timer check passes: empty small disk, a fresh backup, no failed unit."""
    if host.run(f"mountpoint -q {SMALL_DISK}").rc != 0:
        host.check_output(f"mkdir -p {SMALL_DISK} && mount -t tmpfs -o size=2M toolkit-test {SMALL_DISK}")
    host.check_output(f"rm -rf {SMALL_DISK}/* {BACKUP_DIR} {WEBHOOK_RECORD}")
    _make_backup_set(host, 1)
    host.run("systemctl reset-failed")
    _textfile(host)
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
        .startswith(
            "/usr/local/sbin/toolkit-healthcheck --textfile /var/lib/prometheus/node-exporter/toolkit.prom "
        )
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
    # An alert a fixed fault left firing resolves at Prometheus's next evaluations; the small disk,
    # mounted by the fixture, is in Prometheus after its next scrape.
    wait_for(
        lambda: host.run("toolkit-healthcheck --only alerts,disk").rc == 0, 60, "no alert, the disk seen"
    )
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
        "alerts": "PASS",
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
        "alerts",
    ]


def test_unknown_check_name_is_refused(host) -> None:
    run = host.run("toolkit-healthcheck --only api,dsik")
    assert run.rc == 2
    assert "unknown check dsik" in run.stderr


def _alert_posts(host, name: str, status: str = "") -> list[dict]:
    """The posts toolkit-alert sent about alert ``name`` (FIRING: critical/warning titles; RESOLVED)."""
    posts = webhook_posts(host)
    found = [post for post in posts if f" {name} on " in post["title"]]
    if status == "RESOLVED":
        return [post for post in found if post["title"].startswith("RESOLVED ")]
    if status == "FIRING":
        return [post for post in found if not post["title"].startswith("RESOLVED ")]
    return found


def test_the_stack_runs_on_loopback_only_in_its_slice(host) -> None:
    for unit in STACK:
        service = host.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit
        slice_name = host.check_output(f"systemctl show -p Slice --value {unit}")
        assert slice_name == "toolkit-monitoring.slice", unit
    listening = host.check_output("ss -Hltn")
    for port in (9090, 9093, 9095, 9100, 9115):
        sockets = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
        assert sockets == [f"127.0.0.1:{port}"], (port, listening)
    # Alertmanager's cluster port is off: nothing on 9094.
    assert ":9094 " not in listening


def test_the_stack_stays_within_its_share(host) -> None:
    """The budget's monitoring share (320 MB on the shipped 8 GB budget) is the slice's MemoryMax;
    what the stack uses is printed for the closing note."""
    memory_max = int(host.check_output("systemctl show -p MemoryMax --value toolkit-monitoring.slice"))
    assert memory_max == 320 * 1024 * 1024
    current = int(host.check_output("systemctl show -p MemoryCurrent --value toolkit-monitoring.slice"))
    print(f"toolkit-monitoring.slice: {current / 1048576:.1f} MiB in use of {memory_max / 1048576:.0f} MiB")
    assert 0 < current < memory_max * 0.8


def test_prometheus_scrapes_every_target_and_loads_the_rules(host) -> None:
    wait_for(
        lambda: all(
            t["health"] == "up" for t in prometheus_api(host, "/api/v1/targets")["data"]["activeTargets"]
        ),
        60,
        "every target up",
    )
    jobs = {t["labels"]["job"] for t in prometheus_api(host, "/api/v1/targets")["data"]["activeTargets"]}
    assert jobs == {"prometheus", "alertmanager", "node", "blackbox"}, jobs
    rules = prometheus_api(host, "/api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"DiskFull", "BackupTooOld", "SystemdUnitFailed", "Watchdog", "PostgresDown"} <= names


def _gaps(posts: list[dict]) -> list[float]:
    """Seconds between consecutive posts, by the listener's clock."""
    times = [float(post["at"]) for post in posts]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_alerts_repeat_resolve_and_flap_apart_and_the_watchdog_reaches_the_dead_mans_switch_only(
    host, listener: str
) -> None:
    """A full disk and a stale backup fire together, each its own group: each reaches the webhook
    once, again after the repeat interval (1 min here), and once RESOLVED after its fix; meanwhile a
    failed unit flaps (fails, recovers, fails again) without re-sending either of them, and the
    Watchdog reaches the dead man's switch again and again, never the alert channel. The times are
    the listener's, so a slow poll here cannot make a test of Alertmanager's timing pass or fail."""
    host.check_output(f"rm -rf {BACKUP_DIR}/*")
    _make_backup_set(host, 30)
    host.run(f"dd if=/dev/zero of={SMALL_DISK}/fill bs=64k count=64")  # ENOSPC at 2 MB is expected
    _textfile(host)
    wait_for(lambda: _alert_posts(host, "DiskFull", "FIRING"), 120, "DiskFull sent")
    wait_for(lambda: _alert_posts(host, "BackupTooOld", "FIRING"), 90, "BackupTooOld sent")
    disk = _alert_posts(host, "DiskFull", "FIRING")[0]
    assert disk["title"].startswith("CRITICAL DiskFull on "), disk
    assert f"File system {SMALL_DISK}" in disk["body"], disk
    assert "% full" in disk["body"], disk
    assert disk["priority"] == "urgent"
    assert "docs/MONITORING.md#diskfull" in disk["body"]
    backup = _alert_posts(host, "BackupTooOld", "FIRING")[0]
    assert "more than 26 h" in backup["body"] or "26" in backup["title"], backup

    # The flapping check: a unit fails, recovers, fails again.
    for _ in range(2):
        host.run("systemd-run --unit toolkit-test-broken --property=Type=oneshot false")
        _textfile(host)
        count = len(_alert_posts(host, "SystemdUnitFailed", "FIRING"))
        wait_for(lambda c=count: len(_alert_posts(host, "SystemdUnitFailed", "FIRING")) > c, 90, "unit alert")
        host.run("systemctl reset-failed toolkit-test-broken.service")
        _textfile(host)
        count = len(_alert_posts(host, "SystemdUnitFailed", "RESOLVED"))
        wait_for(
            lambda c=count: len(_alert_posts(host, "SystemdUnitFailed", "RESOLVED")) > c, 90, "unit resolved"
        )
    assert "toolkit-test-broken.service" not in "".join(p["body"] for p in _alert_posts(host, "DiskFull"))

    # After the repeat interval: both sent again.
    for name in ("DiskFull", "BackupTooOld"):
        wait_for(lambda n=name: len(_alert_posts(host, n, "FIRING")) >= 2, 150, f"{name} repeated")

    # The fixes: one RESOLVED each, then silence.
    host.check_output(f"rm -f {SMALL_DISK}/fill")
    _make_backup_set(host, 1)
    _textfile(host)
    for name in ("DiskFull", "BackupTooOld"):
        wait_for(lambda n=name: _alert_posts(host, n, "RESOLVED"), 90, f"{name} resolved")
    assert _alert_posts(host, "DiskFull", "RESOLVED")[0]["priority"] == "default"
    time.sleep(20)
    for name in ("DiskFull", "BackupTooOld"):
        firing = _alert_posts(host, name, "FIRING")
        resolved = _alert_posts(host, name, "RESOLVED")
        # Never again within the repeat interval (1 min), however the unit flapped meanwhile.
        assert min(_gaps(firing)) >= 50, (name, _gaps(firing))
        assert len(resolved) == 1, (name, resolved)
        assert float(resolved[0]["at"]) > float(firing[-1]["at"]), (name, "sent again after RESOLVED")

    # The dead man's switch, all along: again and again (every 20 s here, once Alertmanager's
    # back-off from the time no listener ran is over), and never to the alert channel.
    wait_for(
        lambda: len(webhook_posts(host, "/deadman")) >= 2,
        90,
        "the Watchdog sent twice to /deadman",
    )
    deadman = webhook_posts(host, "/deadman")
    assert all('"alertname":"Watchdog"' in post["body"] for post in deadman), deadman
    assert not _alert_posts(host, "Watchdog"), "the Watchdog must not reach the alert channel"


def test_the_healthcheck_shows_what_prometheus_has_firing(host, healthy: None) -> None:
    host.run(f"dd if=/dev/zero of={SMALL_DISK}/fill bs=64k count=64")
    wait_for(
        lambda: host.run("toolkit-healthcheck --only alerts").rc == 1,
        90,
        "toolkit-healthcheck --only alerts failing on DiskFull",
    )
    run = host.run("toolkit-healthcheck --only alerts")
    assert run.stdout.startswith("FAIL alerts    firing: "), run.stdout
    assert f"DiskFull (critical): File system {SMALL_DISK} on " in run.stdout
    assert "Watchdog" not in run.stdout


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
        ({"monitoring_prometheus_enabled": False}, "monitoring_checks has alerts, disk, which read"),
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
