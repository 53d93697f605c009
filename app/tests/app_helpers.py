"""Helpers shared by the app tests (imported by name: `conftest` is ambiguous next to
tests/extraction/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
from live_servers import PostgresServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from invoice_service.main import create_app
from invoice_service.settings import Settings

VENV_BIN = Path(sys.executable).parent
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000005000175e6ba5a0000000049454e44ae426082"
)
AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def api_process_env(
    database_url: str, redis_url: str, port: int, uploads: Path, **extra: str
) -> dict[str, str]:
    """The environment of an `invoice-api` process under test: the session's servers, offline OCR,
    no rate limits, a test secret; ``extra`` adds or overrides (e.g. UVICORN_WORKERS="2")."""
    inherited = {
        k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR" and not k.endswith("_API_KEY")
    }
    return (
        inherited
        | {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "UVICORN_WORKERS": "1",
            "RATE_LIMIT_ENABLED": "false",
            "EXTRACTION_PROVIDERS": "ocr",
            "UPLOAD_DIR": str(uploads),
            "JWT_SECRET": "proc-secret-" + "p" * 32,
        }
        | extra
    )


def migrate(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `invoice-migrate` console script (what the image runs) against database_url."""
    return subprocess.run(
        [str(VENV_BIN / "invoice-migrate"), *args],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@asynccontextmanager
async def running_app(settings: Settings, peer: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client whose TCP peer address is `peer`."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def register_and_login(client: httpx.AsyncClient) -> dict[str, str]:
    """A fresh user; returns the Authorization header."""
    credentials = {"email": f"user-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse 42"}
    response = await client.post("/auth/register", json=credentials)
    assert response.status_code == 202, response.text
    response = await client.post("/auth/login", json=credentials)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def migrated_database(pg: PostgresServer, name: str) -> str:
    """A database of its own on the session's cluster, migrated to head: the jobs a test module
    queues there are the only ones a worker there can claim."""
    url = pg.create_database(name)
    migrate(url, "upgrade")
    return url


@asynccontextmanager
async def emptied_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on database_url whose users (and, by cascade, invoices, items and jobs) were deleted
    first."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users"))
    try:
        yield engine
    finally:
        await engine.dispose()
