"""The Redis cache in front of the chain, against the session's real redis-server."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from invoice_service.extraction import ExtractionChain, ExtractionFailed, build_chain
from invoice_service.extraction.settings import ExtractionSettings

KEY = "sk-test-cache"

SettingsFactory = Callable[..., ExtractionSettings]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def image() -> bytes:
    """A photo no other test used (the cache is shared by the session)."""
    return b"\x89PNG fake receipt " + uuid.uuid4().bytes


def settings_for(
    fast_settings: SettingsFactory, first_url: str, second_url: str, **extra: Any
) -> ExtractionSettings:
    values: dict[str, Any] = {
        "EXTRACTION_PROVIDERS": "openrouter,gemini",
        "OPENROUTER_API_KEY": KEY,
        "OPENROUTER_BASE_URL": first_url,
        "GEMINI_API_KEY": KEY,
        "GEMINI_BASE_URL": second_url,
        "PROMPT_VERSION": f"test-{uuid.uuid4().hex[:8]}",
        "LLM_CACHE_TTL": 3600,
    }
    return fast_settings(**(values | extra))


@asynccontextmanager
async def chain_of(settings: ExtractionSettings, redis: Redis | None) -> AsyncIterator[ExtractionChain]:
    chain = build_chain(settings, redis)
    try:
        yield chain
    finally:
        await chain.aclose()


async def test_second_extraction_of_a_photo_is_a_cache_hit(
    fake_provider: Any,
    second_fake_provider: Any,
    fast_settings: SettingsFactory,
    redis_client: Redis,
    captured_logs: list,
) -> None:
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    photo = image()
    hits = metric("extraction_cache_hits_total", provider="openrouter")
    misses = metric("extraction_cache_misses_total")
    async with chain_of(settings, redis_client) as chain:
        first = await chain.extract(photo, "image/png")
        second = await chain.extract(photo, "image/png")
    assert fake_provider.count == 1, "the second extraction must come from Redis"
    assert first.cached is False
    assert second.cached is True
    assert second.model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
    assert metric("extraction_cache_hits_total", provider="openrouter") == hits + 1
    assert metric("extraction_cache_misses_total") == misses + 1
    events = [e["event"] for e in captured_logs if e["event"].startswith("extraction_cache")]
    assert events == ["extraction_cache_miss", "extraction_cache_hit"]
    # The key: image SHA-256 + provider (+ model) + PROMPT_VERSION, with LLM_CACHE_TTL.
    digest = hashlib.sha256(photo).hexdigest()
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"*{digest}")]
    assert keys == [f"extraction:{settings.PROMPT_VERSION}:openrouter:{settings.OPENROUTER_MODEL}:{digest}"]
    assert 3590 < await redis_client.ttl(keys[0]) <= 3600


async def test_prompt_version_and_image_are_part_of_the_key(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, redis_client: Redis
) -> None:
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    photo = image()
    async with chain_of(settings, redis_client) as chain:
        await chain.extract(photo, "image/png")
        await chain.extract(image(), "image/png")
    assert fake_provider.count == 2
    new_prompt = settings.model_copy(update={"PROMPT_VERSION": settings.PROMPT_VERSION + "-b"})
    async with chain_of(new_prompt, redis_client) as chain:
        assert (await chain.extract(photo, "image/png")).cached is False
    assert fake_provider.count == 3


async def test_a_fallback_result_is_cached_under_its_provider_and_used_only_when_needed(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, redis_client: Redis
) -> None:
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    photo = image()
    fake_provider.script("503")
    async with chain_of(settings, redis_client) as chain:
        first = await chain.extract(photo, "image/png")  # openrouter fails, gemini answers
        assert (first.provider, first.cached) == ("gemini", False)
        second = await chain.extract(photo, "image/png")  # openrouter is back: preferred, then cached
        assert (second.provider, second.cached) == ("openrouter", False)
        third = await chain.extract(photo, "image/png")
        assert (third.provider, third.cached) == ("openrouter", True)
    assert (fake_provider.count, second_fake_provider.count) == (2, 1)


async def test_a_cached_result_is_served_while_the_circuit_is_open(
    fake_provider: Any, fast_settings: SettingsFactory, refused_url: str, redis_client: Redis
) -> None:
    settings = settings_for(
        fast_settings,
        fake_provider.url,
        refused_url,
        CIRCUIT_FAILURE_THRESHOLD=1,
        CIRCUIT_RESET_SECONDS=60,
        LLM_RETRY_ATTEMPTS=1,
    )
    photo = image()
    async with chain_of(settings, redis_client) as chain:
        await chain.extract(photo, "image/png")
        fake_provider.default = "500"
        with pytest.raises(ExtractionFailed):  # openrouter 500 (opens its circuit), gemini refused
            await chain.extract(image(), "image/png")
        assert chain.circuit_states()["openrouter"] == "open"
        assert (await chain.extract(photo, "image/png")).cached is True
    assert fake_provider.count == 2


async def test_a_corrupt_cache_entry_is_a_miss(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, redis_client: Redis
) -> None:
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    photo = image()
    digest = hashlib.sha256(photo).hexdigest()
    key = f"extraction:{settings.PROMPT_VERSION}:openrouter:{settings.OPENROUTER_MODEL}:{digest}"
    await redis_client.set(key, b"{not json")
    async with chain_of(settings, redis_client) as chain:
        assert (await chain.extract(photo, "image/png")).cached is False
        assert (await chain.extract(photo, "image/png")).cached is True  # overwritten with a good entry
    assert fake_provider.count == 1


async def test_redis_down_is_survived_with_a_warning_and_a_metric(
    fake_provider: Any,
    second_fake_provider: Any,
    fast_settings: SettingsFactory,
    refused_url: str,
    captured_logs: list,
) -> None:
    port = refused_url.split(":")[2].split("/")[0]
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    get_errors = metric("extraction_cache_errors_total", operation="get")
    set_errors = metric("extraction_cache_errors_total", operation="set")
    try:
        async with chain_of(settings, dead_redis) as chain:
            result = await chain.extract(image(), "image/png")
    finally:
        await dead_redis.aclose()
    assert (result.provider, result.cached) == ("openrouter", False)
    assert metric("extraction_cache_errors_total", operation="get") == get_errors + 1
    assert metric("extraction_cache_errors_total", operation="set") == set_errors + 1
    warnings = [e for e in captured_logs if e["event"] == "extraction_cache_unavailable"]
    assert [(e["log_level"], e["operation"]) for e in warnings] == [("warning", "get"), ("warning", "set")]


async def test_without_redis_or_with_ttl_zero_nothing_is_cached(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, redis_client: Redis
) -> None:
    settings = settings_for(fast_settings, fake_provider.url, second_fake_provider.url)
    photo = image()
    async with chain_of(settings, None) as chain:
        await chain.extract(photo, "image/png")
        await chain.extract(photo, "image/png")
    async with chain_of(settings.model_copy(update={"LLM_CACHE_TTL": 0}), redis_client) as chain:
        assert chain.cache is None
        await chain.extract(photo, "image/png")
    assert fake_provider.count == 3
