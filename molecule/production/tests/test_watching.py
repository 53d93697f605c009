"""The monitoring stack on the production inventory's hosts (Debian 12 and 13, over SSH).

site.yml installed Prometheus, the exporters, Alertmanager and toolkit-alert-relay on each host, in
the budget's monitoring share and on loopback only; the bench speeds Prometheus and Alertmanager up
(host_vars/_shared/bench.yml) and stands a webhook listener where the operator's ntfy topic would be.
These tests look at what an operator relies on: every part of the stack scraped, nothing of it
reachable from another machine, its memory inside its share, and two outages reaching the webhook
as one alert each, then one RESOLVED: a stopped PostgreSQL (PostgresDown), and receipts waiting
with no worker to take them (JobQueueStale). The file runs after test_production.py and
test_stack.py on purpose: the outages it causes leave alerts firing for minutes (a stopped
PostgreSQL makes the API answer 5xx: ApiErrors5xx), which the health check there would report.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import Client, prometheus_api, prometheus_query, resolve, tcp_state_on, unique_photo, wait_for

NETWORK = "production-bench"
LISTENER = "production-alerts"
# Every scrape job on a host running both parts, with Traefik's image out of the bench's reach
# (traefik_image_required: false: no traefik job, no certificate probe).
JOBS = {"prometheus", "alertmanager", "node", "blackbox", "postgres", "redis", "api", "worker", "probe_http"}


@pytest.fixture(scope="module")
def address(host) -> str:
    return str(resolve(host, "ansible_host"))


def _received(title_part: str) -> list[dict]:
    """The alerts the bench's webhook listener received whose title holds ``title_part``."""
    logs = subprocess.run(["docker", "logs", LISTENER], capture_output=True, text=True, check=True).stdout
    alerts = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [alert for alert in alerts if title_part in alert["headers"].get("Title", "")]


def test_every_part_of_the_stack_is_scraped(host) -> None:
    def targets() -> list[dict]:
        return prometheus_api(host, "/api/v1/targets")["data"]["activeTargets"]

    def value(expression: str) -> str | None:
        result = prometheus_query(host, expression)
        return result[0]["value"][1] if result else None

    wait_for(lambda: all(target["health"] == "up" for target in targets()), 120, "every target up")
    assert {target["labels"]["job"] for target in targets()} == JOBS
    # What each exporter reads: PostgreSQL through the prometheus role (with the toolkit's queries and
    # WAL archiving on), Redis with its password, the job queue from the API, the worker's metrics.
    # The restores before this file restart PostgreSQL: the scrape taken meanwhile says pg_up 0 until
    # the next one (10 s apart on the bench), so the reading is awaited, as an operator would.
    wait_for(lambda: value("pg_up") == "1", 60, "pg_up 1: the PostgreSQL exporter reaches PostgreSQL")
    assert float(prometheus_query(host, "toolkit_pg_connections")[0]["value"][1]) >= 1
    assert prometheus_query(host, "toolkit_pg_archiver_enabled")[0]["value"][1] == "1"
    assert prometheus_query(host, "redis_up")[0]["value"][1] == "1"
    assert prometheus_query(host, "toolkit_jobs_queued")[0]["value"][1] == "0"
    assert prometheus_query(host, 'up{job="worker"}'), "no worker replica scraped"


@pytest.mark.parametrize("port", [9090, 9093, 9094, 9095, 9100, 9111, 9115, 9121, 9187])
def test_no_monitoring_port_answers_from_another_machine(address: str, port: int) -> None:
    assert tcp_state_on(NETWORK, address, port) != "open", f"port {port} answers from another machine"


def test_the_stack_stays_within_its_share(host) -> None:
    share_mb = int(str(resolve(host, "budget_plan.monitoring_mb")))
    memory_max = int(host.check_output("systemctl show -p MemoryMax --value toolkit-monitoring.slice"))
    assert memory_max == share_mb * 1024 * 1024
    current = int(host.check_output("systemctl show -p MemoryCurrent --value toolkit-monitoring.slice"))
    print(f"{host.backend.host}: toolkit-monitoring.slice uses {current / 1048576:.1f} MiB of {share_mb} MiB")
    assert 0 < current < memory_max * 0.8


# The outages run on one host, Debian 13's: the path an alert takes does not change with the Debian
# release, and each costs minutes of waiting, which Debian 13's test worker has to spare (Debian 12's
# runs the release tests of test_app.py meanwhile).
@pytest.mark.on_host("production-debian13", reason="the alert's path is the same on both releases")
def test_a_stopped_postgresql_alerts_once_then_resolves(host) -> None:
    name = host.backend.host
    # The cluster's major version: 15 on Debian 12, 17 on Debian 13.
    service = f"postgresql@{host.check_output('ls /etc/postgresql')}-main"
    title = f"PostgresDown on {name}"
    before = len(_received(title))
    host.check_output(f"systemctl stop {service}")
    try:
        wait_for(lambda: len(_received(title)) > before, 180, f"{title} at the webhook")
    finally:
        host.check_output(f"systemctl start {service}")
    fired = _received(title)[before]
    assert fired["headers"]["Title"].startswith(f"CRITICAL {title}"), fired
    assert fired["headers"].get("Priority") == "urgent", fired
    assert "docs/MONITORING.md#postgresdown" in fired["body"], fired
    wait_for(lambda: _received(f"RESOLVED {title}"), 120, f"RESOLVED {title}")
    # One FIRING (the repeat interval is hours) and one RESOLVED for this outage.
    assert len(_firing(title)) == before + 1
    wait_for(lambda: host.run("toolkit-healthcheck --only api,postgres").rc == 0, 120, "the app ready again")


def _firing(title: str) -> list[dict]:
    return [alert for alert in _received(title) if not alert["headers"]["Title"].startswith("RESOLVED")]


@pytest.mark.on_host("production-debian13", reason="the alert's path is the same on both releases")
def test_a_queue_no_worker_takes_alerts_once_then_resolves(host) -> None:
    """The workers stopped, a receipt waits: once the oldest due job is older than
    monitoring_jobs_oldest_age_max_seconds (10 min; the test backdates the job rather than wait),
    JobQueueStale reaches the webhook; the workers back, the job is done and the alert resolves."""
    name = host.backend.host
    title = f"JobQueueStale on {name}"
    before = len(_firing(title))
    client = Client(name)
    database = resolve(host, "postgres_app_database")
    host.check_output("toolkit-app stop worker")
    try:
        invoice_id = client.upload(unique_photo())
        host.check_output(
            f"runuser -u postgres -- psql -XAtq -d {database} -c "
            "\"UPDATE jobs SET run_after = now() - interval '20 minutes' WHERE status = 'queued'\""
        )
        wait_for(lambda: len(_firing(title)) > before, 180, f"{title} at the webhook")
    finally:
        host.check_output("toolkit-app start worker")
    fired = _firing(title)[before]
    assert fired["headers"]["Title"].startswith(f"CRITICAL {title}"), fired
    assert "docs/MONITORING.md#jobqueuestale" in fired["body"], fired
    assert client.wait_until_settled(invoice_id)["status"] == "extracted"
    wait_for(lambda: _received(f"RESOLVED {title}"), 120, f"RESOLVED {title}")
    assert len(_firing(title)) == before + 1
