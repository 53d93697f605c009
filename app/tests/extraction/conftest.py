"""Fixtures of the extraction tests: a fake OpenAI-compatible provider (a real HTTP server on
127.0.0.1), a real redis-server, settings isolated from the environment, and rendered receipt photos."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from invoice_service.extraction import cache as cache_module
from invoice_service.extraction import chain as chain_module
from invoice_service.extraction.settings import ExtractionSettings

# The answer the fake model gives for "ok".
GOOD_ANSWER: dict[str, Any] = {
    "store_name": "Mercado Fake",
    "store_tax_id": "11222333000181",
    "purchase_date": "2024-03-15",
    "total": 29.88,
    "items": [
        {"description": "ARROZ 5KG", "quantity": 1, "unit_price": 24.9, "total": 24.9},
        {"description": "LEITE 1L", "quantity": "2", "unit_price": "2,49", "total": "4,98"},
    ],
}


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Fake OpenAI-compatible provider -------------------------------------------------------------


@dataclass
class FakeRequest:
    """What the fake server received."""

    path: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeProvider:
    """A real HTTP server answering POST /v1/chat/completions as scripted.

    Behaviours: "ok", "slow" (sleeps `slow_seconds`, then ok), "500", "503", "400", "401", "429",
    "malformed" (200, the model's message is not JSON), "not_json" (200, the body is not JSON),
    "wrong_schema" (200, JSON of the wrong shape). `script(...)` queues behaviours for the next requests;
    once the queue is empty every request gets `default`. Every 200 answer carries `usage` (the
    chat-completions `usage` object) unless it is None.
    """

    server: ThreadingHTTPServer
    answer: dict[str, Any] = field(default_factory=lambda: dict(GOOD_ANSWER))
    default: str = "ok"
    slow_seconds: float = 2.0
    usage: dict[str, Any] | None = None
    queue: deque[str] = field(default_factory=deque)
    requests: list[FakeRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Base URL, as OPENROUTER_BASE_URL etc. take it."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self.lock:
            return len(self.requests)

    def script(self, *behaviours: str) -> None:
        with self.lock:
            self.queue.extend(behaviours)

    def next_behaviour(self, request: FakeRequest) -> str:
        with self.lock:
            self.requests.append(request)
            return self.queue.popleft() if self.queue else self.default


def _chat_completion(content: str, usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self) -> None:
        fake: FakeProvider = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        behaviour = fake.next_behaviour(
            FakeRequest(self.path, self.headers.get("Authorization"), json.loads(raw or b"{}"))
        )
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": {"message": "no such route"}}')
        elif behaviour == "ok":
            self._send(200, _chat_completion(json.dumps(fake.answer), fake.usage))
        elif behaviour == "slow":
            time.sleep(fake.slow_seconds)
            self._send(200, _chat_completion(json.dumps(fake.answer), fake.usage))
        elif behaviour.isdigit():
            message = json.dumps({"error": {"message": f"fake {behaviour}"}}).encode()
            self._send(int(behaviour), message)
        elif behaviour == "malformed":
            self._send(200, _chat_completion('Sure! {"store_name": "Mercado", "total": 12,', fake.usage))
        elif behaviour == "not_json":
            self._send(200, b"<html>gateway page</html>", "text/html")
        elif behaviour == "wrong_schema":
            self._send(200, _chat_completion(json.dumps({"items": [{"quantity": 2}]}), fake.usage))
        else:
            raise AssertionError(f"unknown fake behaviour {behaviour!r}")


@contextlib.contextmanager
def running_fake() -> Iterator[FakeProvider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    fake = FakeProvider(server=server)
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """One fake OpenAI-compatible provider."""
    with running_fake() as fake:
        yield fake


@pytest.fixture
def second_fake_provider() -> Iterator[FakeProvider]:
    """Another, independent fake provider (for fallback order)."""
    with running_fake() as fake:
        yield fake


@pytest.fixture
def refused_url() -> str:
    """A base URL where nothing listens: connection refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


# --- Settings ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_extraction_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys or models in the developer's environment must not leak into the tests' settings."""
    for name in ExtractionSettings.model_fields:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fast_settings() -> Callable[..., ExtractionSettings]:
    """ExtractionSettings with test-sized timeouts and backoff; keyword arguments override."""

    def make(**overrides: Any) -> ExtractionSettings:
        values: dict[str, Any] = {
            "LLM_TIMEOUT_SECONDS": 0.5,
            "LLM_RETRY_ATTEMPTS": 2,
            "LLM_RETRY_BACKOFF_MULTIPLIER": 0.05,
            "LLM_RETRY_BACKOFF_MIN_SECONDS": 0.05,
            "LLM_RETRY_BACKOFF_MAX_SECONDS": 0.2,
            "CIRCUIT_FAILURE_THRESHOLD": 3,
            "CIRCUIT_RESET_SECONDS": 0.5,
        }
        return ExtractionSettings(**(values | overrides))

    return make


# --- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the session's real Redis (app/tests/conftest.py starts redis-server)."""
    client = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()


# --- Logs ----------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The extraction modules' structlog events, as dicts. Fresh loggers are swapped in, so this works
    even when the application configured structlog with cache_logger_on_first_use."""
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(chain_module, "log", structlog.get_logger(chain_module.__name__))
        monkeypatch.setattr(cache_module, "log", structlog.get_logger(cache_module.__name__))
        yield logs


# --- Receipt photos ------------------------------------------------------------------------------

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


@pytest.fixture(scope="session")
def mono_font() -> Path:
    """DejaVu Sans Mono (Debian's fonts-dejavu-core), the thermal-printer look."""
    path = FONT_DIR / "DejaVuSansMono.ttf"
    if not path.is_file():
        pytest.fail(f"{path} is missing: `make app-setup` installs Debian's fonts-dejavu-core")
    return path


@pytest.fixture(scope="session")
def tesseract_installed() -> None:
    """The OCR tests need the real tesseract with Portuguese data."""
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not installed: `make app-setup` installs tesseract-ocr tesseract-ocr-por")
    langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, check=False)
    if "por" not in langs.stdout.split():
        pytest.fail("tesseract has no Portuguese data: `make app-setup` installs tesseract-ocr-por")
