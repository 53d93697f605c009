"""Prometheus metrics of the API and the worker, and the /metrics exposition.

Multiprocess: with several uvicorn workers each process has its own counters. When the environment
variable PROMETHEUS_MULTIPROC_DIR names a directory (set BEFORE the processes start; `invoice-api` does
it when UVICORN_WORKERS > 1), prometheus_client writes every process's values there and /metrics
aggregates them, whichever worker answers. Without it, /metrics shows the answering process only.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
)
RATE_LIMITED = Counter("rate_limited_total", "Requests refused with 429", ["rule"])
RATE_LIMIT_FALLBACK = Counter(
    "rate_limit_redis_fallback_total", "Times rate limiting fell back to process memory (Redis down)"
)
UPLOADS = Counter("invoice_uploads_total", "Receipt uploads accepted")
JOBS = Counter("extraction_jobs_total", "Extraction job attempts by outcome", ["outcome"])
JOB_DURATION = Histogram(
    "extraction_job_duration_seconds",
    "Duration of one extraction attempt",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DASHBOARD_CACHE = Counter("dashboard_cache_total", "Dashboard cache lookups", ["result"])


def render_metrics() -> tuple[bytes, str]:
    """The exposition text: every process's values in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
