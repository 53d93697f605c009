"""/health, /health/ready (503 without the database, degraded without Redis), /metrics, request ids
and what the JSON logs never contain."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from app_helpers import AppFactory
from live_servers import free_port
from redis.asyncio import Redis

from invoice_service import circuit_report


async def test_liveness_touches_nothing(app_client: AppFactory, closed_port_url: str) -> None:
    async with app_client(DATABASE_URL=closed_port_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as c:
        response = await c.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def _command_calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_ready_when_everything_is_up(client: httpx.AsyncClient) -> None:
    """Database and Redis up and every reporting worker's circuits closed: "ok", read from one key."""
    redis = client.app.state.core.redis  # type: ignore[attr-defined]
    await redis.delete(circuit_report.KEY)
    await circuit_report.publish(redis, "worker-a", {"ocr": "closed", "openai": "closed"}, 30)
    scans_before = await _command_calls(redis, "scan")
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok", body
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["providers"] == {"ocr": "closed", "openai": "closed"}
    assert body["checks"]["workers_reporting"] == 1
    assert await _command_calls(redis, "scan") == scans_before  # no walk over the keyspace
    await redis.delete(circuit_report.KEY)


async def test_ready_names_the_release_it_runs(app_client: AppFactory) -> None:
    """The toolkit's release swap asks which release answered (RELEASE, set per release)."""
    async with app_client(RELEASE="0.1.0-0123456789") as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["release"] == "0.1.0-0123456789"


async def test_ready_is_503_when_the_database_is_down(app_client: AppFactory, closed_port_url: str) -> None:
    async with app_client(DATABASE_URL=closed_port_url) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["database"]["status"] == "error"


async def test_ready_is_degraded_but_200_when_redis_is_down(app_client: AppFactory) -> None:
    async with app_client(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as client:
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["checks"]["redis"]["status"] == "error"
        # and the API keeps serving, rate limits included (in memory)
        assert (
            await client.post("/auth/login", json={"email": "x@example.com", "password": "12345678"})
        ).status_code == 401


async def test_ready_reports_the_worst_circuit_per_provider_and_no_worker_names(
    client: httpx.AsyncClient,
) -> None:
    redis = client.app.state.core.redis  # type: ignore[attr-defined]
    await redis.delete(circuit_report.KEY)
    await circuit_report.publish(redis, "vps-1:4242:abc123", {"openai": "open", "ocr": "closed"}, 30)
    await circuit_report.publish(redis, "vps-1:4343:def456", {"openai": "closed", "ocr": "closed"}, 30)
    # a report older than its freshness window (a worker that died without withdrawing) is ignored
    stale = json.dumps({"at": time.time() - 3600, "states": {"ocr": "open"}})
    await redis.hset(circuit_report.KEY, "vps-1:99:dead00", stale)
    try:
        response = await client.get("/health/ready")
    finally:
        await redis.delete(circuit_report.KEY)
    body = response.json()
    assert body["checks"]["providers"] == {"ocr": "closed", "openai": "open"}
    assert body["checks"]["workers_reporting"] == 2
    assert body["status"] == "degraded"
    assert "vps-1" not in response.text
    assert "4242" not in response.text


async def test_a_stopped_worker_withdraws_its_report(client: httpx.AsyncClient) -> None:
    redis = client.app.state.core.redis  # type: ignore[attr-defined]
    await redis.delete(circuit_report.KEY)
    await circuit_report.publish(redis, "w1", {"ocr": "open"}, 30)
    await circuit_report.withdraw(redis, "w1")
    body = (await client.get("/health/ready")).json()
    assert body["checks"]["providers"] == "unknown (no worker reported)"
    assert body["checks"]["workers_reporting"] == 0


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/health",status="200"}' in response.text


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert len(generated.headers["x-request-id"]) == 32


async def test_logs_are_json_with_request_id_and_no_secrets(
    app_client: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "super-secret-password-123"
    async with app_client() as client:
        await client.post("/auth/register", json={"email": "logs@example.com", "password": password})
        login = await client.post(
            "/auth/login",
            json={"email": "logs@example.com", "password": password},
            headers={"X-Request-ID": "req-login-1"},
        )
        token = login.json()["access_token"]
        await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records, "no JSON log lines"
    assert any(r.get("request_id") == "req-login-1" and r["event"] == "login_succeeded" for r in records)
    assert password not in out
    assert token not in out
