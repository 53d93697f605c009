"""Probes: /health (liveness, touches nothing), /health/ready (dependencies), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from invoice_service import __version__, circuit_report, queue_metrics
from invoice_service.deps import StateDep
from invoice_service.metrics import render_metrics

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Checks nothing else, so a database outage does not get the
    container restarted in a loop."""
    return {"status": "ok"}


async def _timed(check: Any) -> tuple[bool, float, str | None]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return False, time.perf_counter() - started, type(exc).__name__
    return True, time.perf_counter() - started, None


@router.get(
    "/health/ready",
    responses={503: {"description": "The database is unreachable: do not route traffic here"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: database (required: 503 when down), Redis (optional: "degraded" but 200 when down)
    and one circuit state per extraction provider as the workers last reported them (one Redis key;
    no worker names)."""

    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    db_ok, db_seconds, db_error = await _timed(database())
    checks: dict[str, Any] = {
        "database": {"status": "ok" if db_ok else "error", "latency_ms": round(db_seconds * 1000, 1)}
    }
    if db_error:
        checks["database"]["error"] = db_error
    redis_ok = False
    if state.redis is None:
        checks["redis"] = {"status": "disabled"}
    else:
        redis_ok, redis_seconds, redis_error = await _timed(state.redis.ping())
        checks["redis"] = {
            "status": "ok" if redis_ok else "error",
            "latency_ms": round(redis_seconds * 1000, 1),
        }
        if redis_error:
            checks["redis"]["error"] = redis_error
    report = circuit_report.Report(providers={}, workers=0)
    if redis_ok and state.redis is not None:
        with contextlib.suppress(Exception):
            report = await asyncio.wait_for(
                circuit_report.read(
                    state.redis, circuit_report.fresh_seconds(state.settings.WORKER_POLL_SECONDS)
                ),
                CHECK_TIMEOUT_SECONDS,
            )
    checks["providers"] = report.providers or "unknown (no worker reported)"
    checks["workers_reporting"] = report.workers

    if not db_ok:
        overall, code = "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE
    elif not redis_ok or report.degraded:
        overall, code = "degraded", status.HTTP_200_OK
    else:
        overall, code = "ok", status.HTTP_200_OK
    if code != status.HTTP_200_OK or overall != "ok":
        log.warning(
            "readiness",
            status=overall,
            database=checks["database"]["status"],
            redis=checks["redis"]["status"],
        )
    return JSONResponse(
        {
            "status": overall,
            "version": __version__,
            "release": state.settings.RELEASE or None,
            "checks": checks,
        },
        status_code=code,
    )


def metrics_allowed(request: Request, networks: list[str]) -> bool:
    """Whether this request may read /metrics: sent directly (no proxy on the way: a proxied request
    carries X-Forwarded-For, and its client is the outside caller) from one of `networks`."""
    if request.headers.get("x-forwarded-for") or request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in networks)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    """Prometheus exposition (every API process's values when PROMETHEUS_MULTIPROC_DIR is set), plus
    the job queue's gauges read from PostgreSQL now (absent when the database does not answer within
    2 s), for the host's own scrapers only (METRICS_NETWORKS); anyone else gets the 404 of an unknown
    path."""
    if not metrics_allowed(request, state.settings.METRICS_NETWORKS):
        return JSONResponse({"detail": "Not Found"}, status_code=status.HTTP_404_NOT_FOUND)
    queue = await queue_metrics.exposition(state.read_engine, CHECK_TIMEOUT_SECONDS)
    body, content_type = render_metrics()
    return Response(content=body + queue, media_type=content_type)
