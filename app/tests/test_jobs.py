"""The durable queue: SKIP LOCKED claims, lease expiry, attempts, and a job that survives a worker
killed with SIGKILL in the middle of it (real worker processes, fake OpenAI-compatible provider)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_helpers import PNG_1PX, emptied_engine, migrated_database, register_and_login, running_app
from fake_openai_server import RECEIPT_ANSWER, completion, fake_llm
from live_servers import PostgresServer, free_port
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from invoice_service import jobs
from invoice_service.extraction import ErrorCategory, build_chain
from invoice_service.settings import Settings
from invoice_service.worker import Worker


@pytest.fixture(scope="module")
def queue_database_url(pg: PostgresServer) -> str:
    """A database of its own: no job left queued by other tests can be claimed here."""
    return migrated_database(pg, "queue_tests")


@pytest.fixture
async def queue_engine(queue_database_url: str) -> AsyncIterator[AsyncEngine]:
    async with emptied_engine(queue_database_url) as engine:
        yield engine


@pytest.fixture
def sessions(queue_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(queue_engine, expire_on_commit=False)


async def add_job(engine: AsyncEngine, max_attempts: int = 3, image: Path | None = None) -> tuple[str, str]:
    """A user, an invoice and its queued job; returns (invoice id, job id)."""
    user, invoice, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    images = f'[{{"path": "{image}", "content_type": "image/png"}}]' if image else "[]"
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash) VALUES (:id, :e, 'x')"),
            {"id": user, "e": f"{user}@example.com"},
        )
        await conn.execute(
            text(
                "INSERT INTO invoices (id, user_id, status, images) "
                "VALUES (:id, :u, 'pending', CAST(:images AS jsonb))"
            ),
            {"id": invoice, "u": user, "images": images},
        )
        await conn.execute(
            text(
                "INSERT INTO jobs (id, invoice_id, status, attempts, max_attempts) "
                "VALUES (:id, :i, 'queued', 0, :m)"
            ),
            {"id": job, "i": invoice, "m": max_attempts},
        )
    return str(invoice), str(job)


async def job_row(engine: AsyncEngine, job_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})).one()


async def test_claim_skips_rows_locked_by_another_claimer(
    queue_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, first = await add_job(queue_engine)
    _, second = await add_job(queue_engine)
    async with sessions() as other:  # another worker, inside its claim transaction, holding `first`
        await other.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        async with sessions() as session:
            claimed = await asyncio.wait_for(jobs.claim(session, "w1", 30), timeout=5)
        assert claimed is not None
        assert str(claimed.id) == second  # not blocked, not the locked row
        await other.rollback()
    async with sessions() as session:
        again = await jobs.claim(session, "w2", 30)
    assert again is not None
    assert str(again.id) == first
    async with sessions() as session:
        assert await jobs.claim(session, "w3", 30) is None  # both are running under a live lease


async def test_expired_lease_makes_the_job_claimable_again(
    queue_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, job_id = await add_job(queue_engine)
    async with sessions() as session:
        first = await jobs.claim(session, "dead-worker", 2)
    assert first is not None
    assert first.attempts == 1
    async with sessions() as session:
        assert await jobs.claim(session, "w2", 30) is None
    await asyncio.sleep(2.3)
    async with sessions() as session:
        retaken = await jobs.claim(session, "w2", 30)
    assert retaken is not None
    assert str(retaken.id) == job_id
    assert retaken.attempts == 2
    async with sessions() as session:  # the dead worker can no longer renew or finish it
        assert not await jobs.heartbeat(session, first, "dead-worker", 30)


async def test_a_stale_claim_of_the_same_worker_can_neither_renew_nor_record_a_failure(
    queue_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The holder is (worker, attempt): a worker that re-claims its own expired job (its heartbeats
    failed while the database was away) must not let the stale attempt renew the lease or requeue the
    job under the new attempt's feet."""
    invoice_id, job_id = await add_job(queue_engine)
    async with sessions() as session:
        stale = await jobs.claim(session, "w1", 0.2)
    assert stale is not None
    await asyncio.sleep(0.4)
    async with sessions() as session:
        current = await jobs.claim(session, "w1", 30)
    assert current is not None
    assert (str(current.id), current.attempts) == (job_id, 2)
    before = await job_row(queue_engine, job_id)

    async with sessions() as session:
        assert not await jobs.heartbeat(session, stale, "w1", 300)
    async with sessions() as session:
        assert await jobs.mark_failed_attempt(session, stale, "w1", "internal error", 0) is None
    async with sessions() as session:
        assert not await jobs.still_held(session, stale, "w1")

    after = await job_row(queue_engine, job_id)
    assert (after.status, after.attempts, after.locked_by) == ("running", 2, "w1")
    assert after.locked_until == before.locked_until  # not renewed by the stale heartbeat
    assert after.last_error is None
    async with queue_engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM invoices WHERE id = :id"), {"id": invoice_id})
        ).scalar_one()
    assert status == "processing"
    async with sessions() as session:  # the current claim still holds it
        assert await jobs.heartbeat(session, current, "w1", 30)


