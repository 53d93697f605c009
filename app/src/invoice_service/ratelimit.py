"""Per-client rate limits (the `limits` library): Redis counters, in-memory when Redis is down.

The client is `scope["client"]`, which `ProxyHeadersMiddleware` (installed by create_app with
TRUSTED_PROXY_NETWORKS) replaces with the X-Forwarded-For address ONLY when the direct peer is a trusted
proxy. From any other peer, X-Forwarded-For is ignored, so forging it does not buy new counters.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from invoice_service.metrics import RATE_LIMIT_FALLBACK, RATE_LIMITED
from invoice_service.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Endpoints that are never limited: load-balancer and Prometheus probes.
EXEMPT = frozenset({"/health", "/health/ready", "/metrics"})
_CONFIRM = re.compile(r"^/invoices/[^/]+/confirm/?$")
# After a Redis failure, stay on memory this long before trying Redis again (no timeout per request).
REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Rule:
    """A named limit."""

    name: str
    item: RateLimitItem


class RateLimits:
    """Chooses the rule for a request and counts hits, in Redis or (fallback) in process memory."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.RATE_LIMIT_ENABLED
        self.rules = {
            "register": Rule("register", parse(settings.RATE_LIMIT_REGISTER)),
            "login": Rule("login", parse(settings.RATE_LIMIT_LOGIN)),
            "upload": Rule("upload", parse(settings.RATE_LIMIT_UPLOAD)),
            "confirm": Rule("confirm", parse(settings.RATE_LIMIT_CONFIRM)),
            "default": Rule("default", parse(settings.RATE_LIMIT_DEFAULT)),
        }
        # Counted per account (failed logins), not per client: see account_retry_after.
        self.account_rule = Rule("login-account", parse(settings.RATE_LIMIT_LOGIN_ACCOUNT))
        timeout = settings.REDIS_TIMEOUT_SECONDS
        # A pool this object owns, so the lifespan can close it (aclose).
        self._pool = ConnectionPool.from_url(
            settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self._redis: Storage = RedisStorage(
            "async+" + settings.REDIS_URL,
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix="ratelimit",
            connection_pool=self._pool,
        )
        self._memory: Storage = MemoryStorage()
        self._redis_down_until = 0.0

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._pool is not None:
            await self._pool.aclose()

    def rule_for(self, method: str, path: str) -> Rule | None:
        """The limit of an endpoint; None when exempt."""
        if path in EXEMPT:
            return None
        if method == "POST":
            if path.rstrip("/") == "/auth/register":
                return self.rules["register"]
            if path.rstrip("/") == "/auth/login":
                return self.rules["login"]
            if path.rstrip("/") == "/invoices/upload":
                return self.rules["upload"]
            if _CONFIRM.match(path):
                return self.rules["confirm"]
        return self.rules["default"]

    async def hit(self, rule: Rule, client: str) -> int | None:
        """Count one request; None when allowed, else the seconds until the client may retry."""
        return await self._on_storage(lambda limiter: self._hit(limiter, rule, client))

    async def account_retry_after(self, account: str) -> int | None:
        """Seconds until a login to this account may be tried again (its failed logins reached
        RATE_LIMIT_LOGIN_ACCOUNT, from whatever addresses), or None. Counts nothing."""
        if not self.enabled:
            return None
        rule, key = self.account_rule, _account_key(account)

        async def check(limiter: MovingWindowRateLimiter) -> int | None:
            if await limiter.test(rule.item, rule.name, key):
                return None
            return await _retry_after(limiter, rule, key)

        return await self._on_storage(check)

    async def account_failed(self, account: str) -> None:
        """Count one failed login against the account."""
        if self.enabled:
            await self._on_storage(
                lambda limiter: self._hit(limiter, self.account_rule, _account_key(account))
            )

    async def _on_storage(self, use: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """Run `use` on Redis, or on process memory while Redis is unavailable."""
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                return await use(MovingWindowRateLimiter(self._redis))
            except (StorageError, OSError, TimeoutError) as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                RATE_LIMIT_FALLBACK.inc()
                log.warning("rate_limit_redis_unavailable", error=type(exc).__name__, fallback="memory")
        return await use(MovingWindowRateLimiter(self._memory))

    @staticmethod
    async def _hit(limiter: MovingWindowRateLimiter, rule: Rule, client: str) -> int | None:
        if await limiter.hit(rule.item, rule.name, client):
            return None
        return await _retry_after(limiter, rule, client)


def _account_key(account: str) -> str:
    """The counter's key for an account: a digest, so Redis never holds e-mail addresses."""
    return hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]


async def _retry_after(limiter: MovingWindowRateLimiter, rule: Rule, key: str) -> int:
    stats = await limiter.get_window_stats(rule.item, rule.name, key)
    return max(1, math.ceil(stats.reset_time - time.time()))


class RateLimitMiddleware:
    """ASGI middleware answering 429 with Retry-After when a client exceeds its limit."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limits.enabled:
            await self.app(scope, receive, send)
            return
        rule = self.limits.rule_for(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        retry_after = await self.limits.hit(rule, client)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        RATE_LIMITED.labels(rule=rule.name).inc()
        log.info("rate_limited", rule=rule.name, client=client, retry_after=retry_after)
        body = json.dumps({"detail": f"Rate limit exceeded ({rule.item}); retry in {retry_after} s"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
