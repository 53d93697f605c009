"""toolkit-healthcheck: how each check judges what the system reports, what it reads from Prometheus,
and the metrics its timer writes for the node exporter."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from role_scripts import load_role_script

hc = load_role_script("monitoring", "toolkit_healthcheck")

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("available_mib", "psi", "status", "reason"),
    [
        (1953, 1.0, "PASS", ""),
        (1953, None, "PASS", ""),
        (390, 1.0, "FAIL", "available below 10%"),
        (1953, 12.25, "FAIL", "memory pressure above 10%"),
        (390, 50.0, "FAIL", "available below 10%; memory pressure above 10%"),
    ],
)
def test_memory_fails_on_low_available_or_pressure(
    available_mib: int, psi: float | None, status: str, reason: str
) -> None:
    result = hc.memory_result(7812 * MIB, available_mib * MIB, psi, 10, 10)
    assert result.status == status
    assert result.detail.startswith(reason)
    assert f"{available_mib} MiB available of 7812 MiB" in result.detail


def test_memory_without_the_node_exporters_figures_fails() -> None:
    result = hc.memory_result(None, None, None, 10, 10)
    assert (result.status, result.detail) == (
        "FAIL",
        "Prometheus has no node_memory_MemTotal_bytes/MemAvailable_bytes",
    )


def test_used_percent_is_what_df_shows() -> None:
    # 100 blocks, 30 free of which 25 usable by users: 70 used of 95 usable.
    assert hc.used_percent(100, 30, 25) == pytest.approx(73.68, abs=0.01)
    assert hc.used_percent(0, 0, 0) == 0.0


def _sample(value: float, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [1700000000, str(value)]}


def test_disk_usage_watches_what_the_node_exporter_reports_and_tmpfs_only_under_mnt_and_srv() -> None:
    sizes = [
        _sample(100, mountpoint="/", fstype="ext4"),
        _sample(10, mountpoint="/tmp", fstype="tmpfs"),
        _sample(20, mountpoint="/mnt/volume", fstype="tmpfs"),
    ]
    free = {"/": 30.0, "/tmp": 10.0, "/mnt/volume": 20.0}
    available = {"/": 25.0, "/tmp": 10.0, "/mnt/volume": 20.0}
    assert hc.disk_usage(sizes, free, available, ()) == {
        "/": pytest.approx(73.68, abs=0.01),
        "/mnt/volume": 0.0,
    }
    # Named mounts: only those, and one the exporter does not report is an error.
    assert hc.disk_usage(sizes, free, available, ("/srv/data", "/")) == {
        "/srv/data": "not watched by the node exporter",
        "/": pytest.approx(73.68, abs=0.01),
    }


def test_disk_fails_above_the_threshold_and_names_the_mount() -> None:
    result = hc.disk_result({"/": 42.0, "/srv": 81.2}, 80)
    assert result.status == "FAIL"
    assert result.detail == "above 80%: /srv 81% (all: / 42%, /srv 81%)"
    assert hc.disk_result({"/": 80.0}, 80).status == "PASS"
    assert hc.disk_result({}, 80).detail.startswith("not checked: the node exporter watches no file system")


def test_disk_fails_on_a_mount_it_cannot_see() -> None:
    result = hc.disk_result({"/gone": "not watched by the node exporter"}, 80)
    assert result.status == "FAIL"
    assert "/gone: not watched by the node exporter" in result.detail


@pytest.mark.parametrize(
    ("sets", "status", "detail"),
    [
        (["20261124T120000Z", "20261125T030000Z"], "PASS", "newest set 20261125T030000Z is 9.0 h old"),
        (["20261124T090000Z"], "FAIL", "newest set 20261124T090000Z is 27.0 h old (more than 26 h)"),
        (["pre-restore", "notes.txt"], "FAIL", "no complete backup set in /b"),
        # A clock that jumped back: the newest set is "from the future", and its age tells nothing.
        (
            ["20261124T120000Z", "20261125T150000Z"],
            "FAIL",
            "newest set 20261125T150000Z is dated 3.0 h in the future: check the clock (timedatectl)"
            " and the sets in /b",
        ),
        (["20261125T120300Z"], "PASS", "newest set 20261125T120300Z is 0.0 h old"),
        ([], "FAIL", "no complete backup set in /b"),
    ],
)
def test_backup_age_is_judged_on_the_newest_set(sets: list[str], status: str, detail: str) -> None:
    result = hc.backup_result(sets, NOW, 26, "/b")
    assert (result.status, result.detail) == (status, detail)


# systemctl show output of the backup timer and its service, as systemd 252 and 257 print it.
TIMER_WAITING = "ActiveState=active\nLastTriggerUSec=\nNextElapseUSecRealtime=Tue 2026-12-01 03:00:00 -03\n"
TIMER_FIRED = (
    "ActiveState=active\nLastTriggerUSec=Tue 2026-11-24 03:00:00 -03\n"
    "NextElapseUSecRealtime=Tue 2026-12-01 03:00:00 -03\n"
)
TIMER_STOPPED = "ActiveState=inactive\nLastTriggerUSec=\nNextElapseUSecRealtime=\n"
TIMER_MISSING = "ActiveState=inactive\nLastTriggerUSec=\n"
SERVICE_NEVER_RAN = "ExecMainStartTimestampMonotonic=0\n"
SERVICE_RAN = "ExecMainStartTimestampMonotonic=518677180\n"


def test_a_fresh_host_is_pending_until_the_first_scheduled_backup() -> None:
    """Provisioned today, before 03:00: no set yet, and no alert for that."""
    timer = hc.backup_timer_state(TIMER_WAITING, SERVICE_NEVER_RAN)
    result = hc.backup_result([], NOW, 26, "/b", timer)
    assert (result.status, result.detail) == (
        "WARN",
        "pending until the first scheduled run (Tue 2026-12-01 03:00:00 -03): no backup set in /b yet",
    )


def test_the_command_asks_systemd_about_the_backup_timer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh host's `toolkit-healthcheck --only backup` exits 0 with the pending line."""
    asked: list[tuple[str, ...]] = []

    def systemctl(*args: str) -> str:
        asked.append(args)
        return {"toolkit-backup.timer": TIMER_WAITING, "toolkit-backup.service": SERVICE_NEVER_RAN}[args[-1]]

    monkeypatch.setattr(hc, "systemctl", systemctl)
    config = tmp_path / "healthcheck.json"
    config.write_text(json.dumps({"backup_dir": str(tmp_path / "none")}))
    assert hc.main(["--config", str(config), "--only", "backup"]) == 0
    assert capsys.readouterr().out.startswith(
        "WARN backup    pending until the first scheduled run (Tue 2026-12-01"
    )
    assert [args[-1] for args in asked] == ["toolkit-backup.timer", "toolkit-backup.service"]


