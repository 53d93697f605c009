"""/metrics' job queue gauges, read from PostgreSQL at scrape time: due queued jobs only, the oldest
one's age from run_after, jobs failed in the last hour, and no series at all when the database does not
answer (200 all the same, one warning)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from app_helpers import AppFactory, emptied_engine, migrated_database
from live_servers import PostgresServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from invoice_service import queue_metrics
from invoice_service.routes import health

NAMES = (queue_metrics.QUEUED, queue_metrics.OLDEST_AGE, queue_metrics.FAILED_LAST_HOUR)


@pytest.fixture(scope="module")
def metrics_database_url(pg: PostgresServer) -> str:
    """A database of its own: the gauges count every job of the database."""
    return migrated_database(pg, "queue_metrics_tests")


@pytest.fixture
async def jobs_engine(metrics_database_url: str) -> AsyncIterator[AsyncEngine]:
    async with emptied_engine(metrics_database_url) as engine:
        yield engine


async def add_jobs(engine: AsyncEngine, *jobs: dict[str, str]) -> None:
    """One user and invoice, and a job per dict: its status and SQL expressions (relative to now())
    for run_after, updated_at and finished_at."""
    user, invoice = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash) VALUES (:id, :e, 'x')"),
            {"id": user, "e": f"{user}@example.com"},
        )
        await conn.execute(
            text("INSERT INTO invoices (id, user_id, status, images) VALUES (:id, :u, 'pending', '[]')"),
            {"id": invoice, "u": user},
        )
        for job in jobs:
            await conn.execute(
                text(
                    "INSERT INTO jobs (id, invoice_id, status, attempts, max_attempts, run_after, "
                    "updated_at, finished_at) VALUES (:id, :i, CAST(:status AS job_status), 0, 3, "
                    f"{job.get('run_after', 'now()')}, {job.get('updated_at', 'now()')}, "
                    f"{job.get('finished_at', 'NULL')})"
                ),
                {"id": uuid.uuid4(), "i": invoice, "status": job["status"]},
            )


def gauges(exposition: str) -> dict[str, float]:
    """The queue gauges of an exposition text, by name (each must be a gauge with one sample)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name in NAMES:
            assert family.type == "gauge"
            assert len(family.samples) == 1
            found[family.name] = family.samples[0].value
    return found


