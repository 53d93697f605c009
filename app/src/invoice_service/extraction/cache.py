"""Extraction results in Redis, keyed by image SHA-256 + provider (+ model) + PROMPT_VERSION.

Every Redis error is swallowed: logged as a warning, counted in extraction_cache_errors_total, and the
chain carries on uncached. Results are stored as JSON with a TTL of LLM_CACHE_TTL seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from invoice_service.extraction.metrics import CACHE_ERRORS
from invoice_service.extraction.models import ExtractionResult

log = structlog.get_logger(__name__)

KEY_PREFIX = "extraction"


def image_digest(image: bytes) -> str:
    """SHA-256 of the image bytes, hex."""
    return hashlib.sha256(image).hexdigest()


class ExtractionCache:
    """Get and set extraction results; never raises on Redis trouble."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, prompt_version: str) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds
        self.prompt_version = prompt_version

    def key(self, digest: str, provider: str, variant: str) -> str:
        """extraction:<prompt version>:<provider>:<model or OCR variant>:<sha256>."""
        return f"{KEY_PREFIX}:{self.prompt_version}:{provider}:{variant}:{digest}"

    async def get_many(self, keys: Sequence[str]) -> list[ExtractionResult | None]:
        """The cached result of each key (None: missing, unreadable, or Redis unavailable)."""
        if not keys:
            return []
        try:
            raw_values = await self._redis.mget(list(keys))
        except (RedisError, OSError) as exc:
            CACHE_ERRORS.labels(operation="get").inc()
            log.warning("extraction_cache_unavailable", operation="get", error=f"{type(exc).__name__}: {exc}")
            return [None] * len(keys)
        results: list[ExtractionResult | None] = []
        for key, raw in zip(keys, raw_values, strict=True):
            if raw is None:
                results.append(None)
                continue
            try:
                results.append(ExtractionResult.model_validate_json(raw).model_copy(update={"cached": True}))
            except ValidationError:
                log.warning("extraction_cache_entry_invalid", key=key)
                results.append(None)
        return results

    async def set(self, key: str, result: ExtractionResult) -> None:
        """Store a fresh result for ttl_seconds."""
        payload = result.model_copy(update={"cached": False}).model_dump_json()
        try:
            await self._redis.set(key, payload, ex=self.ttl_seconds)
        except (RedisError, OSError) as exc:
            CACHE_ERRORS.labels(operation="set").inc()
            log.warning("extraction_cache_unavailable", operation="set", error=f"{type(exc).__name__}: {exc}")
