"""The async engine and session factory, sized from settings."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine.interfaces import DBAPIConnection
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
        # SQLAlchemy's own pre-ping tests every checkout (three round trips with asyncpg: BEGIN, a
        # ping, COMMIT); ping_idle_connections tests only the connections that sat idle.
        "pool_pre_ping": False,
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
    """The process's engine; nothing connects until the first query. Pooled connections idle for
    DB_POOL_PING_IDLE_SECONDS or more are tested on checkout (DB_POOL_PRE_PING)."""
    engine = create_async_engine(settings.DATABASE_URL, **(engine_options(settings) | overrides))
    if settings.DB_POOL_PRE_PING and not settings.DEBUG:
        ping_idle_connections(engine, settings.DB_POOL_PING_IDLE_SECONDS)
    return engine


IDLE_SINCE = "invoice_service.idle_since"


def ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Test a pooled connection on checkout when it was checked in idle_seconds ago or earlier (a
    new connection is not tested). A connection the server closed (a restart, an idle timeout)
    invalidates it and every connection opened before it, and the checkout gets a new one: the
    request goes on. A connection used moments ago skips the test, as HikariCP's alive-bypass window
    does: under load that saves a round trip or three per request. (A restart in the middle of
    traffic still fails the requests already on a dead connection; their error invalidates the pool.)"""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def checked_in(_dbapi_connection: DBAPIConnection | None, record: Any) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: DBAPIConnection, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError(f"pooled connection closed by the server: {error}") from error
            raise

    event.listen(pool, "checkin", checked_in)
    event.listen(pool, "checkout", checked_out)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)
