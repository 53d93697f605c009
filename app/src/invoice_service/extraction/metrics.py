"""Prometheus metrics of the extraction chain (prometheus_client's default registry).

extraction_cache_hits_total{provider}        cached results served, by the provider that made them
extraction_cache_misses_total                extractions that found no usable cached result
extraction_cache_errors_total{operation}     Redis errors swallowed (operation: get, set)
extraction_provider_calls_total{provider,outcome}
                                             provider calls after retries; outcome: success, timeout,
                                             connection_error, http_error, invalid_response, unreadable,
                                             unavailable, circuit_open, error (a provider bug)
extraction_provider_attempts_total{provider} attempts, retries included
extraction_provider_duration_seconds{provider}
                                             duration of a provider call, retries included
extraction_circuit_state{provider}           0 closed, 1 half_open, 2 open
llm_tokens_total{provider,model,kind}        tokens LLM calls were billed for; kind: input, output
llm_cost_usd_total{provider,model}           USD those tokens cost at LLM_PRICES (0 for an unpriced model)
llm_unpriced_calls_total{provider,model}     LLM calls of a model LLM_PRICES has no price for

The llm_* series move once per provider call that reported its usage: a successful call, or one whose
answer was billed but judged invalid. OCR calls and cached results add nothing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from invoice_service.extraction.circuit import CircuitState

CACHE_HITS = Counter("extraction_cache_hits", "Extraction results served from Redis.", ["provider"])
CACHE_MISSES = Counter("extraction_cache_misses", "Extractions that found no cached result.")
CACHE_ERRORS = Counter("extraction_cache_errors", "Redis errors ignored by the cache.", ["operation"])
PROVIDER_CALLS = Counter(
    "extraction_provider_calls", "Provider calls (after retries) by outcome.", ["provider", "outcome"]
)
PROVIDER_ATTEMPTS = Counter(
    "extraction_provider_attempts", "Provider attempts, retries included.", ["provider"]
)
PROVIDER_DURATION = Histogram(
    "extraction_provider_duration_seconds",
    "Duration of a provider call, retries included.",
    ["provider"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
CIRCUIT_STATE = Gauge(
    "extraction_circuit_state",
    "Provider circuit: 0 closed, 1 half_open, 2 open.",
    ["provider"],
    multiprocess_mode="livemax",
)

LLM_TOKENS = Counter(
    "llm_tokens", "Tokens LLM calls were billed for, by kind (input, output).", ["provider", "model", "kind"]
)
LLM_COST_USD = Counter("llm_cost_usd", "USD LLM calls cost at LLM_PRICES.", ["provider", "model"])
LLM_UNPRICED_CALLS = Counter(
    "llm_unpriced_calls", "LLM calls of a model without a price in LLM_PRICES.", ["provider", "model"]
)

CIRCUIT_STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
