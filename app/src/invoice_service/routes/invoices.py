"""Invoices: upload photos (202 + job), detail, list, confirm with edits, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile, status
from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from invoice_service import dashboard_cache, jobs
from invoice_service.deps import SessionDep, StateDep, UserDep
from invoice_service.metrics import UPLOADS
from invoice_service.models import Invoice, InvoiceItem, InvoiceStatus, Job, User
from invoice_service.schemas import (
    NO_NUL,
    ConfirmIn,
    InvoiceDetail,
    InvoicePage,
    InvoiceSummary,
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
        413: {"description": "A photo is larger than MAX_UPLOAD_BYTES, or the body than the limits allow"},
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


@router.get("", response_model=InvoicePage)
async def list_invoices(
    user: UserDep,
    session: SessionDep,
    status_filter: Annotated[InvoiceStatus | None, Query(alias="status")] = None,
    date_from: Annotated[date | None, Query(description="Purchase date on or after")] = None,
    date_to: Annotated[date | None, Query(description="Purchase date on or before")] = None,
    store: Annotated[
        str | None, Query(max_length=100, pattern=NO_NUL, description="Store name contains")
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> InvoicePage:
    """The user's invoices, newest first, filtered and paginated."""
    conditions = [Invoice.user_id == user.id]
    if status_filter is not None:
        conditions.append(Invoice.status == status_filter)
    if date_from is not None:
        conditions.append(Invoice.purchase_date >= date_from)
    if date_to is not None:
        conditions.append(Invoice.purchase_date <= date_to)
    if store:
        escaped = store.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Invoice.store_name.ilike(f"%{escaped}%", escape="\\"))
    # One round trip: the page and, on every row, the total count of matches (window function).
    result = await session.execute(
        select(Invoice, func.count().over().label("matches"))
        .where(*conditions)
        .order_by(Invoice.created_at.desc(), Invoice.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    pairs = result.all()
    rows = [invoice for invoice, _ in pairs]
    if pairs:
        total = int(pairs[0].matches)
    else:  # past the last page: count separately
        total = (
            await session.execute(select(func.count()).select_from(Invoice).where(*conditions))
        ).scalar_one()
    return InvoicePage(
        items=[InvoiceSummary.model_validate(row) for row in rows],
        total=total,
        page=page,
        page_size=page_size,
    )


async def _owned(session: SessionDep, user: User, invoice_id: uuid.UUID) -> Invoice:
    invoice = (
        await session.execute(
            select(Invoice)
            .where(Invoice.id == invoice_id, Invoice.user_id == user.id)
            .options(selectinload(Invoice.items))
        )
    ).scalar_one_or_none()
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
    """Accept the extracted data, with the user's corrections (rate limit: RATE_LIMIT_CONFIRM)."""
    invoice = await _owned(session, user, invoice_id)
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
