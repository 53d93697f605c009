"""The spending dashboard: confirmed invoices by month, by store, and the top items."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from invoice_service import dashboard_cache
from invoice_service.deps import StateDep, UserIdDep
from invoice_service.models import Invoice, InvoiceItem, InvoiceStatus
from invoice_service.schemas import ItemSpending, MonthSpending, SpendingDashboard, StoreSpending

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/spending", response_model=SpendingDashboard)
async def spending(
    user_id: UserIdDep,
    state: StateDep,
    date_from: Annotated[date | None, Query(description="Purchases on or after")] = None,
    date_to: Annotated[date | None, Query(description="Purchases on or before")] = None,
    top: Annotated[int, Query(ge=1, le=50, description="How many stores and items")] = 10,
) -> Response:
    """Where the money went. Answers are cached per user for DASHBOARD_CACHE_TTL seconds and dropped
    as soon as one of the user's invoices is confirmed or deleted."""
    params = f"{date_from}|{date_to}|{top}"
    ttl = state.settings.DASHBOARD_CACHE_TTL
    # The version is read here, once, BEFORE the queries: the answer is stored under it, so an
    # invalidation during the computation makes it unreachable instead of serving it as current.
    lookup = await dashboard_cache.get(state.redis, ttl, user_id, params)
    if lookup.value is not None:
        return Response(content=lookup.value, media_type="application/json", headers={"X-Cache": "hit"})
    async with state.sessions() as session:
        answer = await _compute(session, user_id, date_from, date_to, top)
    body = answer.model_dump_json().encode()
    if lookup.key is not None:
        answer.cached = True
        await dashboard_cache.put(state.redis, ttl, lookup, answer.model_dump_json().encode())
    return Response(content=body, media_type="application/json", headers={"X-Cache": "miss"})


async def _compute(
    session: AsyncSession, user_id: uuid.UUID, date_from: date | None, date_to: date | None, top: int
) -> SpendingDashboard:
    """The dashboard from the database: three grouped queries over the user's confirmed invoices.
    (A session of its own, opened only on a cache miss: a hit costs no session nor connection.)"""

    day = func.coalesce(Invoice.purchase_date, cast(Invoice.created_at, Date))
    conditions = [Invoice.user_id == user_id, Invoice.status == InvoiceStatus.CONFIRMED]
    if date_from is not None:
        conditions.append(day >= date_from)
    if date_to is not None:
        conditions.append(day <= date_to)
    amount = func.coalesce(func.sum(Invoice.total), Decimal(0))

    month = func.to_char(day, "YYYY-MM")
    by_month = (
        await session.execute(
            select(month, amount, func.count()).where(*conditions).group_by(month).order_by(month)
        )
    ).all()
    store = func.coalesce(Invoice.store_name, "(unknown)")
    by_store = (
        await session.execute(
            select(store, amount, func.count())
            .where(*conditions)
            .group_by(store)
            .order_by(amount.desc(), store)
            .limit(top)
        )
    ).all()
    description = func.lower(InvoiceItem.description)
    item_total = func.coalesce(func.sum(InvoiceItem.total), Decimal(0))
    items = (
        await session.execute(
            select(description, item_total, func.sum(InvoiceItem.quantity), func.count())
            .join(Invoice, Invoice.id == InvoiceItem.invoice_id)
            .where(*conditions)
            .group_by(description)
            .order_by(item_total.desc(), description)
            .limit(top)
        )
    ).all()

    return SpendingDashboard(
        by_month=[MonthSpending(month=m, total=t, invoices=n) for m, t, n in by_month],
        by_store=[StoreSpending(store_name=s, total=t, invoices=n) for s, t, n in by_store],
        top_items=[ItemSpending(description=d, total=t, quantity=q, purchases=n) for d, t, q, n in items],
    )
