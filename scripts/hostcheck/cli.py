"""The checks in the order they run, for every host of an inventory; `scripts/verify.py` calls main."""

from __future__ import annotations

import argparse
import datetime as dt
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from hostcheck import inventory, limits, ports, ssh, tls, web
from hostcheck.results import Result, exit_code, failed, format_result, passed, skipped, summary

Emit = Callable[[Result], None]
HIDDEN_PATHS = ("/metrics", "/docs", "/openapi.json")
# The edge's 429 is looked for on a path the API never limits, with this many requests beyond the burst.
EDGE_PATH = "/health"
EDGE_EXTRA_REQUESTS = 50
LOGIN_PATH = "/auth/login"


def no_edge_reason(target: inventory.Target, https: ports.PortState = ports.PortState.CLOSED) -> str:
    """Why the edge's checks cannot be made on a host without Traefik (the sandbox)."""
    seen = "refuses connections" if https is ports.PortState.CLOSED else "does not answer"
    return (
        f"Traefik is not running on {target.address} (traefik_image_required is false and port "
        f"{target.https_port} {seen}): the API is published directly on port "
        f"{target.publish_port} over plain HTTP"
    )


def scan_ports(target: inventory.Target) -> tuple[dict[int, ports.PortState], str | None]:
    """Port states, the SSH port's from reading its banner (one connection fewer to sshd)."""
    states = ports.scan(target.address, target.scan_ports - {target.ssh_port})
    try:
        banner: str | None = ssh.read_banner(target.address, target.ssh_port)
        states[target.ssh_port] = ports.PortState.OPEN
    except ConnectionRefusedError:
        banner, states[target.ssh_port] = None, ports.PortState.CLOSED
    except OSError:
        banner, states[target.ssh_port] = None, ports.PortState.FILTERED
    return states, banner


def edge_checks(target: inventory.Target, now: dt.datetime, emit: Emit) -> web.Endpoint:
    """Redirect and certificate; returns the HTTPS endpoint the other checks use."""
    host = target.host_header
    try:
        answer = web.fetch(web.Endpoint(target.address, target.http_port, host), "/")
        emit(web.check_redirect(answer, host, target.https_port))
    except OSError as exc:
        emit(failed("redirect", f"http://{host}/ on {target.address}:{target.http_port}: {exc}"))
    verified = ssl.create_default_context()
    context = tls.unverified_context() if target.acme_staging else verified
    try:
        der = tls.fetch_certificate(target.address, target.https_port, host)
        chain = (
            None
            if target.acme_staging
            else tls.chain_error(target.address, target.https_port, host, verified)
        )
        result = tls.evaluate(der, host, now, staging=target.acme_staging, chain=chain)
        emit(result)
        if chain is not None:
            context = tls.unverified_context()
    except (OSError, ValueError) as exc:
        emit(failed("certificate", f"TLS to {target.address}:{target.https_port} for {host}: {exc}"))
    return web.Endpoint(target.address, target.https_port, host, tls=context)


def health_and_headers(api: web.Endpoint, edge: bool, emit: Emit) -> None:
    """/health/ready answers ok; through the edge it also carries HSTS and the security headers."""
    url = api.url("/health/ready")
    try:
        answer = web.fetch(api, "/health/ready")
    except OSError as exc:
        if edge:
            emit(failed("headers", f"{url}: {exc}"))
        emit(failed("health", f"{url}: {exc}"))
        return
    if edge:
        emit(web.check_headers(answer, url))
    emit(web.check_health(answer, url))


def hidden_paths(api: web.Endpoint, edge: bool, reason: str, emit: Emit) -> None:
    """/metrics, /docs, /openapi.json are not served through the public path."""
    seen: list[str] = []
    problems: list[str] = []
    for path in HIDDEN_PATHS:
        try:
            answer: web.Response | OSError = web.fetch(api, path)
        except OSError as exc:
            answer = exc
        seen.append(f"{path} {answer.status if isinstance(answer, web.Response) else 'refused'}")
        problem = web.hidden_path_problem(path, answer)
        if problem:
            problems.append(problem)
    if not edge:
        emit(
            skipped(
                "hidden-paths", f"no edge to hide them: {reason}; there the API answers: {', '.join(seen)}"
            )
        )
    elif problems:
        emit(failed("hidden-paths", f"served to the outside through {api.url('')}: {'; '.join(problems)}"))
    else:
        emit(passed("hidden-paths", f"not served through {api.url('')}: {', '.join(seen)}"))


