#!/usr/bin/python3
"""Check the host and its services: one PASS/WARN/FAIL/SKIP line per check, exit 1 on any FAIL.

Installed by the toolkit's monitoring role as /usr/local/sbin/toolkit-healthcheck; settings come
from /etc/toolkit/healthcheck.json (root only: it holds the Redis password).

    toolkit-healthcheck                    every enabled check, one line each
    toolkit-healthcheck --only api,redis   just these checks (the deploy gate uses --only api)
    toolkit-healthcheck --json             the same results as JSON
    toolkit-healthcheck --textfile FILE    run by toolkit-healthcheck.timer: write what no exporter
                                           measures (backups, the restore drill, failed units) as
                                           Prometheus metrics for the node exporter's textfile
                                           collector; Prometheus's rules and Alertmanager alert

Where an exporter already measures it, the check reads Prometheus instead of the system: memory
and disk (the node exporter), WAL archiving (the PostgreSQL exporter's toolkit_pg_archiver_*
metrics); the alerts check asks which alerts fire (Alertmanager sends them; this only shows them),
the spend check what the LLM providers cost in the last 24 hours. Those checks FAIL, naming
Prometheus, when it does not answer. The others look for themselves: api, postgres and redis ask
the service now (the gate after a restart cannot wait for a scrape), providers and tls connect,
backup, drill and units are what --textfile publishes.

WARN (provider unreachable; no backup yet before the backup timer's first run) and SKIP (nothing
to check) never make the exit code non-zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/toolkit/healthcheck.json")
PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
CHECKS = (
    "api",
    "postgres",
    "redis",
    "providers",
    "memory",
    "disk",
    "backup",
    "wal",
    "drill",
    "tls",
    "units",
    "alerts",
    "spend",
)
SET_NAME = re.compile(r"^\d{8}T\d{6}Z$")
SET_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
# A backup set named more than this after the clock is "in the future" (the clock jumped).
FUTURE_TOLERANCE_HOURS = 5 / 60
OWN_UNIT = "toolkit-healthcheck.service"
# The file systems the disk check (and the DiskFull alert) watches among the node exporter's: no
# pseudo or container file systems, and tmpfs only where volumes are mounted (/mnt, /srv).
DISK_SELECTOR = 'job="node",fstype!~"ramfs|squashfs|overlay|nsfs",mountpoint!~"/(run|dev|sys|proc)(/.*)?"'
TMPFS_WATCHED = re.compile(r"^/(mnt|srv)/.+")


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<9} {self.detail}"


@dataclass(frozen=True)
class Settings:
    """The checks and their thresholds (see the monitoring role's defaults for each one)."""

    checks: tuple[str, ...] = CHECKS
    api_url: str = "http://127.0.0.1/health/ready"
    api_timeout: float = 5.0
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str = ""
    providers: tuple[str, ...] = ()
    provider_timeout: float = 3.0
    memory_available_min_percent: float = 10.0
    memory_psi_some_avg60_max: float = 10.0
    disk_mounts: tuple[str, ...] = ()
    disk_max_percent: float = 80.0
    backup_dir: str = "/var/backups/toolkit"
    backup_max_age_hours: float = 26.0
    backup_timer: str = "toolkit-backup.timer"
    drill_unit: str = "toolkit-restore-drill.service"
    wal_max_waiting: int = 64
    tls_domain: str = ""
    tls_address: str = "127.0.0.1"
    tls_port: int = 443
    tls_min_days: float = 14.0
    units_ignore: tuple[str, ...] = field(default_factory=tuple)
    prometheus_url: str = "http://127.0.0.1:9090"
    llm_daily_budget_usd: float = 10.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Settings:
        known = {name: value for name, value in raw.items() if name in cls.__dataclass_fields__}
        for name in ("checks", "providers", "disk_mounts", "units_ignore"):
            if name in known:
                known[name] = tuple(known[name])
        unknown = sorted(set(known.get("checks", ())) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks in the settings: {', '.join(unknown)}")
        return cls(**known)

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else cls()


# --- Pure parts: parse what the system says and judge it ----------------------------------------


def memory_result(
    total: float | None,
    available: float | None,
    psi_percent: float | None,
    min_percent: float,
    max_psi: float,
) -> Result:
    """Judge memory from the node exporter's MemTotal, MemAvailable (bytes) and the share of time
    tasks waited for memory (PSI "some", percent over 5 minutes, as the MemoryPressure alert)."""
    if not total or available is None:
        return Result("memory", FAIL, "Prometheus has no node_memory_MemTotal_bytes/MemAvailable_bytes")
    percent = 100.0 * available / total
    psi_text = (
        "PSI not available" if psi_percent is None else f"waited for memory {psi_percent:.2f}% of the time"
    )
    mib = 1024 * 1024
    detail = f"{available // mib:.0f} MiB available of {total // mib:.0f} MiB ({percent:.0f}%), {psi_text}"
    problems = []
    if percent < min_percent:
        problems.append(f"available below {min_percent:g}%")
    if psi_percent is not None and psi_percent > max_psi:
        problems.append(f"memory pressure above {max_psi:g}%")
    if problems:
        return Result("memory", FAIL, f"{'; '.join(problems)}: {detail}")
    return Result("memory", PASS, detail)


def used_percent(blocks: float, free: float, available: float) -> float:
    """Used share as df reports it: used / (used + available to unprivileged users)."""
    used = blocks - free
    usable = used + available
    return 100.0 * used / usable if usable > 0 else 0.0


def disk_usage(
    sizes: list[dict[str, Any]], free: dict[str, float], available: dict[str, float], mounts: Iterable[str]
) -> dict[str, float | str]:
    """Used percent per mount point from the node exporter's samples (``sizes``: the
    node_filesystem_size_bytes series, ``free`` and ``available``: bytes by mount point).

    ``mounts``: the mount points to judge; empty for every one the exporter watches (tmpfs only
    under /mnt and /srv). A named mount the exporter does not report maps to an error text."""
    watched: dict[str, float] = {}
    for sample in sizes:
        labels = sample.get("metric") or {}
        point = labels.get("mountpoint", "")
        if labels.get("fstype") == "tmpfs" and not TMPFS_WATCHED.match(point):
            continue
        watched.setdefault(point, float(sample["value"][1]))
    wanted = list(mounts) or sorted(watched)
    usage: dict[str, float | str] = {}
    for point in wanted:
        if point not in watched or point not in free or point not in available:
            usage[point] = "not watched by the node exporter"
            continue
        size = watched[point]
        usage[point] = used_percent(size, free[point], available[point])
    return usage


def disk_result(usage: dict[str, float | str], max_percent: float) -> Result:
    """``usage`` maps a mount point to its used percent, or to an error text."""
    if not usage:
        excluded = "monitoring_filesystems_exclude"
        return Result("disk", SKIP, f"not checked: the node exporter watches no file system ({excluded})")
    errors = [f"{mount}: {value}" for mount, value in usage.items() if isinstance(value, str)]
    full = [
        f"{mount} {value:.0f}%"
        for mount, value in usage.items()
        if not isinstance(value, str) and value > max_percent
    ]
    shown = ", ".join(f"{mount} {value:.0f}%" for mount, value in usage.items() if not isinstance(value, str))
    if errors or full:
        return Result("disk", FAIL, f"above {max_percent:g}%: {', '.join(full + errors)} (all: {shown})")
    return Result("disk", PASS, f"every mount at or below {max_percent:g}%: {shown}")


def set_time(name: str) -> dt.datetime | None:
    if not SET_NAME.match(name):
        return None
    return dt.datetime.strptime(name, SET_TIME_FORMAT).replace(tzinfo=dt.UTC)


# systemctl show prints an empty value (some versions "n/a") for a time that never happened.
NEVER = frozenset(["", "n/a", "0"])


@dataclass(frozen=True)
class BackupTimer:
    """What systemd says about the backup timer and its service."""

    active: bool
    ever_triggered: bool
    service_started: bool
    next_run: str

    @property
    def pending(self) -> bool:
        """True before the first scheduled run: the timer waits and no backup has run yet."""
        return self.active and not self.ever_triggered and not self.service_started


def parse_show(output: str) -> dict[str, str]:
    """``systemctl show -p A -p B UNIT`` output (``A=value`` lines) as a dictionary."""
    return dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)


def backup_timer_state(timer_show: str, service_show: str) -> BackupTimer:
    """The timer's ActiveState, LastTriggerUSec and NextElapseUSecRealtime, and whether its
    service started since boot (ExecMainStartTimestampMonotonic), from ``systemctl show``."""
    timer = parse_show(timer_show)
    service = parse_show(service_show)
    return BackupTimer(
        active=timer.get("ActiveState") == "active",
        ever_triggered=timer.get("LastTriggerUSec", "").strip() not in NEVER,
        service_started=service.get("ExecMainStartTimestampMonotonic", "").strip() not in NEVER,
        next_run=timer.get("NextElapseUSecRealtime", "").strip(),
    )


def backup_result(
    complete_sets: Iterable[str],
    now: dt.datetime,
    max_hours: float,
    backup_dir: str,
    timer: BackupTimer | None = None,
) -> Result:
    """Judge the newest complete set (name = its UTC start time, as toolkit-backup writes it).

    With no set at all, a host whose backup timer is active but has never run (a freshly
    provisioned one) is pending, not failing: a WARN until the first scheduled run.
    """
    times = sorted(moment for moment in map(set_time, complete_sets) if moment is not None)
    if not times:
        if timer is not None and timer.pending:
            when = timer.next_run if timer.next_run not in NEVER else "time not known"
            return Result(
                "backup",
                WARN,
                f"pending until the first scheduled run ({when}): no backup set in {backup_dir} yet",
            )
        return Result("backup", FAIL, f"no complete backup set in {backup_dir}")
    newest = times[-1]
    age = (now - newest).total_seconds() / 3600
    if age < -FUTURE_TOLERANCE_HOURS:
        # A set named after the clock: the clock jumped (back now, or forward then). Its age says
        # nothing about whether backups still run.
        return Result(
            "backup",
            FAIL,
            f"newest set {newest.strftime(SET_TIME_FORMAT)} is dated {-age:.1f} h in the future: "
            "check the clock (timedatectl) and the sets in " + backup_dir,
        )
    detail = f"newest set {newest.strftime(SET_TIME_FORMAT)} is {max(age, 0.0):.1f} h old"
    if age > max_hours:
        return Result("backup", FAIL, f"{detail} (more than {max_hours:g} h)")
    return Result("backup", PASS, detail)


# The PostgreSQL exporter's toolkit_pg_archiver_* metrics (files/prometheus/postgres-exporter-queries.yml).
WAL_METRICS = ("enabled", "failing", "ready_segments", "last_archived_age_seconds")


def wal_result(up: float | None, archiver: dict[str, float], max_waiting: int) -> Result:
    """Judge WAL archiving (point-in-time recovery) from pg_up and toolkit_pg_archiver_* (by name)."""
    if up is None:
        return Result("wal", SKIP, "not checked: no PostgreSQL exporter on this host")
    if up == 0:
        return Result("wal", FAIL, "not known: the PostgreSQL exporter cannot reach PostgreSQL (pg_up 0)")
    if set(WAL_METRICS) - set(archiver):
        return Result("wal", WARN, "not known yet: Prometheus has no toolkit_pg_archiver_* metrics")
    if archiver["enabled"] == 0:
        return Result("wal", SKIP, "not checked: archiving is off (backup_pitr_enabled is false)")
    age, waiting = int(archiver["last_archived_age_seconds"]), int(archiver["ready_segments"])
    last = "no segment archived yet" if age < 0 else f"last segment archived {age} s ago"
    if archiver["failing"] == 1:
        return Result(
            "wal",
            FAIL,
            f"archiving failed at the last attempt, {waiting} segments wait; {last}"
            " (pg_stat_archiver names the segment; /var/log/pgbackrest/, sudo toolkit-pitr info)",
        )
    if waiting > max_waiting:
        return Result(
            "wal", FAIL, f"{waiting} segments wait to be archived (more than {max_waiting}); {last}"
        )
    return Result("wal", PASS, f"{last}, {waiting} waiting")


def drill_result(unit: str, load_state: str, is_failed: str) -> Result:
    if load_state != "loaded":
        return Result("drill", SKIP, f"not checked: {unit} is not installed")
    if is_failed.strip() == "failed":
        return Result("drill", FAIL, f"{unit} failed: journalctl -u {unit}")
    return Result("drill", PASS, f"{unit} has not failed ({is_failed.strip() or 'unknown'})")


def failed_units(listing: str, ignore: Iterable[str]) -> list[str]:
    """Unit names from ``systemctl list-units --state=failed --plain --no-legend``, minus ignored."""
    patterns = [OWN_UNIT, *ignore]
    names = [line.split()[0] for line in listing.splitlines() if line.split()]
    names = [name.lstrip("●* ") for name in names]
    return [name for name in names if name and not any(fnmatch.fnmatch(name, pat) for pat in patterns)]


def units_result(names: list[str]) -> Result:
    if names:
        return Result("units", FAIL, f"failed: {', '.join(names)}")
    return Result("units", PASS, "no failed systemd unit")


def certificate_days_left(not_after: str, now: float) -> float:
    """Days until a certificate's notAfter (as ssl's getpeercert() gives it)."""
    return (ssl.cert_time_to_seconds(not_after) - now) / 86400


def tls_result(domain: str, days_left: float, min_days: float) -> Result:
    detail = f"certificate of {domain} expires in {days_left:.1f} days"
    if days_left < min_days:
        return Result("tls", FAIL, f"{detail} (less than {min_days:g})")
    return Result("tls", PASS, detail)


def resp_command(*words: str) -> bytes:
    """A Redis command in RESP."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_result(replies: list[str], address: str) -> Result:
    """Judge the reply lines of [AUTH,] PING."""
    for reply in replies:
        if reply.startswith("-"):
            return Result("redis", FAIL, f"{address} answered {reply[1:].strip()}")
    if replies and replies[-1].strip() == "+PONG":
        return Result("redis", PASS, f"{address} answered PONG")
    return Result("redis", FAIL, f"{address} gave no PONG (got {replies!r})")


def provider_result(failures: dict[str, str], checked: list[str]) -> Result:
    if not checked:
        return Result("providers", SKIP, "not checked: no provider hosts configured")
    if failures:
        listed = "; ".join(f"{target}: {error}" for target, error in failures.items())
        return Result("providers", WARN, f"unreachable (non-blocking): {listed}")
    return Result("providers", PASS, f"reachable: {', '.join(checked)}")


def split_target(target: str, default_port: int = 443) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return target, default_port


def selected(only: str | None, enabled: Iterable[str]) -> list[str]:
    """Checks to run, in the canonical order; ``only`` is a comma-separated list of names."""
    if not only:
        return [name for name in CHECKS if name in set(enabled)]
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    return [name for name in CHECKS if name in wanted]


def exit_code(results: Iterable[Result]) -> int:
    return 1 if any(result.status == FAIL for result in results) else 0


# Firing alerts as Prometheus's /api/v1/alerts lists them; Watchdog always fires (the dead man's switch).
ALWAYS_FIRING = frozenset(["Watchdog"])


def alerts_result(payload: dict[str, Any]) -> Result:
    """Judge Prometheus's alerts: a firing critical one FAILs, a firing warning WARNs."""
    alerts = (payload.get("data") or {}).get("alerts") or []
    firing = [
        alert
        for alert in alerts
        if alert.get("state") == "firing"
        and (alert.get("labels") or {}).get("alertname") not in ALWAYS_FIRING
    ]
    pending = [alert for alert in alerts if alert.get("state") == "pending"]
    if not firing:
        detail = "no alert firing" + (f" ({len(pending)} pending)" if pending else "")
        return Result("alerts", PASS, detail)

    def shown(alert: dict[str, Any]) -> str:
        labels = alert.get("labels") or {}
        summary = (alert.get("annotations") or {}).get("summary", "")
        return f"{labels.get('alertname', '?')} ({labels.get('severity', '?')}): {summary}".strip()

    text = "; ".join(shown(alert) for alert in firing)
    critical = any((alert.get("labels") or {}).get("severity") == "critical" for alert in firing)
    return Result("alerts", FAIL if critical else WARN, f"firing: {text}")


SPEND_QUERY = "sum(increase(llm_cost_usd_total[24h]))"


def spend_result(payload: dict[str, Any], budget_usd: float) -> Result:
    """The LLM providers' spend over the last 24 hours (Prometheus's instant query of SPEND_QUERY)."""
    results = (payload.get("data") or {}).get("result") or []
    if not results:
        return Result(
            "spend", PASS, f"LLM spend in the last 24 h: $0.00 (no priced call; budget ${budget_usd:g})"
        )
    spent = float(results[0]["value"][1])
    detail = f"LLM spend in the last 24 h: ${spent:.2f} (budget ${budget_usd:g})"
    return Result("spend", WARN if spent > budget_usd else PASS, detail)


def textfile_metrics(
    backup: tuple[float, bool] | None, drill_failed: bool | None, units_failed: int | None
) -> str:
    """The node exporter textfile: what no exporter measures, for the alert rules (toolkit.rules.yml).

    ``backup`` is (the newest complete set's start as a Unix time, 0 for none; whether the backup
    timer has yet to run the first time); None leaves out what this host does not have."""
    lines: list[str] = []

    def metric(name: str, help_text: str, value: float) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value!r}"])

    if backup is not None:
        newest, pending = backup
        metric(
            "toolkit_backup_newest_timestamp_seconds",
            "Start of the newest complete backup set (0: none).",
            newest,
        )
        metric(
            "toolkit_backup_pending",
            "1 before the backup timer's first run (no set expected yet).",
            int(pending),
        )
    if drill_failed is not None:
        metric("toolkit_drill_failed", "1 while the restore drill's unit is failed.", int(drill_failed))
    if units_failed is not None:
        metric(
            "toolkit_units_failed", "systemd units in the failed state (ignored ones left out).", units_failed
        )
    return "\n".join(lines) + "\n"


