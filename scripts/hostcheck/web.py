"""HTTP(S) requests to the host's address with the public name in Host and SNI, and what the
answers must say."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hostcheck.results import Result, failed, passed

# The least HSTS max-age accepted: 180 days (what scanners such as SSL Labs ask for).
HSTS_MIN_SECONDS = 15552000
# Referrer policies that hand the full URL to other origins, HTTPS to HTTP included.
UNSAFE_REFERRER_POLICIES = frozenset({"unsafe-url", "no-referrer-when-downgrade"})


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the host's address and port, the public name, and TLS or not."""

    address: str
    port: int
    host: str
    tls: ssl.SSLContext | None = None

    def url(self, path: str) -> str:
        """The URL as a reader would type it (for messages)."""
        scheme = "https" if self.tls else "http"
        default = 443 if self.tls else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{self.host}{port}{path}"


@dataclass(frozen=True)
class Response:
    """Status, headers (lower-case names) and the body's first bytes."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class _SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address while presenting another name in SNI (and Host)."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        super().__init__(endpoint.address, endpoint.port, timeout=timeout, context=endpoint.tls)
        self._sni = endpoint.host
        self._tls = endpoint.tls

    def connect(self) -> None:
        assert self._tls is not None
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._sni)


def connection(endpoint: Endpoint, timeout: float = 10.0) -> http.client.HTTPConnection:
    """A keep-alive connection to the endpoint (HTTPS when it has a TLS context)."""
    if endpoint.tls is not None:
        return _SNIConnection(endpoint, timeout)
    return http.client.HTTPConnection(endpoint.address, endpoint.port, timeout=timeout)


def send(
    conn: http.client.HTTPConnection,
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    """One request on an open connection; redirects are not followed."""
    all_headers = {"Host": endpoint.host, "User-Agent": "toolkit-verify", **(headers or {})}
    conn.request(method, path, body=body, headers=all_headers)
    answer = conn.getresponse()
    data = answer.read(65536)
    return Response(answer.status, {name.lower(): value for name, value in answer.getheaders()}, data)


def fetch(
    endpoint: Endpoint,
    path: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a connection of its own."""
    conn = connection(endpoint, timeout)
    try:
        return send(conn, endpoint, method, path, headers, body)
    finally:
        conn.close()


def check_redirect(response: Response, host: str, https_port: int = 443) -> Result:
    """A permanent redirect (301/308) of plain HTTP to https://host/...."""
    location = response.headers.get("location", "")
    target = urlsplit(location)
    expected = host if https_port == 443 else f"{host}:{https_port}"
    if response.status not in (301, 308):
        return failed(
            "redirect",
            f"http://{host}/ answered {response.status}, not a permanent redirect (301/308)"
            + (f" to {location}" if location else ""),
        )
    if target.scheme != "https" or target.netloc != expected:
        return failed(
            "redirect",
            f"http://{host}/ redirects ({response.status}) to {location!r}, not to https://{expected}/",
        )
    return passed("redirect", f"http://{host}/ -> {response.status} {location}")


def header_problems(headers: Mapping[str, str]) -> list[str]:
    """What an HTTPS answer lacks among HSTS and the security headers (lower-case names)."""
    problems: list[str] = []
    hsts = headers.get("strict-transport-security", "")
    max_age = re.search(r"max-age\s*=\s*\"?(\d+)", hsts, re.IGNORECASE)
    if not hsts:
        problems.append("no Strict-Transport-Security")
    elif not max_age or int(max_age.group(1)) < HSTS_MIN_SECONDS:
        problems.append(f"Strict-Transport-Security {hsts!r}: max-age below {HSTS_MIN_SECONDS} s (180 days)")
    if headers.get("x-content-type-options", "").strip().lower() != "nosniff":
        problems.append("X-Content-Type-Options is not nosniff")
    frame_options = headers.get("x-frame-options", "").strip().upper()
    csp = headers.get("content-security-policy", "").lower()
    if frame_options not in ("DENY", "SAMEORIGIN") and "frame-ancestors" not in csp:
        problems.append("neither X-Frame-Options (DENY/SAMEORIGIN) nor a CSP frame-ancestors")
    referrer = headers.get("referrer-policy", "").strip().lower()
    if not referrer:
        problems.append("no Referrer-Policy")
    elif referrer in UNSAFE_REFERRER_POLICIES:
        problems.append(f"Referrer-Policy {referrer} leaks full URLs")
    return problems


def check_headers(response: Response, url: str) -> Result:
    """HSTS and the security headers on an HTTPS answer."""
    problems = header_problems(response.headers)
    if problems:
        return failed("headers", f"{url} ({response.status}): " + "; ".join(problems))
    shown = ", ".join(
        f"{name}: {response.headers[name]}"
        for name in (
            "strict-transport-security",
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
        )
        if name in response.headers
    )
    return passed("headers", f"{url}: {shown}")


def check_health(response: Response, url: str) -> Result:
    """/health/ready: 200 with {"status": "ok"}."""
    try:
        status = json.loads(response.body).get("status")
    except (ValueError, AttributeError):
        status = None
    if response.status == 200 and status == "ok":
        return passed("health", f'{url}: 200 {{"status": "ok"}}')
    excerpt = response.body[:200].decode(errors="replace")
    return failed("health", f'{url}: {response.status} {excerpt!r}, expected 200 with {{"status": "ok"}}')


def hidden_path_problem(path: str, answer: Response | OSError) -> str | None:
    """None when a path is not served to the outside (403, 404, or no connection), else why not."""
    if isinstance(answer, OSError):
        return None
    if answer.status in (403, 404):
        return None
    return f"{path} answered {answer.status}"
