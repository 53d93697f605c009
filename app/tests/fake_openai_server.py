"""A fake OpenAI-compatible chat-completions server on loopback, scripted per request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIPT_ANSWER = {
    "store_name": "Supermercado Fake",
    "store_tax_id": "12345678000195",
    "purchase_date": "2026-03-14",
    "total": 27.40,
    "items": [
        {"description": "Arroz 5kg", "quantity": 1, "unit_price": 24.90, "total": 24.90},
        {"description": "Banana", "quantity": 2, "unit_price": 1.25, "total": 2.50},
    ],
}

# A behaviour takes the 1-based request number and returns (status, body) after any delay it wants.
Behaviour = Callable[[int], tuple[int, dict[str, object]]]


def completion(answer: dict[str, object]) -> dict[str, object]:
    """A chat-completions body whose message content is answer as JSON."""
    return {"choices": [{"message": {"role": "assistant", "content": json.dumps(answer)}}]}


@dataclass
class FakeLLM:
    """The running server: its base URL and how many requests it received."""

    base_url: str
    requests: list[float] = field(default_factory=list)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake LLM got {len(self.requests)} requests, expected {count}")
            time.sleep(0.05)


@contextmanager
def fake_llm(behaviour: Behaviour) -> Iterator[FakeLLM]:
    """Serve behaviour on 127.0.0.1:<free port> in a thread."""
    state = FakeLLM(base_url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            with lock:
                state.requests.append(time.monotonic())
                number = len(state.requests)
            status, body = behaviour(number)
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client (a killed worker) is gone

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
