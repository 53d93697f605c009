"""`make bench-app`: wrk against the list and dashboard endpoints (realistic data) and /health, with the
production settings and with the seed's old settings, in one run, on loopback only.

Production: sized pool (DB_POOL_SIZE=10, DB_MAX_OVERFLOW=5), dashboard cache on, UVICORN_WORKERS=2.
Seed's old settings: NullPool (DEBUG=true: a new PostgreSQL connection per session), no cache, same
2 workers. The list is read the way clients read it: page 1, and a filtered page reached with the
first page's next_cursor (keyset pagination). Rate limits are off in both: every request comes from
one address (the load generator), which the 100/minute default limit would answer with 429 after the
first 100 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live_servers import free_port, postgres_server, redis_server, wait_for_port

from invoice_service.models import Invoice, InvoiceItem, InvoiceStatus, User
from invoice_service.security import hash_password

VENV_BIN = Path(sys.executable).parent
EMAIL, PASSWORD = "bench@example.com", "bench password 1"
STORES = ["Carrefour", "Pao de Acucar", "Assai Atacadista", "Extra", "Dia", "Atacadao", "Sonda", "Hirota"]
PRODUCTS = [
    f"{name} {size}"
    for name in (
        "Arroz",
        "Feijao",
        "Leite",
        "Cafe",
        "Acucar",
        "Oleo",
        "Macarrao",
        "Farinha",
        "Sabao",
        "Detergente",
        "Papel higienico",
        "Banana",
        "Tomate",
        "Cebola",
        "Batata",
        "Frango",
        "Carne moida",
        "Ovos",
        "Queijo",
        "Presunto",
        "Iogurte",
        "Manteiga",
        "Biscoito",
        "Suco",
    )
    for size in ("500g", "1kg", "2kg", "5kg", "1L", "2L", "un", "dz")
]
CONFIGS = {
    "production": {
        "DEBUG": "false",
        "DB_POOL_SIZE": "10",
        "DB_MAX_OVERFLOW": "5",
        "DASHBOARD_CACHE_TTL": "60",
    },
    "seed-old": {"DEBUG": "true", "DASHBOARD_CACHE_TTL": "0"},
}
# The list's second page is reached the way a client does: with the next_cursor of the first page,
# fetched before the run (`{cursor}`).
ENDPOINTS = {
    "health": "/health",
    "list": "/invoices?page_size=20",
    "list-filtered": "/invoices?status=confirmed&store=carre&date_from={year_ago}&page_size=20"
    "&cursor={cursor}",
    "dashboard": "/dashboard/spending",
}
# What production must reach on the 2-vCPU machine (issue 11): req/s at least, p99 below (ms).
TARGETS = {"list": (400, 150), "list-filtered": (400, 150), "dashboard": (1000, None)}


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_p50_ms: float = 0.0
    server_p99_ms: float = 0.0
    api_cpu_ms: float = 0.0
    db_cpu_ms: float = 0.0


def median_result(results: list[Result]) -> Result:
    """Each figure's median across rounds (errors: the sum)."""
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        server_p50_ms=statistics.median(r.server_p50_ms for r in results),
        server_p99_ms=statistics.median(r.server_p99_ms for r in results),
        api_cpu_ms=statistics.median(r.api_cpu_ms for r in results),
        db_cpu_ms=statistics.median(r.db_cpu_ms for r in results),
    )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root_pid: int) -> float:
    """CPU time used so far by a process and its children (live ones, plus those already reaped, which
    the kernel adds to the parent's cutime/cstime: NullPool backends exit after every request)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == root_pid:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif ppid == root_pid:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def histogram(metrics: str, route: str) -> dict[float, float]:
    """Cumulative bucket counts of http_request_duration_seconds for GET `route` (all workers)."""
    buckets: dict[float, float] = {}
    pattern = re.compile(
        r'http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",route="'
        + re.escape(route)
        + r'"\} (\S+)'
    )
    for match in pattern.finditer(metrics):
        buckets[float(match.group(1))] = float(match.group(2))
    return buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound (ms) of the histogram bucket holding quantile q of the requests between two scrapes."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return bound * 1000
    return float("inf")


async def seed(database_url: str, invoices: int) -> None:
    """One user with `invoices` receipts over two years, 3-20 items each, 90 % confirmed."""
    rng = random.Random(42)
    engine = create_async_engine(database_url, poolclass=NullPool)
    user_id = uuid.uuid4()
    invoice_rows, item_rows = [], []
    start = date.today() - timedelta(days=730)
    for _ in range(invoices):
        invoice_id = uuid.uuid4()
        lines = []
        for position in range(rng.randint(3, 20)):
            quantity = Decimal(rng.randint(1, 4))
            price = Decimal(rng.randint(199, 4999)) / 100
            lines.append(
                {
                    "invoice_id": invoice_id,
                    "position": position,
                    "description": rng.choice(PRODUCTS),
                    "quantity": quantity,
                    "unit_price": price,
                    "total": quantity * price,
                }
            )
        item_rows.extend(lines)
        confirmed = rng.random() < 0.9
        purchased = start + timedelta(days=rng.randint(0, 730))
        invoice_rows.append(
            {
                "id": invoice_id,
                "user_id": user_id,
                "status": InvoiceStatus.CONFIRMED if confirmed else InvoiceStatus.EXTRACTED,
                "store_name": rng.choice(STORES),
                "store_tax_id": None,
                "purchase_date": purchased,
                "total": sum(line["total"] for line in lines),
                "images": [],
                "provider": "ocr",
                # Uploaded the same day or a few days later (the list's order), not all at seed time.
                "created_at": datetime.combine(purchased, clock_time(18), UTC)
                + timedelta(days=rng.randint(0, 3), seconds=rng.randint(0, 20000)),
            }
        )
    async with engine.begin() as conn:
        await conn.execute(
            insert(User), [{"id": user_id, "email": EMAIL, "password_hash": hash_password(PASSWORD)}]
        )
        for i in range(0, len(invoice_rows), 1000):
            await conn.execute(insert(Invoice), invoice_rows[i : i + 1000])
        for i in range(0, len(item_rows), 5000):
            await conn.execute(insert(InvoiceItem), item_rows[i : i + 5000])
        await conn.exec_driver_sql("ANALYZE")
    await engine.dispose()
    print(f"seeded 1 user, {len(invoice_rows)} invoices, {len(item_rows)} items")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, token: str, seconds: int, connections: int) -> Result:
    """Run wrk and parse req/s, p50, p99 and errors (socket errors + non-2xx answers)."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    return Result(rps=rps, p50_ms=p50, p99_ms=p99, requests=requests, errors=errors)