def verify_host(target: inventory.Target, now: dt.datetime, audit_ssh: bool, emit: Emit) -> None:
    """Every check for one host, ssh-audit last (its connections may get the controller penalised)."""
    states, banner = scan_ports(target)
    edge = states.get(target.https_port) is ports.PortState.OPEN or target.traefik_image_required
    reason = no_edge_reason(target, states.get(target.https_port, ports.PortState.CLOSED))
    allowed = {target.ssh_port, target.http_port, target.https_port} | (
        set() if edge else {target.publish_port}
    )
    emit(ports.classify(states, allowed))
    if edge:
        api = edge_checks(target, now, emit)
    else:
        for check in ("redirect", "certificate", "headers"):
            emit(skipped(check, reason))
        api = web.Endpoint(target.address, target.publish_port, target.host_header)
    health_and_headers(api, edge, emit)
    hidden_paths(api, edge, reason, emit)
    if target.api_limits_enabled:
        emit(
            _guard(
                "forwarded-for",
                lambda: limits.check_forged_forwarded_for(api, LOGIN_PATH, target.login_limit),
            )
        )
    else:
        emit(skipped("forwarded-for", "the API's rate limits are off (RATE_LIMIT_ENABLED in app_env_extra)"))
    if edge:
        budget = target.rate_burst + EDGE_EXTRA_REQUESTS
        emit(
            _guard(
                "edge-rate-limit",
                lambda: limits.check_edge_limit(
                    api, EDGE_PATH, budget, target.rate_average, target.rate_burst, target.rate_period
                ),
            )
        )
    else:
        emit(skipped("edge-rate-limit", reason))
    if banner is None:
        emit(
            failed(
                "ssh-audit",
                f"no SSH banner on {target.address}:{target.ssh_port} ({states[target.ssh_port].value})",
            )
        )
    elif not audit_ssh:
        emit(skipped("ssh-audit", "--no-ssh-audit given"))
    else:
        emit(ssh.check_ssh_audit(target.address, target.ssh_port, banner))
        emit(ssh.check_still_reachable(target.address, target.ssh_port))


def _guard(check: str, run: Callable[[], Result]) -> Result:
    """A check whose connection fails is a FAIL naming the error, not a traceback."""
    try:
        return run()
    except (OSError, ValueError) as exc:
        return failed(check, f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    """Check every host of the inventory; exit 1 when any check failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inventory", type=Path, required=True, help="inventories/<env>/hosts.yml")
    parser.add_argument("--limit", default="all", help="host pattern within the inventory (default: all)")
    parser.add_argument(
        "--no-ssh-audit", action="store_true", help="skip ssh-audit (and its connections to sshd)"
    )
    args = parser.parse_args(argv)
    try:
        targets = inventory.load_targets(args.inventory, args.limit)
    except (RuntimeError, OSError, LookupError) as exc:
        print(f"make verify: cannot read {args.inventory}: {exc}", file=sys.stderr)
        return 2
    if not targets:
        print(f"make verify: {args.inventory} has no host matching {args.limit!r}", file=sys.stderr)
        return 2
    all_results: list[Result] = []
    for target in targets:
        print(
            f"make verify: {target.name} ({target.address}, name {target.host_header}), from this controller"
        )
        results: list[Result] = []

        def emit(result: Result, host: str = target.name, collected: list[Result] = results) -> None:
            collected.append(result)
            print(format_result(host, result), flush=True)

        verify_host(target, dt.datetime.now(dt.UTC), not args.no_ssh_audit, emit)
        print("make verify: " + summary(target.name, results))
        all_results += results
    return exit_code(all_results)
