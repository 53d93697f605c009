"""The FastAPI application: `uvicorn --factory invoice_service.main:create_app` (or `invoice-api`).

create_app only builds objects; connections open lazily and the lifespan closes them (graceful
shutdown: uvicorn stops accepting, lets in-flight requests finish for --timeout-graceful-shutdown
seconds, then the lifespan disposes of the connection pool and closes Redis).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from invoice_service import __version__
from invoice_service.bodylimits import UploadTokenGate, upload_body_limit
from invoice_service.db import create_engine, create_sessionmaker
from invoice_service.deps import AppState
from invoice_service.logging import configure_logging
from invoice_service.middleware import RequestContextMiddleware
from invoice_service.ratelimit import RateLimitMiddleware, RateLimits
from invoice_service.redis_client import create_redis
from invoice_service.routes import auth, dashboard, health, invoices
from invoice_service.settings import DEFAULT_JWT_SECRET, Settings

log = structlog.get_logger(__name__)


def docs_urls(settings: Settings) -> dict[str, str | None]:
    """FastAPI's docs, redoc and schema URLs: its defaults where DOCS_ENABLED or DEBUG, else none."""
    if settings.DOCS_ENABLED or settings.DEBUG:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for settings (default: from the environment)."""
    settings = settings or Settings()
    if settings.JWT_SECRET.get_secret_value() == DEFAULT_JWT_SECRET and not settings.DEBUG:
        # Anyone can sign tokens with the public default: refuse to serve rather than log and go on.
        raise RuntimeError(
            "JWT_SECRET is the public default: set it to 32+ random characters (DEBUG=true allows the "
            "default for local development only)"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.LOG_LEVEL)
        engine = create_engine(settings)
        redis = create_redis(settings) if settings.REDIS_URL else None
        app.state.core = AppState(
            settings=settings,
            engine=engine,
            read_engine=engine.execution_options(isolation_level="AUTOCOMMIT"),
            sessions=create_sessionmaker(engine),
            redis=redis,
            limits=limits,
        )
        log.info(
            "api_started",
            version=__version__,
            pool_size=settings.DB_POOL_SIZE,
            debug=settings.DEBUG,
            rate_limits=settings.RATE_LIMIT_ENABLED,
        )
        try:
            yield
        finally:
            await engine.dispose()
            if redis is not None:
                await redis.aclose()
            await limits.aclose()
            log.info("api_stopped")

    app = FastAPI(
        title="Invoice extraction service",
        version=__version__,
        description="Upload receipt photos, get store, date, items and totals extracted, confirm them "
        "and see your spending.",
        lifespan=lifespan,
        # The interactive docs and the schema only where asked (DOCS_ENABLED) or in development.
        **docs_urls(settings),
        # Every body is bounded before it is read (bodylimits.py); the upload has its own bound.
        max_body_size=settings.MAX_BODY_BYTES,
    )
    app.include_router(invoices.upload_router, max_body_size=upload_body_limit(settings))
    for router in (auth.router, invoices.router, dashboard.router, health.router):
        app.include_router(router)
    limits = RateLimits(settings)
    # Starlette wraps in reverse order: the last added runs first. Proxy headers resolve the client
    # address before the rate limiter keys on it; the request context wraps everything.
    app.add_middleware(UploadTokenGate, settings=settings)
    app.add_middleware(RateLimitMiddleware, limits=limits)
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    if settings.TRUSTED_PROXY_NETWORKS:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.TRUSTED_PROXY_NETWORKS)
    app.add_middleware(RequestContextMiddleware)
    return app