async def test_last_attempt_lost_fails_job_and_invoice(
    queue_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    invoice_id, job_id = await add_job(queue_engine, max_attempts=1)
    async with sessions() as session:
        assert await jobs.claim(session, "dead-worker", 0.2) is not None
    await asyncio.sleep(0.4)
    async with sessions() as session:
        assert await jobs.fail_exhausted(session) == 1
    row = await job_row(queue_engine, job_id)
    assert row.status == "failed"
    assert "lease expired" in row.last_error
    async with queue_engine.connect() as conn:
        invoice = (
            await conn.execute(
                text("SELECT status, extraction_error FROM invoices WHERE id = :id"), {"id": invoice_id}
            )
        ).one()
    assert invoice.status == "failed"
    assert "lease expired" in invoice.extraction_error


async def test_failing_provider_exhausts_attempts_then_fails_with_the_error(
    queue_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    queue_database_url: str,
    tmp_path: Path,
) -> None:
    photo = tmp_path / "0.png"
    photo.write_bytes(PNG_1PX)
    invoice_id, job_id = await add_job(queue_engine, max_attempts=2, image=photo)
    with fake_llm(lambda _n: (500, {"error": "boom"})) as llm:
        settings = Settings(
            DATABASE_URL=queue_database_url,
            REDIS_URL="",
            EXTRACTION_PROVIDERS="openai",
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=llm.base_url,
            LLM_RETRY_ATTEMPTS=1,
            JOB_RETRY_BACKOFF_SECONDS=0,
            WORKER_POLL_SECONDS=0.1,
        )
        chain = build_chain(settings, None)
        worker = Worker(settings, sessions, chain, None)
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 20
            while (await job_row(queue_engine, job_id)).status != "failed":
                assert time.monotonic() < deadline, "job did not fail in time"
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await task
            await chain.aclose()
        assert len(llm.requests) == 2  # one call per attempt
    row = await job_row(queue_engine, job_id)
    assert row.attempts == 2
    # Users see the category; the provider's answer ("boom", the status) is only in the worker's log.
    assert row.last_error == ErrorCategory.UNAVAILABLE.value == "extraction failed: providers unavailable"
    async with queue_engine.connect() as conn:
        invoice = (
            await conn.execute(
                text("SELECT status, extraction_error FROM invoices WHERE id = :id"), {"id": invoice_id}
            )
        ).one()
    assert (invoice.status, invoice.extraction_error) == ("failed", ErrorCategory.UNAVAILABLE.value)


def worker_env(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")}
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "UPLOAD_DIR",
        "EXTRACTION_PROVIDERS",
        "OPENAI_BASE_URL",
        "LLM_TIMEOUT_SECONDS",
        "LLM_RETRY_ATTEMPTS",
        "LLM_CACHE_TTL",
        "JOB_LEASE_SECONDS",
        "WORKER_POLL_SECONDS",
        "JOB_RETRY_BACKOFF_SECONDS",
    ):
        env[name] = str(getattr(settings, name))
    env["OPENAI_API_KEY"] = "test-key"
    env["WORKER_METRICS_PORT"] = str(settings.WORKER_METRICS_PORT)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoice_service.worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
async def test_job_survives_worker_sigkill_mid_job(
    make_settings: Callable[..., Settings],
    queue_database_url: str,
    queue_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    def provider(number: int) -> tuple[int, dict[str, object]]:
        if number == 1:
            time.sleep(15)  # the first worker is killed while it waits for this answer
        return 200, completion(RECEIPT_ANSWER)

    with fake_llm(provider) as llm:
        settings = make_settings(
            DATABASE_URL=queue_database_url,
            EXTRACTION_PROVIDERS="openai",
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=llm.base_url,
            LLM_TIMEOUT_SECONDS=60,
            LLM_RETRY_ATTEMPTS=1,
            LLM_CACHE_TTL=0,
            JOB_LEASE_SECONDS=4,
            WORKER_POLL_SECONDS=0.2,
            JOB_RETRY_BACKOFF_SECONDS=0,
            WORKER_METRICS_PORT=free_port(),
        )
        env = worker_env(settings)
        log = tmp_path / "workers.log"
        async with running_app(settings) as client:
            auth = await register_and_login(client)
            accepted = await client.post(
                "/invoices/upload", headers=auth, files=[("files", ("r.png", PNG_1PX, "image/png"))]
            )
            assert accepted.status_code == 202
            invoice_id, job_id = accepted.json()["invoice_id"], accepted.json()["job_id"]

            first = start_worker(env, log)
            try:
                await asyncio.to_thread(llm.wait_for_requests, 1, 30)
                row = await job_row(queue_engine, job_id)
                assert (row.status, row.attempts) == ("running", 1)
                assert (await client.get(f"/invoices/{invoice_id}", headers=auth)).json()[
                    "status"
                ] == "processing"
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
            assert first.returncode == -signal.SIGKILL
            assert (await job_row(queue_engine, job_id)).status == "running"  # still there, lease held

            second = start_worker(env, log)
            try:
                detail = await wait_for_status(client, auth, invoice_id, "extracted", timeout=30)
                metrics = httpx.get(
                    f"http://127.0.0.1:{settings.WORKER_METRICS_PORT}/metrics", timeout=5
                ).text
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=20)
            assert second.returncode == 0, log.read_text()[-3000:]

    assert detail["store_name"] == "Supermercado Fake"
    assert [i["description"] for i in detail["items"]] == ["Arroz 5kg", "Banana"]
    assert detail["job"]["status"] == "done"
    assert detail["job"]["attempts"] == 2
    assert len(llm.requests) == 2
    assert 'extraction_jobs_total{outcome="done"} 1.0' in metrics  # the second worker's own metrics


async def wait_for_status(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str, status: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        detail = (await client.get(f"/invoices/{invoice_id}", headers=auth)).json()
        if detail["status"] == status:
            return detail
        assert time.monotonic() < deadline, f"invoice still {detail['status']}: {detail}"
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_offline_ocr_end_to_end_upload_extract_confirm_dashboard(
    make_settings: Callable[..., Settings],
    queue_database_url: str,
    queue_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """No API key anywhere: the default chain is Tesseract, and a photographed receipt becomes an
    invoice the user confirms and sees in the dashboard."""
    sys.path.insert(0, str(Path(__file__).parent / "extraction"))
    from receipt_images import SUPERMARKET, render

    photo = render(SUPERMARKET, Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"))
    settings = make_settings(
        DATABASE_URL=queue_database_url,
        EXTRACTION_PROVIDERS="openrouter,gemini,openai,ocr",
        WORKER_POLL_SECONDS=0.1,
    )
    async with running_app(settings) as client:
        auth = await register_and_login(client)
        accepted = await client.post(
            "/invoices/upload", headers=auth, files=[("files", ("receipt.png", photo, "image/png"))]
        )
        assert accepted.status_code == 202
        invoice_id = accepted.json()["invoice_id"]
        redis = client.app.state.core.redis  # type: ignore[attr-defined]
        chain = build_chain(settings, redis)
        worker = Worker(settings, sessions, chain, redis)
        task = asyncio.create_task(worker.run())
        try:
            detail = await wait_for_status(client, auth, invoice_id, "extracted", timeout=90)
        finally:
            worker.stop()
            await task
            await chain.aclose()
        assert detail["provider"] == "ocr"
        assert detail["store_tax_id"] == SUPERMARKET.cnpj
        assert Decimal(detail["total"]) == SUPERMARKET.total
        assert len(detail["items"]) == len(SUPERMARKET.items)

        confirmed = await client.post(
            f"/invoices/{invoice_id}/confirm", headers=auth, json={"store_name": "Bom Preco"}
        )
        assert confirmed.status_code == 200
        dashboard = (await client.get("/dashboard/spending", headers=auth)).json()
    assert [(s["store_name"], Decimal(s["total"])) for s in dashboard["by_store"]] == [
        ("Bom Preco", SUPERMARKET.total)
    ]
