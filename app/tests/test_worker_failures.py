"""How the worker fails: users see a short error category, never exception text (the logs get the
detail); values the columns cannot hold are left empty instead of failing the job; a claim that lost
its lease stops its extraction and writes nothing. Real PostgreSQL, in-process Worker, fake providers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from app_helpers import PNG_1PX, emptied_engine, migrated_database
from fake_openai_server import RECEIPT_ANSWER, completion, fake_llm
from live_servers import PostgresServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from invoice_service import jobs
from invoice_service import worker as worker_module
from invoice_service.extraction import (
    ErrorCategory,
    ExtractionChain,
    ExtractionResult,
    RetryPolicy,
    build_chain,
)
from invoice_service.extraction.errors import ProviderHTTPError, UnreadableImage
from invoice_service.settings import Settings
from invoice_service.worker import Worker

# What an exception may carry: SQL with parameters, a file path, a provider's response body, a key.
SECRET = (
    "(sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) INSERT INTO users (email, password_hash) "
    "VALUES ('ana@example.com', 'argon2id$hunter2') /var/lib/invoice-service/uploads/ab/cd.jpg "
    '{"error": {"message": "Incorrect API key sk-live-0123456789"}}'
)
LEAKS = ("hunter2", "INSERT", "/var/lib", "sk-live", "IntegrityError")


@pytest.fixture(scope="module")
def worker_database_url(pg: PostgresServer) -> str:
    """A database of its own: the claims here must only ever see this module's jobs."""
    return migrated_database(pg, "worker_failure_tests")


@pytest.fixture
async def engine(worker_database_url: str) -> AsyncIterator[AsyncEngine]:
    async with emptied_engine(worker_database_url) as engine:
        yield engine


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The worker's structlog events (a fresh logger, whatever configure_logging cached)."""
    with structlog.testing.capture_logs() as captured:
        monkeypatch.setattr(worker_module, "log", structlog.get_logger(worker_module.__name__))
        yield captured


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "0.png"
    path.write_bytes(PNG_1PX)
    return path


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "EXTRACTION_PROVIDERS": "ocr",
        "JOB_RETRY_BACKOFF_SECONDS": 100,  # a requeued job is not claimed again during a test
        "JOB_LEASE_SECONDS": 30,
        "LLM_RETRY_ATTEMPTS": 1,
    }
    return Settings(**(values | overrides))


async def add_job(engine: AsyncEngine, image: Path, max_attempts: int = 3) -> tuple[str, str]:
    """A user, an invoice with one photo and its queued job; returns (invoice id, job id)."""
    user, invoice, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
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
            {"id": invoice, "u": user, "images": f'[{{"path": "{image}", "content_type": "image/png"}}]'},
        )
        await conn.execute(
            text(
                "INSERT INTO jobs (id, invoice_id, status, attempts, max_attempts) "
                "VALUES (:id, :i, 'queued', 0, :m)"
            ),
            {"id": job, "i": invoice, "m": max_attempts},
        )
    return str(invoice), str(job)


async def rows(engine: AsyncEngine, invoice_id: str) -> tuple[Any, Any, list[Any]]:
    """(job row, invoice row, item rows) of an invoice."""
    async with engine.connect() as conn:
        job = (await conn.execute(text("SELECT * FROM jobs WHERE invoice_id = :i"), {"i": invoice_id})).one()
        invoice = (await conn.execute(text("SELECT * FROM invoices WHERE id = :i"), {"i": invoice_id})).one()
        items = (
            await conn.execute(
                text("SELECT * FROM invoice_items WHERE invoice_id = :i ORDER BY position"), {"i": invoice_id}
            )
        ).all()
    return job, invoice, list(items)


class FakeProvider:
    """A provider whose extract runs `behaviour` (which may block, raise or return)."""

    name = "fake"
    cache_variant = "v1"

    def __init__(self, behaviour: Callable[[], Awaitable[ExtractionResult]]) -> None:
        self.behaviour = behaviour

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        return await self.behaviour()

    async def aclose(self) -> None:
        return None


def chain_of(provider: FakeProvider) -> ExtractionChain:
    return ExtractionChain(
        [provider], timeout_seconds=60, retry=RetryPolicy(attempts=1), failure_threshold=5, reset_seconds=60
    )


class BrokenChain:
    """A chain that fails outside any provider (what a bug or the database would raise)."""

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        raise RuntimeError(SECRET)

    def circuit_states(self) -> dict[str, str]:
        return {}


async def claim_and_process(worker: Worker, sessions: async_sessionmaker[AsyncSession]) -> jobs.ClaimedJob:
    async with sessions() as session:
        job = await jobs.claim(session, worker.name, worker.settings.JOB_LEASE_SECONDS)
    assert job is not None
    await asyncio.wait_for(worker._process(job), timeout=30)
    return job


