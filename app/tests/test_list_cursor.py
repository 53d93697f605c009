"""GET /invoices: keyset (cursor) pagination, filters with the cursor, refused cursors, the opt-in
capped count, and the plan of the list query (an index, no sequential scan, no sort)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from app_helpers import register_and_login
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from invoice_service import listing

STORES = ["Carrefour", "Pao de Acucar", "Extra", "Dia"]
STATUSES = ["confirmed", "confirmed", "extracted", "failed"]


async def user_id(client: httpx.AsyncClient, auth: dict[str, str]) -> uuid.UUID:
    return uuid.UUID((await client.get("/auth/me", headers=auth)).json()["id"])


async def insert_invoice(engine: AsyncEngine, owner: uuid.UUID, created_at: datetime, **values: Any) -> dict:
    row = {
        "id": uuid.uuid4(),
        "user": owner,
        "created_at": created_at,
        "status": values.get("status", "confirmed"),
        "store": values.get("store", "Mercado"),
        "day": values.get("day", date(2026, 1, 1)),
    }
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO invoices (id, user_id, status, store_name, purchase_date, total, images, "
                "created_at) VALUES (:id, :user, CAST(:status AS invoice_status), :store, :day, 1.00, '[]', "
                ":created_at)"
            ),
            row,
        )
    return row


def newest_first(rows: list[dict]) -> list[str]:
    """Ids in the list's order: created_at descending, ties by id descending."""
    return [str(r["id"]) for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


async def walk(
    client: httpx.AsyncClient, auth: dict[str, str], between_pages: Any = None, **params: Any
) -> list[str]:
    """Every page from the first, following next_cursor; returns the ids in the order served."""
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        query = {**params} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/invoices", headers=auth, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= int(params.get("page_size", 20))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert page["items"], "a page with a next_cursor is never empty"
        if between_pages is not None:
            await between_pages()
    raise AssertionError("the walk did not end")


async def test_walking_the_cursor_returns_every_invoice_once_in_order_while_invoices_are_added(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    # 23 invoices, three to a timestamp (one transaction's rows share created_at): ties cross pages.
    rows = [await insert_invoice(engine, owner, start - timedelta(seconds=i // 3)) for i in range(23)]
    added: list[dict] = []

    async def upload_meanwhile() -> None:  # a new invoice between every two pages (now() is newer)
        added.append(await insert_invoice(engine, owner, datetime.now(UTC)))

    walked = await walk(client, auth, upload_meanwhile, page_size=4)
    assert walked == newest_first(rows)  # each exactly once, in order, none of those added meanwhile
    assert len(set(walked)) == len(walked)
    assert len(added) == 5
    # A new walk starts with them.
    assert (await walk(client, auth, page_size=100))[:5] == newest_first(added)


async def test_filters_combine_with_the_cursor(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    start = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        await insert_invoice(
            engine,
            owner,
            start - timedelta(minutes=i // 2),
            status=STATUSES[i % 4],
            store=STORES[i % 3],
            day=date(2026, 1, 1) + timedelta(days=i),
        )
        for i in range(60)
    ]
    other = await register_and_login(client)  # someone else's invoices never show
    await insert_invoice(engine, await user_id(client, other), start, store="Carrefour")

    def expected(status: str | None, store: str | None, day_from: date | None, day_to: date | None) -> list:
        return newest_first(
            [
                r
                for r in rows
                if (status is None or r["status"] == status)
                and (store is None or store.lower() in r["store"].lower())
                and (day_from is None or r["day"] >= day_from)
                and (day_to is None or r["day"] <= day_to)
            ]
        )

    cases = [
        {"status": "confirmed"},
        {"store": "carre"},
        {"status": "confirmed", "store": "ACUCAR", "date_from": date(2026, 1, 10)},
        {"date_from": date(2026, 1, 5), "date_to": date(2026, 2, 1)},
        {"status": "failed", "date_to": date(2026, 1, 20)},
    ]
    for case in cases:
        want = expected(case.get("status"), case.get("store"), case.get("date_from"), case.get("date_to"))
        assert len(want) >= 3, case
        params = {k: str(v) for k, v in case.items()}
        assert await walk(client, auth, page_size=2, **params) == want, case
        counted = (await client.get("/invoices", headers=auth, params={**params, "count": "true"})).json()
        assert counted["total"] == len(want), case


async def test_a_malformed_or_forged_cursor_is_422_never_500(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    for i in range(3):
        await insert_invoice(engine, owner, datetime(2026, 5, 1, tzinfo=UTC) - timedelta(seconds=i))
    real = (await client.get("/invoices", headers=auth, params={"page_size": 1})).json()["next_cursor"]
    assert (await client.get("/invoices", headers=auth, params={"cursor": real})).status_code == 200

    def flipped(position: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        swap = alphabet[(alphabet.index(real[position]) + 1) % 64]
        return real[:position] + swap + real[position + 1 :]

    other = await register_and_login(client)
    await insert_invoice(engine, await user_id(client, other), datetime(2026, 5, 1, tzinfo=UTC))
    await insert_invoice(engine, await user_id(client, other), datetime(2026, 5, 2, tzinfo=UTC))
    someone_elses = (await client.get("/invoices", headers=other, params={"page_size": 1})).json()
    unsigned = base64.urlsafe_b64encode(
        b"\x01" + (10**15).to_bytes(8, "big") + uuid.uuid4().bytes + bytes(12)
    ).decode()
    forged = [
        "not a cursor!",
        "%%%%",
        "AAAA",
        "é" * 10,
        real[:-6],  # truncated
        real + "AAAA",  # longer
        flipped(5),  # the position (created_at) altered
        flipped(20),  # the id altered
        flipped(40),  # the signature altered
        unsigned,  # well-formed, made up
        "Ag" + real[2:],  # another version
        someone_elses["next_cursor"],  # valid, but not this user's
        "A" * 201,  # longer than any cursor
    ]
    for cursor in forged:
        response = await client.get("/invoices", headers=auth, params={"cursor": cursor})
        assert response.status_code == 422, (cursor, response.status_code, response.text)
        detail = response.json()["detail"]
        assert detail[0]["loc"] == ["query", "cursor"], (cursor, detail)
        if len(cursor) <= 200:
            assert "Invalid cursor" in detail[0]["msg"], (cursor, detail)


async def test_total_is_counted_only_when_asked_and_capped(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await user_id(client, auth)
    for i in range(5):
        await insert_invoice(engine, owner, datetime(2026, 6, 1, tzinfo=UTC) - timedelta(seconds=i))
    plain = (await client.get("/invoices", headers=auth, params={"page_size": 2})).json()
    assert (plain["total"], plain["total_capped"]) == (None, False)
    asked = {"page_size": 2, "count": "true"}
    counted = (await client.get("/invoices", headers=auth, params=asked)).json()
    assert (counted["total"], counted["total_capped"]) == (5, False)
    later = (
        await client.get("/invoices", headers=auth, params=asked | {"cursor": counted["next_cursor"]})
    ).json()
    assert later["total"] == 5  # all matches, not those left after the cursor
    monkeypatch.setattr(listing, "COUNT_LIMIT", 3)
    capped = (await client.get("/invoices", headers=auth, params=asked)).json()
    assert (capped["total"], capped["total_capped"]) == (3, True)


async def test_offset_pages_are_refused_with_a_pointer_to_the_cursor(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.get("/invoices", headers=auth, params={"page": 1})).status_code == 200
    response = await client.get("/invoices", headers=auth, params={"page": 2, "page_size": 10})
    assert response.status_code == 422
    assert "next_cursor" in response.json()["detail"][0]["msg"]


async def test_the_list_query_reads_an_index_in_order_not_the_table(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    owner = await user_id(client, auth)
    async with engine.begin() as conn:
        others = [uuid.uuid4() for _ in range(3)]
        for other in others:
            await conn.execute(
                text("INSERT INTO users (id, email, password_hash) VALUES (:id, :email, 'x')"),
                {"id": other, "email": f"bulk-{other.hex[:12]}@example.com"},
            )
        for who in [owner, *others]:  # 6000 invoices, 1500 of them this user's
            await conn.execute(
                text(
                    "INSERT INTO invoices (id, user_id, status, store_name, purchase_date, total, images, "
                    "created_at) SELECT gen_random_uuid(), :user, CAST((ARRAY['confirmed', 'confirmed', "
                    "'confirmed', 'extracted'])[1 + g % 4] AS invoice_status), 'Store ' || (g % 8), "
                    "DATE '2025-01-01' + g % 700, :total, '[]', now() - g * INTERVAL '1 hour' "
                    "FROM generate_series(1, 1500) AS g"
                ),
                {"user": who, "total": Decimal("12.34")},
            )
        await conn.execute(text("ANALYZE invoices"))

    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT invoices.id") and "ORDER BY" in statement:
            captured.append((statement, parameters))

    app_engine = client.app.state.core.engine  # type: ignore[attr-defined]
    event.listen(app_engine.sync_engine, "before_cursor_execute", capture)
    try:
        first = (await client.get("/invoices", headers=auth)).json()
        await client.get("/invoices", headers=auth, params={"cursor": first["next_cursor"]})
        filtered = {"status": "confirmed", "store": "store 2", "date_from": "2025-03-01"}
        page = (await client.get("/invoices", headers=auth, params=filtered)).json()
        assert len(page["items"]) == 20, page
        await client.get("/invoices", headers=auth, params=filtered | {"cursor": page["next_cursor"]})
        await client.get("/invoices", headers=auth, params={"status": "extracted"})
    finally:
        event.remove(app_engine.sync_engine, "before_cursor_execute", capture)
    assert len(captured) == 5

    plans = []
    async with engine.connect() as conn:
        # The plan for these values, and the generic plan PostgreSQL may switch a prepared statement
        # to (asyncpg prepares every statement) after five executions.
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.exec_driver_sql(f"SET plan_cache_mode = {mode}")
            for statement, parameters in captured:
                plan = "\n".join(
                    (await conn.exec_driver_sql("EXPLAIN " + statement, tuple(parameters))).scalars().all()
                )
                plans.append(plan)
                assert "Seq Scan" not in plan, plan
                assert (
                    "ix_invoices_user_created_id" in plan or "ix_invoices_user_status_created_id" in plan
                ), plan
    # Unfiltered, and by status: the page comes straight off the index, in order: no sort of the matches
    # (plans[5:] are the generic plans).
    for plan in (plans[0], plans[1], plans[4], plans[5], plans[6], plans[9]):
        assert "Sort" not in plan, plan
        assert "Index Scan Backward" in plan, plan
    assert "ix_invoices_user_status_created_id" in plans[4], plans[4]
