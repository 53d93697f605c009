"""The Redis client: short timeouts, so a Redis outage degrades the service instead of stalling it."""

from __future__ import annotations

from redis.asyncio import Redis

from invoice_service.settings import Settings


def create_redis(settings: Settings) -> Redis:
    """A lazily-connecting client; no I/O happens here."""
    return Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
        socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
        decode_responses=False,
    )