def resolve(base: str, token: str, template: str) -> str:
    """The path to load: `{year_ago}` filled in, and `{cursor}` with the next_cursor of the same
    query's first page (a client walking the list)."""
    path = template.replace("{year_ago}", (date.today() - timedelta(days=365)).isoformat())
    if "{cursor}" not in path:
        return path
    first = httpx.get(
        base + path.replace("&cursor={cursor}", ""),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    if not first.get("next_cursor"):
        raise SystemExit(f"bench: {path} has a single page, no cursor to follow: {first}")
    return path.replace("{cursor}", first["next_cursor"])


def run_config(
    postmaster: int,
    name: str,
    overrides: dict[str, str],
    base_env: dict[str, str],
    seconds: int,
    connections: int,
    log_dir: Path,
) -> dict[str, Result]:
    port = free_port()
    env = base_env | overrides | {"PORT": str(port)}
    log = log_dir / f"api-{name}.log"
    server = subprocess.Popen(
        [str(VENV_BIN / "invoice-api")], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if httpx.get(f"{base}/health/ready", timeout=5).status_code == 200:
                break
            time.sleep(0.2)
        token = httpx.post(
            f"{base}/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        results = {}
        for endpoint, template in ENDPOINTS.items():
            path = resolve(base, token, template)
            route = path.split("?")[0]
            wrk(base + path, token, 2, connections)  # warm-up (pool, caches, query plans)
            before = histogram(httpx.get(f"{base}/metrics", timeout=10).text, route)
            api_cpu, db_cpu = cpu_seconds(server.pid), cpu_seconds(postmaster)
            r = results[endpoint] = wrk(base + path, token, seconds, connections)
            r.api_cpu_ms = (cpu_seconds(server.pid) - api_cpu) * 1000 / max(r.requests, 1)
            r.db_cpu_ms = (cpu_seconds(postmaster) - db_cpu) * 1000 / max(r.requests, 1)
            after = histogram(httpx.get(f"{base}/metrics", timeout=10).text, route)
            r.server_p50_ms, r.server_p99_ms = quantile(before, after, 0.5), quantile(before, after, 0.99)
            print(
                f"  {name:<10} {endpoint:<14} {r.rps:9.1f} req/s  p50 {r.p50_ms:8.2f} ms  "
                f"p99 {r.p99_ms:8.2f} ms  errors {r.errors}/{r.requests}  "
                f"| in-app p50 <= {r.server_p50_ms:g} ms, p99 <= {r.server_p99_ms:g} ms | CPU per request: "
                f"API {r.api_cpu_ms:.2f} ms, PostgreSQL {r.db_cpu_ms:.2f} ms",
                flush=True,
            )
        return results
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--invoices", type=int, default=3000, help="invoices seeded for the user")
    parser.add_argument("--connections", type=int, default=16, help="concurrent wrk connections")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; each runs both configurations, in alternating order"
    )
    args = parser.parse_args()
    print(
        f"bench-app: {os.cpu_count()} CPUs, wrk {args.connections} connections, {args.seconds} s per run, "
        "API: invoice-api with UVICORN_WORKERS=2, rate limits off (one client address); "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    with (
        postgres_server(max_connections="100", shared_buffers="256MB") as pg,
        redis_server() as redis_port,
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
    ):
        database_url = pg.create_database("bench")
        pg_pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
        subprocess.run(
            [str(VENV_BIN / "invoice-migrate"), "upgrade"],
            check=True,
            capture_output=True,
            env={**os.environ, "DATABASE_URL": database_url},
        )
        asyncio.run(seed(database_url, args.invoices))
        base_env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "HOST": "127.0.0.1",
            "UVICORN_WORKERS": "2",
            "RATE_LIMIT_ENABLED": "false",
            "EXTRACTION_PROVIDERS": "ocr",
            "UPLOAD_DIR": str(Path(tmp) / "uploads"),
            "LOG_LEVEL": "INFO",
            "JWT_SECRET": "bench-secret-" + "b" * 32,
        }
        runs: dict[str, list[dict[str, Result]]] = {name: [] for name in CONFIGS}
        for round_number in range(args.rounds):
            # Alternate which configuration goes first: neither always meets the warmer machine.
            order = list(CONFIGS) if round_number % 2 == 0 else list(reversed(CONFIGS))
            print(f"round {round_number + 1} of {args.rounds}: {' then '.join(order)}", flush=True)
            for name in order:
                runs[name].append(
                    run_config(
                        pg_pid, name, CONFIGS[name], base_env, args.seconds, args.connections, Path(tmp)
                    )
                )
        results = {
            name: {e: median_result([r[e] for r in rounds]) for e in ENDPOINTS}
            for name, rounds in runs.items()
        }
    print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine inflates the tails)")
    print(f"\nmedians of {args.rounds} rounds (req/s range min-max across rounds):")
    for endpoint in ENDPOINTS:
        spread = "  ".join(
            f"{name} {min(r[endpoint].rps for r in rounds):.0f}-{max(r[endpoint].rps for r in rounds):.0f}"
            for name, rounds in runs.items()
        )
        print(f"  {endpoint:<14} {spread}")
    print(
        "\nendpoint        production req/s (p50/p99 ms)   seed-old req/s (p50/p99 ms)   "
        "ratio req/s  ratio p99   CPU per request, production: API / PostgreSQL ms"
    )
    for endpoint in ENDPOINTS:
        new, old = results["production"][endpoint], results["seed-old"][endpoint]
        print(
            f"{endpoint:<15} {new.rps:9.1f} ({new.p50_ms:6.2f}/{new.p99_ms:7.2f})      "
            f"{old.rps:9.1f} ({old.p50_ms:6.2f}/{old.p99_ms:7.2f})      "
            f"x{new.rps / old.rps:6.2f}     x{old.p99_ms / new.p99_ms:5.2f} lower"
            f"   errors {new.errors}/{old.errors}   {new.api_cpu_ms:.2f} / {new.db_cpu_ms:.2f}"
        )
    print("\nproduction against the targets (meaningful on an otherwise idle machine):")
    for endpoint, (min_rps, max_p99) in TARGETS.items():
        r = results["production"][endpoint]
        ok = r.rps >= min_rps and (max_p99 is None or r.p99_ms < max_p99) and r.errors == 0
        p99_target = f", p99 < {max_p99} ms" if max_p99 is not None else ""
        print(
            f"  {endpoint:<14} {'met' if ok else 'MISSED':<6} (>= {min_rps} req/s{p99_target}, 0 errors): "
            f"{r.rps:.1f} req/s, p99 {r.p99_ms:.1f} ms, {r.errors} errors"
        )


if __name__ == "__main__":
    main()
