"""What the service shows to whom: /metrics only to direct callers from METRICS_NETWORKS, the API
docs and schema off unless asked for, readiness without worker names."""

from __future__ import annotations

import pytest
from app_helpers import AppFactory


async def test_metrics_answer_the_hosts_own_scraper(app_client: AppFactory) -> None:
    async with app_client(peer="127.0.0.1") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "http_requests_total" in response.text


@pytest.mark.parametrize(
    ("peer", "headers", "networks"),
    [
        ("203.0.113.7", {}, "127.0.0.0/8"),  # a direct caller from outside
        # through the edge proxy: the proxy is trusted, its client is the outside caller
        ("172.30.255.2", {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.0/8,172.30.255.0/24"),
        # a forged X-Forwarded-For naming loopback, through the proxy, is still a proxied request
        ("172.30.255.2", {"X-Forwarded-For": "127.0.0.1"}, "127.0.0.0/8,172.30.255.0/24"),
    ],
)
async def test_metrics_are_a_404_to_anyone_else(
    app_client: AppFactory, peer: str, headers: dict[str, str], networks: str
) -> None:
    async with app_client(
        peer=peer, METRICS_NETWORKS=networks, TRUSTED_PROXY_NETWORKS="172.30.255.0/24"
    ) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == 404
    assert "http_requests_total" not in response.text


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_docs_and_schema_are_off_by_default(app_client: AppFactory, path: str) -> None:
    async with app_client() as client:
        assert (await client.get(path)).status_code == 404
    async with app_client(DOCS_ENABLED=True) as client:
        assert (await client.get(path)).status_code == 200


def test_a_metrics_network_that_is_no_cidr_is_refused_at_startup() -> None:
    from pydantic import ValidationError

    from invoice_service.settings import Settings

    with pytest.raises(ValidationError, match="METRICS_NETWORKS: 'localhost' is not a CIDR"):
        Settings(METRICS_NETWORKS="localhost")
