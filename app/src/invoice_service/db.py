"""The async engine and session factory, sized from settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from invoice_service.settings import Settings


def engine_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for create_async_engine: a sized pool, or NullPool when DEBUG is on, and the
    timeouts of every connection: asyncpg's connect `timeout` (DB_CONNECT_TIMEOUT) and
    `command_timeout` (DB_COMMAND_TIMEOUT, client side), and PostgreSQL's own `statement_timeout`
    (DB_STATEMENT_TIMEOUT_MS, set as a startup parameter, so it holds from the first statement)."""
    options: dict[str, Any] = {
        "echo": settings.DB_ECHO,
        "pool_pre_ping": settings.DB_POOL_PRE_PING,
        "connect_args": {
            "timeout": settings.DB_CONNECT_TIMEOUT,
            "command_timeout": settings.DB_COMMAND_TIMEOUT,
            "server_settings": {"statement_timeout": str(settings.DB_STATEMENT_TIMEOUT_MS)},
        },
    }
    if settings.DEBUG:
        options["poolclass"] = NullPool
    else:
        options |= {
            "pool_size": settings.DB_POOL_SIZE,
            "max_overflow": settings.DB_MAX_OVERFLOW,
            "pool_recycle": settings.DB_POOL_RECYCLE,
            "pool_timeout": settings.DB_POOL_TIMEOUT,
        }
    return options


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    """The process's engine; nothing connects until the first query."""
    return create_async_engine(settings.DATABASE_URL, **(engine_options(settings) | overrides))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)
