"""SQLAlchemy 2 models: users, invoices, invoice items and extraction jobs.

The jobs table IS the queue (see `invoice_service.jobs`): Redis holds no job state, so Redis eviction or
a Redis restart cannot lose work.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Money = Numeric(12, 2)
Quantity = Numeric(12, 3)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class InvoiceStatus(enum.StrEnum):
    """Where an invoice is in its life: queued, being extracted, extracted, confirmed or failed."""

    PENDING = "pending"
    PROCESSING = "processing"
    EXTRACTED = "extracted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class JobStatus(enum.StrEnum):
    """Queue state of an extraction job."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda members: [m.value for m in members])


class User(Base):
    """An account; invoices belong to exactly one user."""

    __tablename__ = "users"
    # Stored lower-cased (migration 0002), so login's equality lookup uses the unique index.
    __table_args__ = (CheckConstraint("email = lower(email)", name="users_email_lower"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    invoices: Mapped[list[Invoice]] = relationship(back_populates="user", passive_deletes=True)


class Invoice(Base):
    """One receipt: its photos, what extraction found, and what the user confirmed."""

    __tablename__ = "invoices"
    # The list's keyset order (created_at DESC, id DESC) after its filters (migration 0003): a
    # backward scan of either index returns a page in order and stops after it, without a sort. The
    # status index also serves the dashboard (user_id, status = confirmed).
    __table_args__ = (
        Index("ix_invoices_user_created_id", "user_id", "created_at", "id"),
        Index("ix_invoices_user_status_created_id", "user_id", "status", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[InvoiceStatus] = mapped_column(
        _enum(InvoiceStatus, "invoice_status"), default=InvoiceStatus.PENDING
    )
    store_name: Mapped[str | None] = mapped_column(String(255))
    store_tax_id: Mapped[str | None] = mapped_column(String(32))
    purchase_date: Mapped[date | None] = mapped_column(Date)
    total: Mapped[Decimal | None] = mapped_column(Money)
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    provider: Mapped[str | None] = mapped_column(String(64))
    extraction_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="invoices")
    items: Mapped[list[InvoiceItem]] = relationship(
        back_populates="invoice",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="InvoiceItem.position",
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="invoice", passive_deletes=True)


class InvoiceItem(Base):
    """A line of a receipt."""

    __tablename__ = "invoice_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(1))
    unit_price: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)

    invoice: Mapped[Invoice] = relationship(back_populates="items")


class Job(Base):
    """An extraction job: a row claimed with SELECT ... FOR UPDATE SKIP LOCKED under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    invoice: Mapped[Invoice] = relationship(back_populates="jobs")
