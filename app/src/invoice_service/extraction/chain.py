"""The provider chain: cache lookup, then each provider in order behind its circuit breaker, with a
per-attempt timeout and retries (exponential backoff) on timeouts and connection errors only.

Per call of `extract`:
1. one Redis MGET fetches the cached result of every provider for this image (sha256);
2. providers are walked in order: a provider with a cached result returns it (cached=True); otherwise,
   if its circuit allows, it is called: each attempt is cut at LLM_TIMEOUT_SECONDS, timeouts and
   connection errors are retried up to LLM_RETRY_ATTEMPTS attempts, anything else (HTTP 4xx/5xx,
   malformed JSON, unreadable image) goes straight to the next provider;
3. a result is cached under the provider that produced it; when every provider failed,
   ExtractionFailed lists why.
4. every provider call that reported its token usage (a success, or an answer billed but judged
   invalid) adds to llm_tokens_total / llm_cost_usd_total (priced with LLM_PRICES) and its log line
   carries input_tokens, output_tokens and cost_usd.
So a cached lower-priority result (e.g. OCR made while the LLMs were down) is only served when the
providers before it fail again; a cached result is served even while its provider's circuit is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from invoice_service.extraction.cache import ExtractionCache, image_digest
from invoice_service.extraction.circuit import CircuitBreaker, CircuitState
from invoice_service.extraction.errors import (
    ExtractionFailed,
    ProviderError,
    ProviderFailure,
    ProviderTimeout,
)
from invoice_service.extraction.metrics import (
    CACHE_HITS,
    CACHE_MISSES,
    CIRCUIT_STATE,
    CIRCUIT_STATE_VALUES,
    LLM_COST_USD,
    LLM_TOKENS,
    LLM_UNPRICED_CALLS,
    PROVIDER_ATTEMPTS,
    PROVIDER_CALLS,
    PROVIDER_DURATION,
)
from invoice_service.extraction.models import ExtractionResult, Usage
from invoice_service.extraction.pricing import ModelPrice, cost_usd
from invoice_service.extraction.providers import OpenAICompatibleProvider, Provider, TesseractProvider
from invoice_service.extraction.settings import ExtractionSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per provider and the exponential backoff between them (seconds)."""

    attempts: int = 2
    multiplier: float = 1.0
    min_seconds: float = 2.0
    max_seconds: float = 10.0


