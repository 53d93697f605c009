"""The per-user storage quota: the bytes of a user's stored photos, summed from their invoices' records.

Checked in the upload's transaction under a per-user advisory lock (released at commit), so two
concurrent uploads of one user cannot both squeeze under the quota.
"""

from __future__ import annotations

import uuid

from fastapi import HTTPException, status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('storage-quota:' || :user_id, 0))")
_USED = text("""
    SELECT coalesce(sum((photo ->> 'size')::bigint), 0)
    FROM invoices CROSS JOIN LATERAL jsonb_array_elements(invoices.images) AS photo
    WHERE invoices.user_id = :user_id
""")


async def stored_bytes(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Bytes of photos the user has stored."""
    return int((await session.execute(_USED, {"user_id": user_id})).scalar_one())


async def reserve(session: AsyncSession, user_id: uuid.UUID, incoming: int, quota: int) -> None:
    """Refuse (413) an upload of `incoming` bytes that would take the user past `quota` (0: none).
    Holds the user's quota lock until the caller's transaction ends."""
    if quota <= 0:
        return
    await session.execute(_LOCK, {"user_id": str(user_id)})
    used = await stored_bytes(session, user_id)
    if used + incoming > quota:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"Storage quota reached: {used} of {quota} bytes in use, this upload needs {incoming} more; "
            "delete invoices to make room",
        )
