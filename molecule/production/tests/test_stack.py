"""The whole stack as playbooks/site.yml leaves a bare host with the production inventory, used.

Production publishes the API through Traefik only, and no Traefik image can be had on the test
bench: requests are made on the host itself (docker exec, the bench's own access) to the API
container's loopback port (app_local_port), the port monitoring's api check uses. What another
machine reaches is in test_production.py and test_edge.py.
"""

from __future__ import annotations

import time

import pytest
from conftest import API_URL, Client, api_call, unique_photo

# What the receipt in conftest.RECEIPT says (app/tests/extraction/receipt_images.py: SUPERMARKET).
RECEIPT_TOTAL = "200.43"
RECEIPT_TAX_ID = "11.222.333/0001-81"
RECEIPT_ITEMS = 8
WORKER = "invoice-service-worker-1"
# The worker kill runs on one host: it takes minutes of OCR under a loaded machine, and what it
# proves (a job claimed by a killed worker is taken again) does not depend on the Debian release.
KILL_HOST = "production-debian13"


@pytest.fixture(scope="module")
def client(host) -> Client:
    return Client(host.backend.host)


def test_ready_answers_on_the_loopback_port(host) -> None:
    status, body = api_call(host.backend.host, "GET", f"{API_URL}/health/ready")
    assert status == 200, body
    assert body["status"] == "ok", body
    assert body["checks"]["database"]["status"] == "ok", body


def test_a_receipt_photo_is_extracted_offline_and_listed(client: Client) -> None:
    invoice_id = client.upload(unique_photo())
    detail = client.wait_until_settled(invoice_id)
    assert detail["status"] == "extracted", detail
    assert detail["provider"] == "ocr", detail
    assert detail["store_tax_id"] == RECEIPT_TAX_ID, detail
    assert detail["total"] == RECEIPT_TOTAL, detail
    assert len(detail["items"]) >= RECEIPT_ITEMS - 1, detail
    listed = client.get("/invoices")
    assert invoice_id in [invoice["id"] for invoice in listed["items"]], listed


def test_a_worker_killed_mid_job_loses_no_job(host, client: Client) -> None:
    if host.backend.host != KILL_HOST:
        pytest.skip(f"runs on {KILL_HOST} only (minutes of OCR; the promise does not depend on the release)")
    # Two photos each, none seen before: each job runs the OCR twice, one photo at a time
    # (OCR_MAX_CONCURRENCY 1), a window wide enough to kill the worker in.
    invoice_ids = [client.upload(unique_photo(), unique_photo()) for _ in range(2)]
    # Kill the worker as soon as it has claimed one of them (one list request per poll: the
    # API's default rate limit is 100 requests a minute).
    deadline = time.monotonic() + 120
    statuses: set[str] = set()
    while time.monotonic() < deadline:
        listed = client.get("/invoices?page_size=50")["items"]
        statuses = {invoice["status"] for invoice in listed if invoice["id"] in invoice_ids}
        if "processing" in statuses:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no job was claimed within 120 s: {statuses}")
    host.check_output(f"docker kill --signal KILL {WORKER}")
    host.check_output(f"docker start {WORKER}")
    for invoice_id in invoice_ids:
        detail = client.wait_until_settled(invoice_id)
        assert detail["status"] == "extracted", detail
        assert detail["total"] == RECEIPT_TOTAL, detail
    retried = [client.get(f"/invoices/{i}")["job"]["attempts"] for i in invoice_ids]
    assert max(retried) >= 2, f"no job was taken again after the kill: attempts {retried}"