class _UnexpectedProviderError(ProviderError):
    """A provider raised something that is not a ProviderError (a bug): treated as a failure."""

    kind = "error"


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class ExtractionChain:
    """Providers tried in order, each behind a timeout, retries and a circuit breaker; cache in front."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        timeout_seconds: float,
        retry: RetryPolicy,
        failure_threshold: int,
        reset_seconds: float,
        cache: ExtractionCache | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("an extraction chain needs at least one provider")
        self.providers = list(providers)
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.cache = cache
        self.prices: Mapping[str, ModelPrice] = prices or {}
        self._breakers = {
            provider.name: CircuitBreaker(
                failure_threshold, reset_seconds, clock=clock, on_change=self._gauge_setter(provider.name)
            )
            for provider in self.providers
        }
        for provider in self.providers:
            CIRCUIT_STATE.labels(provider=provider.name).set(CIRCUIT_STATE_VALUES[CircuitState.CLOSED])

    @staticmethod
    def _gauge_setter(name: str) -> Callable[[CircuitState], None]:
        def setter(state: CircuitState) -> None:
            CIRCUIT_STATE.labels(provider=name).set(CIRCUIT_STATE_VALUES[state])
            log.info("extraction_circuit_changed", provider=name, state=state.value)

        return setter

    def circuit_states(self) -> dict[str, str]:
        """Provider name -> "closed" | "open" | "half_open", in chain order."""
        return {name: breaker.state.value for name, breaker in self._breakers.items()}

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        """Extract one receipt photo; ExtractionFailed when no provider produced a result."""
        digest = image_digest(image)
        keys: list[str] = []
        cached: list[ExtractionResult | None] = [None] * len(self.providers)
        if self.cache is not None:
            keys = [self.cache.key(digest, p.name, p.cache_variant) for p in self.providers]
            cached = await self.cache.get_many(keys)
        miss_counted = False
        failures: list[ProviderFailure] = []
        for index, provider in enumerate(self.providers):
            hit = cached[index]
            if hit is not None:
                CACHE_HITS.labels(provider=provider.name).inc()
                log.info("extraction_cache_hit", provider=provider.name, image_sha256=digest)
                return hit
            breaker = self._breakers[provider.name]
            if not breaker.allow():
                PROVIDER_CALLS.labels(provider=provider.name, outcome="circuit_open").inc()
                log.info("extraction_provider_skipped", provider=provider.name, reason="circuit_open")
                failures.append(ProviderFailure(provider.name, "circuit_open", "circuit open, skipped", True))
                continue
            if self.cache is not None and not miss_counted:
                miss_counted = True
                CACHE_MISSES.inc()
                log.info("extraction_cache_miss", image_sha256=digest)
            try:
                result = await self._call(provider, image, content_type)
            except ProviderError as exc:
                # A provider that answered about this image (unreadable, 400) is healthy.
                if exc.trips_circuit:
                    breaker.record_failure()
                else:
                    breaker.record_success()
                failures.append(ProviderFailure(provider.name, exc.kind, str(exc), exc.trips_circuit))
                continue
            except BaseException:
                breaker.release()
                raise
            breaker.record_success()
            if self.cache is not None:
                await self.cache.set(keys[index], result)
            return result
        if self.cache is not None and not miss_counted:  # every circuit open, nothing cached
            CACHE_MISSES.inc()
            log.info("extraction_cache_miss", image_sha256=digest)
        raise ExtractionFailed(failures)

    def _record_usage(self, provider: Provider, usage: Usage | None) -> dict[str, object]:
        """Count the tokens and cost of one provider call; the fields its log line gains ({} when the
        provider reported no usage: OCR, or a failure before any answer)."""
        if usage is None:
            return {}
        model = getattr(provider, "model", provider.cache_variant)
        cost = cost_usd(self.prices, model, usage)
        if model not in self.prices:
            LLM_UNPRICED_CALLS.labels(provider=provider.name, model=model).inc()
        LLM_TOKENS.labels(provider=provider.name, model=model, kind="input").inc(usage.input_tokens)
        LLM_TOKENS.labels(provider=provider.name, model=model, kind="output").inc(usage.output_tokens)
        LLM_COST_USD.labels(provider=provider.name, model=model).inc(float(cost))
        return {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": float(cost),
        }

    async def _attempt(self, provider: Provider, image: bytes, content_type: str) -> ExtractionResult:
        PROVIDER_ATTEMPTS.labels(provider=provider.name).inc()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await provider.extract(image, content_type)
        except ProviderError:
            raise
        except TimeoutError as exc:
            raise ProviderTimeout(f"no answer within {self.timeout_seconds:g} s") from exc
        except Exception as exc:
            log.exception("extraction_provider_bug", provider=provider.name)
            raise _UnexpectedProviderError(f"{type(exc).__name__}: {exc}") from exc

    async def _call(self, provider: Provider, image: bytes, content_type: str) -> ExtractionResult:
        started = time.perf_counter()
        attempts = 0

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "extraction_provider_retry",
                provider=provider.name,
                attempt=state.attempt_number,
                error=str(error),
                error_type=getattr(error, "kind", type(error).__name__),
                wait_seconds=round(state.upcoming_sleep, 3),
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(
                multiplier=self.retry.multiplier, min=self.retry.min_seconds, max=self.retry.max_seconds
            ),
            retry=retry_if_exception(_is_retryable),
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    result = await self._attempt(provider, image, content_type)
        except ProviderError as exc:
            duration = time.perf_counter() - started
            PROVIDER_CALLS.labels(provider=provider.name, outcome=exc.kind).inc()
            PROVIDER_DURATION.labels(provider=provider.name).observe(duration)
            log.warning(
                "extraction_provider_failed",
                provider=provider.name,
                error=str(exc),
                error_type=exc.kind,
                attempts=attempts,
                duration_ms=round(duration * 1000),
                **self._record_usage(provider, exc.usage),
            )
            raise
        duration = time.perf_counter() - started
        PROVIDER_CALLS.labels(provider=provider.name, outcome="success").inc()
        PROVIDER_DURATION.labels(provider=provider.name).observe(duration)
        spend = self._record_usage(provider, result.usage) or {
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
        }
        log.info(
            "extraction_provider_succeeded",
            provider=provider.name,
            attempts=attempts,
            items=len(result.items),
            duration_ms=round(duration * 1000),
            **spend,
        )
        return result

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for provider in self.providers:
            await provider.aclose()


def _llm_provider(settings: ExtractionSettings, name: str) -> OpenAICompatibleProvider | None:
    prefix = name.upper()
    key = getattr(settings, f"{prefix}_API_KEY")
    if key is None or not key.get_secret_value().strip():
        return None
    return OpenAICompatibleProvider(
        name,
        base_url=getattr(settings, f"{prefix}_BASE_URL"),
        api_key=key,
        model=getattr(settings, f"{prefix}_MODEL"),
        timeout_seconds=settings.LLM_TIMEOUT_SECONDS,
    )


def build_chain(settings: ExtractionSettings, redis: Redis | None) -> ExtractionChain:
    """The chain EXTRACTION_PROVIDERS describes (LLM providers without a key left out); cached in
    `redis` unless it is None or LLM_CACHE_TTL is 0. ValueError when no provider is usable."""
    providers: list[Provider] = []
    left_out: list[str] = []
    for name in settings.provider_order():
        if name == "ocr":
            providers.append(
                TesseractProvider(
                    languages=settings.OCR_LANGUAGES,
                    command=settings.OCR_TESSERACT_CMD,
                    max_concurrency=settings.OCR_MAX_CONCURRENCY,
                    max_pixels=settings.OCR_MAX_PIXELS,
                    niceness=settings.OCR_NICENESS,
                )
            )
        elif (provider := _llm_provider(settings, name)) is not None:
            providers.append(provider)
        else:
            left_out.append(name)
    if not providers:
        raise ValueError(
            f"EXTRACTION_PROVIDERS={settings.EXTRACTION_PROVIDERS!r} leaves no usable provider: set "
            + " or ".join(f"{name.upper()}_API_KEY" for name in left_out)
            + ", or add ocr to the list"
        )
    cache = None
    if redis is not None and settings.LLM_CACHE_TTL > 0:
        cache = ExtractionCache(
            redis, ttl_seconds=settings.LLM_CACHE_TTL, prompt_version=settings.PROMPT_VERSION
        )
    log.info(
        "extraction_chain_ready",
        providers=[provider.name for provider in providers],
        left_out_without_key=left_out,
        cache=cache is not None,
    )
    return ExtractionChain(
        providers,
        timeout_seconds=settings.LLM_TIMEOUT_SECONDS,
        retry=RetryPolicy(
            attempts=settings.LLM_RETRY_ATTEMPTS,
            multiplier=settings.LLM_RETRY_BACKOFF_MULTIPLIER,
            min_seconds=settings.LLM_RETRY_BACKOFF_MIN_SECONDS,
            max_seconds=settings.LLM_RETRY_BACKOFF_MAX_SECONDS,
        ),
        failure_threshold=settings.CIRCUIT_FAILURE_THRESHOLD,
        reset_seconds=settings.CIRCUIT_RESET_SECONDS,
        cache=cache,
        prices=settings.LLM_PRICES,
    )
