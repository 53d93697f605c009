"""429 + Retry-After, counters shared through Redis, the in-memory fallback, and X-Forwarded-For
believed only from TRUSTED_PROXY_NETWORKS."""

from __future__ import annotations

import random

import httpx
from app_helpers import AppFactory
from live_servers import free_port

LOGIN = {"email": "nobody@example.com", "password": "wrong password"}


def random_ip(prefix: str = "198.51.100") -> str:
    return f"{prefix}.{random.randint(1, 254)}"


async def login_statuses(
    client: httpx.AsyncClient, count: int, forwarded: list[str] | None = None
) -> list[int]:
    statuses = []
    for i in range(count):
        headers = {"X-Forwarded-For": forwarded[i]} if forwarded else {}
        statuses.append((await client.post("/auth/login", json=LOGIN, headers=headers)).status_code)
    return statuses


async def test_login_limit_gives_429_with_retry_after(app_client: AppFactory) -> None:
    async with app_client(peer=random_ip(), RATE_LIMIT_ENABLED=True, RATE_LIMIT_LOGIN="3/minute") as client:
        assert await login_statuses(client, 3) == [401, 401, 401]
        refused = await client.post("/auth/login", json=LOGIN)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_forged_forwarded_for_from_untrusted_peer_does_not_escape_the_limit(
    app_client: AppFactory,
) -> None:
    forged = [f"203.0.113.{i}" for i in range(1, 12)]
    async with app_client(
        peer=random_ip(),
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_LOGIN="10/minute",
        TRUSTED_PROXY_NETWORKS=["10.0.0.0/8"],
    ) as client:
        statuses = await login_statuses(client, 11, forwarded=forged)
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


async def test_trusted_proxy_forwarded_for_is_the_client(app_client: AppFactory) -> None:
    async def statuses(client: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
        return [(await client.get("/auth/me", headers={"X-Forwarded-For": f})).status_code for f in forwarded]

    async with app_client(
        peer=random_ip("10.0.3"),
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_DEFAULT="10/minute",
        TRUSTED_PROXY_NETWORKS=["10.0.0.0/8"],
    ) as client:
        # 11 different real clients behind the proxy: each has its own counter
        assert await statuses(client, [f"203.0.113.{i}" for i in range(20, 31)]) == [401] * 11
        # one client behind the proxy sending 11: limited
        assert (await statuses(client, [f"203.0.113.{random.randint(40, 250)}"] * 11))[-1] == 429
        # a spoofing client behind the proxy prepends a fake address: the proxy-appended (rightmost,
        # untrusted) one still counts
        spoofed = [f"1.2.3.{i}, 198.18.0.7" for i in range(1, 12)]
        assert await statuses(client, spoofed) == [401] * 10 + [429]


async def test_counters_are_shared_through_redis(app_client: AppFactory) -> None:
    peer = random_ip()
    settings = {"RATE_LIMIT_ENABLED": True, "RATE_LIMIT_REGISTER": "2/hour"}
    async with app_client(peer=peer, **settings) as first, app_client(peer=peer, **settings) as second:
        body = {"email": "a@example.com", "password": "12345678"}
        assert (
            await first.post("/auth/register", json=body | {"email": f"{random_ip()}@ex.com"})
        ).status_code == 202
        assert (
            await second.post("/auth/register", json=body | {"email": f"{random_ip()}@ex.com"})
        ).status_code == 202
        third = await first.post("/auth/register", json=body)
    assert third.status_code == 429
    assert int(third.headers["retry-after"]) > 60  # an hourly window


def _fallbacks(metrics: str) -> float:
    values = [
        line.split()[-1]
        for line in metrics.splitlines()
        if line.startswith("rate_limit_redis_fallback_total ")
    ]
    return float(values[0]) if values else 0.0


async def test_memory_fallback_when_redis_is_down(app_client: AppFactory) -> None:
    """Redis unreachable: the limit still holds (counted in memory) and the fallback is counted.
    (The peer is loopback, where /metrics answers; the memory counters are this app's own.)"""
    async with app_client(
        peer="127.0.0.1",
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_LOGIN="2/minute",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    ) as client:
        before = _fallbacks((await client.get("/metrics")).text)
        assert await login_statuses(client, 3) == [401, 401, 429]
        after = _fallbacks((await client.get("/metrics")).text)
    assert after >= before + 1


async def test_default_limit_applies_to_other_endpoints_and_probes_are_exempt(app_client: AppFactory) -> None:
    async with app_client(peer=random_ip(), RATE_LIMIT_ENABLED=True, RATE_LIMIT_DEFAULT="3/minute") as client:
        statuses = [(await client.get("/auth/me")).status_code for _ in range(4)]
        probes = [(await client.get("/health")).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429]
    assert probes == [200] * 5


async def test_disabled_means_no_limit(app_client: AppFactory) -> None:
    async with app_client(peer=random_ip(), RATE_LIMIT_ENABLED=False, RATE_LIMIT_LOGIN="1/minute") as client:
        assert await login_statuses(client, 3) == [401, 401, 401]


async def test_a_proxy_network_written_with_host_bits_is_still_trusted(app_client: AppFactory) -> None:
    """A network given as "172.30.0.1/16" (the gateway's address with the pool's prefix) means 172.30.0.0/16:
    clients behind a proxy there get counters of their own, not the proxy's one bucket."""
    async with app_client(
        peer="172.30.4.2",
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_DEFAULT="3/minute",
        TRUSTED_PROXY_NETWORKS="172.30.0.1/16",
    ) as client:
        assert client.app.state.core.settings.TRUSTED_PROXY_NETWORKS == ["172.30.0.0/16"]  # type: ignore[attr-defined]
        statuses = [
            (await client.get("/auth/me", headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code
            for i in range(60, 66)
        ]
    assert statuses == [401] * 6
