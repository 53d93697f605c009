"""Invoices: upload photos (202 + job), detail, list, confirm with edits, delete."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import ColumnElement, Integer, Select, bindparam, delete, func, select, tuple_
from sqlalchemy.orm import selectinload

from invoice_service import dashboard_cache, jobs, quota
from invoice_service.deps import SessionDep, SettingsDep, StateDep, UserDep
from invoice_service.metrics import UPLOADS
from invoice_service.models import Invoice, InvoiceItem, InvoiceStatus, Job, User
from invoice_service.schemas import (
    NO_NUL,
    ConfirmIn,
    InvoiceDetail,
    InvoicePage,
    ItemOut,
    JobOut,
    UploadAccepted,
)
from invoice_service.settings import Settings
from invoice_service.uploads import delete_photos, read_photo, store_photos

router = APIRouter(prefix="/invoices", tags=["invoices"])
# The upload alone: create_app includes it with the upload's own body limit (bodylimits.py).
upload_router = APIRouter(prefix="/invoices", tags=["invoices"])
log = structlog.get_logger(__name__)

NOT_FOUND = {404: {"description": "No such invoice of this user"}}


@upload_router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses={
        401: {"description": "No valid access token (answered before the body is read)"},
        413: {
            "description": "A photo is larger than MAX_UPLOAD_BYTES, the body than the limits allow, or "
            "the user's photos would pass MAX_USER_STORAGE_BYTES"
        },
        415: {"description": "A file is not a JPEG, PNG or WebP image (by its content)"},
        422: {"description": "No file, or more than MAX_UPLOAD_FILES files"},
    },
)
async def upload(
    files: Annotated[list[UploadFile], File(description="Photos of ONE receipt, in order")],
    user: UserDep,
    session: SessionDep,
    state: StateDep,
) -> UploadAccepted:
    """Store the photos of one receipt and queue its extraction (rate limit: RATE_LIMIT_UPLOAD)."""
    settings = state.settings
    if not files:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Send at least one photo in `files`")
    if len(files) > settings.MAX_UPLOAD_FILES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"At most {settings.MAX_UPLOAD_FILES} photos per receipt, got {len(files)}",
        )
    photos = [await read_photo(upload_file, settings.MAX_UPLOAD_BYTES) for upload_file in files]
    await quota.reserve(session, user.id, sum(len(p.data) for p in photos), settings.MAX_USER_STORAGE_BYTES)
    invoice_id = uuid.uuid4()
    records = await store_photos(settings.UPLOAD_DIR, user.id, invoice_id, photos)
    invoice = Invoice(id=invoice_id, user_id=user.id, status=InvoiceStatus.PENDING, images=records)
    session.add(invoice)
    await session.flush()
    job = jobs.enqueue(session, invoice, settings.JOB_MAX_ATTEMPTS)
    await session.commit()
    UPLOADS.inc()
    log.info(
        "invoice_uploaded",
        invoice_id=str(invoice_id),
        job_id=str(job.id),
        photos=len(photos),
        bytes=sum(len(p.data) for p in photos),
    )
    return UploadAccepted(invoice_id=invoice_id, job_id=job.id, status=InvoiceStatus.PENDING)


# --- The list: keyset pagination -----------------------------------------------------------------
# Order: newest first, ties (invoices created in one transaction share created_at) by id descending,
# so that (created_at, id) is a strict order a row comparison can continue from, served by a backward
# scan of ix_invoices_user_created_id / ix_invoices_user_status_created_id (no sort, no offset).
#
# A cursor is the (created_at, id) of the last invoice of a page, signed: urlsafe base64, without
# padding, of version (1 byte) | created_at in microseconds since the epoch (8) | id (16) | the first
# 12 bytes of an HMAC-SHA256 over the user's id and those 25 bytes, keyed from JWT_SECRET. A cursor
# is thus opaque, bound to its user, and one that was altered, truncated or made up is refused with
# a 422 naming the `cursor` parameter (never a 500). Rotating JWT_SECRET invalidates open cursors:
# the client starts again from the first page.
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


def _invalid(parameter: str, value: str, message: str) -> RequestValidationError:
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
        raise _invalid(
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


@router.get(
    "",
    response_model=InvoicePage,
    responses={422: {"description": "Invalid filters, or a cursor this service did not give this user"}},
)
async def list_invoices(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    status_filter: Annotated[InvoiceStatus | None, Query(alias="status")] = None,
    date_from: Annotated[date | None, Query(description="Purchase date on or after")] = None,
    date_to: Annotated[date | None, Query(description="Purchase date on or before")] = None,
    store: Annotated[
        str | None, Query(max_length=100, pattern=NO_NUL, description="Store name contains")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200, description="`next_cursor` of the previous page; none (or empty) for the first"
        ),
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    count: Annotated[
        bool, Query(description="Also count the matches (`total`, at most 10 000): one more query")
    ] = False,
    page: Annotated[
        int | None,
        Query(ge=1, le=100_000, deprecated=True, description="Removed: only 1 is accepted; use `cursor`"),
    ] = None,
) -> Response:
    """The user's invoices, newest first (then by id, descending), filtered, one page at a time.

    Keyset pagination: each page carries `next_cursor` (null on the last page); pass it back as
    `cursor`, with the same filters, for the next one. A page costs the same wherever it is, and
    invoices added or deleted meanwhile neither repeat nor skip any of the others: a walk returns every
    invoice that existed when it began exactly once, in order (newer ones appear on a new walk). A
    cursor is opaque and signed: one altered, made up, or of another user is a 422.

    No total by default: counting reads every matching row. `count=true` adds `total`, the matches of
    the filters (whatever the cursor), counted up to 10 000; past that `total` is 10 000 and
    `total_capped` true. The offset parameter `page` was removed: `page=1` is the first page, any other
    value a 422.
    """
    if page is not None and page != 1:
        raise _invalid(
            "page", str(page), "Offset pagination was removed: follow `next_cursor` (parameter `cursor`)"
        )
    after = decode_cursor(settings, user.id, cursor) if cursor else None
    page_statement, count_statement, values = list_statements(
        user.id,
        status_filter=status_filter,
        date_from=date_from,
        date_to=date_to,
        store=store,
        after=after,
        limit=page_size + 1,  # one more than the page: whether there is a next page
    )
    connection = await session.connection()  # Core statements: no ORM session machinery needed
    rows = (await connection.execute(page_statement, values)).all()
    next_cursor = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        next_cursor = encode_cursor(settings, user.id, rows[-1].created_at, rows[-1].id)
    total, capped = None, False
    if count:
        total = (await connection.execute(count_statement, values)).scalar_one()
        total, capped = min(total, COUNT_LIMIT), total > COUNT_LIMIT
    # One validation of the whole page from the rows' mappings (pydantic-core, in Rust).
    answer = InvoicePage.model_validate(
        {
            "items": [row._asdict() for row in rows],
            "next_cursor": next_cursor,
            "page_size": page_size,
            "total": total,
            "total_capped": capped,
        }
    )
    # Serialised here, once (pydantic, in Rust); FastAPI would validate the model again first.
    return Response(content=answer.model_dump_json(), media_type="application/json")


async def _owned(
    session: SessionDep, user: User, invoice_id: uuid.UUID, *, for_update: bool = False
) -> Invoice:
    """The user's invoice with its items (404 if none). for_update: lock the invoice row until the
    transaction ends (SELECT ... FOR UPDATE) BEFORE its items are read, so a concurrent writer of the
    same invoice waits and then reads what this one committed."""
    statement = (
        select(Invoice)
        .where(Invoice.id == invoice_id, Invoice.user_id == user.id)
        .options(selectinload(Invoice.items))
    )
    if for_update:
        statement = statement.with_for_update(of=Invoice)
    invoice = (await session.execute(statement)).scalar_one_or_none()
    if invoice is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Invoice not found")
    return invoice


async def _detail(session: SessionDep, invoice: Invoice) -> InvoiceDetail:
    job = (
        await session.execute(
            select(Job).where(Job.invoice_id == invoice.id).order_by(Job.created_at.desc()).limit(1)
        )
    ).scalar_one_or_none()
    return InvoiceDetail(
        id=invoice.id,
        status=invoice.status,
        store_name=invoice.store_name,
        purchase_date=invoice.purchase_date,
        total=invoice.total,
        created_at=invoice.created_at,
        store_tax_id=invoice.store_tax_id,
        provider=invoice.provider,
        extraction_error=invoice.extraction_error,
        image_count=len(invoice.images or []),
        confirmed_at=invoice.confirmed_at,
        items=[ItemOut.model_validate(i) for i in invoice.items],
        job=JobOut.model_validate(job) if job else None,
    )


@router.get("/{invoice_id}", response_model=InvoiceDetail, responses=NOT_FOUND)
async def get_invoice(invoice_id: uuid.UUID, user: UserDep, session: SessionDep) -> InvoiceDetail:
    """An invoice with its items and the state of its extraction job."""
    return await _detail(session, await _owned(session, user, invoice_id))


@router.post(
    "/{invoice_id}/confirm",
    response_model=InvoiceDetail,
    responses={**NOT_FOUND, 409: {"description": "Extraction has not finished yet"}},
)
async def confirm_invoice(
    invoice_id: uuid.UUID, body: ConfirmIn, user: UserDep, session: SessionDep, state: StateDep
) -> InvoiceDetail:
    """Accept the extracted data, with the user's corrections (rate limit: RATE_LIMIT_CONFIRM).

    The invoice row is locked (SELECT ... FOR UPDATE) before its items are read: concurrent confirms of
    one invoice run one after the other, and the last one's items replace the first one's (never both
    sets, never a mix)."""
    invoice = await _owned(session, user, invoice_id, for_update=True)
    if invoice.status in (InvoiceStatus.PENDING, InvoiceStatus.PROCESSING):
        raise HTTPException(status.HTTP_409_CONFLICT, f"Extraction still {invoice.status.value}")
    for field in ("store_name", "store_tax_id", "purchase_date", "total"):
        if field in body.model_fields_set:
            setattr(invoice, field, getattr(body, field))
    if body.items is not None:
        invoice.items = [  # delete-orphan cascade removes the previous items
            InvoiceItem(
                position=index,
                description=item.description,
                quantity=item.quantity,
                unit_price=item.unit_price,
                total=item.total,
            )
            for index, item in enumerate(body.items)
        ]
    invoice.status = InvoiceStatus.CONFIRMED
    invoice.confirmed_at = datetime.now(UTC)
    await session.commit()
    await dashboard_cache.invalidate(state.redis, user.id)
    log.info("invoice_confirmed", invoice_id=str(invoice_id), edited=sorted(body.model_fields_set))
    return await _detail(session, invoice)


@router.delete("/{invoice_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_invoice(
    invoice_id: uuid.UUID, user: UserDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete an invoice, its items, its job and its photos."""
    result = await session.execute(
        delete(Invoice).where(Invoice.id == invoice_id, Invoice.user_id == user.id).returning(Invoice.id)
    )
    if result.first() is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Invoice not found")
    await session.commit()
    await delete_photos(state.settings.UPLOAD_DIR, user.id, invoice_id)
    await dashboard_cache.invalidate(state.redis, user.id)
    log.info("invoice_deleted", invoice_id=str(invoice_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
