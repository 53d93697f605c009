"""Invoices: upload photos (202 + job), detail, list, confirm with edits, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile, status
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from invoice_service import dashboard_cache, jobs, listing, quota
from invoice_service.deps import SessionDep, StateDep, UserDep, UserIdDep
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


@router.get(
    "",
    response_model=InvoicePage,
    responses={422: {"description": "Invalid filters, or a cursor this service did not give this user"}},
)
async def list_invoices(
    user_id: UserIdDep,
    state: StateDep,
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
        raise listing.invalid(
            "page", str(page), "Offset pagination was removed: follow `next_cursor` (parameter `cursor`)"
        )
    settings = state.settings
    after = listing.decode_cursor(settings, user_id, cursor) if cursor else None
    page_statement, count_statement, values = listing.list_statements(
        user_id,
        status_filter=status_filter,
        date_from=date_from,
        date_to=date_to,
        store=store,
        after=after,
        limit=page_size + 1,  # one more than the page: whether there is a next page
    )
    # A pooled connection in autocommit mode: the statements need no shared snapshot, so no BEGIN
    # and ROLLBACK round trips around them. (Opened here rather than by a dependency: one less
    # generator for FastAPI to drive on the busiest endpoint.)
    total, capped = None, False
    async with state.read_engine.connect() as connection:
        rows = (await connection.execute(page_statement, values)).all()
        if count:
            total = (await connection.execute(count_statement, values)).scalar_one()
            total, capped = min(total, listing.COUNT_LIMIT), total > listing.COUNT_LIMIT
    next_cursor = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        next_cursor = listing.encode_cursor(settings, user_id, rows[-1].created_at, rows[-1].id)
    # One validation of the whole page, reading the rows' attributes (pydantic-core, in Rust).
    answer = InvoicePage.model_validate(
        {
            "items": rows,
            "next_cursor": next_cursor,
            "page_size": page_size,
            "total": total,
            "total_capped": capped,
        },
        from_attributes=True,
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
    """Delete an invoice, its items, its job and its photos (kept aside UPLOAD_DELETE_GRACE_HOURS)."""
    result = await session.execute(
        delete(Invoice).where(Invoice.id == invoice_id, Invoice.user_id == user.id).returning(Invoice.id)
    )
    if result.first() is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Invoice not found")
    await session.commit()
    await delete_photos(
        state.settings.UPLOAD_DIR, user.id, invoice_id, state.settings.UPLOAD_DELETE_GRACE_HOURS
    )
    await dashboard_cache.invalidate(state.redis, user.id)
    log.info("invoice_deleted", invoice_id=str(invoice_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
