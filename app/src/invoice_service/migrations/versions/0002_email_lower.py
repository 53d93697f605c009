"""E-mail addresses are stored lower-cased, so login's lookup is served by the unique index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Registration has always lower-cased addresses; a row that is not would fail the check below.
    op.execute("UPDATE users SET email = lower(email) WHERE email <> lower(email)")
    op.create_check_constraint("users_email_lower", "users", "email = lower(email)")


def downgrade() -> None:
    op.drop_constraint("users_email_lower", "users", type_="check")
