"""Request and response bodies (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from invoice_service.models import InvoiceStatus, JobStatus

MoneyValue = Annotated[Decimal, Field(ge=0, le=Decimal("9999999999.99"), decimal_places=2)]
# PostgreSQL text cannot hold NUL characters: refuse them at the edge (422), not in the database (500).
NO_NUL = r"^[^\x00]*$"
QuantityValue = Annotated[Decimal, Field(gt=0, le=Decimal("999999999.999"), decimal_places=3)]


class Credentials(BaseModel):
    """E-mail and password, for register and login."""

    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=8, max_length=128)


class RegistrationAccepted(BaseModel):
    """The answer to every well-formed registration, whether or not the address had an account."""

    detail: str = "Registration accepted: log in with this e-mail address and password."


class TokenOut(BaseModel):
    """A bearer token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserOut(BaseModel):
    """The public part of a user."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    created_at: datetime


class ItemOut(BaseModel):
    """A receipt line."""

    model_config = ConfigDict(from_attributes=True)

    description: str
    quantity: Decimal
    unit_price: Decimal | None
    total: Decimal | None


class JobOut(BaseModel):
    """State of the extraction job of an invoice."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: JobStatus
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: datetime


class InvoiceSummary(BaseModel):
    """An invoice in a list."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: InvoiceStatus
    store_name: str | None
    purchase_date: date | None
    total: Decimal | None
    created_at: datetime


class InvoiceDetail(InvoiceSummary):
    """An invoice with its items and extraction status."""

    store_tax_id: str | None
    provider: str | None
    extraction_error: str | None
    image_count: int
    confirmed_at: datetime | None
    items: list[ItemOut]
    job: JobOut | None


class UploadAccepted(BaseModel):
    """Answer to an upload: the invoice and the job extracting it."""

    invoice_id: uuid.UUID
    job_id: uuid.UUID
    status: InvoiceStatus


class ItemIn(BaseModel):
    """A receipt line as the user confirms it."""

    description: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    quantity: QuantityValue = Decimal(1)
    unit_price: MoneyValue | None = None
    total: MoneyValue | None = None


class ConfirmIn(BaseModel):
    """Corrections to the extracted data; omitted fields keep the extracted value."""

    store_name: str | None = Field(default=None, max_length=255, pattern=NO_NUL)
    store_tax_id: str | None = Field(default=None, max_length=32, pattern=NO_NUL)
    purchase_date: date | None = None
    total: MoneyValue | None = None
    items: list[ItemIn] | None = Field(default=None, max_length=500)


class InvoicePage(BaseModel):
    """One page of invoices, newest first; follow `next_cursor` for the next one."""

    items: list[InvoiceSummary]
    next_cursor: str | None = Field(
        description="Opaque: pass it as `cursor` (with the same filters) for the next page; null on "
        "the last page"
    )
    page_size: int
    total: int | None = Field(
        default=None,
        description="Invoices matching the filters (whatever the cursor), only when asked with "
        "`count=true`; counting stops past 10 000 (then `total_capped` is true)",
    )
    total_capped: bool = Field(
        default=False, description="True when there are more matches than `total` (the count stopped)"
    )


class MonthSpending(BaseModel):
    """Spending in one calendar month."""

    month: str
    total: Decimal
    invoices: int


class StoreSpending(BaseModel):
    """Spending at one store."""

    store_name: str
    total: Decimal
    invoices: int


class ItemSpending(BaseModel):
    """An item the user spends most on."""

    description: str
    total: Decimal
    quantity: Decimal
    purchases: int


class SpendingDashboard(BaseModel):
    """Spending of confirmed invoices, by month, by store and top items."""

    by_month: list[MonthSpending]
    by_store: list[StoreSpending]
    top_items: list[ItemSpending]
    cached: bool = False
