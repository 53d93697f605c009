"""make verify (scripts/hostcheck): each check against local servers on 127.0.0.1 that behave well
or badly, so every check is seen to fail when it should."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hostcheck import cli, inventory, limits, ports, ssh, tls, web
from hostcheck.results import Result, Status, exit_code, failed, format_result, passed, skipped, summary

NAME = "api.example.test"
# The real clock: the chain verifier of the ssl module checks dates against it too.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
GOOD_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}

Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[http.server.BaseHTTPRequestHandler], Reply]
Serve = Callable[..., tuple[int, list[dict[str, str]]]]


# --- Local servers ------------------------------------------------------------------------------


def _serve(
    handler: Handler, context: ssl.SSLContext | None = None
) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """An HTTP(S) server on 127.0.0.1 answering with `handler`; yields its port and the requests' headers."""
    seen: list[dict[str, str]] = []

    class Handle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append({**dict(self.headers.items()), "path": self.path, "peer": self.client_address[0]})
            status, headers, body = handler(self)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _certificate(tmp: Path, name: str, days: int, start: dt.datetime = NOW) -> tuple[Path, Path]:
    """A self-signed certificate for `name`, valid from `start` for `days` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(days=1))
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}-{days}.crt", tmp / f"{name}-{days}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[Iterator[tuple[int, list[dict[str, str]]]]] = []

    def start(handler: Handler, context: ssl.SSLContext | None = None) -> tuple[int, list[dict[str, str]]]:
        server = _serve(handler, context)
        started.append(server)
        return next(server)

    yield start
    for server in started:
        next(server, None)


def _fixed(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    return lambda _request: (status, headers or {}, body)


# --- Results ------------------------------------------------------------------------------------


def test_a_result_is_one_line_with_status_host_check_and_reason() -> None:
    result = failed("ports", "port(s) 5432 answer\n  from outside")
    assert format_result("vps1", result) == "FAIL vps1 ports: port(s) 5432 answer from outside"


def test_summary_counts_each_status_and_only_a_failure_fails_the_run() -> None:
    results = [passed("a", "x"), skipped("b", "y"), skipped("c", "z")]
    assert summary("vps1", results) == "vps1: 1 PASS, 0 FAIL, 2 SKIP"
    assert exit_code(results) == 0
    assert exit_code([*results, failed("d", "w")]) == 1


# --- Ports --------------------------------------------------------------------------------------


def test_a_listening_port_is_open_and_a_released_one_closed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        closed_port = _free_port()
        states = ports.scan("127.0.0.1", [open_port, closed_port], timeout=1)
    assert states == {open_port: ports.PortState.OPEN, closed_port: ports.PortState.CLOSED}


def test_an_open_port_outside_the_allowed_ones_fails_and_closed_or_filtered_ones_pass() -> None:
    states = {
        22: ports.PortState.OPEN,
        443: ports.PortState.OPEN,
        5432: ports.PortState.CLOSED,
        2375: ports.PortState.FILTERED,
    }
    assert ports.classify(states, {22, 80, 443}).status is Status.PASS
    exposed = ports.classify({**states, 6379: ports.PortState.OPEN}, {22, 80, 443})
    assert exposed.status is Status.FAIL
    assert "6379" in exposed.reason


# --- Redirect, headers, health, hidden paths ----------------------------------------------------


def test_the_redirect_check_sends_the_public_name_and_wants_a_permanent_https_redirect(serve: Serve) -> None:
    port, seen = serve(_fixed(301, {"Location": f"https://{NAME}/"}))
    answer = web.fetch(web.Endpoint("127.0.0.1", port, NAME), "/")
    assert seen[0]["Host"] == NAME
    assert web.check_redirect(answer, NAME).status is Status.PASS


@pytest.mark.parametrize(
    ("status", "location"),
    [(200, ""), (302, f"https://{NAME}/"), (301, f"http://{NAME}/"), (308, "https://elsewhere.test/")],
)
def test_anything_but_a_permanent_redirect_to_the_name_over_https_fails(
    serve: Serve, status: int, location: str
) -> None:
    port, _ = serve(_fixed(status, {"Location": location} if location else {}))
    answer = web.fetch(web.Endpoint("127.0.0.1", port, NAME), "/")
    assert web.check_redirect(answer, NAME).status is Status.FAIL


def test_all_security_headers_pass(serve: Serve) -> None:
    port, _ = serve(_fixed(200, GOOD_HEADERS))
    answer = web.fetch(web.Endpoint("127.0.0.1", port, NAME), "/health/ready")
    assert web.check_headers(answer, "u").status is Status.PASS


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"Strict-Transport-Security": None}, "no Strict-Transport-Security"),
        ({"Strict-Transport-Security": "max-age=300"}, "max-age below"),
        ({"X-Content-Type-Options": None}, "nosniff"),
        ({"X-Frame-Options": None}, "frame-ancestors"),
        ({"X-Frame-Options": "ALLOW-FROM https://x.test"}, "frame-ancestors"),
        ({"Referrer-Policy": None}, "no Referrer-Policy"),
        ({"Referrer-Policy": "unsafe-url"}, "leaks"),
    ],
)
def test_a_missing_or_weak_security_header_fails(
    serve: Serve, change: dict[str, str | None], problem: str
) -> None:
    headers = {k: v for k, v in {**GOOD_HEADERS, **change}.items() if v is not None}
    port, _ = serve(_fixed(200, headers))
    result = web.check_headers(web.fetch(web.Endpoint("127.0.0.1", port, NAME), "/"), "u")
    assert result.status is Status.FAIL
    assert problem in result.reason


def test_a_csp_frame_ancestors_stands_in_for_x_frame_options() -> None:
    headers = {k.lower(): v for k, v in GOOD_HEADERS.items() if k != "X-Frame-Options"}
    assert web.header_problems({**headers, "content-security-policy": "frame-ancestors 'none'"}) == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"status": "ok", "checks": {}}', Status.PASS),
        (200, b'{"status": "degraded"}', Status.FAIL),
        (503, b'{"status": "unavailable"}', Status.FAIL),
        (200, b"<html>", Status.FAIL),
    ],
)
def test_health_wants_200_and_status_ok(serve: Serve, status: int, body: bytes, expected: Status) -> None:
    port, _ = serve(_fixed(status, {"Content-Type": "application/json"}, body))
    answer = web.fetch(web.Endpoint("127.0.0.1", port, NAME), "/health/ready")
    assert web.check_health(answer, "u").status is expected


def test_a_hidden_path_may_be_403_404_or_refused_but_not_served() -> None:
    assert web.hidden_path_problem("/metrics", web.Response(404)) is None
    assert web.hidden_path_problem("/metrics", web.Response(403)) is None
    assert web.hidden_path_problem("/metrics", ConnectionRefusedError()) is None
    assert web.hidden_path_problem("/docs", web.Response(200)) == "/docs answered 200"


# --- Certificate --------------------------------------------------------------------------------


def test_a_certificate_for_the_name_with_90_days_left_passes_as_staging(serve: Serve, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, NAME, days=90)
    port, _ = serve(_fixed(200, GOOD_HEADERS), _server_context(cert, key))
    der = tls.fetch_certificate("127.0.0.1", port, NAME)
    result = tls.evaluate(der, NAME, NOW, staging=True)
    assert result.status is Status.PASS
    assert "STAGING" in result.reason


def test_a_self_signed_chain_fails_outside_staging_and_a_trusted_one_passes(
    serve: Serve, tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path, NAME, days=90)
    port, _ = serve(_fixed(200), _server_context(cert, key))
    der = tls.fetch_certificate("127.0.0.1", port, NAME)
    refused = tls.chain_error("127.0.0.1", port, NAME, ssl.create_default_context())
    assert refused is not None
    assert tls.evaluate(der, NAME, NOW, chain=refused).status is Status.FAIL
    trusting = ssl.create_default_context(cafile=str(cert))
    assert tls.chain_error("127.0.0.1", port, NAME, trusting) is None
    assert tls.evaluate(der, NAME, NOW, chain=None).status is Status.PASS


@pytest.mark.parametrize(
    ("name", "days", "start", "problem"),
    [
        (NAME, 14, NOW, "not more than 14 days"),
        (NAME, 10, NOW - dt.timedelta(days=20), "days ago"),
        ("other.example.test", 90, NOW, f"not {NAME}"),
        (NAME, 90, NOW + dt.timedelta(days=3), "valid only from"),
    ],
)
def test_a_certificate_that_ends_soon_names_another_host_or_has_not_started_fails(
    serve: Serve, tmp_path: Path, name: str, days: int, start: dt.datetime, problem: str
) -> None:
    cert, key = _certificate(tmp_path, name, days=days, start=start)
    port, _ = serve(_fixed(200), _server_context(cert, key))
    result = tls.evaluate(tls.fetch_certificate("127.0.0.1", port, NAME), NAME, NOW, staging=True)
    assert result.status is Status.FAIL
    assert problem in result.reason


def test_wildcards_match_one_label_only() -> None:
    assert tls.name_matches("api.example.test", "*.example.test")
    assert not tls.name_matches("a.api.example.test", "*.example.test")
    assert not tls.name_matches("example.test", "*.example.test")


def test_https_requests_carry_the_name_in_sni_and_host(serve: Serve, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, NAME, days=90)
    names: list[str | None] = []
    context = _server_context(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    port, seen = serve(_fixed(200, GOOD_HEADERS, b'{"status": "ok"}'), context)
    endpoint = web.Endpoint("127.0.0.1", port, NAME, tls=ssl.create_default_context(cafile=str(cert)))
    assert web.fetch(endpoint, "/health/ready").status == 200
    assert names == [NAME]
    assert seen[0]["Host"] == NAME


# --- Rate limits --------------------------------------------------------------------------------


def _limited(limit: int, key: Callable[[dict[str, str]], str], marker: bytes) -> Handler:
    """429 once a key (the peer, or the forged header) has made `limit` requests."""
    counts: dict[str, int] = {}

    def handle(request: http.server.BaseHTTPRequestHandler) -> Reply:
        who = key({**dict(request.headers.items()), "peer": request.client_address[0]})
        counts[who] = counts.get(who, 0) + 1
        if counts[who] > limit:
            return 429, {"Retry-After": "60"}, marker
        return 422, {}, b"{}"

    return handle


API_429 = b'{"detail": "Rate limit exceeded (10 per 1 minute); retry in 60 s"}'


def test_an_api_that_keys_on_the_peer_stops_forged_forwarded_for(serve: Serve) -> None:
    port, seen = serve(_limited(10, lambda h: h["peer"], API_429))
    result = limits.check_forged_forwarded_for(
        web.Endpoint("127.0.0.1", port, NAME), "/auth/login", "10/minute"
    )
    assert result.status is Status.PASS, result.reason
    assert len(seen) == 11
    assert len({request["X-Forwarded-For"] for request in seen}) == 11


def test_an_api_that_believes_forwarded_for_fails(serve: Serve) -> None:
    port, seen = serve(_limited(10, lambda h: h.get("X-Forwarded-For", ""), API_429))
    result = limits.check_forged_forwarded_for(
        web.Endpoint("127.0.0.1", port, NAME), "/auth/login", "10/minute"
    )
    assert result.status is Status.FAIL
    assert len(seen) == 15


def test_a_429_from_the_edge_instead_of_the_api_is_no_pass(serve: Serve) -> None:
    port, _ = serve(_limited(3, lambda h: h["peer"], b"Too Many Requests"))
    result = limits.check_forged_forwarded_for(
        web.Endpoint("127.0.0.1", port, NAME), "/auth/login", "10/minute"
    )
    assert result.status is Status.FAIL
    assert "not the API's" in result.reason


def test_the_edge_check_stops_at_the_first_429_and_fails_without_one(serve: Serve) -> None:
    port, seen = serve(_limited(7, lambda h: h["peer"], b"Too Many Requests"))
    endpoint = web.Endpoint("127.0.0.1", port, NAME)
    result = limits.check_edge_limit(endpoint, "/health", 20, 100, 5, "1m")
    assert result.status is Status.PASS
    assert len(seen) == 8
    never, _ = serve(_fixed(200))
    assert limits.check_edge_limit(
        web.Endpoint("127.0.0.1", never, NAME), "/health", 20, 100, 5, "1m"
    ).status is (Status.FAIL)


@pytest.mark.parametrize(("text", "count"), [("10/minute", 10), ("5 per 1 hour", 5), ("100/2 minutes", 100)])
def test_limit_strings_give_their_count(text: str, count: int) -> None:
    assert limits.limit_count(text) == count


# --- SSH ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("banner", "release"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7", 12),
        ("SSH-2.0-OpenSSH_10.0p2 Debian-7", 13),
        ("SSH-2.0-OpenSSH_10.0p2 Debian-7+deb13u1", 13),
        ("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5", None),
    ],
)
def test_the_debian_release_comes_from_the_banner(banner: str, release: int | None) -> None:
    assert ssh.debian_release(banner) == release


def test_the_banner_is_read_and_a_closed_port_is_reported_as_no_longer_reachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def greet() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n")

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        assert ssh.read_banner("127.0.0.1", port) == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7"
        thread.join()
    gone = ssh.check_still_reachable("127.0.0.1", _free_port(), window=0.1, settle=0)
    assert gone.status is Status.FAIL
    assert "PerSourcePenalties" in gone.reason


def test_a_refusal_that_ends_with_ufws_rate_limit_window_passes() -> None:
    """Refused at first (ufw's `limit`), greeting once the window is over: PASS, and it says so."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        # Bound but not listening yet: connections are refused, as by ufw's REJECT.

        def open_later() -> None:
            time.sleep(0.3)
            listener.listen()
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n")

        thread = threading.Thread(target=open_later, daemon=True)
        thread.start()
        result = ssh.check_still_reachable("127.0.0.1", port, window=1.0, settle=0)
        thread.join()
    assert result.status is Status.PASS, result.reason
    assert "ufw's SSH rate limit" in result.reason


def test_ssh_audit_passes_only_on_exit_0_with_the_policy_passed() -> None:
    policy = ssh.POLICIES[13]
    report = f"Host:   127.0.0.1\nPolicy: {policy}\nResult: ✔ Passed\n"
    assert ssh.audit_result(policy, 0, report).status is Status.PASS
    failing = f"Policy: {policy}\nResult: ❌ Failed!\n\nErrors:\n  * Ciphers did not match.\n"
    assert ssh.audit_result(policy, 3, failing).status is Status.FAIL
    assert "-P" in ssh.ssh_audit_command("192.0.2.1", 22, policy)


def test_a_banner_of_no_supported_debian_fails_the_audit_before_running_it() -> None:
    result = ssh.check_ssh_audit("192.0.2.1", 22, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5")
    assert result.status is Status.FAIL
    assert "Debian 12 or 13" in result.reason


# --- Inventory ----------------------------------------------------------------------------------


def test_inventory_values_win_over_role_defaults() -> None:
    defaults = inventory.role_defaults()
    assert defaults["traefik_rate_limit_burst"] >= 1
    target = inventory.build_target(
        "vps1",
        {
            "ansible_host": "192.0.2.10",
            "app_domain": NAME,
            "traefik_acme_staging": True,
            "app_env_extra": {"RATE_LIMIT_LOGIN": "3/minute"},
        },
        defaults,
        "10/minute",
    )
    assert (target.address, target.host_header, target.acme_staging) == ("192.0.2.10", NAME, True)
    assert target.login_limit == "3/minute"
    assert {22, 80, 443, 5432, 8082} <= target.scan_ports


def test_templated_role_defaults_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "roles" / "demo" / "defaults").mkdir(parents=True)
    (tmp_path / "roles" / "demo" / "defaults" / "main.yml").write_text('demo_a: 1\ndemo_b: "{{ demo_a }}"\n')
    assert inventory.role_defaults(tmp_path, ("demo",)) == {"demo_a": 1}


def test_the_login_limit_default_is_read_from_the_app_settings() -> None:
    assert limits.limit_count(inventory.settings_default(inventory.APP_SETTINGS, "RATE_LIMIT_LOGIN")) >= 1


def test_the_adhoc_answer_gives_each_hosts_values() -> None:
    output = json.dumps(
        {"plays": [{"tasks": [{"hosts": {"vps1": {"msg": json.dumps({"app_domain": NAME})}}}]}]}
    )
    assert inventory.parse_adhoc_json("warning first\n" + output) == {"vps1": {"app_domain": NAME}}


# --- The whole run on a host without Traefik (the sandbox's shape) --------------------------------


def test_without_traefik_the_edge_checks_are_skipped_with_the_reason(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    def api(request: http.server.BaseHTTPRequestHandler) -> Reply:
        if request.path == "/health/ready":
            return 200, {}, b'{"status": "ok"}'
        return 404, {}, b""

    port, _ = serve(api)
    login_port, _ = serve(_limited(10, lambda h: h["peer"], API_429))
    defaults = inventory.role_defaults()
    target = inventory.build_target(
        "sandbox",
        {
            "ansible_host": "127.0.0.1",
            "traefik_image_required": False,
            "app_publish_port": port,
            "traefik_https_port": _free_port(),
            "ansible_port": _free_port(),
        },
        defaults,
        "10/minute",
    )
    monkeypatch.setattr(
        ports,
        "scan",
        lambda _a, wanted, timeout=2.0: (
            {p: ports.PortState.CLOSED for p in wanted} | {port: ports.PortState.OPEN}
        ),
    )
    monkeypatch.setattr(cli, "LOGIN_PATH", "/auth/login")
    real_check = limits.check_forged_forwarded_for
    monkeypatch.setattr(
        limits,
        "check_forged_forwarded_for",
        lambda _api, path, limit: real_check(web.Endpoint("127.0.0.1", login_port, "127.0.0.1"), path, limit),
    )
    results: list[Result] = []
    cli.verify_host(target, NOW, audit_ssh=False, emit=results.append)
    by_check = {result.check: result for result in results}
    assert by_check["ports"].status is Status.PASS
    for check in ("redirect", "certificate", "headers", "edge-rate-limit", "hidden-paths"):
        assert by_check[check].status is Status.SKIP
        assert "Traefik is not running" in by_check[check].reason
    assert by_check["health"].status is Status.PASS
    assert by_check["forwarded-for"].status is Status.PASS
    assert by_check["ssh-audit"].status is Status.FAIL  # nothing listens on the SSH port
