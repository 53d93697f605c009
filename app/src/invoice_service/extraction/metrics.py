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

CIRCUIT_STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
