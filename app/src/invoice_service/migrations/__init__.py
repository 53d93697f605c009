"""Alembic migrations, shipped inside the wheel so the image can run `invoice-migrate`."""
