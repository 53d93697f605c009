"""The durable job queue: rows in the `jobs` table, claimed with FOR UPDATE SKIP LOCKED under a lease.

Life of a job: queued -> running (claimed: attempts + 1, locked_by, locked_until = now + lease) ->
done | queued again (failed attempt, retried after a backoff) | failed (attempts exhausted).
While it works, the worker renews locked_until (heartbeat). A worker that dies (SIGKILL, OOM, host
reboot) stops renewing; once locked_until has passed, the job is claimable again by any worker, so
nothing is lost. Every transition is one PostgreSQL transaction; Redis is not involved.

Fencing: a holder is (locked_by, attempts), not locked_by alone. A worker whose lease expired may claim
the same job again under the same name (attempts + 1) while its first task still runs; every write of
a holder (heartbeat, result, failed attempt) therefore matches the attempt number it claimed, so a late
holder can neither renew nor overwrite the current one's row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from invoice_service.models import Invoice, InvoiceStatus, Job, JobStatus


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds the lease of."""

    id: uuid.UUID
    invoice_id: uuid.UUID
    attempts: int
    max_attempts: int


def enqueue(session: AsyncSession, invoice: Invoice, max_attempts: int) -> Job:
    """Add a job for invoice to the session (committed with the invoice, atomically)."""
    job = Job(
        id=uuid.uuid4(), invoice_id=invoice.id, status=JobStatus.QUEUED, attempts=0, max_attempts=max_attempts
    )
    session.add(job)
    return job


_EXHAUSTED = text("""
    WITH dead AS (
        UPDATE jobs SET status = 'failed', finished_at = now(), updated_at = now(), locked_by = NULL,
               last_error = coalesce(last_error || '; ', '')
                            || 'worker lost (lease expired) on attempt ' || attempts || ' of ' || max_attempts
        WHERE status = 'running' AND locked_until < now() AND attempts >= max_attempts
        RETURNING invoice_id, last_error
    )
    UPDATE invoices SET status = 'failed', extraction_error = dead.last_error, updated_at = now()
    FROM dead WHERE invoices.id = dead.invoice_id
    RETURNING invoices.id
""")

_CLAIM = text("""
    WITH next AS (
        SELECT id FROM jobs
        WHERE (status = 'queued' AND run_after <= now())
           OR (status = 'running' AND locked_until < now() AND attempts < max_attempts)
        ORDER BY run_after, created_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, locked_by = :worker,
                    locked_until = now() + make_interval(secs => :lease), updated_at = now()
    FROM next WHERE jobs.id = next.id
    RETURNING jobs.id, jobs.invoice_id, jobs.attempts, jobs.max_attempts
""")


async def fail_exhausted(session: AsyncSession) -> int:
    """Fail jobs whose last allowed attempt lost its worker; returns how many."""
    result = await session.execute(_EXHAUSTED)
    count = len(result.all())
    await session.commit()
    return count


async def claim(session: AsyncSession, worker: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the oldest runnable job (queued and due, or running with an expired lease), if any."""
    row = (await session.execute(_CLAIM, {"worker": worker, "lease": lease_seconds})).first()
    if row is None:
        await session.rollback()
        return None
    await session.execute(
        text("UPDATE invoices SET status = 'processing', updated_at = now() WHERE id = :id"),
        {"id": row.invoice_id},
    )
    await session.commit()
    return ClaimedJob(
        id=row.id, invoice_id=row.invoice_id, attempts=row.attempts, max_attempts=row.max_attempts
    )


async def heartbeat(session: AsyncSession, job: ClaimedJob, worker: str, lease_seconds: float) -> bool:
    """Extend the lease; False when this claim (worker and attempt) no longer holds the job."""
    result = await session.execute(
        text("""UPDATE jobs SET locked_until = now() + make_interval(secs => :lease)
                WHERE id = :id AND locked_by = :worker AND attempts = :attempts AND status = 'running'
                RETURNING id"""),
        {"id": job.id, "worker": worker, "attempts": job.attempts, "lease": lease_seconds},
    )
    held = result.first() is not None
    await session.commit()
    return held


async def still_held(session: AsyncSession, job: ClaimedJob, worker: str) -> bool:
    """Whether this worker holds the job (inside the caller's transaction; locks the row)."""
    result = await session.execute(
        text("""SELECT 1 FROM jobs WHERE id = :id AND locked_by = :worker AND status = 'running'
                AND attempts = :attempts FOR UPDATE"""),
        {"id": job.id, "worker": worker, "attempts": job.attempts},
    )
    return result.first() is not None


async def mark_done(session: AsyncSession, job: ClaimedJob) -> None:
    """Finish the job (in the caller's transaction, with the invoice's results)."""
    await session.execute(
        text("""UPDATE jobs SET status = 'done', finished_at = now(), updated_at = now(),
                locked_by = NULL, locked_until = NULL WHERE id = :id"""),
        {"id": job.id},
    )


async def mark_failed_attempt(
    session: AsyncSession,
    job: ClaimedJob,
    worker: str,
    error: str,
    backoff_seconds: float,
    *,
    permanent: bool = False,
) -> JobStatus | None:
    """Record a failed attempt: requeue with exponential backoff, or fail job and invoice when the
    attempts are exhausted or the failure is `permanent` (retrying cannot help). `error` is what users
    see: a short category, never exception text. Returns the job's new status, or None when this claim
    no longer holds the job (lease lost: the row belongs to the next holder and is left alone)."""
    final = permanent or job.attempts >= job.max_attempts
    status = JobStatus.FAILED if final else JobStatus.QUEUED
    delay = backoff_seconds * (2 ** (job.attempts - 1))
    result = await session.execute(
        text("""UPDATE jobs SET status = :status, last_error = :error, updated_at = now(),
                locked_by = NULL, locked_until = NULL,
                run_after = now() + make_interval(secs => :delay),
                finished_at = CASE WHEN :final THEN now() END
                WHERE id = :id AND locked_by = :worker AND attempts = :attempts AND status = 'running'
                RETURNING id"""),
        {
            "status": status.value,
            "error": error[:4000],
            "delay": delay,
            "final": final,
            "id": job.id,
            "worker": worker,
            "attempts": job.attempts,
        },
    )
    if result.first() is None:
        await session.rollback()
        return None
    await session.execute(
        text("""UPDATE invoices SET status = :status, extraction_error = :error, updated_at = now()
                WHERE id = :id"""),
        {
            "status": (InvoiceStatus.FAILED if final else InvoiceStatus.PENDING).value,
            "error": error[:4000],
            "id": job.invoice_id,
        },
    )
    await session.commit()
    return status