def raising(exc: Exception) -> Callable[[], Awaitable[ExtractionResult]]:
    async def behaviour() -> ExtractionResult:
        raise exc

    return behaviour


@pytest.mark.parametrize(
    ("cause", "max_attempts", "category", "status"),
    [
        ("provider-5xx", 3, ErrorCategory.TEMPORARY, ("queued", "pending")),
        ("provider-5xx", 1, ErrorCategory.UNAVAILABLE, ("failed", "failed")),
        # Unreadable by every provider: failed at the first attempt, retrying cannot help.
        ("unreadable", 3, ErrorCategory.UNREADABLE, ("failed", "failed")),
        ("outside-the-chain", 3, ErrorCategory.INTERNAL, ("queued", "pending")),
        ("photo-missing", 3, ErrorCategory.PHOTO_MISSING, ("queued", "pending")),
    ],
)
async def test_users_see_the_error_category_never_the_exception_text(
    cause: str,
    max_attempts: int,
    category: ErrorCategory,
    status: tuple[str, str],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    worker_database_url: str,
    photo: Path,
    tmp_path: Path,
    logs: list[dict[str, Any]],
) -> None:
    image = photo
    chain: Any
    if cause == "provider-5xx":
        chain = chain_of(FakeProvider(raising(ProviderHTTPError(500, SECRET))))
    elif cause == "unreadable":
        chain = chain_of(FakeProvider(raising(UnreadableImage(SECRET))))
    elif cause == "outside-the-chain":
        chain = BrokenChain()
    else:
        chain = chain_of(FakeProvider(raising(AssertionError("never called"))))
        image = tmp_path / "hunter2" / "INSERT-sk-live.jpg"  # the path itself must not leak
    invoice_id, job_id = await add_job(engine, image, max_attempts=max_attempts)
    worker = Worker(settings_for(worker_database_url), sessions, cast(ExtractionChain, chain), None)

    await claim_and_process(worker, sessions)

    job, invoice, _ = await rows(engine, invoice_id)
    assert (job.status, invoice.status) == status
    assert job.last_error == category.value
    assert invoice.extraction_error == category.value
    for leak in LEAKS:
        assert leak not in job.last_error
        assert leak not in invoice.extraction_error
    # The detail is in the log, with the job id.
    (failed,) = [e for e in logs if e["event"] == "job_attempt_failed"]
    assert failed["job_id"] == job_id
    assert failed["category"] == category.value
    assert ("hunter2" in failed["error"]) or ("hunter2" in str(failed.get("provider_errors")))
    assert failed["log_level"] in {"warning", "error"}


async def test_out_of_range_values_are_left_empty_and_the_job_is_done(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    worker_database_url: str,
    photo: Path,
    logs: list[dict[str, Any]],
) -> None:
    """Before: numeric(12,2) refused the INSERT, the attempt failed, and every retry failed the same way
    (on the cached extraction) until the job was failed."""
    answer = RECEIPT_ANSWER | {
        "total": 10**11,
        "items": [
            {"description": "Arroz\u0000 5kg", "quantity": 1, "unit_price": 10**11, "total": 24.90},
            {"description": "Banana", "quantity": 10**10, "unit_price": 1.25, "total": 2.50},
            {"description": "Feijao", "quantity": 1, "unit_price": "9999999999.995", "total": 8.50},
        ],
    }
    with fake_llm(lambda _n: (200, completion(answer))) as llm:
        settings = settings_for(
            worker_database_url,
            EXTRACTION_PROVIDERS="openai",
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=llm.base_url,
        )
        chain = build_chain(settings, None)
        try:
            invoice_id, _ = await add_job(engine, photo)
            await claim_and_process(Worker(settings, sessions, chain, None), sessions)
        finally:
            await chain.aclose()

    job, invoice, items = await rows(engine, invoice_id)
    assert (job.status, job.attempts, job.last_error) == ("done", 1, None)
    assert invoice.status == "extracted"
    assert invoice.total is None
    assert invoice.extraction_error == ErrorCategory.VALUES_OUT_OF_RANGE.value
    assert invoice.store_name == "Supermercado Fake"  # the rest of the receipt is kept
    assert [(i.description, i.quantity, i.unit_price, i.total) for i in items] == [
        ("Arroz 5kg", Decimal(1), None, Decimal("24.90")),
        ("Banana", Decimal(1), Decimal("1.25"), Decimal("2.50")),
        ("Feijao", Decimal(1), None, Decimal("8.50")),  # rounds to 10^10: out of range too
    ]
    (warning,) = [e for e in logs if e["event"] == "job_values_out_of_range"]
    assert warning["fields"] == ["items[0].unit_price", "items[1].quantity", "items[2].unit_price", "total"]