@pytest.mark.parametrize(
    ("timer_show", "service_show", "why"),
    [
        (TIMER_FIRED, SERVICE_NEVER_RAN, "the timer fired and left no set"),
        (TIMER_WAITING, SERVICE_RAN, "the backup ran (by hand or the timer) and left no set"),
        (TIMER_STOPPED, SERVICE_NEVER_RAN, "no timer will ever make a set"),
        (TIMER_MISSING, "", "the backup role is not installed"),
    ],
    ids=["timer-fired", "service-ran", "timer-stopped", "no-timer"],
)
def test_no_set_fails_once_a_backup_should_have_made_one(
    timer_show: str, service_show: str, why: str
) -> None:
    result = hc.backup_result([], NOW, 26, "/b", hc.backup_timer_state(timer_show, service_show))
    assert (result.status, result.detail) == ("FAIL", "no complete backup set in /b"), why


def test_a_set_is_judged_by_its_age_whatever_the_timer_says() -> None:
    timer = hc.backup_timer_state(TIMER_WAITING, SERVICE_NEVER_RAN)
    assert hc.backup_result(["20261124T090000Z"], NOW, 26, "/b", timer).status == "FAIL"


def test_drill_fails_only_while_its_unit_is_failed() -> None:
    unit = "toolkit-restore-drill.service"
    assert hc.drill_result(unit, "loaded", "failed\n").status == "FAIL"
    assert hc.drill_result(unit, "loaded", "inactive").status == "PASS"
    skipped = hc.drill_result(unit, "not-found", "inactive")
    assert skipped.status == "SKIP"
    assert skipped.detail == f"not checked: {unit} is not installed"


