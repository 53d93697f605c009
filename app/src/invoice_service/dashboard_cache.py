"""A per-user cache of dashboard answers in Redis, invalidated by a per-user version counter.

Any change to a user's invoices (upload, extraction, confirm, delete) bumps the counter, so a cached
answer is never stale beyond that; DASHBOARD_CACHE_TTL bounds memory. Redis errors make it a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid

from redis.asyncio import Redis

from invoice_service.metrics import DASHBOARD_CACHE

PREFIX = "invoice-service:dashboard:"


def _version_key(user_id: uuid.UUID) -> str:
    return f"{PREFIX}version:{user_id}"


async def _key(redis: Redis, user_id: uuid.UUID, params: str) -> str:
    version = await redis.get(_version_key(user_id))
    digest = hashlib.sha256(params.encode()).hexdigest()[:16]
    return f"{PREFIX}{user_id}:{int(version or 0)}:{digest}"


async def get(redis: Redis | None, ttl: int, user_id: uuid.UUID, params: str) -> bytes | None:
    """The cached JSON answer, or None (miss, cache off, or Redis unavailable)."""
    if redis is None or ttl <= 0:
        return None
    try:
        value = await redis.get(await _key(redis, user_id, params))
    except Exception:
        DASHBOARD_CACHE.labels(result="error").inc()
        return None
    DASHBOARD_CACHE.labels(result="hit" if value is not None else "miss").inc()
    return value


async def put(redis: Redis | None, ttl: int, user_id: uuid.UUID, params: str, value: bytes) -> None:
    """Store an answer; errors are ignored (the cache is an optimisation)."""
    if redis is None or ttl <= 0:
        return
    with contextlib.suppress(Exception):
        await redis.set(await _key(redis, user_id, params), value, ex=ttl)


async def invalidate(redis: Redis | None, user_id: uuid.UUID) -> None:
    """Make every cached answer of the user unreachable."""
    if redis is None:
        return
    with contextlib.suppress(Exception):
        await redis.incr(_version_key(user_id))
