"""Extracted values made storable: what the invoices and invoice_items columns can hold.

The one check between what a provider answered (or the cache kept) and the database write; see
bound_to_columns.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from invoice_service.extraction import ExtractedItem
from invoice_service.models import Money, Quantity


def _fits(value: Decimal, precision: int, scale: int) -> bool:
    """Whether PostgreSQL stores value in numeric(precision, scale) (it rounds to `scale` places,
    half away from zero, and refuses what then has more than precision - scale integer digits)."""
    if not value.is_finite():
        return False
    limit = Decimal(10) ** (precision - scale)
    if abs(value) >= limit:  # checked first: quantizing a huge value would overflow the context
        return False
    return abs(value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)) < limit


def _money(value: Decimal | None, where: str, dropped: list[str]) -> Decimal | None:
    if value is None or _fits(value, Money.precision, Money.scale):
        return value
    dropped.append(where)
    return None


def _text(value: str | None) -> str | None:
    return None if value is None else value.replace("\x00", "")


class BoundedItem(NamedTuple):
    """An item as the invoice_items columns take it."""

    description: str
    quantity: Decimal
    unit_price: Decimal | None
    total: Decimal | None


def bound_to_columns(merged: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The merged extraction with every value made storable; returns it and the fields dropped.

    The one check between what a provider answered (or the cache kept) and the database write, so a
    value the columns cannot hold is an extraction problem, not a failed job: before it, a total of
    10^11 made the INSERT fail, the job failed, and every retry failed the same way on the cached
    result. Chosen: keep the rest of the receipt and leave the bad field empty, for the user to fill in
    when confirming (the invoice's extraction_error says so), rather than discarding the provider's
    whole answer. Money (totals, prices) must fit numeric(12,2) and quantities numeric(12,3), as in
    `invoice_service.models`: out of range (or not finite) money becomes None, a quantity 1 (the
    column's default: it is not nullable). NUL characters, which PostgreSQL text cannot hold, are
    removed from texts; descriptions are cut to the column's 255 characters.
    """
    dropped: list[str] = []
    items: list[BoundedItem] = []
    extracted: list[ExtractedItem] = merged["items"]
    for position, item in enumerate(extracted):
        quantity = item.quantity or Decimal(1)
        if not _fits(quantity, Quantity.precision, Quantity.scale):
            dropped.append(f"items[{position}].quantity")
            quantity = Decimal(1)
        items.append(
            BoundedItem(
                description=(_text(item.description) or "")[:255],
                quantity=quantity,
                unit_price=_money(item.unit_price, f"items[{position}].unit_price", dropped),
                total=_money(item.total, f"items[{position}].total", dropped),
            )
        )
    bounded = merged | {
        "store_name": _text(merged["store_name"]),
        "store_tax_id": _text(merged["store_tax_id"]),
        "total": _money(merged["total"], "total", dropped),
        "items": items,
    }
    return bounded, dropped