def test_failed_units_leave_out_the_health_check_and_ignored_patterns() -> None:
    listing = (
        "toolkit-backup.service loaded failed failed Toolkit backup\n"
        "toolkit-healthcheck.service loaded failed failed Toolkit health check\n"
        "getty@tty1.service loaded failed failed Getty\n"
    )
    assert hc.failed_units(listing, ["getty@*"]) == ["toolkit-backup.service"]
    assert hc.units_result([]).status == "PASS"
    assert hc.units_result(["a.service"]).detail == "failed: a.service"


def test_certificate_days_and_expiry_threshold() -> None:
    now = ssl.cert_time_to_seconds("Nov 25 12:00:00 2026 GMT")
    assert hc.certificate_days_left("Dec  5 12:00:00 2026 GMT", now) == pytest.approx(10.0)
    assert hc.tls_result("example.org", 10.0, 14).status == "FAIL"
    assert hc.tls_result("example.org", 30.0, 14).status == "PASS"


def test_redis_commands_and_replies() -> None:
    assert hc.resp_command("AUTH", "pässword") == b"*2\r\n$4\r\nAUTH\r\n$9\r\np\xc3\xa4ssword\r\n"
    assert hc.redis_result(["+OK", "+PONG"], "r:1").status == "PASS"
    denied = hc.redis_result(["-WRONGPASS invalid username-password pair"], "r:1")
    assert denied.status == "FAIL"
    assert denied.detail == "r:1 answered WRONGPASS invalid username-password pair"
    assert hc.redis_result(["-NOAUTH Authentication required."], "r:1").status == "FAIL"


def test_providers_warn_and_never_fail() -> None:
    assert hc.provider_result({"a:443": "timed out"}, ["a:443", "b:443"]).status == "WARN"
    assert hc.provider_result({}, ["a:443"]).status == "PASS"
    assert hc.provider_result({}, []).status == "SKIP"
    assert hc.split_target("api.example.org:8443") == ("api.example.org", 8443)
    assert hc.split_target("api.example.org") == ("api.example.org", 443)


def test_only_selects_known_checks_in_order() -> None:
    assert hc.selected("redis, api", hc.CHECKS) == ["api", "redis"]
    assert hc.selected(None, ["units", "disk"]) == ["disk", "units"]
    with pytest.raises(ValueError, match="unknown check dsik"):
        hc.selected("dsik", hc.CHECKS)


def test_exit_code_is_1_only_on_a_fail() -> None:
    assert (
        hc.exit_code([hc.Result("a", "PASS", ""), hc.Result("b", "WARN", ""), hc.Result("c", "SKIP", "")])
        == 0
    )
    assert hc.exit_code([hc.Result("a", "PASS", ""), hc.Result("b", "FAIL", "")]) == 1


def _alert(name: str, severity: str, state: str = "firing", summary: str = "") -> dict[str, object]:
    return {
        "labels": {"alertname": name, "severity": severity},
        "annotations": {"summary": summary or f"{name} summary"},
        "state": state,
    }


