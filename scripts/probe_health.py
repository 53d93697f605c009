#!/usr/bin/env python3
"""Probe an HTTP URL every INTERVAL seconds while a command runs; report what a client saw.

    scripts/probe_health.py --url http://172.29.20.10/health -- make app-deploy
    scripts/probe_health.py --url http://127.0.0.1:8000/health/ready --stop-file /tmp/stop --json &

Each probe is a fresh connection (no keep-alive: a client arriving during a release swap), with a
timeout of one second. The report names the longest gap between two answered probes (HTTP 200),
the failed probes by kind (refused, reset, timeout, HTTP status) and, when the service names it in
/health/ready's "release", which releases answered. With --stop-file instead of a command, it
probes until that file exists (a test starts it on a host, acts, then creates the file). Exit
status: the command's, or 3 when --max-gap is given and the longest gap exceeded it.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Probe:
    """One request: when it was sent, how long it took, and its outcome ("200", "refused", ...)."""

    sent: float
    seconds: float
    outcome: str
    release: str | None = None


@dataclass
class Report:
    probes: list[Probe] = field(default_factory=list)

    @property
    def answered(self) -> list[Probe]:
        return [probe for probe in self.probes if probe.outcome == "200"]

    def longest_gap(self) -> float:
        """Seconds between the end of one answered probe and the end of the next answered one, less
        the interval a client waits anyway (0 when every probe answered)."""
        ends = [probe.sent + probe.seconds for probe in self.answered]
        gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
        return max(gaps, default=0.0)

    def failures(self) -> Counter[str]:
        return Counter(probe.outcome for probe in self.probes if probe.outcome != "200")

    def releases(self) -> list[str]:
        """The releases that answered, in the order they first did."""
        seen: list[str] = []
        for probe in self.answered:
            if probe.release and probe.release not in seen:
                seen.append(probe.release)
        return seen


def probe_once(url: str, timeout: float, host_header: str | None = None) -> Probe:
    """One GET on a new connection. HTTPS is not verified: the probe asks whether the service
    answers (through Traefik on 127.0.0.1, whose certificate names the domain, not the address)."""
    parts = urlsplit(url)
    address, port = parts.hostname or "127.0.0.1", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    headers = {"Connection": "close"} | ({"Host": host_header} if host_header else {})
    started = time.monotonic()
    release = None
    try:
        connection.request("GET", parts.path or "/", headers=headers)
        response = connection.getresponse()
        body = response.read()
        outcome = str(response.status)
        if response.status == 200:
            try:
                release = json.loads(body).get("release")
            except (ValueError, AttributeError):
                release = None
    except ConnectionRefusedError:
        outcome = "refused"
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        outcome = "reset"
    except TimeoutError:
        outcome = "timeout"
    except OSError as error:
        outcome = type(error).__name__
    finally:
        connection.close()
    return Probe(started, time.monotonic() - started, outcome, release)


def probe_while(
    url: str, interval: float, timeout: float, host_header: str | None, stop: threading.Event, report: Report
) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        report.probes.append(probe_once(url, timeout, host_header))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def summary(report: Report) -> str:
    failures = report.failures()
    failed = ", ".join(f"{count} {kind}" for kind, count in sorted(failures.items())) or "none"
    return (
        f"probes: {len(report.probes)}, answered: {len(report.answered)}, failed: {failed}; "
        f"longest gap between answers: {report.longest_gap():.2f} s; "
        f"releases that answered: {', '.join(report.releases()) or '(not named)'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--max-gap", type=float, default=None, help="exit 3 when the longest gap is longer")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line too")
    parser.add_argument("--stop-file", type=Path, help="probe until this file exists (no command)")
    parser.add_argument("--host-header", help="the Host header (a name Traefik routes on 127.0.0.1)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and args.stop_file is None:
        parser.error("name the command to run after -- (or give --stop-file)")
    report = Report()
    stop = threading.Event()
    thread = threading.Thread(
        target=probe_while, args=(args.url, args.interval, args.timeout, args.host_header, stop, report)
    )
    thread.start()
    try:
        if command:
            status = subprocess.call(command)
        else:
            while not args.stop_file.exists():
                time.sleep(0.1)
            status = 0
    finally:
        time.sleep(1.0)  # the probes after the command: a late gap counts too
        stop.set()
        thread.join()
    print(f"probe {args.url}: {summary(report)}", flush=True)
    if args.json:
        print(
            json.dumps(
                {
                    "probes": len(report.probes),
                    "answered": len(report.answered),
                    "failures": dict(report.failures()),
                    "longest_gap": round(report.longest_gap(), 3),
                    "releases": report.releases(),
                    "status": status,
                }
            )
        )
    if status == 0 and args.max_gap is not None and report.longest_gap() > args.max_gap:
        return 3
    return status


if __name__ == "__main__":
    sys.exit(main())
