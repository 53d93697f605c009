"""Schemathesis against the OpenAPI schema of a real server (`invoice-api`, uvicorn, one worker):
no generated request, authenticated or not, may get a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from app_helpers import api_process_env
from hypothesis import HealthCheck, given, settings
from live_servers import free_port, wait_for_port

MAX_EXAMPLES = int(os.environ.get("APP_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def api_base_url(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    # The schema is served for the fuzzer only (DOCS_ENABLED); everything else as in production.
    env = api_process_env(
        database_url, redis_url, port, tmp_path_factory.mktemp("uploads"), DOCS_ENABLED="true"
    )
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoice-api")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
    # A 5xx in the server's log is a failure even if the response was lost.
    assert '"status": 500' not in log.read_text(), log.read_text()[-4000:]


@pytest.fixture(scope="module")
def api_auth(api_base_url: str) -> dict[str, str]:
    credentials = {"email": "fuzzer@example.com", "password": "fuzzer password"}
    httpx.post(f"{api_base_url}/auth/register", json=credentials, timeout=10)
    token = httpx.post(f"{api_base_url}/auth/login", json=credentials, timeout=10).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api_schema(api_base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{api_base_url}/openapi.json")


# schemathesis's pytest plugin does not work with pytest 9 (it reads Function._nodeid), so the
# operations are driven here with Hypothesis directly: one bounded property test per operation.
@pytest.mark.slow
def test_no_5xx_for_any_generated_request(api_schema: Any, api_auth: dict[str, str]) -> None:
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=api_auth, timeout=15)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        check()
    assert failures == []
    assert len(statuses) >= 5 * len(operations)  # the fuzzer really exercised every operation
    assert any(200 <= code < 300 for code in statuses)  # and got past validation and authentication