def test_alerts_fail_on_a_critical_one_warn_on_a_warning_and_ignore_the_watchdog() -> None:
    quiet = {"data": {"alerts": [_alert("Watchdog", "none"), _alert("DiskFull", "critical", "pending")]}}
    assert hc.alerts_result(quiet) == hc.Result("alerts", "PASS", "no alert firing (1 pending)")
    warning = {"data": {"alerts": [_alert("Watchdog", "none"), _alert("ProviderCircuitOpen", "warning")]}}
    assert hc.alerts_result(warning) == hc.Result(
        "alerts", "WARN", "firing: ProviderCircuitOpen (warning): ProviderCircuitOpen summary"
    )
    both = {
        "data": {
            "alerts": [
                _alert("ProviderCircuitOpen", "warning"),
                _alert("DiskFull", "critical", summary="/ 91%"),
            ]
        }
    }
    result = hc.alerts_result(both)
    assert result.status == "FAIL"
    assert result.detail.endswith("; DiskFull (critical): / 91%")


def test_spend_is_the_last_24_hours_against_the_budget() -> None:
    def payload(value: str) -> dict[str, object]:
        return {"data": {"result": [{"metric": {}, "value": [1700000000, value]}]}}

    assert hc.spend_result(payload("3.456"), 10) == hc.Result(
        "spend", "PASS", "LLM spend in the last 24 h: $3.46 (budget $10)"
    )
    assert hc.spend_result(payload("12.5"), 10).status == "WARN"
    assert hc.spend_result({"data": {"result": []}}, 10).detail.startswith(
        "LLM spend in the last 24 h: $0.00"
    )


def test_prometheus_unreachable_fails_alerts_and_leaves_spend_unknown() -> None:
    settings = hc.Settings(prometheus_url=f"http://127.0.0.1:{_free_port()}")
    alerts = hc.check_alerts(settings)
    assert alerts.status == "FAIL"
    assert alerts.detail.startswith(f"Prometheus at {settings.prometheus_url} did not answer")
    assert hc.check_spend(settings).status == "WARN"


def test_textfile_holds_what_no_exporter_measures() -> None:
    text = hc.textfile_metrics((1700000123.0, False), True, 2)
    values = {line.split()[0]: line.split()[1] for line in text.splitlines() if not line.startswith("#")}
    assert values == {
        "toolkit_backup_newest_timestamp_seconds": "1700000123.0",
        "toolkit_backup_pending": "0",
        "toolkit_drill_failed": "1",
        "toolkit_units_failed": "2",
    }
    assert "# TYPE toolkit_units_failed gauge" in text
    # A host without backups (an app host of the two-host layout) writes only its units.
    assert hc.textfile_metrics(None, None, 0) == (
        "# HELP toolkit_units_failed systemd units in the failed state (ignored ones left out).\n"
        "# TYPE toolkit_units_failed gauge\ntoolkit_units_failed 0\n"
    )


def test_settings_refuse_unknown_checks(tmp_path: Path) -> None:
    path = tmp_path / "healthcheck.json"
    path.write_text(json.dumps({"checks": ["disk"], "disk_mounts": ["/"], "unknown_key": 1}))
    assert hc.Settings.load(path).checks == ("disk",)
    path.write_text(json.dumps({"checks": ["dsik"]}))
    with pytest.raises(ValueError, match="unknown checks in the settings: dsik"):
        hc.Settings.load(path)


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health/ready" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server with ``handler`` on a free loopback port, in a thread; yields its URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def api() -> Iterator[str]:
    with _serving(_Ready) as url:
        yield url


