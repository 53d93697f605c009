#!/usr/bin/env python3
"""What a client sees while releases swap: `make bench-swap` (ENV's host; the sandbox by default).

The newest package (dist/invoice-service-latest.json) is put live under two more names, alternately
(manifests in .local/bench-swap/ naming the same image, so the host only tags it: each round is a
whole release, dump and migrations included, without the image copy), ROUNDS times, while
scripts/probe_health.py asks URL every 100 ms on a new connection. Each round prints its longest
gap between answers, its failed probes and its duration; the summary gives the medians and the
ranges. The last step puts the newest package back (app_release=latest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import probe_health  # noqa: E402


def retagged(directory: Path, suffix: str) -> Path:
    """A manifest for the newest package under <version>-<suffix>, beside a link to its tarball."""
    latest = json.loads((ROOT / "dist" / "invoice-service-latest.json").read_text())
    version = f"{latest['version']}-{suffix}"
    tarball = directory / f"invoice-service-{version}.tar.gz"
    tarball.unlink(missing_ok=True)
    tarball.symlink_to(ROOT / "dist" / latest["tarball"])
    manifest = dict(latest, version=version, image=f"invoice-service:{version}", tarball=tarball.name)
    (directory / f"invoice-service-{version}.json").write_text(json.dumps(manifest))
    return tarball


def deploy(
    inventory: str, extra: list[str], url: str, host_header: str | None
) -> tuple[int, float, probe_health.Report]:
    """One app-only deploy under the probe: (exit status, seconds, what the probe saw)."""
    report = probe_health.Report()
    stop = threading.Event()
    thread = threading.Thread(
        target=probe_health.probe_while, args=(url, 0.1, 1.0, host_header, stop, report)
    )
    command = ["ansible-playbook", "-i", inventory, "playbooks/deploy.yml", "--tags", "app", *extra]
    thread.start()
    started = time.monotonic()
    with open(ROOT / ".local" / "bench-swap" / "last-run.log", "w") as log:
        status = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    time.sleep(1.0)
    stop.set()
    thread.join()
    return status, seconds, report


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}, range {min(values):.2f}-{max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/local/hosts.yml")
    parser.add_argument("--url", default="http://172.29.20.10/health/ready")
    parser.add_argument("--host-header", default=None)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    directory = ROOT / ".local" / "bench-swap"
    directory.mkdir(parents=True, exist_ok=True)
    tarballs = [retagged(directory, "swap-a"), retagged(directory, "swap-b")]
    gaps: list[float] = []
    durations: list[float] = []
    failed_total = 0
    for round_number in range(1, args.rounds + 1):
        tarball = tarballs[(round_number - 1) % 2]
        status, seconds, report = deploy(
            args.inventory, ["-e", f"app_image_tarball={tarball}"], args.url, args.host_header
        )
        if status != 0:
            print(f"round {round_number}: the deploy failed (see {directory}/last-run.log)")
            return status
        failures = sum(report.failures().values())
        failed_total += failures
        gaps.append(report.longest_gap())
        durations.append(seconds)
        print(
            f"round {round_number} ({tarball.name}): {probe_health.summary(report)}; deploy {seconds:.1f} s",
            flush=True,
        )
    print(
        f"bench-swap: {args.rounds} swaps; longest gap per swap (s): {spread(gaps)}; "
        f"failed probes: {failed_total}; deploy (s): {spread(durations)}"
    )
    status, _, _ = deploy(args.inventory, ["-e", "app_release=latest"], args.url, args.host_header)
    print(
        "bench-swap: the newest package is live again"
        if status == 0
        else "bench-swap: putting it back FAILED"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
