"""Monitoring in the two-host layout: each host watches its own part, and a dead LLM provider on the
app host reaches the alert channel once.

The app host's worker tries OpenAI's API first, at a port nothing listens on (group_vars/vps/split.yml),
then the offline OCR: every receipt is still read, and after 5 failed calls the provider's circuit
opens, which the worker's metrics show and Prometheus alerts on (ProviderCircuitOpen).
"""

from __future__ import annotations

import os
import time

import pytest
import testinfra
from conftest import Client, prometheus_api, prometheus_query, unique_photo, wait_for, webhook_posts
from test_split import DB_HOST


@pytest.fixture(scope="module")
def db() -> testinfra.host.Host:
    return testinfra.get_host(
        f"ansible://{DB_HOST}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}"
    )


def _jobs_up(host: testinfra.host.Host) -> dict[str, str]:
    targets = prometheus_api(host, "/api/v1/targets")["data"]["activeTargets"]
    return {target["labels"]["job"]: target["health"] for target in targets}


def test_each_host_scrapes_its_own_part(host, db) -> None:
    app_jobs = {"prometheus", "alertmanager", "node", "blackbox", "redis", "api", "worker", "probe_http"}
    db_jobs = {"prometheus", "alertmanager", "node", "blackbox", "postgres"}
    for machine, jobs in ((host, app_jobs), (db, db_jobs)):
        wait_for(lambda m=machine: set(_jobs_up(m).values()) == {"up"}, 120, "every target up")
        assert set(_jobs_up(machine)) == jobs
    # The db host's exporter reads PostgreSQL as the prometheus role; the app host's API reads the
    # job queue from the database on the other host.
    assert prometheus_query(db, "pg_up")[0]["value"][1] == "1"
    assert prometheus_query(host, "toolkit_jobs_queued")


def test_a_dead_llm_provider_opens_its_circuit_and_alerts_once(host, webhook: str) -> None:
    client = Client(host.backend.host)
    for _ in range(6):
        detail = client.wait_until_settled(client.upload(unique_photo()))
        assert detail["status"] == "extracted", detail
    state = prometheus_query(host, 'max(extraction_circuit_state{provider="openai"})')
    assert state[0]["value"][1] in ("1", "2"), state
    name = host.backend.host

    def fired() -> list[dict]:
        return [post for post in webhook_posts(host) if f"ProviderCircuitOpen on {name}" in post["title"]]

    wait_for(fired, 180, "ProviderCircuitOpen at the webhook")
    alert = fired()[0]
    assert alert["title"].startswith(f"WARNING ProviderCircuitOpen on {name}"), alert
    assert "provider=openai" in alert["body"], alert
    assert alert["priority"] == "high"
    # The alert repeats after hours (monitoring_alert_repeat_interval), not at every half-open probe.
    time.sleep(30)
    assert len(fired()) == 1, fired()
