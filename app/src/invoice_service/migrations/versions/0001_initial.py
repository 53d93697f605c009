"""Users, invoices, invoice items and the jobs queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVOICE_STATUS = postgresql.ENUM(
    "pending", "processing", "extracted", "confirmed", "failed", name="invoice_status", create_type=False
)
JOB_STATUS = postgresql.ENUM("queued", "running", "done", "failed", name="job_status", create_type=False)


def upgrade() -> None:
    INVOICE_STATUS.create(op.get_bind(), checkfirst=True)
    JOB_STATUS.create(op.get_bind(), checkfirst=True)
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", INVOICE_STATUS, nullable=False),
        sa.Column("store_name", sa.String(255)),
        sa.Column("store_tax_id", sa.String(32)),
        sa.Column("purchase_date", sa.Date()),
        sa.Column("total", sa.Numeric(12, 2)),
        sa.Column("images", postgresql.JSONB(), nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("extraction_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_invoices_user_created", "invoices", ["user_id", "created_at"])
    op.create_index("ix_invoices_user_status_date", "invoices", ["user_id", "status", "purchase_date"])
    op.create_table(
        "invoice_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("quantity", sa.Numeric(12, 3), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2)),
        sa.Column("total", sa.Numeric(12, 2)),
    )
    op.create_index("ix_invoice_items_invoice_id", "invoice_items", ["invoice_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", JOB_STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("locked_by", sa.String(128)),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_jobs_invoice_id", "jobs", ["invoice_id"])
    op.create_index("ix_jobs_claim", "jobs", ["status", "run_after"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("invoice_items")
    op.drop_table("invoices")
    op.drop_table("users")
    JOB_STATUS.drop(op.get_bind(), checkfirst=True)
    INVOICE_STATUS.drop(op.get_bind(), checkfirst=True)
