"""Indexes matching the invoice list's keyset order: (user_id, created_at, id) and (user_id, status,
created_at, id), read backwards for ORDER BY created_at DESC, id DESC. They replace (user_id,
created_at), which could not order ties, and (user_id, status, purchase_date), whose status prefix the
new status index serves (the dashboard) and whose date part no query could use with that order.

The indexes are built and dropped CONCURRENTLY (outside the migration's transaction), so uploads and
confirmations keep writing while a large invoices table is indexed. A build interrupted half-way
leaves an INVALID index behind: each one is dropped if present before it is built, so running the
migration again repairs it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_invoices_user_created_id": ["user_id", "created_at", "id"],
    "ix_invoices_user_status_created_id": ["user_id", "status", "created_at", "id"],
}
OLD = {
    "ix_invoices_user_created": ["user_id", "created_at"],
    "ix_invoices_user_status_date": ["user_id", "status", "purchase_date"],
}


def _replace(create: dict[str, list[str]], drop: dict[str, list[str]]) -> None:
    with op.get_context().autocommit_block():
        for name, columns in create.items():
            op.drop_index(name, table_name="invoices", if_exists=True, postgresql_concurrently=True)
            op.create_index(name, "invoices", columns, postgresql_concurrently=True)
        for name in drop:
            op.drop_index(name, table_name="invoices", if_exists=True, postgresql_concurrently=True)


def upgrade() -> None:
    _replace(NEW, OLD)


def downgrade() -> None:
    _replace(OLD, NEW)
