"""Spending by month, by store and top items over confirmed invoices; the per-user cache."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from invoice_service import dashboard_cache


async def user_id(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    return (await client.get("/auth/me", headers=auth)).json()["id"]


async def add_invoice(
    engine: AsyncEngine,
    owner: str,
    store: str,
    day: str,
    items: list[tuple[str, str]],
    status: str = "confirmed",
) -> str:
    invoice_id = str(uuid.uuid4())
    total = sum(Decimal(price) for _, price in items)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO invoices (id, user_id, status, store_name, purchase_date, total, images) "
                "VALUES (:id, :user, :status, :store, :day, :total, '[]')"
            ),
            {
                "id": invoice_id,
                "user": owner,
                "status": status,
                "store": store,
                "day": date.fromisoformat(day),
                "total": total,
            },
        )
        for position, (description, price) in enumerate(items):
            await conn.execute(
                text(
                    "INSERT INTO invoice_items (invoice_id, position, description, quantity, unit_price, "
                    "total) VALUES (:id, :pos, :d, 1, :p, :p)"
                ),
                {"id": invoice_id, "pos": position, "d": description, "p": Decimal(price)},
            )
    return invoice_id


async def test_spending_dashboard(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    await add_invoice(engine, owner, "Mercado A", "2026-01-10", [("Arroz", "20.00"), ("Feijao", "8.00")])
    await add_invoice(engine, owner, "Mercado A", "2026-02-03", [("Arroz", "21.00")])
    await add_invoice(engine, owner, "Padaria B", "2026-02-20", [("Pao", "5.50")])
    await add_invoice(engine, owner, "Mercado A", "2026-02-21", [("Caviar", "999.00")], status="extracted")

    response = await client.get("/dashboard/spending", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert [(m["month"], Decimal(m["total"]), m["invoices"]) for m in body["by_month"]] == [
        ("2026-01", Decimal("28.00"), 1),
        ("2026-02", Decimal("26.50"), 2),
    ]
    assert [(s["store_name"], Decimal(s["total"])) for s in body["by_store"]] == [
        ("Mercado A", Decimal("49.00")),
        ("Padaria B", Decimal("5.50")),
    ]
    assert body["top_items"][0]["description"] == "arroz"
    assert Decimal(body["top_items"][0]["total"]) == Decimal("41.00")
    assert body["top_items"][0]["purchases"] == 2
    assert all(i["description"] != "caviar" for i in body["top_items"])  # unconfirmed: not spending

    february = (
        await client.get(
            "/dashboard/spending", headers=auth, params={"date_from": "2026-02-01", "date_to": "2026-02-28"}
        )
    ).json()
    assert [m["month"] for m in february["by_month"]] == ["2026-02"]


async def test_dashboard_cache_hit_and_invalidation(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    await add_invoice(engine, owner, "Mercado C", "2026-03-01", [("Leite", "4.00")])
    first = await client.get("/dashboard/spending", headers=auth)
    second = await client.get("/dashboard/spending", headers=auth)
    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "hit"
    assert second.json()["by_store"] == first.json()["by_store"]

    extracted = await add_invoice(
        engine, owner, "Mercado D", "2026-03-02", [("Ovos", "12.00")], status="extracted"
    )
    confirm = await client.post(f"/invoices/{extracted}/confirm", headers=auth, json={})
    assert confirm.status_code == 200
    after = await client.get("/dashboard/spending", headers=auth)
    assert after.headers["x-cache"] == "miss"
    assert {s["store_name"] for s in after.json()["by_store"]} == {"Mercado C", "Mercado D"}


async def test_an_invalidation_while_the_answer_is_computed_is_not_served_stale(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await user_id(client, auth)
    await add_invoice(engine, owner, "Mercado E", "2026-04-01", [("Cafe", "15.00")])
    redis = client.app.state.core.redis  # type: ignore[attr-defined]
    store = dashboard_cache.put

    async def confirm_meanwhile_then_store(*args: Any, **kwargs: Any) -> None:
        # Between this request's cache lookup and its store: another invoice is confirmed, and the
        # confirm invalidates the user's answers (as POST /invoices/{id}/confirm does).
        await add_invoice(engine, owner, "Mercado F", "2026-04-02", [("Acucar", "6.00")])
        await dashboard_cache.invalidate(redis, uuid.UUID(owner))
        await store(*args, **kwargs)

    monkeypatch.setattr(dashboard_cache, "put", confirm_meanwhile_then_store)
    computed_before = await client.get("/dashboard/spending", headers=auth)
    monkeypatch.undo()
    assert computed_before.headers["x-cache"] == "miss"
    assert {s["store_name"] for s in computed_before.json()["by_store"]} == {"Mercado E"}

    after = await client.get("/dashboard/spending", headers=auth)
    assert {s["store_name"] for s in after.json()["by_store"]} == {"Mercado E", "Mercado F"}
    assert after.headers["x-cache"] == "miss"
    assert (await client.get("/dashboard/spending", headers=auth)).headers["x-cache"] == "hit"


async def test_the_cache_stores_under_the_version_read_before_computing(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        owner = uuid.uuid4()
        lookup = await dashboard_cache.get(redis, 60, owner, "p")
        assert lookup.value is None
        await dashboard_cache.invalidate(redis, owner)
        await dashboard_cache.put(redis, 60, lookup, b"computed before the invalidation")
        assert (await dashboard_cache.get(redis, 60, owner, "p")).value is None
        fresh = await dashboard_cache.get(redis, 60, owner, "p")
        await dashboard_cache.put(redis, 60, fresh, b"current")
        assert (await dashboard_cache.get(redis, 60, owner, "p")).value == b"current"
        assert (await dashboard_cache.get(redis, 60, owner, "other params")).value is None
        await redis.script_flush()  # the lookup script is loaded again when Redis lost it
        assert (await dashboard_cache.get(redis, 60, owner, "p")).value == b"current"
        assert (await dashboard_cache.get(redis, 0, owner, "p")).value is None  # TTL 0: cache off
    finally:
        await redis.aclose()


async def test_a_cache_hit_is_one_redis_round_trip(
    client: httpx.AsyncClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.get("/dashboard/spending", headers=auth)
    redis = client.app.state.core.redis  # type: ignore[attr-defined]
    commands: list[Any] = []
    execute = redis.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        commands.append(args[0])
        return await execute(*args, **kwargs)

    monkeypatch.setattr(redis, "execute_command", counted)
    hit = await client.get("/dashboard/spending", headers=auth)
    assert hit.headers["x-cache"] == "hit"
    assert hit.json()["cached"] is True
    assert commands == ["EVALSHA"]


async def test_a_cache_hit_takes_no_database_connection(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """The token names the user; a cached answer needs neither the user's row nor any query."""
    engine = client.app.state.core.engine  # type: ignore[attr-defined]
    checkouts: list[object] = []

    def count(*args: object) -> None:
        checkouts.append(args)

    event.listen(engine.sync_engine.pool, "checkout", count)
    try:
        miss = await client.get("/dashboard/spending", headers=auth)
        taken_by_miss = len(checkouts)
        hit = await client.get("/dashboard/spending", headers=auth)
    finally:
        event.remove(engine.sync_engine.pool, "checkout", count)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit")
    assert taken_by_miss >= 1
    assert len(checkouts) == taken_by_miss
