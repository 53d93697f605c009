"""Session fixtures: a throwaway PostgreSQL cluster and Redis server on loopback, a migrated database,
and the app run in-process (httpx over ASGI, lifespan included) with chosen settings."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).parent))

from app_helpers import AppFactory, migrate, register_and_login, running_app
from live_servers import PostgresServer, free_port, postgres_server, redis_server

from invoice_service.settings import Settings


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """The PostgreSQL server of the test session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server of the test session."""
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def database_url(pg: PostgresServer) -> str:
    """A database migrated to head, shared by the session (tests use their own users)."""
    url = pg.create_database("invoice_tests")
    migrate(url, "upgrade")
    return url


@pytest.fixture
def closed_port_url() -> str:
    """A PostgreSQL URL on a port where nothing listens."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"


@pytest.fixture
def make_settings(database_url: str, redis_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: real servers, uploads in tmp_path, offline OCR, no rate limits unless asked."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "UPLOAD_DIR": tmp_path / "uploads",
            "RATE_LIMIT_ENABLED": False,
            # Tests that enable the limits share one Redis: per-account counting only where a test asks.
            "RATE_LIMIT_LOGIN_ACCOUNT": "10000/hour",
            "EXTRACTION_PROVIDERS": "ocr",
            "JWT_SECRET": "test-secret-" + "x" * 32,
            "LOG_LEVEL": "INFO",
        }
        return Settings(**(values | overrides))

    return make


@pytest.fixture
def app_client(make_settings: Callable[..., Settings]) -> AppFactory:
    """`async with app_client(peer=..., **settings) as client:`."""

    def factory(peer: str = "127.0.0.1", **overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return running_app(make_settings(**overrides), peer=peer)

    return factory


@pytest.fixture
async def client(app_client: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The app with default test settings."""
    async with app_client() as c:
        yield c


@pytest.fixture
async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    """Authorization header of a fresh user of `client`."""
    return await register_and_login(client)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A direct engine on the test database, for assertions and setting up rows."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    yield engine
    await engine.dispose()
