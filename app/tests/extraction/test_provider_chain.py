"""The provider chain against fake OpenAI-compatible providers: real HTTP servers on 127.0.0.1 that
answer, hang, fail with 5xx/4xx, send malformed JSON, or are not there at all (connection refused)."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from chains import SettingsFactory, chain_of
from prometheus_client import REGISTRY

from invoice_service.extraction import ExtractionFailed
from invoice_service.extraction.settings import ExtractionSettings

IMAGE = b"\xff\xd8\xff\xe0 a receipt photo, as far as the fake provider cares"
KEY = "sk-test-secret-key-0123456789"


def two_providers(
    fast_settings: SettingsFactory, first_url: str, second_url: str, **extra: Any
) -> ExtractionSettings:
    """openrouter at first_url, then gemini at second_url."""
    return fast_settings(
        EXTRACTION_PROVIDERS="openrouter,gemini",
        OPENROUTER_API_KEY=KEY,
        OPENROUTER_BASE_URL=first_url,
        OPENROUTER_MODEL="test/router-model",
        GEMINI_API_KEY=KEY + "-gemini",
        GEMINI_BASE_URL=second_url,
        GEMINI_MODEL="gemini-test",
        **extra,
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_good_answer_is_extracted(fake_provider: Any, fast_settings: SettingsFactory) -> None:
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openrouter",
        OPENROUTER_API_KEY=KEY,
        OPENROUTER_BASE_URL=fake_provider.url,
        OPENROUTER_MODEL="test/router-model",
    )
    before = metric("extraction_provider_calls_total", provider="openrouter", outcome="success")
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/jpeg")
    assert result.provider == "openrouter"
    assert result.cached is False
    assert result.store_name == "Mercado Fake"
    assert result.store_tax_id == "11.222.333/0001-81"
    assert result.purchase_date == date(2024, 3, 15)
    assert result.total == Decimal("29.88")
    assert [(i.description, i.quantity, i.total) for i in result.items] == [
        ("ARROZ 5KG", Decimal(1), Decimal("24.9")),
        ("LEITE 1L", Decimal(2), Decimal("4.98")),
    ]
    assert metric("extraction_provider_calls_total", provider="openrouter", outcome="success") == before + 1
    # What went over the wire: the OpenAI chat-completions shape with the photo as a data URL.
    (request,) = fake_provider.requests
    assert request.path == "/v1/chat/completions"
    assert request.authorization == f"Bearer {KEY}"
    assert request.body["model"] == "test/router-model"
    text_part, image_part = request.body["messages"][0]["content"]
    assert "JSON" in text_part["text"]
    prefix = "data:image/jpeg;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image_part["image_url"]["url"][len(prefix) :]) == IMAGE


async def test_timeout_is_cut_retried_then_falls_back(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    fake_provider.default = "slow"
    fake_provider.slow_seconds = 5
    settings = two_providers(fast_settings, fake_provider.url, second_fake_provider.url)
    started = time.monotonic()
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/png")
    elapsed = time.monotonic() - started
    assert result.provider == "gemini"
    assert fake_provider.count == 2  # LLM_RETRY_ATTEMPTS
    assert second_fake_provider.count == 1
    assert elapsed < 4, "the 0.5 s timeout must cut each 5 s answer short"
    retries = [e for e in captured_logs if e["event"] == "extraction_provider_retry"]
    assert [(e["provider"], e["attempt"], e["error_type"]) for e in retries] == [("openrouter", 1, "timeout")]
    (failed,) = [e for e in captured_logs if e["event"] == "extraction_provider_failed"]
    assert failed["provider"] == "openrouter"
    assert failed["error_type"] == "timeout"
    assert failed["attempts"] == 2
    assert failed["duration_ms"] >= 1000  # two 0.5 s attempts
    assert "0.5 s" in failed["error"]
    assert KEY not in repr(captured_logs)


async def test_connection_refused_is_retried_then_falls_back(
    refused_url: str, fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    attempts_before = metric("extraction_provider_attempts_total", provider="openrouter")
    settings = two_providers(fast_settings, refused_url, fake_provider.url, LLM_RETRY_ATTEMPTS=3)
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/png")
    assert result.provider == "gemini"
    assert metric("extraction_provider_attempts_total", provider="openrouter") == attempts_before + 3
    (failed,) = [e for e in captured_logs if e["event"] == "extraction_provider_failed"]
    assert (failed["provider"], failed["error_type"], failed["attempts"]) == (
        "openrouter",
        "connection_error",
        3,
    )
    assert isinstance(failed["duration_ms"], int)


@pytest.mark.parametrize(
    "behaviour", ["500", "503", "400", "401", "429", "malformed", "not_json", "wrong_schema"]
)
async def test_http_errors_and_bad_answers_are_not_retried(
    behaviour: str, fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.default = behaviour
    settings = two_providers(fast_settings, fake_provider.url, second_fake_provider.url)
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/png")
    assert result.provider == "gemini"
    assert fake_provider.count == 1
    assert second_fake_provider.count == 1


async def test_every_provider_failing_raises_extraction_failed(
    refused_url: str, fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.default = "malformed"
    settings = two_providers(fast_settings, refused_url, fake_provider.url, LLM_RETRY_ATTEMPTS=1)
    async with chain_of(settings) as chain:
        with pytest.raises(ExtractionFailed) as caught:
            await chain.extract(IMAGE, "image/png")
    failures = caught.value.failures
    assert [(f.provider, f.kind) for f in failures] == [
        ("openrouter", "connection_error"),
        ("gemini", "invalid_response"),
    ]
    assert caught.value.retryable
    assert set(caught.value.errors) == {"openrouter", "gemini"}
    assert "openrouter: connection_error" in str(caught.value)


async def test_circuit_opens_after_consecutive_failures_and_skips_the_provider(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.default = "500"
    settings = two_providers(
        fast_settings, fake_provider.url, second_fake_provider.url, CIRCUIT_RESET_SECONDS=30
    )
    async with chain_of(settings) as chain:
        for expected_state in ("closed", "closed", "open"):
            assert (await chain.extract(IMAGE, "image/png")).provider == "gemini"
            assert chain.circuit_states()["openrouter"] == expected_state
        assert fake_provider.count == 3  # CIRCUIT_FAILURE_THRESHOLD
        assert metric("extraction_circuit_state", provider="openrouter") == 2
        for _ in range(4):
            assert (await chain.extract(IMAGE, "image/png")).provider == "gemini"
        assert fake_provider.count == 3, "an open circuit must not call the provider"
        assert chain.circuit_states() == {"openrouter": "open", "gemini": "closed"}


async def test_failures_about_the_image_do_not_open_the_circuit(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.default = "400"
    settings = two_providers(
        fast_settings, fake_provider.url, second_fake_provider.url, CIRCUIT_FAILURE_THRESHOLD=1
    )
    async with chain_of(settings) as chain:
        for _ in range(3):
            await chain.extract(IMAGE, "image/png")
        assert fake_provider.count == 3
        assert chain.circuit_states()["openrouter"] == "closed"


async def test_half_open_probe_success_closes_the_circuit(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.script("503", "503", "503")
    settings = two_providers(
        fast_settings, fake_provider.url, second_fake_provider.url, CIRCUIT_RESET_SECONDS=1.0
    )
    async with chain_of(settings) as chain:
        for _ in range(3):
            await chain.extract(IMAGE, "image/png")
        assert chain.circuit_states()["openrouter"] == "open"
        await asyncio.sleep(1.05)
        assert chain.circuit_states()["openrouter"] == "half_open"
        result = await chain.extract(IMAGE, "image/png")  # the probe; the provider recovered
        assert result.provider == "openrouter"
        assert fake_provider.count == 4
        assert chain.circuit_states()["openrouter"] == "closed"
        assert metric("extraction_circuit_state", provider="openrouter") == 0
        assert (await chain.extract(IMAGE, "image/png")).provider == "openrouter"


async def test_half_open_probe_failure_reopens_the_circuit(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    fake_provider.default = "500"
    settings = two_providers(
        fast_settings, fake_provider.url, second_fake_provider.url, CIRCUIT_RESET_SECONDS=1.0
    )
    async with chain_of(settings) as chain:
        for _ in range(3):
            await chain.extract(IMAGE, "image/png")
        await asyncio.sleep(1.05)
        assert (await chain.extract(IMAGE, "image/png")).provider == "gemini"  # probe failed
        assert fake_provider.count == 4
        assert chain.circuit_states()["openrouter"] == "open"
        await chain.extract(IMAGE, "image/png")
        assert fake_provider.count == 4, "re-opened: skipped again for CIRCUIT_RESET_SECONDS"


async def test_fallback_follows_the_configured_order(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory
) -> None:
    settings = fast_settings(
        EXTRACTION_PROVIDERS="gemini,openai,openrouter",
        OPENROUTER_API_KEY=KEY,
        OPENROUTER_BASE_URL=second_fake_provider.url,
        GEMINI_API_KEY=KEY,
        GEMINI_BASE_URL=fake_provider.url,
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=fake_provider.url,
    )
    fake_provider.default = "503"  # gemini and openai both fail
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/png")
    assert result.provider == "openrouter"
    assert [r.body["model"] for r in fake_provider.requests] == ["gemini-2.0-flash", "gpt-4o-mini"]
    assert second_fake_provider.count == 1
