"""A per-user cache of dashboard answers in Redis, invalidated by a per-user version counter.

Any change to a user's invoices (upload, extraction, confirm, delete) bumps the counter, so a cached
answer is never stale beyond that; DASHBOARD_CACHE_TTL bounds memory. Redis errors make it a miss.

The version is read ONCE per request, by `get`, before the answer is computed, and `put` stores the
answer under that version. An invalidation that lands while the answer is being computed therefore
leaves it under the old, unreachable version: it is never served as the new version's answer.

The hit path is one Redis round trip: a Lua script reads the version and the entry of that version
(the entry's key is built inside the script, so the script runs on a single Redis, not a cluster).
The cached value is the answer's JSON as sent, so a hit re-encodes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from invoice_service.metrics import DASHBOARD_CACHE

PREFIX = "invoice-service:dashboard:"

# KEYS[1]: the user's version key; ARGV[1]: the entry key's prefix; ARGV[2]: the parameters' digest.
# Returns {version} on a miss (a nil ends a Lua array), {version, value} on a hit.
_LOOKUP = b"""
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ':' .. ARGV[2])}
"""
_LOOKUP_SHA = hashlib.sha1(_LOOKUP).hexdigest()  # Redis names a script by its SHA-1


@dataclass(frozen=True, slots=True)
class Lookup:
    """What `get` found: the cached JSON (None on a miss) and the key an answer computed now must be
    stored under (the version read by this lookup; None when there is nothing to store: cache off or
    Redis unavailable)."""

    value: bytes | None
    key: str | None


MISS = Lookup(value=None, key=None)


def _version_key(user_id: uuid.UUID) -> str:
    return f"{PREFIX}version:{user_id}"


def _entry_prefix(user_id: uuid.UUID) -> str:
    return f"{PREFIX}{user_id}:"


async def _lookup(redis: Redis, user_id: uuid.UUID, digest: str) -> list[bytes]:
    keys_and_args = (_version_key(user_id), _entry_prefix(user_id), digest)
    try:
        return await redis.evalsha(_LOOKUP_SHA, 1, *keys_and_args)
    except NoScriptError:  # first call on this Redis, or after a restart / SCRIPT FLUSH
        await redis.script_load(_LOOKUP)
        return await redis.evalsha(_LOOKUP_SHA, 1, *keys_and_args)


async def get(redis: Redis | None, ttl: int, user_id: uuid.UUID, params: str) -> Lookup:
    """The cached JSON answer for the user and params (`Lookup.value`, None on a miss, cache off or
    Redis unavailable) and where to store a freshly computed one (`Lookup.key`, for `put`)."""
    if redis is None or ttl <= 0:
        return MISS
    digest = hashlib.sha256(params.encode()).hexdigest()[:16]
    try:
        found = await _lookup(redis, user_id, digest)
    except Exception:
        DASHBOARD_CACHE.labels(result="error").inc()
        return MISS
    version = int(found[0])
    value = found[1] if len(found) > 1 else None
    DASHBOARD_CACHE.labels(result="hit" if value is not None else "miss").inc()
    return Lookup(value=value, key=f"{_entry_prefix(user_id)}{version}:{digest}")


async def put(redis: Redis | None, ttl: int, lookup: Lookup, value: bytes) -> None:
    """Store an answer under the version `lookup` read before it was computed; errors are ignored
    (the cache is an optimisation)."""
    if redis is None or ttl <= 0 or lookup.key is None:
        return
    with contextlib.suppress(Exception):
        await redis.set(lookup.key, value, ex=ttl)


async def invalidate(redis: Redis | None, user_id: uuid.UUID) -> None:
    """Make every cached answer of the user unreachable."""
    if redis is None:
        return
    with contextlib.suppress(Exception):
        await redis.incr(_version_key(user_id))