async def scrape(app_client: AppFactory, database_url: str) -> dict[str, float]:
    async with app_client(DATABASE_URL=database_url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return gauges(response.text)


async def test_only_due_queued_jobs_count_and_the_oldest_age_comes_from_run_after(
    app_client: AppFactory, jobs_engine: AsyncEngine, metrics_database_url: str
) -> None:
    await add_jobs(
        jobs_engine,
        {"status": "queued", "run_after": "now() - interval '600 seconds'"},
        {"status": "queued", "run_after": "now() - interval '60 seconds'"},
        # created long ago but due only recently (a retry whose backoff ended): age from run_after
        {"status": "queued", "run_after": "now() - interval '10 seconds'"},
        # waiting for their backoff: not late, not counted
        {"status": "queued", "run_after": "now() + interval '300 seconds'"},
        {"status": "queued", "run_after": "now() + interval '1 day'"},
        {"status": "running", "run_after": "now() - interval '3600 seconds'"},
        {"status": "done", "run_after": "now() - interval '7200 seconds'", "finished_at": "now()"},
    )
    async with jobs_engine.begin() as conn:
        await conn.execute(text("UPDATE jobs SET created_at = now() - interval '2 days'"))
    found = await scrape(app_client, metrics_database_url)
    assert found[queue_metrics.QUEUED] == 3
    assert 600 <= found[queue_metrics.OLDEST_AGE] < 630
    assert found[queue_metrics.FAILED_LAST_HOUR] == 0


async def test_failed_jobs_count_within_the_last_hour_only(
    app_client: AppFactory, jobs_engine: AsyncEngine, metrics_database_url: str
) -> None:
    await add_jobs(
        jobs_engine,
        {"status": "failed", "finished_at": "now() - interval '10 minutes'"},
        {"status": "failed", "finished_at": "now() - interval '59 minutes'"},
        {"status": "failed", "finished_at": "now() - interval '61 minutes'"},
        {"status": "failed", "finished_at": "now() - interval '2 hours'"},
        # finished_at wins over a later updated_at
        {"status": "failed", "finished_at": "now() - interval '3 hours'", "updated_at": "now()"},
        # no finished_at: updated_at decides
        {"status": "failed", "updated_at": "now() - interval '5 minutes'"},
        {"status": "failed", "updated_at": "now() - interval '3 hours'"},
        {"status": "done", "finished_at": "now()"},
        # only a future queued job: nothing due, so the oldest age is 0 (not absent)
        {"status": "queued", "run_after": "now() + interval '1 hour'"},
    )
    found = await scrape(app_client, metrics_database_url)
    assert found == {
        queue_metrics.QUEUED: 0,
        queue_metrics.OLDEST_AGE: 0,
        queue_metrics.FAILED_LAST_HOUR: 3,
    }


async def test_an_empty_queue_is_zeros_with_help_text(
    app_client: AppFactory, jobs_engine: AsyncEngine, metrics_database_url: str
) -> None:
    async with app_client(DATABASE_URL=metrics_database_url) as client:
        await client.get("/health")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert gauges(response.text) == dict.fromkeys(NAMES, 0)
    assert f"# HELP {queue_metrics.QUEUED} {queue_metrics.QUEUED_HELP}" in response.text
    assert f"# TYPE {queue_metrics.OLDEST_AGE} gauge" in response.text
    # the process's own metrics are still there
    assert 'http_requests_total{method="GET",route="/health",status="200"}' in response.text


def _warnings(out: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == "queue_metrics_unavailable"]


async def test_database_down_leaves_the_gauges_out_but_answers(
    app_client: AppFactory, closed_port_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with app_client(DATABASE_URL=closed_port_url) as client:
        await client.get("/health")
        capsys.readouterr()
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'http_requests_total{method="GET",route="/health",status="200"}' in response.text
    for name in NAMES:
        assert name not in response.text
    assert gauges(response.text) == {}
    warnings = _warnings(capsys.readouterr().out)
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"


async def test_a_slow_query_times_out_and_the_next_scrape_works(
    app_client: AppFactory,
    jobs_engine: AsyncEngine,
    metrics_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await add_jobs(jobs_engine, {"status": "queued", "run_after": "now() - interval '5 seconds'"})
    async with app_client(DATABASE_URL=metrics_database_url) as client:
        with monkeypatch.context() as patch:
            patch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.3)
            patch.setattr(
                queue_metrics,
                "QUERY",
                text("SELECT 1 AS queued, 0 AS oldest_age_seconds, 0 AS failed_last_hour FROM pg_sleep(3)"),
            )
            capsys.readouterr()
            slow = await client.get("/metrics")
        assert slow.status_code == 200
        assert gauges(slow.text) == {}
        assert len(_warnings(capsys.readouterr().out)) == 1
        # the pool is fine afterwards
        again = await client.get("/metrics")
    assert again.status_code == 200
    found = gauges(again.text)
    assert found[queue_metrics.QUEUED] == 1
    assert 5 <= found[queue_metrics.OLDEST_AGE] < 30
    assert found[queue_metrics.FAILED_LAST_HOUR] == 0


async def test_multiprocess_mode_appends_the_gauges_and_writes_no_file_for_them(
    app_client: AppFactory,
    jobs_engine: AsyncEngine,
    metrics_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    await add_jobs(jobs_engine, {"status": "failed", "finished_at": "now()"})
    found = await scrape(app_client, metrics_database_url)
    assert found == {queue_metrics.QUEUED: 0, queue_metrics.OLDEST_AGE: 0, queue_metrics.FAILED_LAST_HOUR: 1}
    assert not any(name in path.name for path in directory.iterdir() for name in NAMES)
