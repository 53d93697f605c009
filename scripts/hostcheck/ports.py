"""Which TCP ports answer on the host's address."""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from hostcheck.results import Result, failed, passed

# Ports a stray service of this stack (or a forgotten one) would answer on: PostgreSQL, Redis, the
# API container, alternative HTTP, Traefik's ping, Prometheus and its node exporter, the Docker API,
# dev servers. The inventory's own ports are added to these (inventory.Target.scan_ports).
RELEVANT_PORTS = (22, 80, 443, 5432, 6379, 8000, 8080, 8082, 9090, 9100, 2375, 2376, 3000)


class PortState(enum.Enum):
    """What a TCP connect saw: accepted, refused (RST) or nothing before the timeout (dropped)."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"


def probe(address: str, port: int, timeout: float = 2.0) -> PortState:
    """Connect once and close: open, closed (refused) or filtered (no answer)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return PortState.OPEN
    except ConnectionRefusedError:
        return PortState.CLOSED
    except OSError:
        return PortState.FILTERED


def scan(address: str, ports: Iterable[int], timeout: float = 2.0) -> dict[int, PortState]:
    """Probe every port at once (a dropped port costs the timeout, so not one after another)."""
    wanted = sorted(set(ports))
    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        states = pool.map(lambda port: probe(address, port, timeout), wanted)
        return dict(zip(wanted, states, strict=True))


def classify(states: Mapping[int, PortState], allowed: Iterable[int]) -> Result:
    """PASS when no port outside `allowed` is open; closed and filtered ports pass."""
    allowed_set = set(allowed)
    unexpected = sorted(
        port for port, state in states.items() if state is PortState.OPEN and port not in allowed_set
    )
    answering = sorted(port for port, state in states.items() if state is PortState.OPEN)
    scanned = ", ".join(str(port) for port in sorted(states))
    if unexpected:
        listed = ", ".join(str(port) for port in unexpected)
        return failed(
            "ports",
            f"port(s) {listed} answer from outside; only {_join(allowed_set)} may (scanned {scanned})",
        )
    return passed(
        "ports",
        f"answering: {_join(answering) or 'none'}; every other scanned port is closed or filtered "
        f"(scanned {scanned})",
    )


def _join(ports: Iterable[int]) -> str:
    return ", ".join(str(port) for port in sorted(ports))
