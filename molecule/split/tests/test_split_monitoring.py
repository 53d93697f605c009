"""Monitoring in the two-host layout: each host watches its own part, and a dead LLM provider on the
app host reaches the alert channel once, and once RESOLVED when it answers again.

The app host's worker tries OpenAI's API first, at a port of the app host nothing listens on
(group_vars/vps/split.yml), then the offline OCR: every receipt is still read, and after 5 failed
calls the provider's circuit opens, which the worker's metrics show and Prometheus alerts on
(ProviderCircuitOpen). Then an OpenAI-compatible stand-in starts at that address: each circuit's next
probe succeeds and closes it, and the alert resolves.
"""

from __future__ import annotations

import os
import shlex
import time

import pytest
import testinfra
from conftest import Client, prometheus_api, prometheus_query, resolve, unique_photo, wait_for, webhook_posts
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
        wait_for(lambda m=machine: set(_jobs_up(m).values()) == {"up"}, 180, "every target up")
        assert set(_jobs_up(machine)) == jobs
    # The db host's exporter reads PostgreSQL as the prometheus role; the app host's API reads the
    # job queue from the database on the other host.
    assert prometheus_query(db, "pg_up")[0]["value"][1] == "1"
    assert prometheus_query(host, "toolkit_jobs_queued")


# The provider back: an OpenAI-compatible chat-completions answer (what the app parses), on the app
# host's bridge address and the port OPENAI_BASE_URL names (split.yml). `docker exec` cannot enter a
# container on these nested test hosts, so the stand-in runs on the host, where the provider's
# address already points.
PROVIDER_PORT = 8799
_PROVIDER_BACK = """
import http.server, json, sys
ITEM = {"description": "Coffee", "quantity": "1", "unit_price": "12.34", "total": "12.34"}
ANSWER = json.dumps({"store_name": "Provider back", "total": "12.34", "items": [ITEM]})
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 900, "completion_tokens": 60},
                           "choices": [{"message": {"role": "assistant", "content": ANSWER}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def _open_circuits(host: testinfra.host.Host) -> list[str]:
    """The worker replicas whose OpenAI circuit Prometheus last saw open (2) or half-open (1)."""
    found = prometheus_query(host, 'extraction_circuit_state{provider="openai"} > 0')
    return [sample["metric"]["instance"] for sample in found]


def test_a_dead_llm_provider_opens_its_circuit_alerts_once_and_resolves_when_it_answers(
    host, webhook: str
) -> None:
    client = Client(host.backend.host)
    for _ in range(6):
        detail = client.wait_until_settled(client.upload(unique_photo()))
        assert detail["status"] == "extracted", detail
    state = prometheus_query(host, 'max(extraction_circuit_state{provider="openai"})')
    assert state[0]["value"][1] in ("1", "2"), state
    name = host.backend.host

    def fired() -> list[dict]:
        return [post for post in webhook_posts(host) if f"ProviderCircuitOpen on {name}" in post["title"]]

    wait_for(fired, 300, "ProviderCircuitOpen at the webhook")
    alert = fired()[0]
    assert alert["title"].startswith(f"WARNING ProviderCircuitOpen on {name}"), alert
    assert "provider=openai" in alert["body"], alert
    assert alert["priority"] == "high"
    # The alert repeats after hours (monitoring_alert_repeat_interval), not at every half-open probe.
    time.sleep(30)
    assert len(fired()) == 1, fired()

    # The provider answers again: each replica's next call after its circuit's reset time (60 s) is
    # the probe, which succeeds and closes the circuit; receipts are read by OpenAI again.
    address = resolve(host, "app_host_address")
    host.check_output(f"printf %s {shlex.quote(_PROVIDER_BACK)} > /var/tmp/llm_provider.py")
    host.run("systemctl stop test-llm-provider")
    host.check_output(
        f"systemd-run --unit test-llm-provider python3 /var/tmp/llm_provider.py {address} {PROVIDER_PORT}"
    )
    providers = []
    deadline = time.monotonic() + 300
    while _open_circuits(host) and time.monotonic() < deadline:
        detail = client.wait_until_settled(client.upload(unique_photo()))
        assert detail["status"] == "extracted", detail
        providers.append(detail["provider"])
        time.sleep(10)  # a scrape
    assert not _open_circuits(host), "a worker's circuit stayed open with its provider answering"
    assert "openai" in providers, providers

    def resolved() -> list[dict]:
        return [post for post in fired() if post["title"].startswith("RESOLVED ")]

    wait_for(resolved, 180, "ProviderCircuitOpen resolved at the webhook")
    assert len([post for post in fired() if not post["title"].startswith("RESOLVED ")]) == 1, fired()
    host.run("systemctl stop test-llm-provider")
