"""Alembic environment: runs migrations over the async engine built from Settings.DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from invoice_service.db import create_engine
from invoice_service.models import Base
from invoice_service.settings import Settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().DATABASE_URL


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    settings = Settings(DATABASE_URL=_url(), DEBUG=True)  # DEBUG: NullPool, one short-lived connection
    # No statement or command timeout: an index build on a big table may take longer than a request.
    engine = create_engine(
        settings,
        connect_args={"timeout": settings.DB_CONNECT_TIMEOUT, "server_settings": {"statement_timeout": "0"}},
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
