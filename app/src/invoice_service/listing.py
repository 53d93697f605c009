"""The invoice list's keyset pagination: signed cursors and the page and count statements.

Order: newest first, ties (invoices created in one transaction share created_at) by id descending,
so that (created_at, id) is a strict order a row comparison can continue from, served by a backward
scan of ix_invoices_user_created_id / ix_invoices_user_status_created_id (no sort, no offset).

A cursor is the (created_at, id) of the last invoice of a page, signed: urlsafe base64, without
padding, of version (1 byte) | created_at in microseconds since the epoch (8) | id (16) | the first
12 bytes of an HMAC-SHA256 over the user's id and those 25 bytes, keyed from JWT_SECRET. A cursor
is thus opaque, bound to its user, and one that was altered, truncated or made up is refused with
a 422 naming the `cursor` parameter (never a 500). Rotating JWT_SECRET invalidates open cursors:
the client starts again from the first page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select, tuple_

from invoice_service.models import Invoice, InvoiceStatus
from invoice_service.settings import Settings

CURSOR_VERSION = 1
_CURSOR = struct.Struct(">Bq16s")
_CURSOR_MAC_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# count=true counts at most this many matches (then total = COUNT_LIMIT, total_capped = true).
COUNT_LIMIT = 10_000


def _cursor_key(settings: Settings) -> bytes:
    return _derive_cursor_key(settings.JWT_SECRET.get_secret_value())


@functools.lru_cache(maxsize=4)
def _derive_cursor_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"invoice-service list cursor", hashlib.sha256).digest()


def _cursor_mac(key: bytes, user_id: uuid.UUID, payload: bytes) -> bytes:
    return hmac.new(key, user_id.bytes + payload, hashlib.sha256).digest()[:_CURSOR_MAC_BYTES]


def encode_cursor(settings: Settings, user_id: uuid.UUID, created_at: datetime, invoice_id: uuid.UUID) -> str:
    """The opaque cursor continuing after (created_at, invoice_id) for user_id."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    payload = _CURSOR.pack(CURSOR_VERSION, micros, invoice_id.bytes)
    token = payload + _cursor_mac(_cursor_key(settings), user_id, payload)
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def invalid(parameter: str, value: str, message: str) -> RequestValidationError:
    """A 422 naming a query parameter, in FastAPI's own validation-error format."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", parameter), "msg": message, "input": value}]
    )


def decode_cursor(settings: Settings, user_id: uuid.UUID, cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) of the invoice a cursor continues after; RequestValidationError (422) when the
    cursor is not one this service gave this user."""
    try:
        token = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except ValueError:  # binascii.Error, non-ASCII text
        token = b""
    payload, mac = token[: _CURSOR.size], token[_CURSOR.size :]
    if (
        len(token) != _CURSOR.size + _CURSOR_MAC_BYTES
        or payload[0] != CURSOR_VERSION
        or not hmac.compare_digest(mac, _cursor_mac(_cursor_key(settings), user_id, payload))
    ):
        raise invalid(
            "cursor",
            cursor,
            "Invalid cursor: pass the `next_cursor` of a previous page of this user unchanged "
            "(or no cursor for the first page)",
        )
    _, micros, id_bytes = _CURSOR.unpack(payload)
    return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes)


# The invoices table itself (Core): the list reads plain rows of columns, past the ORM's entity
# machinery, and only what a summary shows and the cursor needs: never the photos' JSONB.
_INVOICES = Invoice.__table__.c
SUMMARY_COLUMNS = tuple(
    _INVOICES[name] for name in ("id", "status", "store_name", "purchase_date", "total", "created_at")
)


@functools.cache
def _list_statements(
    status_filter: bool, date_from: bool, date_to: bool, store: bool, after: bool
) -> tuple[Select[Any], Select[Any]]:
    """The page and count statements for one combination of filters, values bound at execution: built
    once per combination (32 at most), so a request pays neither the statement's construction nor its
    cache key. The page: `limit` rows of the summary's columns after (after_at, after_id), in the
    list's order. The count: the matches, up to `count_limit`."""
    conditions: list[ColumnElement[bool]] = [_INVOICES.user_id == bindparam("user_id")]
    if status_filter:
        conditions.append(_INVOICES.status == bindparam("status"))
    if date_from:
        conditions.append(_INVOICES.purchase_date >= bindparam("date_from"))
    if date_to:
        conditions.append(_INVOICES.purchase_date <= bindparam("date_to"))
    if store:
        conditions.append(_INVOICES.store_name.ilike(bindparam("store"), escape="\\"))
    page = select(*SUMMARY_COLUMNS).where(*conditions)
    if after:
        position = tuple_(
            bindparam("after_at", type_=_INVOICES.created_at.type),
            bindparam("after_id", type_=_INVOICES.id.type),
        )
        page = page.where(tuple_(_INVOICES.created_at, _INVOICES.id) < position)
    page = page.order_by(_INVOICES.created_at.desc(), _INVOICES.id.desc()).limit(
        bindparam("limit", type_=Integer)
    )
    matches = select(_INVOICES.id).where(*conditions).limit(bindparam("count_limit", type_=Integer))
    return page, select(func.count()).select_from(matches.subquery())


def list_statements(
    user_id: uuid.UUID,
    *,
    status_filter: InvoiceStatus | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    store: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 20,
) -> tuple[Select[Any], Select[Any], dict[str, Any]]:
    """The page statement (`limit` rows after `after`), the count statement (COUNT_LIMIT + 1 matches at
    most) and the values of both."""
    values: dict[str, Any] = {"user_id": user_id, "limit": limit, "count_limit": COUNT_LIMIT + 1}
    if status_filter is not None:
        values["status"] = status_filter
    if date_from is not None:
        values["date_from"] = date_from
    if date_to is not None:
        values["date_to"] = date_to
    if store:
        escaped = store.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values["store"] = f"%{escaped}%"
    if after is not None:
        values["after_at"], values["after_id"] = after
    page, count = _list_statements(
        "status" in values,
        "date_from" in values,
        "date_to" in values,
        "store" in values,
        "after_id" in values,
    )
    return page, count, values