async def steal_lease(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, thief: str
) -> jobs.ClaimedJob:
    """What another worker does once the lease has expired: claim the job (attempts + 1). The expiry is
    forced in the same transaction, so a heartbeat cannot renew it in between."""
    async with sessions() as session:
        await session.execute(
            text("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = :id"), {"id": job_id}
        )
        stolen = await jobs.claim(session, thief, 30)
    assert stolen is not None
    assert stolen.id == job_id
    return stolen


class BlockingProvider(FakeProvider):
    """Blocks until released (or cancelled), then answers or fails as told."""

    def __init__(self, outcome: str = "result") -> None:
        super().__init__(self._block)
        self.outcome = outcome
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def _block(self) -> ExtractionResult:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.outcome == "failure":
            raise ProviderHTTPError(503, "late failure")
        return ExtractionResult(provider=self.name, store_name="Late Worker Store", total=Decimal("1.00"))


async def test_lost_lease_cancels_the_running_extraction(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    worker_database_url: str,
    photo: Path,
    logs: list[dict[str, Any]],
) -> None:
    provider = BlockingProvider()
    # Heartbeat every 0.2 s.
    worker = Worker(
        settings_for(worker_database_url, JOB_LEASE_SECONDS=0.6), sessions, chain_of(provider), None
    )
    invoice_id, job_id = await add_job(engine, photo)
    async with sessions() as session:
        job = await jobs.claim(session, worker.name, worker.settings.JOB_LEASE_SECONDS)
    assert job is not None
    task = asyncio.create_task(worker._process(job))
    try:
        await asyncio.wait_for(provider.entered.wait(), 10)
        await steal_lease(sessions, job.id, "other-worker")
        # The next heartbeat finds the lease gone and cancels the provider call (no more paying for it).
        await asyncio.wait_for(provider.cancelled.wait(), 10)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    row, invoice, items = await rows(engine, invoice_id)
    assert (row.status, row.attempts, row.locked_by, row.last_error) == ("running", 2, "other-worker", None)
    assert (invoice.status, invoice.store_name, invoice.extraction_error, items) == (
        "processing",
        None,
        None,
        [],
    )
    events = {e["event"]: e for e in logs}
    assert events["job_lease_lost"]["job_id"] == job_id
    assert events["job_lease_lost"]["extraction_cancelled"] is True
    assert "job_result_discarded" in events
    assert "job_attempt_failed" not in events


@pytest.mark.parametrize("outcome", ["result", "failure"])
async def test_a_late_claim_of_the_same_worker_writes_nothing(
    outcome: str,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    worker_database_url: str,
    photo: Path,
) -> None:
    """The worker's lease expired (database unreachable for its heartbeats, process frozen) and the same
    worker claimed the job again (attempt 2). When the first attempt finally ends, with a result or an
    error, the row of attempt 2 must stay as it is."""
    provider = BlockingProvider(outcome)
    # A heartbeat every 10 s: none runs during the test, the fence at the write is what is tested.
    worker = Worker(settings_for(worker_database_url), sessions, chain_of(provider), None)
    invoice_id, _ = await add_job(engine, photo)
    async with sessions() as session:
        first = await jobs.claim(session, worker.name, 30)
    assert first is not None
    task = asyncio.create_task(worker._process(first))
    try:
        await asyncio.wait_for(provider.entered.wait(), 10)
        second = await steal_lease(sessions, first.id, worker.name)
        assert second.attempts == 2
        provider.release.set()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    row, invoice, items = await rows(engine, invoice_id)
    assert (row.status, row.attempts, row.locked_by, row.last_error) == ("running", 2, worker.name, None)
    assert row.locked_until is not None
    assert (invoice.status, invoice.store_name, invoice.extraction_error, items) == (
        "processing",
        None,
        None,
        [],
    )


async def test_the_worker_sweeps_deleted_photos_past_their_grace_period(
    worker_database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    logs: list[dict[str, Any]],
) -> None:
    trash = tmp_path / "uploads" / ".deleted"
    old, recent = trash / "20260101T000000Z-u-i", trash / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-u-j"
    for directory in (old, recent):
        directory.mkdir(parents=True)
        (directory / "0.png").write_bytes(PNG_1PX)
    settings = settings_for(worker_database_url, UPLOAD_DIR=tmp_path / "uploads")
    worker = Worker(settings, sessions, chain_of(FakeProvider(raising(AssertionError("never called")))), None)
    await worker._purge_deleted_photos()
    assert [p.name for p in trash.iterdir()] == [recent.name]
    assert logs[-1].items() >= {"event": "deleted_photos_purged", "invoices": 1, "grace_hours": 48.0}.items()
    # The next sweep waits its interval: an entry past its grace in between stays until then.
    old.mkdir()
    await worker._purge_deleted_photos()
    assert old.exists()
