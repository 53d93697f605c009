"""The per-user storage quota (MAX_USER_STORAGE_BYTES): an upload that would pass it gets 413 and
stores nothing; deleting invoices makes room; two concurrent uploads cannot both squeeze in."""

from __future__ import annotations

import asyncio

import httpx
from app_helpers import PNG_1PX, AppFactory, register_and_login
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def photo(size: int) -> bytes:
    """A PNG (by its magic bytes) of exactly `size` bytes."""
    return PNG_1PX + b"\0" * (size - len(PNG_1PX))


async def upload(client: httpx.AsyncClient, auth: dict[str, str], size: int) -> httpx.Response:
    return await client.post(
        "/invoices/upload", files=[("files", ("r.png", photo(size), "image/png"))], headers=auth
    )


async def test_an_upload_past_the_quota_is_413_and_stores_nothing(
    app_client: AppFactory, engine: AsyncEngine
) -> None:
    async with app_client(MAX_USER_STORAGE_BYTES=10_000) as client:
        auth = await register_and_login(client)
        first = await upload(client, auth, 6_000)
        assert first.status_code == 202
        refused = await upload(client, auth, 6_000)
        assert refused.status_code == 413
        assert "quota" in refused.json()["detail"]
        user_id = (await client.get("/auth/me", headers=auth)).json()["id"]
        async with engine.connect() as connection:
            count = (
                await connection.execute(
                    text("SELECT count(*) FROM invoices WHERE user_id = :u"), {"u": user_id}
                )
            ).scalar_one()
        assert count == 1
        # another user has a quota of their own
        assert (await upload(client, await register_and_login(client), 6_000)).status_code == 202
        # deleting the first invoice makes room
        deleted = await client.delete(f"/invoices/{first.json()['invoice_id']}", headers=auth)
        assert deleted.status_code == 204
        assert (await upload(client, auth, 6_000)).status_code == 202


async def test_concurrent_uploads_cannot_both_pass_the_quota(app_client: AppFactory) -> None:
    async with app_client(MAX_USER_STORAGE_BYTES=10_000) as client:
        auth = await register_and_login(client)
        statuses = sorted(
            r.status_code for r in await asyncio.gather(*(upload(client, auth, 6_000) for _ in range(4)))
        )
    assert statuses == [202, 413, 413, 413]
