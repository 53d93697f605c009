"""POST /invoices/{id}/confirm under concurrency: the invoice row is locked before its items are read,
so two confirms of one invoice with different items end with one of the two item sets, never both
and never a mix."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

# How long a confirm about to commit waits for the other one to get there too. Without the row lock
# both read the invoice (and its items) before either commits: they meet at once. With it the
# second one waits in PostgreSQL for the first one's commit, so the first one waits this long alone.
MEET_TIMEOUT = 1.5


async def extracted_invoice(engine: AsyncEngine, owner: str) -> str:
    invoice_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO invoices (id, user_id, status, store_name, total, images) "
                "VALUES (:id, :user, 'extracted', 'Mercado', 30.00, '[]')"
            ),
            {"id": invoice_id, "user": owner},
        )
        for position, description in enumerate(["Extraido 1", "Extraido 2"]):
            await conn.execute(
                text(
                    "INSERT INTO invoice_items (invoice_id, position, description, quantity, total) "
                    "VALUES (:id, :pos, :d, 1, 15.00)"
                ),
                {"id": invoice_id, "pos": position, "d": description},
            )
    return invoice_id


def items(*descriptions: str) -> list[dict[str, Any]]:
    return [
        {"description": d, "quantity": "1", "unit_price": "10.00", "total": "10.00"} for d in descriptions
    ]


async def test_two_concurrent_confirms_leave_exactly_one_item_set(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = (await client.get("/auth/me", headers=auth)).json()["id"]
    invoice_id = await extracted_invoice(engine, owner)
    first = ["Arroz 5kg", "Feijao 1kg", "Cafe 500g"]
    second = ["Leite 1L", "Pao"]

    # Both confirms reach their commit before either commits, if nothing stops them: the widest window.
    arrived, met = 0, asyncio.Event()
    commit = AsyncSession.commit

    async def commit_when_both_are_ready(self: AsyncSession) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            met.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(met.wait(), MEET_TIMEOUT)
        await commit(self)

    monkeypatch.setattr(AsyncSession, "commit", commit_when_both_are_ready)

    async def confirm(descriptions: list[str]) -> httpx.Response:
        return await client.post(
            f"/invoices/{invoice_id}/confirm", headers=auth, json={"items": items(*descriptions)}
        )

    answers = await asyncio.gather(confirm(first), confirm(second))
    monkeypatch.undo()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]

    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text(
                    "SELECT description, position FROM invoice_items WHERE invoice_id = :id ORDER BY position"
                ),
                {"id": invoice_id},
            )
        ).all()
    descriptions = [d for d, _ in stored]
    assert descriptions in (first, second), f"both confirms' items, or a mix: {descriptions}"
    assert [p for _, p in stored] == list(range(len(stored)))
    detail = (await client.get(f"/invoices/{invoice_id}", headers=auth)).json()
    assert [i["description"] for i in detail["items"]] == descriptions
    assert detail["status"] == "confirmed"
