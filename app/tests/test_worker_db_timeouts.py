"""Database timeouts of every engine the API and the worker build (`invoice_service.db`): PostgreSQL's
statement_timeout on each fresh connection, asyncpg's command_timeout and its connect timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from invoice_service.db import create_engine
from invoice_service.settings import Settings


@pytest.mark.parametrize("debug", [False, True], ids=["pool", "nullpool"])
async def test_statement_timeout_is_set_on_fresh_connections_and_cancels_slow_queries(
    make_settings: Callable[..., Settings], debug: bool
) -> None:
    engine = create_engine(make_settings(DB_STATEMENT_TIMEOUT_MS=300, DEBUG=debug))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "300ms"
            started = time.monotonic()
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT pg_sleep(5)"))
            elapsed = time.monotonic() - started
        # 57014 query_canceled: PostgreSQL itself cut the statement (asyncpg's QueryCanceledError).
        assert getattr(caught.value.orig, "sqlstate", None) == "57014", repr(caught.value.orig)
        assert "statement timeout" in str(caught.value.orig)
        assert elapsed < 3
        async with engine.connect() as conn:  # the connection (or the next one) is still usable
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_default_timeouts(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert (settings.DB_CONNECT_TIMEOUT, settings.DB_COMMAND_TIMEOUT) == (10, 35)
    assert settings.DB_STATEMENT_TIMEOUT_MS == 30000
    assert settings.DB_COMMAND_TIMEOUT * 1000 > settings.DB_STATEMENT_TIMEOUT_MS  # the server cuts first
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "30s"
            raw = await conn.get_raw_connection()
            assert raw.driver_connection._config.command_timeout == 35  # type: ignore[union-attr]
    finally:
        await engine.dispose()


async def test_command_timeout_cuts_a_statement_the_server_does_not(
    make_settings: Callable[..., Settings],
) -> None:
    engine = create_engine(make_settings(DB_STATEMENT_TIMEOUT_MS=0, DB_COMMAND_TIMEOUT=0.5))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "0"
            started = time.monotonic()
            with pytest.raises((TimeoutError, DBAPIError)) as caught:
                await conn.execute(text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 4, "the client-side command timeout did not fire"
        timed_out = caught.value if isinstance(caught.value, TimeoutError) else caught.value.orig
        assert isinstance(timed_out, TimeoutError) or "Timeout" in type(timed_out).__name__, repr(timed_out)
    finally:
        await engine.dispose()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a PostgreSQL that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


async def test_connect_timeout_gives_up_on_a_server_that_never_answers(
    make_settings: Callable[..., Settings], silent_server: int
) -> None:
    url = f"postgresql+asyncpg://invoice:invoice@127.0.0.1:{silent_server}/invoice"
    engine = create_engine(make_settings(DATABASE_URL=url, DB_CONNECT_TIMEOUT=0.5))
    started = time.monotonic()
    try:
        with pytest.raises((TimeoutError, OSError, DBAPIError)):
            # asyncpg's default would wait 60 s; the test gives up long before that.
            async with asyncio.timeout(10), engine.connect():
                pass
        assert time.monotonic() - started < 5
    finally:
        await engine.dispose()
