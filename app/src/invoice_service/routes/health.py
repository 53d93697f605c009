"""Probes: /health (liveness, touches nothing), /health/ready (dependencies), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog
from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import text

from invoice_service import __version__
from invoice_service.deps import StateDep
from invoice_service.metrics import render_metrics
from invoice_service.worker import CIRCUITS_KEY

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


async def _circuits(redis: Redis) -> dict[str, dict[str, str]]:
    """Provider circuit states published by the running workers (worker -> provider -> state)."""
    workers: dict[str, dict[str, str]] = {}
    async for key in redis.scan_iter(match=CIRCUITS_KEY + "*", count=100):
        raw = await redis.get(key)
        if raw:
            name = key.decode() if isinstance(key, bytes) else str(key)
            workers[name.removeprefix(CIRCUITS_KEY)] = json.loads(raw)
    return workers


@router.get(
    "/health/ready",
    responses={503: {"description": "The database is unreachable: do not route traffic here"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: database (required: 503 when down), Redis (optional: "degraded" but 200 when down)
    and the circuit states of the extraction providers as the workers last reported them."""

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
    providers: dict[str, Any] = {}
    if redis_ok and state.redis is not None:
        with contextlib.suppress(Exception):
            providers = await asyncio.wait_for(_circuits(state.redis), CHECK_TIMEOUT_SECONDS)
    checks["providers"] = providers or "unknown (no worker reported)"

    if not db_ok:
        overall, code = "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE
    elif not redis_ok or any(s != "closed" for w in providers.values() for s in w.values()):
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
    return JSONResponse({"status": overall, "version": __version__, "checks": checks}, status_code=code)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus exposition (every API process's values when PROMETHEUS_MULTIPROC_DIR is set)."""
    body, content_type = render_metrics()
    return Response(content=body, media_type=content_type)
