"""ExtractionSettings: defaults, environment, validation, and which providers build_chain keeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from invoice_service.extraction import build_chain
from invoice_service.extraction.providers import OpenAICompatibleProvider, TesseractProvider
from invoice_service.extraction.settings import ExtractionSettings


def test_defaults_match_the_documented_production_values() -> None:
    settings = ExtractionSettings()
    assert settings.LLM_TIMEOUT_SECONDS == 60
    assert settings.LLM_CACHE_TTL == 86400
    assert settings.LLM_RETRY_ATTEMPTS == 2
    assert settings.CIRCUIT_FAILURE_THRESHOLD == 5
    assert settings.CIRCUIT_RESET_SECONDS == 60
    assert settings.OCR_LANGUAGES == "por+eng"
    assert settings.provider_order() == ["openrouter", "gemini", "openai", "ocr"]


def test_every_field_is_documented() -> None:
    undocumented = [name for name, field in ExtractionSettings.model_fields.items() if not field.description]
    assert undocumented == []


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "15")
    monkeypatch.setenv("EXTRACTION_PROVIDERS", " Gemini , ocr ")
    monkeypatch.setenv("GEMINI_API_KEY", "g-secret")
    settings = ExtractionSettings()
    assert settings.LLM_TIMEOUT_SECONDS == 15
    assert settings.provider_order() == ["gemini", "ocr"]
    assert settings.GEMINI_API_KEY is not None
    assert settings.GEMINI_API_KEY.get_secret_value() == "g-secret"


def test_keys_never_appear_in_repr_or_dumps() -> None:
    settings = ExtractionSettings(OPENAI_API_KEY="sk-very-secret")
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"EXTRACTION_PROVIDERS": "openai,anthropic"}, "EXTRACTION_PROVIDERS: unknown provider"),
        ({"EXTRACTION_PROVIDERS": " , "}, "EXTRACTION_PROVIDERS: list at least one"),
        ({"EXTRACTION_PROVIDERS": "ocr,ocr"}, "EXTRACTION_PROVIDERS: a provider is listed twice"),
        ({"LLM_TIMEOUT_SECONDS": 0}, "LLM_TIMEOUT_SECONDS"),
        ({"CIRCUIT_FAILURE_THRESHOLD": 0}, "CIRCUIT_FAILURE_THRESHOLD"),
        ({"OCR_LANGUAGES": "por; rm -rf /"}, "OCR_LANGUAGES"),
        (
            {"LLM_RETRY_BACKOFF_MIN_SECONDS": 5, "LLM_RETRY_BACKOFF_MAX_SECONDS": 1},
            "LLM_RETRY_BACKOFF_MIN_SECONDS must not exceed",
        ),
    ],
)
def test_bad_values_fail_naming_the_variable(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtractionSettings(**overrides)


async def test_without_any_key_only_the_offline_ocr_provider_runs() -> None:
    chain = build_chain(ExtractionSettings(), None)
    try:
        assert [type(p) for p in chain.providers] == [TesseractProvider]
        assert chain.circuit_states() == {"ocr": "closed"}
        assert chain.cache is None
    finally:
        await chain.aclose()


async def test_providers_with_a_key_keep_the_configured_order() -> None:
    settings = ExtractionSettings(
        EXTRACTION_PROVIDERS="openai,ocr,openrouter,gemini",
        OPENAI_API_KEY="o",
        GEMINI_API_KEY="g",
        GEMINI_MODEL="gemini-test",
        OPENROUTER_API_KEY="  ",  # blank counts as unset
    )
    chain = build_chain(settings, None)
    try:
        assert [p.name for p in chain.providers] == ["openai", "ocr", "gemini"]
        gemini = chain.providers[2]
        assert isinstance(gemini, OpenAICompatibleProvider)
        assert gemini.model == "gemini-test"
    finally:
        await chain.aclose()


def test_no_usable_provider_is_a_clear_error() -> None:
    settings = ExtractionSettings(EXTRACTION_PROVIDERS="openai,gemini")
    with pytest.raises(ValueError, match="set OPENAI_API_KEY or GEMINI_API_KEY, or add ocr"):
        build_chain(settings, None)
