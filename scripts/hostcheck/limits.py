"""Rate limits as a client meets them: the edge's per-address limit, and the API's per-endpoint
limit, which a forged X-Forwarded-For must not escape."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable

from hostcheck.results import Result, failed, passed
from hostcheck.web import Endpoint, Response, connection, send

# The API's 429 says this (app/src/invoice_service/ratelimit.py); Traefik's says "Too Many Requests".
API_LIMIT_MARKER = b"Rate limit exceeded"


def limit_count(limit: str) -> int:
    """Requests a `limits` string allows per window: "10/minute" and "10 per 1 minute" -> 10."""
    match = re.match(r"\s*(\d+)\s*(?:/|per\b)", limit)
    if not match:
        raise ValueError(f"not a rate limit: {limit!r}")
    return int(match.group(1))


def forged_address(index: int) -> str:
    """A different documentation address (TEST-NET-2/3) for each request."""
    return f"198.51.100.{index % 254 + 1}" if index < 254 else f"203.0.113.{index % 254 + 1}"


def burst(
    endpoint: Endpoint,
    method: str,
    path: str,
    budget: int,
    headers_for: Callable[[int], dict[str, str]] | None = None,
    body: bytes | None = None,
) -> tuple[int, Response | None]:
    """Send up to `budget` requests on keep-alive connections; stop at the first 429.

    Returns how many were sent and the 429 (None when none came).
    """
    conn = connection(endpoint)
    try:
        for sent in range(1, budget + 1):
            headers = headers_for(sent) if headers_for else {}
            try:
                answer = send(conn, endpoint, method, path, headers, body)
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                conn = connection(endpoint)
                answer = send(conn, endpoint, method, path, headers, body)
            if answer.status == 429:
                return sent, answer
            if answer.headers.get("connection", "").lower() == "close":
                conn.close()
                conn = connection(endpoint)
        return budget, None
    finally:
        conn.close()


def check_edge_limit(
    endpoint: Endpoint, path: str, budget: int, average: int, burst_size: int, period: str
) -> Result:
    """The edge answers 429 within `budget` requests from one address (`path` is exempt from the
    API's own limits, so any 429 is the edge's)."""
    sent, answer = burst(endpoint, "GET", path, budget)
    limit = f"{average}/{period}, burst {burst_size}"
    if answer is None:
        return failed(
            "edge-rate-limit", f"{budget} requests to {endpoint.url(path)} and no 429 (edge limit {limit})"
        )
    return passed(
        "edge-rate-limit", f"429 after {sent} requests to {endpoint.url(path)} (edge limit {limit})"
    )


def check_forged_forwarded_for(endpoint: Endpoint, path: str, limit: str) -> Result:
    """The API's limit on `path` answers 429 although each request forges another X-Forwarded-For.

    Up to limit + 5 requests: a proxy header that the API believed would give each one a fresh counter.
    """
    budget = limit_count(limit) + 5

    def forged(index: int) -> dict[str, str]:
        address = forged_address(index)
        return {"X-Forwarded-For": address, "X-Real-IP": address, "Content-Type": "application/json"}

    sent, answer = burst(endpoint, "POST", path, budget, forged, json.dumps({}).encode())
    url = endpoint.url(path)
    if answer is None:
        return failed(
            "forwarded-for",
            f"{budget} POSTs to {url}, each with another forged X-Forwarded-For, and no 429: "
            f"the API counts the forged address (its limit is {limit})",
        )
    if API_LIMIT_MARKER not in answer.body:
        excerpt = answer.body[:80].decode(errors="replace")
        return failed(
            "forwarded-for",
            f"the 429 after {sent} POSTs to {url} is not the API's ({excerpt!r}): "
            "the edge limited first; wait a minute and run again",
        )
    return passed(
        "forwarded-for",
        f"the API answered 429 after {sent} POSTs to {url} with forged X-Forwarded-For (its limit: {limit})",
    )
