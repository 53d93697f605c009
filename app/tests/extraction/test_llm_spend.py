"""LLM spend tracking: the cost function, LLM_PRICES, the provider reading `usage` from the answer, and the
chain's llm_* counters and log fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from chains import SettingsFactory, chain_of
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from invoice_service.extraction import ExtractionFailed
from invoice_service.extraction.errors import ProviderResponseError
from invoice_service.extraction.models import Usage
from invoice_service.extraction.pricing import ModelPrice, cost_usd
from invoice_service.extraction.providers import OpenAICompatibleProvider
from invoice_service.extraction.settings import ExtractionSettings

IMAGE = b"\xff\xd8\xff\xe0 a receipt photo, as far as the fake provider cares"
KEY = "sk-test-secret-key-0123456789"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def provider_at(url: str, model: str = "gemini-test") -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider(
        "gemini", base_url=url, api_key=SecretStr(KEY), model=model, timeout_seconds=5
    )
    try:
        yield provider
    finally:
        await provider.aclose()


# --- cost_usd ------------------------------------------------------------------------------------

PRICES = {
    "gpt-4o-mini": ModelPrice(input=Decimal("0.15"), output=Decimal("0.60")),
    "free-model": ModelPrice(input=Decimal(0), output=Decimal(0)),
}


def test_cost_is_tokens_times_price_per_million() -> None:
    # 1200 * 0.15 / 1e6 + 300 * 0.60 / 1e6 = 0.00018 + 0.00018
    assert cost_usd(PRICES, "gpt-4o-mini", Usage(1200, 300)) == Decimal("0.00036")
    assert cost_usd(PRICES, "gpt-4o-mini", Usage(1_000_000, 2_000_000)) == Decimal("1.35")
    assert cost_usd(PRICES, "gpt-4o-mini", Usage(0, 0)) == 0
    assert cost_usd(PRICES, "free-model", Usage(5000, 5000)) == 0


def test_a_model_without_a_price_costs_nothing() -> None:
    assert cost_usd(PRICES, "unknown-model", Usage(1000, 1000)) == Decimal(0)
    assert cost_usd({}, "gpt-4o-mini", Usage(1000, 1000)) == Decimal(0)


# --- LLM_PRICES ----------------------------------------------------------------------------------


def test_prices_default_to_empty() -> None:
    assert ExtractionSettings().LLM_PRICES == {}


def test_prices_are_read_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LLM_PRICES",
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "gemini-2.0-flash": {"input": 0.1, "output": 0.4}}',
    )
    prices = ExtractionSettings().LLM_PRICES
    assert prices == {
        "gpt-4o-mini": ModelPrice(input=Decimal("0.15"), output=Decimal("0.6")),
        "gemini-2.0-flash": ModelPrice(input=Decimal("0.1"), output=Decimal("0.4")),
    }


def test_prices_that_are_not_json_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PRICES", '{"gpt-4o-mini": {"input": 0.15')
    with pytest.raises(SettingsError, match="LLM_PRICES"):
        ExtractionSettings()


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"m": {"input": -0.1, "output": 1}}, r"LLM_PRICES\.m\.input\n.*greater than or equal to 0"),
        ({"m": {"input": 1, "output": -2}}, r"LLM_PRICES\.m\.output\n.*greater than or equal to 0"),
        ({"m": {"input": 1, "output": 2, "cached": 0.5}}, r"LLM_PRICES\.m\.cached\n.*Extra inputs"),
        ({"m": {"input": 1}}, r"LLM_PRICES\.m\.output\n.*Field required"),
        ({"m": {"input": "cheap", "output": 2}}, r"LLM_PRICES\.m\.input"),
        ({"m": {"input": "NaN", "output": 2}}, r"LLM_PRICES\.m\.input\n.*finite number"),
        ({" ": {"input": 1, "output": 2}}, "LLM_PRICES: a model name is empty"),
        ([1, 2], "LLM_PRICES"),
    ],
)
def test_bad_prices_are_refused_naming_the_setting(prices: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtractionSettings(LLM_PRICES=prices)


def test_bad_prices_from_the_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PRICES", '{"gpt-4o-mini": {"input": -1, "output": 0.6}}')
    with pytest.raises(ValidationError, match=r"LLM_PRICES\.gpt-4o-mini\.input"):
        ExtractionSettings()


# --- The provider reads usage ----------------------------------------------------------------------


async def test_provider_returns_the_usage_of_the_answer(fake_provider: Any) -> None:
    # Gemini's OpenAI-compatible endpoint answers this shape (total_tokens included, ignored).
    fake_provider.usage = {"prompt_tokens": 1290, "completion_tokens": 87, "total_tokens": 1377}
    async with provider_at(fake_provider.url) as provider:
        result = await provider.extract(IMAGE, "image/jpeg")
    assert result.usage == Usage(input_tokens=1290, output_tokens=87)
    assert result.store_name == "Mercado Fake"
    assert "usage" not in result.model_dump()  # never cached


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": None, "completion_tokens": None},
        {"prompt_tokens": "12", "completion_tokens": -3},
    ],
)
async def test_an_answer_without_usable_usage_counts_zero(
    usage: dict[str, Any] | None, fake_provider: Any, captured_logs: list
) -> None:
    fake_provider.usage = usage
    async with provider_at(fake_provider.url) as provider:
        result = await provider.extract(IMAGE, "image/jpeg")
    assert result.usage == Usage(0, 0)
    assert captured_logs == []


async def test_an_invalid_answer_still_reports_its_usage(fake_provider: Any) -> None:
    fake_provider.default = "malformed"
    fake_provider.usage = {"prompt_tokens": 1000, "completion_tokens": 20}
    async with provider_at(fake_provider.url) as provider:
        with pytest.raises(ProviderResponseError) as caught:
            await provider.extract(IMAGE, "image/jpeg")
    assert caught.value.usage == Usage(1000, 20)


async def test_a_body_that_is_not_json_has_no_usage(fake_provider: Any) -> None:
    fake_provider.default = "not_json"
    async with provider_at(fake_provider.url) as provider:
        with pytest.raises(ProviderResponseError) as caught:
            await provider.extract(IMAGE, "image/jpeg")
    assert caught.value.usage is None


# --- The chain counts tokens and cost ------------------------------------------------------------


def spend(provider: str, model: str) -> tuple[float, float, float, float]:
    """(input tokens, output tokens, USD, unpriced calls) counted so far."""
    return (
        metric("llm_tokens_total", provider=provider, model=model, kind="input"),
        metric("llm_tokens_total", provider=provider, model=model, kind="output"),
        metric("llm_cost_usd_total", provider=provider, model=model),
        metric("llm_unpriced_calls_total", provider=provider, model=model),
    )


def delta(after: tuple[float, ...], before: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(a - b, 9) for a, b in zip(after, before, strict=True))


async def test_a_priced_call_counts_tokens_and_cost(
    fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    model = "priced-model-success"
    fake_provider.usage = {"prompt_tokens": 2000, "completion_tokens": 500}
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openai",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=fake_provider.url,
        OPENAI_MODEL=model,
        LLM_PRICES={model: {"input": 0.15, "output": 0.6}, "other": {"input": 9, "output": 9}},
    )
    before = spend("openai", model)
    async with chain_of(settings) as chain:
        await chain.extract(IMAGE, "image/jpeg")
        await chain.extract(IMAGE, "image/jpeg")
    # Per call: 2000 * 0.15 / 1e6 + 500 * 0.6 / 1e6 = 0.0003 + 0.0003 = 0.0006 USD.
    assert delta(spend("openai", model), before) == (4000, 1000, 0.0012, 0)
    succeeded = [e for e in captured_logs if e["event"] == "extraction_provider_succeeded"]
    assert len(succeeded) == 2
    logged = {(e["input_tokens"], e["output_tokens"], e["cost_usd"]) for e in succeeded}
    assert logged == {(2000, 500, 0.0006)}


async def test_an_unpriced_model_counts_tokens_at_no_cost(
    fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    model = "unpriced-model"
    fake_provider.usage = {"prompt_tokens": 700, "completion_tokens": 30}
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openrouter",
        OPENROUTER_API_KEY=KEY,
        OPENROUTER_BASE_URL=fake_provider.url,
        OPENROUTER_MODEL=model,
        LLM_PRICES={"some-other-model": {"input": 1, "output": 1}},
    )
    before = spend("openrouter", model)
    async with chain_of(settings) as chain:
        await chain.extract(IMAGE, "image/jpeg")
    assert delta(spend("openrouter", model), before) == (700, 30, 0, 1)
    (succeeded,) = [e for e in captured_logs if e["event"] == "extraction_provider_succeeded"]
    assert (succeeded["input_tokens"], succeeded["output_tokens"], succeeded["cost_usd"]) == (700, 30, 0.0)


async def test_an_answer_without_usage_counts_zero_tokens(
    fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    model = "priced-model-no-usage"
    fake_provider.usage = None
    settings = fast_settings(
        EXTRACTION_PROVIDERS="gemini",
        GEMINI_API_KEY=KEY,
        GEMINI_BASE_URL=fake_provider.url,
        GEMINI_MODEL=model,
        LLM_PRICES={model: {"input": 0.1, "output": 0.4}},
    )
    before = spend("gemini", model)
    async with chain_of(settings) as chain:
        await chain.extract(IMAGE, "image/jpeg")
    assert delta(spend("gemini", model), before) == (0, 0, 0, 0)
    (succeeded,) = [e for e in captured_logs if e["event"] == "extraction_provider_succeeded"]
    assert (succeeded["input_tokens"], succeeded["output_tokens"], succeeded["cost_usd"]) == (0, 0, 0.0)
    assert [e["event"] for e in captured_logs if e.get("log_level") != "info"] == []


async def test_an_invalid_but_billed_answer_is_counted_then_falls_back(
    fake_provider: Any, second_fake_provider: Any, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    fake_provider.default = "malformed"
    fake_provider.usage = {"prompt_tokens": 1000, "completion_tokens": 250}
    second_fake_provider.usage = {"prompt_tokens": 800, "completion_tokens": 100}
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openrouter,gemini",
        OPENROUTER_API_KEY=KEY,
        OPENROUTER_BASE_URL=fake_provider.url,
        OPENROUTER_MODEL="router-invalid-model",
        GEMINI_API_KEY=KEY,
        GEMINI_BASE_URL=second_fake_provider.url,
        GEMINI_MODEL="gemini-fallback-model",
        LLM_PRICES={
            "router-invalid-model": {"input": 2, "output": 8},
            "gemini-fallback-model": {"input": 0.5, "output": 1.5},
        },
    )
    router_before = spend("openrouter", "router-invalid-model")
    gemini_before = spend("gemini", "gemini-fallback-model")
    async with chain_of(settings) as chain:
        result = await chain.extract(IMAGE, "image/jpeg")
    assert result.provider == "gemini"
    # 1000 * 2 / 1e6 + 250 * 8 / 1e6 = 0.004; 800 * 0.5 / 1e6 + 100 * 1.5 / 1e6 = 0.00055.
    assert delta(spend("openrouter", "router-invalid-model"), router_before) == (1000, 250, 0.004, 0)
    assert delta(spend("gemini", "gemini-fallback-model"), gemini_before) == (800, 100, 0.00055, 0)
    (failed,) = [e for e in captured_logs if e["event"] == "extraction_provider_failed"]
    assert (failed["error_type"], failed["input_tokens"], failed["output_tokens"], failed["cost_usd"]) == (
        "invalid_response",
        1000,
        250,
        0.004,
    )


async def test_failures_without_an_answer_count_nothing(
    refused_url: str, fast_settings: SettingsFactory, captured_logs: list
) -> None:
    model = "refused-model"
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openai",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=refused_url,
        OPENAI_MODEL=model,
        LLM_RETRY_ATTEMPTS=1,
    )
    before = spend("openai", model)
    async with chain_of(settings) as chain:
        with pytest.raises(ExtractionFailed):
            await chain.extract(IMAGE, "image/jpeg")
    assert delta(spend("openai", model), before) == (0, 0, 0, 0)
    (failed,) = [e for e in captured_logs if e["event"] == "extraction_provider_failed"]
    assert "input_tokens" not in failed
