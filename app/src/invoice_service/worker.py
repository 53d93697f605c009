"""`python -m invoice_service.worker` (`invoice-worker`): runs extraction jobs from the jobs table.

Each loop: fail jobs whose last attempt lost its worker, claim runnable jobs up to WORKER_CONCURRENCY
(SKIP LOCKED, so several workers never take the same job), and for each: renew the lease every third
of JOB_LEASE_SECONDS, run `build_chain(settings, redis).extract(...)` on every photo, and store the
result on the invoice in the transaction that marks the job done. SIGTERM/SIGINT stop claiming and let
running jobs finish for up to GRACEFUL_SHUTDOWN_SECONDS; a job cut short is retried by the next worker
once its lease expires.

When a heartbeat finds the lease lost (another claim holds the job: the lease expired while the
database was unreachable, or this process was frozen), the job's extraction is cancelled at once, so no
more provider calls are paid for a result that would be thrown away, and nothing is written: the row
belongs to the new holder. A failed attempt stores only a user-facing `ErrorCategory` in
jobs.last_error and invoices.extraction_error; the exception itself is logged with the job id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from typing import Any

import anyio
import structlog
from prometheus_client import start_http_server
from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from invoice_service import circuit_report, column_bounds, jobs
from invoice_service.db import create_engine, create_sessionmaker
from invoice_service.extraction import (
    ErrorCategory,
    ExtractionChain,
    ExtractionFailed,
    ExtractionResult,
    PhotoMissing,
    build_chain,
    user_category,
)
from invoice_service.logging import configure_logging
from invoice_service.metrics import JOB_DURATION, JOBS
from invoice_service.models import Invoice, InvoiceItem, InvoiceStatus, JobStatus
from invoice_service.redis_client import create_redis
from invoice_service.settings import Settings
from invoice_service.uploads import purge_deleted

log = structlog.get_logger(__name__)
# How often a worker sweeps UPLOAD_DIR/.deleted/ for photos past their grace period.
PURGE_INTERVAL_SECONDS = 600.0


def merge_results(results: list[ExtractionResult]) -> dict[str, Any]:
    """One invoice from the photos of one receipt: header fields from the first photo that has them,
    the total from the last (it is printed at the bottom), the items of all photos in order."""
    merged: dict[str, Any] = {
        "store_name": None,
        "store_tax_id": None,
        "purchase_date": None,
        "total": None,
        "items": [],
        "providers": [],
    }
    for result in results:
        for field in ("store_name", "store_tax_id", "purchase_date"):
            if merged[field] is None:
                merged[field] = getattr(result, field)
        if result.total is not None:
            merged["total"] = result.total
        merged["items"].extend(result.items)
        if result.provider not in merged["providers"]:
            merged["providers"].append(result.provider)
    return merged


class Worker:
    """Claims and runs jobs until told to stop."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        chain: ExtractionChain,
        redis: Redis | None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.chain = chain
        self.redis = redis
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task[None]] = set()
        self.next_purge = 0.0  # monotonic time of the next sweep of deleted invoices' photos

    async def run(self) -> None:
        """The claim loop; returns after stop() once running jobs finished or the grace period ended."""
        log.info("worker_started", worker=self.name, concurrency=self.settings.WORKER_CONCURRENCY)
        while not self.stopping.is_set():
            claimed = False
            try:
                async with self.sessions() as session:
                    failed = await jobs.fail_exhausted(session)
                    if failed:
                        JOBS.labels(outcome="lost").inc(failed)
                        log.warning("jobs_failed_lease_expired", count=failed)
                while len(self.running) < self.settings.WORKER_CONCURRENCY and not self.stopping.is_set():
                    async with self.sessions() as session:
                        job = await jobs.claim(session, self.name, self.settings.JOB_LEASE_SECONDS)
                    if job is None:
                        break
                    claimed = True
                    task = asyncio.create_task(self._process(job))
                    self.running.add(task)
                    task.add_done_callback(self.running.discard)
                await self._publish_circuits()
                await self._purge_deleted_photos()
            except Exception as exc:  # the database may be briefly unreachable: keep polling
                log.error("worker_poll_failed", error=str(exc), error_type=type(exc).__name__)
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.settings.WORKER_POLL_SECONDS)
        await self._drain()

    def stop(self) -> None:
        """Stop claiming (signal handler)."""
        if not self.stopping.is_set():
            log.info("worker_stopping", worker=self.name, running=len(self.running))
            self.stopping.set()

    async def _drain(self) -> None:
        if not self.running:
            return
        _done, pending = await asyncio.wait(self.running, timeout=self.settings.GRACEFUL_SHUTDOWN_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("worker_jobs_abandoned", count=len(pending), note="retried when their lease expires")

    async def _purge_deleted_photos(self) -> None:
        """Every PURGE_INTERVAL_SECONDS, remove the photos of invoices deleted more than
        UPLOAD_DELETE_GRACE_HOURS ago (every worker may sweep; removing twice is harmless)."""
        if time.monotonic() < self.next_purge:
            return
        self.next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        removed = await anyio.to_thread.run_sync(
            purge_deleted, self.settings.UPLOAD_DIR, self.settings.UPLOAD_DELETE_GRACE_HOURS
        )
        if removed:
            log.info(
                "deleted_photos_purged", invoices=removed, grace_hours=self.settings.UPLOAD_DELETE_GRACE_HOURS
            )

    async def _publish_circuits(self) -> None:
        if self.redis is None:
            return
        with contextlib.suppress(Exception):
            await circuit_report.publish(
                self.redis,
                self.name,
                self.chain.circuit_states(),
                circuit_report.fresh_seconds(self.settings.WORKER_POLL_SECONDS),
            )

    async def _heartbeat(
        self, job: jobs.ClaimedJob, extraction: asyncio.Task[Any], lease_lost: asyncio.Event
    ) -> None:
        """Renew the lease every third of it; when it is lost, cancel the job's extraction."""
        interval = self.settings.JOB_LEASE_SECONDS / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.sessions() as session:
                    held = await jobs.heartbeat(session, job, self.name, self.settings.JOB_LEASE_SECONDS)
            except Exception as exc:
                log.warning(
                    "job_heartbeat_failed", job_id=str(job.id), error=str(exc), error_type=type(exc).__name__
                )
                continue
            if not held:
                lease_lost.set()
                log.warning(
                    "job_lease_lost",
                    job_id=str(job.id),
                    attempt=job.attempts,
                    extraction_cancelled=not extraction.done(),
                )
                extraction.cancel()
                return

    async def _extract(self, job: jobs.ClaimedJob) -> list[ExtractionResult] | None:
        """Every photo of the job's invoice through the chain; None when the invoice is gone."""
        async with self.sessions() as session:
            images = (
                await session.execute(select(Invoice.images).where(Invoice.id == job.invoice_id))
            ).scalar_one_or_none()
        if images is None:  # invoice deleted meanwhile; the job row went with it (cascade)
            return None
        results = []
        for position, image in enumerate(images):
            try:
                data = await anyio.Path(image["path"]).read_bytes()
            except FileNotFoundError as exc:
                raise PhotoMissing(f"photo {position} of the invoice: {exc}") from exc
            results.append(await self.chain.extract(data, image["content_type"]))
        return results

    async def _process(self, job: jobs.ClaimedJob) -> None:
        bound = log.bind(job_id=str(job.id), invoice_id=str(job.invoice_id), attempt=job.attempts)
        bound.info("job_started", max_attempts=job.max_attempts)
        started = time.monotonic()
        lease_lost = asyncio.Event()
        extraction = asyncio.create_task(self._extract(job))
        heartbeat = asyncio.create_task(self._heartbeat(job, extraction, lease_lost))
        try:
            try:
                results = await extraction
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if lease_lost.is_set() and (current is None or not current.cancelling()):
                    JOBS.labels(outcome="lost").inc()
                    bound.warning("job_result_discarded", reason="lease lost: extraction cancelled")
                    return
                raise
            if results is None:
                bound.info("job_invoice_gone")
                return
            merged, dropped = column_bounds.bound_to_columns(merge_results(results))
            if dropped:
                bound.warning("job_values_out_of_range", fields=dropped, note="left empty")
            if not await self._store(job, merged, ErrorCategory.VALUES_OUT_OF_RANGE if dropped else None):
                JOBS.labels(outcome="lost").inc()
                return
            JOBS.labels(outcome="done").inc()
            bound.info(
                "job_done",
                duration_s=round(time.monotonic() - started, 3),
                providers=[r.provider for r in results],
                cached=[r.cached for r in results],
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._record_failure(job, exc, bound, started)
        finally:
            heartbeat.cancel()
            extraction.cancel()
            JOB_DURATION.observe(time.monotonic() - started)

    async def _record_failure(self, job: jobs.ClaimedJob, exc: Exception, bound: Any, started: float) -> None:
        """Store the failed attempt under its user-facing category; log the exception in full."""
        # An extraction no provider could read fails at once: another attempt would give the same answer.
        permanent = isinstance(exc, ExtractionFailed) and not exc.retryable
        category = user_category(exc, final=permanent or job.attempts >= job.max_attempts)
        try:
            async with self.sessions() as session:
                status = await jobs.mark_failed_attempt(
                    session,
                    job,
                    self.name,
                    category.value,
                    self.settings.JOB_RETRY_BACKOFF_SECONDS,
                    permanent=permanent,
                )
        except Exception as record_exc:  # the database is down: the lease expires, the job is retried
            JOBS.labels(outcome="lost").inc()
            bound.error(
                "job_failure_not_recorded",
                category=category.value,
                error_type=type(exc).__name__,
                error=str(exc),
                record_error=str(record_exc),
                record_error_type=type(record_exc).__name__,
            )
            return
        outcomes = {None: "lost", JobStatus.FAILED: "failed", JobStatus.QUEUED: "retry"}
        JOBS.labels(outcome=outcomes[status]).inc()
        detail: dict[str, Any] = {
            "category": category.value,
            "error_type": type(exc).__name__,
            "error": str(exc),
            "next": status.value if status is not None else "lease lost: not recorded",
            "duration_s": round(time.monotonic() - started, 3),
        }
        if isinstance(exc, ExtractionFailed):
            bound.warning("job_attempt_failed", provider_errors=exc.errors, **detail)
        elif category is ErrorCategory.PHOTO_MISSING:
            bound.warning("job_attempt_failed", **detail)
        else:  # a bug or the database: keep the traceback
            bound.error("job_attempt_failed", exc_info=exc, **detail)

    async def _store(self, job: jobs.ClaimedJob, merged: dict[str, Any], note: ErrorCategory | None) -> bool:
        """Write the result and finish the job in one transaction, only while this claim holds the
        lease; False when the result was discarded (lease lost, or the invoice deleted)."""
        async with self.sessions() as session:
            if not await jobs.still_held(session, job, self.name):
                log.warning("job_result_discarded", job_id=str(job.id), reason="lease lost to another worker")
                await session.rollback()
                return False
            invoice = await session.get(Invoice, job.invoice_id)
            if invoice is None:
                await session.rollback()
                return False
            await session.execute(delete(InvoiceItem).where(InvoiceItem.invoice_id == invoice.id))
            items: list[column_bounds.BoundedItem] = merged["items"]
            for position, item in enumerate(items):
                session.add(
                    InvoiceItem(
                        invoice_id=invoice.id,
                        position=position,
                        description=item.description,
                        quantity=item.quantity,
                        unit_price=item.unit_price,
                        total=item.total,
                    )
                )
            invoice.store_name = merged["store_name"]
            invoice.store_tax_id = merged["store_tax_id"]
            invoice.purchase_date = merged["purchase_date"]
            invoice.total = merged["total"]
            invoice.provider = ",".join(merged["providers"])[:64]
            invoice.extraction_error = note.value if note is not None else None
            invoice.status = InvoiceStatus.EXTRACTED
            await jobs.mark_done(session, job)
            await session.commit()
            return True


async def run_worker(settings: Settings) -> None:
    """Build the engine, Redis client and chain; run until SIGTERM/SIGINT; close everything."""
    engine = create_engine(settings)
    redis: Redis | None = create_redis(settings) if settings.REDIS_URL else None
    chain = build_chain(settings, redis)
    worker = Worker(settings, create_sessionmaker(engine), chain, redis)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await chain.aclose()
        if redis is not None:
            with contextlib.suppress(Exception):
                await circuit_report.withdraw(redis, worker.name)
            await redis.aclose()
        await engine.dispose()
        log.info("worker_stopped", worker=worker.name)


def serve_metrics(settings: Settings) -> None:
    """Expose this process's metrics over HTTP (the worker has no API port); a busy port is logged,
    not fatal: jobs matter more than metrics."""
    if settings.WORKER_METRICS_PORT == 0:
        return
    try:
        start_http_server(settings.WORKER_METRICS_PORT, addr=settings.WORKER_METRICS_HOST)
    except OSError as exc:
        log.error("worker_metrics_unavailable", port=settings.WORKER_METRICS_PORT, error=str(exc))
    else:
        log.info("worker_metrics_listening", port=settings.WORKER_METRICS_PORT)


def main() -> None:
    """Console entry point."""
    settings = Settings()
    configure_logging(settings.LOG_LEVEL)
    serve_metrics(settings)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
