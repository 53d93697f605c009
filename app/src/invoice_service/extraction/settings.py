"""Settings of the extraction chain: providers, keys, models, timeouts, retries, circuit breaker, cache,
LLM prices.

`invoice_service.settings.Settings` inherits this class, so the service has one settings class; the
variables are read from the environment under the names below (no prefix).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from invoice_service.extraction.pricing import ModelPrice

#: Every provider name EXTRACTION_PROVIDERS may list.
KNOWN_PROVIDERS: tuple[str, ...] = ("openrouter", "gemini", "openai", "ocr")


class ExtractionSettings(BaseSettings):
    """How receipt photos become structured data: the provider chain and its resilience knobs."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # --- Chain ----------------------------------------------------------------------------------
    EXTRACTION_PROVIDERS: str = Field(
        default="openrouter,gemini,openai,ocr",
        description="Providers tried in this order (comma-separated; known: openrouter, gemini, openai, "
        "ocr). An LLM provider whose API key is unset is left out, so with no key at all only the "
        "offline Tesseract OCR provider runs.",
    )
    PROMPT_VERSION: str = Field(
        default="receipt-v1",
        min_length=1,
        description="Version of the extraction prompt and parser, part of every cache key: change it to "
        "invalidate cached extractions after changing the prompt.",
    )

    # --- Resilience -----------------------------------------------------------------------------
    LLM_TIMEOUT_SECONDS: float = Field(
        default=60,
        gt=0,
        description="Hard limit of one provider attempt (HTTP call or OCR run); a slower attempt is "
        "cancelled and counts as a timeout.",
    )
    LLM_RETRY_ATTEMPTS: int = Field(
        default=2,
        ge=1,
        description="Attempts per provider (1: no retry). Only timeouts and connection errors are "
        "retried; HTTP errors (4xx and 5xx) and malformed answers go straight to the next provider.",
    )
    LLM_RETRY_BACKOFF_MULTIPLIER: float = Field(
        default=1.0, ge=0, description="Exponential backoff between attempts: multiplier * 2**n seconds."
    )
    LLM_RETRY_BACKOFF_MIN_SECONDS: float = Field(
        default=2.0, ge=0, description="Shortest wait between two attempts of one provider."
    )
    LLM_RETRY_BACKOFF_MAX_SECONDS: float = Field(
        default=10.0, ge=0, description="Longest wait between two attempts of one provider."
    )
    CIRCUIT_FAILURE_THRESHOLD: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed calls (after retries) that open a provider's circuit; an open "
        "circuit skips the provider.",
    )
    CIRCUIT_RESET_SECONDS: float = Field(
        default=60,
        gt=0,
        description="How long a circuit stays open; then one probe call is let through (half-open): "
        "success closes the circuit, failure opens it again for this long.",
    )

    # --- Cache ----------------------------------------------------------------------------------
    LLM_CACHE_TTL: int = Field(
        default=86400,
        ge=0,
        description="Seconds an extraction result stays in Redis, keyed by image SHA-256 + provider + "
        "PROMPT_VERSION (0: no cache). Without Redis the chain works uncached.",
    )

    # --- Spend tracking -------------------------------------------------------------------------
    LLM_PRICES: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices of the LLM models, a JSON object: model id (as in *_MODEL) -> "
        '{"input": USD per 1M input tokens, "output": USD per 1M output tokens}, e.g. '
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}. Feeds llm_cost_usd_total; a model without a '
        "price has its tokens counted at no cost and its calls counted in llm_unpriced_calls_total.",
    )

    # --- OpenRouter -----------------------------------------------------------------------------
    OPENROUTER_API_KEY: SecretStr | None = Field(
        default=None, description="OpenRouter API key; unset leaves the provider out."
    )
    OPENROUTER_MODEL: str = Field(
        default="google/gemini-2.0-flash-001", description="OpenRouter model id (must accept images)."
    )
    OPENROUTER_BASE_URL: str = Field(
        default="https://openrouter.ai/api/v1", description="OpenAI-compatible base URL of OpenRouter."
    )

    # --- Gemini (OpenAI-compatible endpoint) ----------------------------------------------------
    GEMINI_API_KEY: SecretStr | None = Field(
        default=None, description="Google AI Studio API key; unset leaves the provider out."
    )
    GEMINI_MODEL: str = Field(default="gemini-2.0-flash", description="Gemini model id.")
    GEMINI_BASE_URL: str = Field(
        default="https://generativelanguage.googleapis.com/v1beta/openai",
        description="Gemini's OpenAI-compatible base URL.",
    )

    # --- OpenAI ---------------------------------------------------------------------------------
    OPENAI_API_KEY: SecretStr | None = Field(
        default=None, description="OpenAI API key; unset leaves the provider out."
    )
    OPENAI_MODEL: str = Field(default="gpt-4o-mini", description="OpenAI model id (must accept images).")
    OPENAI_BASE_URL: str = Field(default="https://api.openai.com/v1", description="OpenAI API base URL.")

    # --- Offline OCR ----------------------------------------------------------------------------
    OCR_LANGUAGES: str = Field(
        default="por+eng",
        pattern=r"^[a-z_]+(\+[a-z_]+)*$",
        description="Tesseract languages (`-l`), installed as Debian's tesseract-ocr-<lang> packages.",
    )
    OCR_TESSERACT_CMD: str = Field(
        default="tesseract", min_length=1, description="The tesseract executable (name on PATH or path)."
    )
    OCR_MAX_CONCURRENCY: int = Field(
        default=1,
        ge=1,
        description="Photos one service process decodes and OCRs at once (a semaphore around both; each "
        "takes a whole vCPU). 1 leaves the other vCPU of a 2-vCPU host to the API and PostgreSQL; "
        "further photos wait, and the wait counts against LLM_TIMEOUT_SECONDS.",
    )
    OCR_MAX_PIXELS: int = Field(
        default=12_000_000,
        ge=100_000,
        description="Most pixels a photo is decoded to for OCR: a larger JPEG is decoded at 1/2, 1/4 or "
        "1/8 scale (no full-size decode), anything still larger is downscaled to fit. A photo that "
        "would decode to more than twice this (a PNG/WebP, which cannot be decoded at reduced scale, "
        "or a decompression bomb) is refused as unreadable before it is decoded.",
    )
    OCR_NICENESS: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness of the tesseract processes and of the threads that decode "
        "photos for them (0: unchanged), so OCR yields the CPU to the API. Never lowered below the "
        "worker's own niceness.",
    )

    @field_validator("EXTRACTION_PROVIDERS")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        if not names:
            raise ValueError("EXTRACTION_PROVIDERS: list at least one provider")
        unknown = [name for name in names if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(
                f"EXTRACTION_PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                f"known: {', '.join(KNOWN_PROVIDERS)}"
            )
        if len(set(names)) != len(names):
            raise ValueError("EXTRACTION_PROVIDERS: a provider is listed twice")
        return ",".join(names)

    @field_validator("LLM_PRICES")
    @classmethod
    def _named_models(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        if any(not name.strip() for name in value):
            raise ValueError("LLM_PRICES: a model name is empty")
        return value

    @model_validator(mode="after")
    def _backoff_bounds(self) -> ExtractionSettings:
        if self.LLM_RETRY_BACKOFF_MIN_SECONDS > self.LLM_RETRY_BACKOFF_MAX_SECONDS:
            raise ValueError("LLM_RETRY_BACKOFF_MIN_SECONDS must not exceed LLM_RETRY_BACKOFF_MAX_SECONDS")
        return self

    def provider_order(self) -> list[str]:
        """EXTRACTION_PROVIDERS as a list, in order (keys are not checked here)."""
        return self.EXTRACTION_PROVIDERS.split(",")
