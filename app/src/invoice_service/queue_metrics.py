"""Gauges of the durable job queue (table `jobs`), read from PostgreSQL when /metrics is scraped.

They come from the database rather than from a process's counters, so they stay right when every
worker is dead (which is when they matter). One SELECT in autocommit mode (no BEGIN/ROLLBACK round
trips); the queued part is served by ix_jobs_claim (status, run_after). When the query fails or takes
longer than TIMEOUT_SECONDS, /metrics goes without the three series (absent, not a fake 0: alert on
their absence or on `up`) and one warning is logged.

The families are rendered from a throwaway registry and appended to the exposition: they never go
into the multiprocess directory (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)

TIMEOUT_SECONDS = 2.0

QUEUED = "toolkit_jobs_queued"
OLDEST_AGE = "toolkit_jobs_oldest_queued_age_seconds"
FAILED_LAST_HOUR = "toolkit_jobs_failed_last_hour"

QUEUED_HELP = (
    "Extraction jobs queued and due (run_after <= now()); a retry still waiting for its backoff is "
    "not counted (it is not late). Read from PostgreSQL at scrape time."
)
OLDEST_AGE_HELP = (
    "Seconds the oldest due queued job has waited since it became due (now() - min(run_after)); "
    "0 when none is due. Read from PostgreSQL at scrape time."
)
FAILED_LAST_HOUR_HELP = (
    "Extraction jobs failed for good (attempts exhausted) in the last hour, by finished_at "
    "(updated_at when finished_at is null). Read from PostgreSQL at scrape time."
)

# now() is the statement's start (autocommit: one transaction per statement).
QUERY = text("""
    SELECT
        count(*) FILTER (WHERE status = 'queued' AND run_after <= now()) AS queued,
        coalesce(
            extract(
                epoch FROM now() - min(run_after) FILTER (WHERE status = 'queued' AND run_after <= now())
            ),
            0
        ) AS oldest_age_seconds,
        count(*) FILTER (
            WHERE status = 'failed' AND coalesce(finished_at, updated_at) >= now() - interval '1 hour'
        ) AS failed_last_hour
    FROM jobs
    WHERE (status = 'queued' AND run_after <= now())
       OR (status = 'failed' AND coalesce(finished_at, updated_at) >= now() - interval '1 hour')
""")


@dataclass(frozen=True)
class QueueStats:
    """What the query read."""

    queued: int
    oldest_age_seconds: float
    failed_last_hour: int


async def read_stats(engine: AsyncEngine) -> QueueStats:
    """The queue's numbers now: one SELECT on a pooled connection (pass the autocommit engine)."""
    async with engine.connect() as connection:
        row = (await connection.execute(QUERY)).one()
    return QueueStats(
        queued=int(row.queued),
        oldest_age_seconds=max(float(row.oldest_age_seconds), 0.0),
        failed_last_hour=int(row.failed_last_hour),
    )


class QueueCollector(Collector):
    """The three gauges of one QueueStats."""

    def __init__(self, stats: QueueStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(QUEUED, QUEUED_HELP, value=self.stats.queued)
        yield GaugeMetricFamily(OLDEST_AGE, OLDEST_AGE_HELP, value=self.stats.oldest_age_seconds)
        yield GaugeMetricFamily(FAILED_LAST_HOUR, FAILED_LAST_HOUR_HELP, value=self.stats.failed_last_hour)


def render(stats: QueueStats) -> bytes:
    """The exposition text of the three gauges (a registry of their own, never the process's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(stats))
    return generate_latest(registry)


async def exposition(engine: AsyncEngine, timeout: float | None = None) -> bytes:
    """The three gauges as exposition text, or b"" (and one warning) when the database did not answer
    within `timeout` seconds (TIMEOUT_SECONDS by default) or the query failed."""
    try:
        stats = await asyncio.wait_for(read_stats(engine), TIMEOUT_SECONDS if timeout is None else timeout)
    except Exception as exc:
        log.warning("queue_metrics_unavailable", error=type(exc).__name__)
        return b""
    return render(stats)