# --- Checks that talk to the system ---------------------------------------------------------------


def check_api(settings: Settings) -> Result:
    try:
        with urllib.request.urlopen(settings.api_url, timeout=settings.api_timeout) as answer:
            return Result("api", PASS, f"{settings.api_url} answered {answer.status}")
    except urllib.error.HTTPError as error:
        return Result("api", FAIL, f"{settings.api_url} answered {error.code}")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Result("api", FAIL, f"{settings.api_url} did not answer: {reason}")


def check_postgres(settings: Settings) -> Result:
    address = f"{settings.postgres_host}:{settings.postgres_port}"
    program = shutil.which("pg_isready") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_isready"), reverse=True)), None
    )
    if not program:
        return Result("postgres", FAIL, f"pg_isready not found: no PostgreSQL client here to check {address}")
    done = subprocess.run(
        [str(program), "-h", settings.postgres_host, "-p", str(settings.postgres_port), "-t", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    meaning = {0: "accepting connections", 1: "rejecting connections", 2: "no response", 3: "not attempted"}
    detail = f"{address} {meaning.get(done.returncode, f'pg_isready exit {done.returncode}')}"
    return Result("postgres", PASS if done.returncode == 0 else FAIL, detail)


def check_redis(settings: Settings) -> Result:
    address = f"{settings.redis_host}:{settings.redis_port}"
    commands = ([resp_command("AUTH", settings.redis_password)] if settings.redis_password else []) + [
        resp_command("PING")
    ]
    replies: list[str] = []
    try:
        with socket.create_connection((settings.redis_host, settings.redis_port), timeout=3) as conn:
            reader = conn.makefile("rb")
            for command in commands:
                conn.sendall(command)
                replies.append(reader.readline().decode(errors="replace").rstrip("\r\n"))
    except OSError as error:
        return Result("redis", FAIL, f"{address} did not answer: {error}")
    return redis_result(replies, address)


def check_providers(settings: Settings) -> Result:
    failures: dict[str, str] = {}
    context = ssl.create_default_context()
    for target in settings.providers:
        host, port = split_target(target)
        try:
            with (
                socket.create_connection((host, port), timeout=settings.provider_timeout) as conn,
                context.wrap_socket(conn, server_hostname=host),
            ):
                pass
        except (OSError, ssl.SSLError) as error:
            failures[target] = str(error) or type(error).__name__
    return provider_result(failures, list(settings.providers))


class PrometheusDown(Exception):
    """Prometheus did not answer (the message says where and why)."""


def prometheus_vector(settings: Settings, query: str) -> list[dict[str, Any]]:
    """The samples of an instant query: [{"metric": {labels}, "value": [time, "text"]}, ...]."""
    try:
        payload = prometheus_get(settings, "/api/v1/query", query=query)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise PrometheusDown(f"Prometheus at {settings.prometheus_url} did not answer: {error}") from error
    return list((payload.get("data") or {}).get("result") or [])


def prometheus_value(settings: Settings, query: str) -> float | None:
    """The first sample's value of an instant query, None when there is none."""
    samples = prometheus_vector(settings, query)
    return float(samples[0]["value"][1]) if samples else None


def by_mount(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {sample["metric"].get("mountpoint", ""): float(sample["value"][1]) for sample in samples}


def check_memory(settings: Settings) -> Result:
    try:
        total = prometheus_value(settings, 'node_memory_MemTotal_bytes{job="node"}')
        available = prometheus_value(settings, 'node_memory_MemAvailable_bytes{job="node"}')
        psi = prometheus_value(
            settings, 'rate(node_pressure_memory_waiting_seconds_total{job="node"}[5m]) * 100'
        )
    except PrometheusDown as error:
        return Result("memory", FAIL, str(error))
    return memory_result(
        total, available, psi, settings.memory_available_min_percent, settings.memory_psi_some_avg60_max
    )


def check_disk(settings: Settings) -> Result:
    try:
        sizes = prometheus_vector(settings, f"node_filesystem_size_bytes{{{DISK_SELECTOR}}}")
        free = by_mount(prometheus_vector(settings, f"node_filesystem_free_bytes{{{DISK_SELECTOR}}}"))
        available = by_mount(prometheus_vector(settings, f"node_filesystem_avail_bytes{{{DISK_SELECTOR}}}"))
    except PrometheusDown as error:
        return Result("disk", FAIL, str(error))
    return disk_result(disk_usage(sizes, free, available, settings.disk_mounts), settings.disk_max_percent)


def backup_sets(settings: Settings) -> list[str]:
    """Names of the complete sets (a manifest written last) in the backup directory."""
    root = Path(settings.backup_dir)
    if not root.is_dir():
        return []
    return [entry.name for entry in root.iterdir() if (entry / "manifest.json").is_file()]


def backup_timer(settings: Settings) -> BackupTimer:
    service = settings.backup_timer.removesuffix(".timer") + ".service"
    timer_properties = ("ActiveState", "LastTriggerUSec", "NextElapseUSecRealtime")
    return backup_timer_state(
        systemctl("show", *(f"--property={name}" for name in timer_properties), settings.backup_timer),
        systemctl("show", "--property=ExecMainStartTimestampMonotonic", service),
    )


def check_backup(settings: Settings) -> Result:
    sets = backup_sets(settings)
    timer = None if sets else backup_timer(settings)
    return backup_result(
        sets, dt.datetime.now(dt.UTC), settings.backup_max_age_hours, settings.backup_dir, timer
    )


def systemctl(*args: str) -> str:
    """systemctl's output; "" where there is no systemctl."""
    try:
        done = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def check_wal(settings: Settings) -> Result:
    try:
        up = prometheus_value(settings, 'pg_up{job="postgres"}')
        values = {
            name: prometheus_value(settings, f'toolkit_pg_archiver_{name}{{job="postgres"}}')
            for name in WAL_METRICS
        }
    except PrometheusDown as error:
        return Result("wal", FAIL, str(error))
    archiver = {name: value for name, value in values.items() if value is not None}
    return wal_result(up, archiver, settings.wal_max_waiting)


def check_drill(settings: Settings) -> Result:
    load_state = systemctl("show", "-p", "LoadState", "--value", settings.drill_unit)
    return drill_result(settings.drill_unit, load_state, systemctl("is-failed", settings.drill_unit))


def check_units(settings: Settings) -> Result:
    listing = systemctl("list-units", "--state=failed", "--plain", "--no-legend", "--no-pager")
    return units_result(failed_units(listing, settings.units_ignore))


def check_tls(settings: Settings) -> Result:
    endpoint = f"{settings.tls_address}:{settings.tls_port}"
    if not settings.tls_domain:
        return Result("tls", SKIP, "not checked: no TLS endpoint (no domain configured)")
    try:
        conn = socket.create_connection((settings.tls_address, settings.tls_port), timeout=5)
    except OSError as error:
        return Result("tls", SKIP, f"not checked: no TLS endpoint on {endpoint} ({error})")
    try:
        with ssl.create_default_context().wrap_socket(conn, server_hostname=settings.tls_domain) as tls:
            certificate = tls.getpeercert() or {}
    except (OSError, ssl.SSLError) as error:
        return Result("tls", FAIL, f"{settings.tls_domain} on {endpoint}: {error}")
    finally:
        conn.close()
    not_after = str(certificate.get("notAfter", ""))
    if not not_after:
        return Result("tls", FAIL, f"{settings.tls_domain} on {endpoint}: no certificate expiry")
    return tls_result(
        settings.tls_domain, certificate_days_left(not_after, time.time()), settings.tls_min_days
    )


def prometheus_get(settings: Settings, path: str, **params: str) -> dict[str, Any]:
    url = settings.prometheus_url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as answer:
        return dict(json.load(answer))


def check_alerts(settings: Settings) -> Result:
    try:
        return alerts_result(prometheus_get(settings, "/api/v1/alerts"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Result("alerts", FAIL, f"Prometheus at {settings.prometheus_url} did not answer: {error}")


def check_spend(settings: Settings) -> Result:
    try:
        payload = prometheus_get(settings, "/api/v1/query", query=SPEND_QUERY)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Result(
            "spend", WARN, f"not known: Prometheus at {settings.prometheus_url} did not answer: {error}"
        )
    return spend_result(payload, settings.llm_daily_budget_usd)


RUNNERS: dict[str, Callable[[Settings], Result]] = {
    "api": check_api,
    "postgres": check_postgres,
    "redis": check_redis,
    "providers": check_providers,
    "memory": check_memory,
    "disk": check_disk,
    "backup": check_backup,
    "drill": check_drill,
    "wal": check_wal,
    "tls": check_tls,
    "units": check_units,
    "alerts": check_alerts,
    "spend": check_spend,
}


def run_checks(settings: Settings, names: list[str]) -> list[Result]:
    results = []
    for name in names:
        try:
            results.append(RUNNERS[name](settings))
        except Exception as error:  # one broken check must not hide the others
            results.append(Result(name, FAIL, f"check crashed: {type(error).__name__}: {error}"))
    return results


def backup_state(settings: Settings) -> tuple[float, bool]:
    """The newest complete set's start (Unix time, 0 for none) and whether the timer is yet to run."""
    times = sorted(moment for moment in map(set_time, backup_sets(settings)) if moment is not None)
    if times:
        return times[-1].timestamp(), False
    return 0.0, backup_timer(settings).pending


def write_textfile(settings: Settings, path: Path) -> None:
    """Write the textfile atomically (the collector never reads half a file)."""
    backup = backup_state(settings) if "backup" in settings.checks else None
    drill = None
    if "drill" in settings.checks:
        loaded = systemctl("show", "-p", "LoadState", "--value", settings.drill_unit) == "loaded"
        drill = loaded and systemctl("is-failed", settings.drill_unit).strip() == "failed"
    units = None
    if "units" in settings.checks:
        listing = systemctl("list-units", "--state=failed", "--plain", "--no-legend", "--no-pager")
        # A unit that alerts through toolkit-alert itself (OnFailure=, the backups' and drills') has
        # said so once already: SystemdUnitFailed would say it again every repeat interval.
        units = len(
            [
                name
                for name in failed_units(listing, settings.units_ignore)
                if "toolkit-alert@" not in systemctl("show", "-p", "OnFailure", "--value", name)
            ]
        )
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(textfile_metrics(backup, drill, units))
    temporary.chmod(0o644)
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="toolkit-healthcheck", description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    cli.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these checks ({', '.join(CHECKS)})")
    cli.add_argument("--json", action="store_true", help="print the results as JSON")
    cli.add_argument(
        "--textfile", type=Path, help="write the metrics for the node exporter (what the timer runs)"
    )
    args = cli.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        names = selected(args.only, settings.checks)
    except (ValueError, OSError) as error:
        cli.error(str(error))
    if args.textfile:
        write_textfile(settings, args.textfile)
        return 0
    results = run_checks(settings, names)
    if args.json:
        print(json.dumps({"ok": exit_code(results) == 0, "checks": [asdict(r) for r in results]}, indent=2))
    else:
        for result in results:
            print(result.line())
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
