"""Pool settings really applied, NullPool in DEBUG, migrations down and up on a fresh database and
in step with the models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from app_helpers import migrate
from live_servers import PostgresServer
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from invoice_service.db import create_engine
from invoice_service.models import Base
from invoice_service.settings import Settings

TABLES = {"alembic_version", "users", "invoices", "invoice_items", "jobs"}


async def test_pool_settings_from_config(make_settings: Callable[..., Settings]) -> None:
    engine = create_engine(
        make_settings(DB_POOL_SIZE=7, DB_MAX_OVERFLOW=3, DB_POOL_TIMEOUT=12, DB_POOL_RECYCLE=900)
    )
    try:
        pool = engine.pool
        assert pool.size() == 7
        assert pool._max_overflow == 3
        assert pool.timeout() == 12
        assert pool._recycle == 900
        # Checkouts are tested by ping_idle_connections (idle connections only), not on every one.
        assert pool._pre_ping is False
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert pool.checkedin() == 1  # the connection went back to the pool, not closed
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(database_url: str, pid: int) -> None:
    """Close one backend from another connection, as a PostgreSQL restart or an idle timeout does."""
    killer = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with killer.connect() as conn:
            assert (await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})).scalar_one()
    finally:
        await killer.dispose()
    await asyncio.sleep(0.1)


async def test_a_pooled_connection_closed_while_idle_is_replaced_on_checkout(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    """The server closed the pooled connection while it sat idle: the next checkout tests it, opens
    a new one and the query succeeds (the request goes on)."""
    engine = create_engine(make_settings(DB_POOL_SIZE=1, DB_POOL_PING_IDLE_SECONDS=0.2))
    try:
        first = await _backend_pid(engine)
        await _terminate(database_url, first)
        await asyncio.sleep(0.2)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_connection_used_moments_ago_is_not_tested(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    """Within DB_POOL_PING_IDLE_SECONDS the checkout costs no round trip: the connection is handed
    out untested (here one the server has just closed, so the query meets the closed connection),
    and that error invalidates it: the next checkout gets a new one."""
    engine = create_engine(make_settings(DB_POOL_SIZE=1, DB_POOL_PING_IDLE_SECONDS=60))
    try:
        first = await _backend_pid(engine)
        await _terminate(database_url, first)
        with pytest.raises(DBAPIError) as raised:
            await _backend_pid(engine)
        assert raised.value.connection_invalidated
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_default_pool_is_10_plus_5(make_settings: Callable[..., Settings]) -> None:
    engine = create_engine(make_settings())
    try:
        assert engine.pool.size() == 10
        assert engine.pool._max_overflow == 5
    finally:
        await engine.dispose()


async def test_debug_uses_nullpool(make_settings: Callable[..., Settings]) -> None:
    engine = create_engine(make_settings(DEBUG=True))
    try:
        assert isinstance(engine.pool, NullPool)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_migrations_up_down_up_on_a_fresh_database(pg: PostgresServer) -> None:
    url = pg.create_database("migrations_roundtrip")
    try:
        migrate(url, "upgrade")
        assert await _tables(url) == TABLES
        migrate(url, "downgrade", "base")
        assert await _tables(url) == {"alembic_version"}
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.connect() as conn:  # enum types dropped too
            types = (
                (
                    await conn.execute(
                        text("SELECT typname FROM pg_type WHERE typname IN ('invoice_status', 'job_status')")
                    )
                )
                .scalars()
                .all()
            )
        await engine.dispose()
        assert types == []
        migrate(url, "upgrade", "head")
        assert await _tables(url) == TABLES
        assert "0003 (head)" in migrate(url, "current").stdout
    finally:
        pg.drop_database("migrations_roundtrip")


async def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