def test_api_check_reads_the_status(api: str) -> None:
    assert hc.check_api(hc.Settings(api_url=f"{api}/health/ready")).status == "PASS"
    not_ready = hc.check_api(hc.Settings(api_url=f"{api}/other"))
    assert (not_ready.status, not_ready.detail) == ("FAIL", f"{api}/other answered 503")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nothing_listening_is_a_clear_fail_or_skip() -> None:
    port = _free_port()
    settings = hc.Settings(
        api_url=f"http://127.0.0.1:{port}/health/ready",
        redis_port=port,
        tls_domain="example.org",
        tls_port=port,
        providers=(f"127.0.0.1:{port}",),
    )
    assert hc.check_api(settings).detail.startswith(f"http://127.0.0.1:{port}/health/ready did not answer")
    assert hc.check_redis(settings).detail.startswith(f"127.0.0.1:{port} did not answer")
    tls = hc.check_tls(settings)
    assert (tls.status, tls.detail.split(" (")[0]) == (
        "SKIP",
        f"not checked: no TLS endpoint on 127.0.0.1:{port}",
    )
    assert hc.check_providers(settings).status == "WARN"
    assert hc.check_tls(hc.Settings()).detail == "not checked: no TLS endpoint (no domain configured)"


def test_command_line_prints_lines_json_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup_dir = tmp_path / "backups"
    fresh = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (backup_dir / fresh).mkdir(parents=True)
    (backup_dir / fresh / "manifest.json").write_text("{}")
    config = tmp_path / "healthcheck.json"
    config.write_text(json.dumps({"backup_dir": str(backup_dir), "backup_max_age_hours": 26}))
    assert hc.main(["--config", str(config), "--only", "backup"]) == 0
    assert capsys.readouterr().out.startswith(f"PASS backup    newest set {fresh} is 0.0 h old")
    config.write_text(json.dumps({"backup_dir": str(tmp_path / "none")}))
    assert hc.main(["--config", str(config), "--only", "backup", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["checks"] == [
        {"name": "backup", "status": "FAIL", "detail": f"no complete backup set in {tmp_path / 'none'}"}
    ]


def test_textfile_mode_writes_the_metrics_atomically(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    (backup_dir / "20261125T100000Z").mkdir(parents=True)
    (backup_dir / "20261125T100000Z" / "manifest.json").write_text("{}")
    config = tmp_path / "healthcheck.json"
    config.write_text(json.dumps({"checks": ["backup"], "backup_dir": str(backup_dir)}))
    out = tmp_path / "toolkit.prom"
    assert hc.main(["--config", str(config), "--textfile", str(out)]) == 0
    expected = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC).timestamp()
    assert f"toolkit_backup_newest_timestamp_seconds {expected!r}" in out.read_text()
    assert "toolkit_backup_pending 0" in out.read_text()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


# --- wal: WAL archiving for point-in-time recovery (the PostgreSQL exporter's toolkit_pg_archiver_*) ---


def _archiver(enabled: float = 1, failing: float = 0, ready: float = 1, age: float = 42) -> dict[str, float]:
    return {"enabled": enabled, "failing": failing, "ready_segments": ready, "last_archived_age_seconds": age}


def test_wal_passes_while_segments_are_archived() -> None:
    result = hc.wal_result(1, _archiver(), 64)
    assert result.status == "PASS"
    assert result.detail == "last segment archived 42 s ago, 1 waiting"


def test_wal_fails_when_the_last_attempt_failed() -> None:
    result = hc.wal_result(1, _archiver(failing=1, ready=12, age=3600), 64)
    assert result.status == "FAIL"
    assert "archiving failed at the last attempt, 12 segments wait" in result.detail
    assert "last segment archived 3600 s ago" in result.detail


def test_wal_fails_when_too_many_segments_wait_even_without_a_failure_yet() -> None:
    result = hc.wal_result(1, _archiver(ready=65, age=-1), 64)
    assert result.status == "FAIL"
    assert result.detail.startswith("65 segments wait to be archived (more than 64); no segment archived yet")


def test_wal_is_skipped_with_archiving_off_or_no_exporter_and_unknown_without_its_figures() -> None:
    assert hc.wal_result(1, _archiver(enabled=0), 64).status == "SKIP"
    assert hc.wal_result(None, {}, 64).detail == "not checked: no PostgreSQL exporter on this host"
    down = hc.wal_result(0, {}, 64)
    assert (down.status, down.detail) == (
        "FAIL",
        "not known: the PostgreSQL exporter cannot reach PostgreSQL (pg_up 0)",
    )
    assert hc.wal_result(1, {"enabled": 1}, 64).status == "WARN"


class _Prometheus(BaseHTTPRequestHandler):
    """/api/v1/query answering from ANSWERS (query -> samples); no sample for any other query."""

    ANSWERS: ClassVar[dict[str, list[dict[str, object]]]] = {}
    url: ClassVar[str] = ""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
        body = json.dumps({"status": "success", "data": {"result": self.ANSWERS.get(query, [])}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def prometheus() -> Iterator[type[_Prometheus]]:
    handler = type("Answers", (_Prometheus,), {"ANSWERS": {}})
    with _serving(handler) as url:
        handler.url = url
        yield handler


def test_memory_disk_and_wal_are_read_from_prometheus(prometheus: type[_Prometheus]) -> None:
    selector = hc.DISK_SELECTOR
    prometheus.ANSWERS.update(
        {
            'node_memory_MemTotal_bytes{job="node"}': [_sample(8192 * MIB)],
            'node_memory_MemAvailable_bytes{job="node"}': [_sample(4096 * MIB)],
            'rate(node_pressure_memory_waiting_seconds_total{job="node"}[5m]) * 100': [_sample(0.5)],
            f"node_filesystem_size_bytes{{{selector}}}": [_sample(100, mountpoint="/", fstype="ext4")],
            f"node_filesystem_free_bytes{{{selector}}}": [_sample(10, mountpoint="/")],
            f"node_filesystem_avail_bytes{{{selector}}}": [_sample(5, mountpoint="/")],
            'pg_up{job="postgres"}': [_sample(1)],
            'toolkit_pg_archiver_enabled{job="postgres"}': [_sample(1)],
            'toolkit_pg_archiver_failing{job="postgres"}': [_sample(0)],
            'toolkit_pg_archiver_ready_segments{job="postgres"}': [_sample(0)],
            'toolkit_pg_archiver_last_archived_age_seconds{job="postgres"}': [_sample(7.6)],
        }
    )
    settings = hc.Settings(prometheus_url=prometheus.url)
    assert hc.check_memory(settings) == hc.Result(
        "memory", "PASS", "4096 MiB available of 8192 MiB (50%), waited for memory 0.50% of the time"
    )
    disk = hc.check_disk(settings)
    assert (disk.status, disk.detail) == ("FAIL", "above 80%: / 95% (all: / 95%)")
    assert hc.check_wal(settings) == hc.Result("wal", "PASS", "last segment archived 7 s ago, 0 waiting")


def test_prometheus_unreachable_fails_the_checks_that_read_it() -> None:
    settings = hc.Settings(prometheus_url=f"http://127.0.0.1:{_free_port()}")
    for check in (hc.check_memory, hc.check_disk, hc.check_wal):
        result = check(settings)
        assert result.status == "FAIL"
        assert result.detail.startswith(f"Prometheus at {settings.prometheus_url} did not answer")


def test_failed_units_that_alert_themselves_are_not_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed backup alerted once through its OnFailure=toolkit-alert@ unit: SystemdUnitFailed must
    not say it again every repeat interval; a failed unit without such a hook counts."""
    listing = (
        "toolkit-backup.service loaded failed failed Toolkit backup\n"
        "nginx-old.service loaded failed failed Leftover\n"
    )
    on_failure = {
        "toolkit-backup.service": "toolkit-alert@toolkit-backup.service.service",
        "nginx-old.service": "",
    }

    def fake_systemctl(*args: str) -> str:
        if args[0] == "list-units":
            return listing
        if args[:3] == ("show", "-p", "OnFailure"):
            return on_failure[args[-1]]
        return ""

    monkeypatch.setattr(hc, "systemctl", fake_systemctl)
    out = tmp_path / "toolkit.prom"
    hc.write_textfile(hc.Settings(checks=("units",)), out)
    assert "toolkit_units_failed 1\n" in out.read_text()
