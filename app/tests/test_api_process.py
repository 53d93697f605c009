"""`invoice-api` as the image runs it: two uvicorn workers whose /metrics add up (multiprocess mode),
and a graceful SIGTERM that closes the pool and Redis of every worker."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_helpers import AppFactory, api_process_env
from live_servers import free_port, wait_for_port


def served_by(log: Path) -> set[int]:
    """The processes that logged an answer to /health/ready (a line being written is skipped)."""
    served = set()
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if record.get("event") == "request" and record.get("route") == "/health/ready":
                served.add(record["process"])
    return served


@pytest.mark.slow
def test_two_workers_share_metrics_and_stop_gracefully(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    env = api_process_env(
        database_url, redis_url, port, tmp_path / "uploads", UVICORN_WORKERS="2", PYTHONUNBUFFERED="1"
    )
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoice-api")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
            concurrent.futures.ThreadPoolExecutor(8) as pool,
        ):

            def ready(_: int) -> int:
                return client.get("/health/ready", headers={"Connection": "close"}).status_code

            sent = 0
            for _ in range(40):  # concurrent batches on new connections until both workers answered
                assert list(pool.map(ready, range(16))) == [200] * 16
                sent += 16
                if len(served_by(log)) == 2:
                    break
            totals = set()
            for _ in range(4):
                text = client.get("/metrics", headers={"Connection": "close"}).text
                match = re.search(
                    r'http_requests_total\{method="GET",route="/health/ready",status="200"\} (\S+)', text
                )
                assert match, text[:2000]
                totals.add(float(match.group(1)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert totals == {float(sent)}, "every answer, whichever worker gave it, is the sum over both workers"
    assert server.returncode == 0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    started = [r["process"] for r in records if r["event"] == "api_started"]
    stopped = [r["process"] for r in records if r["event"] == "api_stopped"]
    assert len(set(started)) == 2
    assert sorted(stopped) == sorted(started)  # each worker closed its pool and Redis
    assert served_by(log) == set(started)  # both workers answered, so the equal totals are real sums


async def test_lifespan_end_closes_the_pool(app_client: AppFactory) -> None:
    async with app_client() as client:
        assert (await client.get("/health/ready")).status_code == 200
        engine = client.app.state.core.engine  # type: ignore[attr-defined]
        assert engine.pool.checkedin() == 1  # a pooled connection, kept open between requests
    assert engine.pool.checkedin() == 0  # disposed at shutdown


@pytest.mark.slow
def test_sigterm_lets_the_in_flight_request_finish(redis_url: str, tmp_path: Path) -> None:
    # A "database" that accepts connections and never answers: /health/ready then takes its full
    # 2 s check timeout, long enough to send SIGTERM while the request is in flight.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "DATABASE_URL": f"postgresql+asyncpg://x@127.0.0.1:{blackhole.getsockname()[1]}/x",
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "UVICORN_WORKERS": "1",
            "UPLOAD_DIR": str(tmp_path),
            "JWT_SECRET": "proc-secret-" + "p" * 32,
            "GRACEFUL_SHUTDOWN_SECONDS": "10",
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "invoice-api")],
            env=env,
            stdout=(tmp_path / "api.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, timeout=30)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                started = time.monotonic()
                pending = pool.submit(httpx.get, f"http://127.0.0.1:{port}/health/ready", timeout=15)
                time.sleep(0.7)
                server.send_signal(signal.SIGTERM)
                response = pending.result()
            elapsed = time.monotonic() - started
            server.wait(timeout=15)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert response.status_code == 503  # the request completed (database unreachable), not reset
    assert elapsed >= 1.9
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete (single process mode)
    assert server.returncode in {0, -signal.SIGTERM}
    events = [
        json.loads(line)["event"]
        for line in (tmp_path / "api.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert events.index("request") < events.index("api_stopped")  # answered, then pool/Redis closed


def _rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


# A well-formed multipart start: one photo part whose content never ends.
_PART_HEAD = (
    b'--x\r\nContent-Disposition: form-data; name="files"; filename="r.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n"
)


def _chunks(total: int, size: int = 256 * 1024, head: bytes = b"") -> Iterator[bytes]:
    sent = len(head)
    if head:
        yield head
    while sent < total:
        sent += size
        yield b"x" * size


@pytest.mark.slow
def test_huge_chunked_bodies_leave_the_process_memory_bounded(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """200 MiB chunked to the upload without a token (401) and with one (413 at the upload limit),
    and 300 MiB of "JSON" to the login (413): the API process grows by less than 20 MiB."""
    port = free_port()
    env = api_process_env(database_url, redis_url, port, tmp_path / "uploads", TMPDIR=str(tmp_path))
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoice-api")],
        env=env,
        stdout=(tmp_path / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    mib = 1024 * 1024
    try:
        wait_for_port(port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            credentials = {"email": f"big-{port}@example.com", "password": "correct horse 42"}
            assert client.post("/auth/register", json=credentials).status_code == 202
            token = client.post("/auth/login", json=credentials).json()["access_token"]
            assert client.get("/health/ready").status_code == 200  # warm: pool, Redis, imports
            before = _rss_kib(server.pid)
            multipart = {"Content-Type": "multipart/form-data; boundary=x"}
            answers = []
            for path, headers, size, head in (
                ("/invoices/upload", multipart, 200 * mib, _PART_HEAD),
                (
                    "/invoices/upload",
                    {**multipart, "Authorization": f"Bearer {token}"},
                    200 * mib,
                    _PART_HEAD,
                ),
                ("/auth/login", {"Content-Type": "application/json"}, 300 * mib, b""),
            ):
                try:
                    answers.append(
                        client.post(path, content=_chunks(size, head=head), headers=headers).status_code
                    )
                except httpx.TransportError:
                    # The server answered and closed while the client was still sending: read by
                    # the status line it sent, which httpx may not get to; the log has it.
                    answers.append(-1)
            after = _rss_kib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    records = [
        json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines() if line.startswith("{")
    ]
    logged = [r["status"] for r in records if r.get("event") == "request" and r["method"] == "POST"][-3:]
    assert logged == [401, 413, 413], (answers, logged)
    assert after - before < 20 * 1024, f"the API grew by {(after - before) / 1024:.1f} MiB"
