"""`make bench-postgres`: PostgreSQL with the memory budget's settings against the distribution's stock
settings, on one throwaway Debian 13 host (scripts/bench-postgres.sh starts it and calls this).

Each variant is applied with the real postgres role (scripts/bench-postgres.yml); both run under the
budget's memory ceiling (the unit's MemoryMax). The variants alternate S D D S S D ... (ABBA): each
goes first in every other round, so a drift of the machine over the benchmark (other work starting
or ending, the disk's state) weighs on both nearly alike, and neither always runs right after the
other. Every run, of either variant:

1. re-creates both databases: pgbench's (pgbench -i at PGBENCH_SCALE) and the app's (the app's
   Alembic migrations, then PGBENCH_INVOICES receipts with their items for PGBENCH_USERS users:
   bench-postgres/app-data.sql), then CHECKPOINT;
2. cold start: stops PostgreSQL, drops the data files from the kernel's page cache, starts it;
3. warms up the same way: reads every relation once (pg_prewarm 'read', into the page cache that
   the unit's ceiling holds), then before each mode an unmeasured PGBENCH_WARMUP-second run of it;
4. measures each mode for PGBENCH_SECONDS: pgbench's select-only; the app's own queries
   (bench-postgres/app_workload.py), one request a transaction: app-list (the list's first page and
   the next), app-search (the same, filtered), app-dashboard (its three grouped queries), and
   app-visit, the app's workload as a whole: one user's visit after confirming a receipt (which drops
   the dashboard's cache), the list, a search and the dashboard; last tpcb-like, the only mode that
   writes.

Prints each run as it ends, then per mode the median tps of each variant with its spread (min-max
of the rounds), the ratio of the medians and the median latencies; the load average at the start
and at the end (other work on the machine makes the figures lower and wider).

Variants other than stock and derived, for finding which setting costs what: `derived-a,b` is the
budget's settings without a and b (left at their stock values), `stock+a,b` the stock settings
with only a and b of the budget's: scripts/bench-postgres.sh --variants derived derived-wal_compression
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "scripts" / "bench-postgres"
APP_PYTHON = ROOT / "app" / ".venv" / "bin" / "python"
PLAYBOOK = ROOT / "scripts" / "bench-postgres.yml"
REMOTE = "/opt/bench-postgres"  # docker cp cannot write under the host's /tmp (systemd's tmpfs)
SERVICE = "postgresql@17-main"
PGBENCH_DB, APP_DB = "bench_pgbench", "bench_app"
# Modes in the order a run measures them; tpcb-like, the only one that writes, last.
MODES = ("select-only", "app-list", "app-search", "app-dashboard", "app-visit", "tpcb-like")
APP_SCRIPTS = {
    "app-list": "list.sql",
    "app-search": "search.sql",
    "app-dashboard": "dashboard.sql",
    "app-visit": "visit.sql",
}
# The cursor before the first page was read (\aset page1_ in the list scripts).
CURSOR_START = ("-D", "page1_created_at=infinity", "-D", "page1_id=ffffffff-ffff-ffff-ffff-ffffffffffff")
VARIANT = re.compile(r"^(stock|derived)(?:([+-])([a-z_][a-z0-9_]*(?:,[a-z_][a-z0-9_]*)*))?$")


def log(message: str) -> None:
    print(f"bench-postgres: {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    tps: float
    latency_ms: float
    transactions: int
    # CPU time of the whole host (PostgreSQL and pgbench) per transaction; None where unreadable.
    cpu_ms: float | None = None


@dataclass
class Variant:
    name: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    memory_max: str = ""
    memory_used: list[str] = field(default_factory=list)

    def extra_vars(self) -> str:
        """The playbook's variables for this variant (JSON for ansible-playbook -e)."""
        match = VARIANT.match(self.name)
        if match is None:
            raise SystemExit(
                f"bench-postgres: unknown variant {self.name!r} (stock, derived, derived-a,b, stock+a,b)"
            )
        base, sign, names = match.groups()
        chosen = names.split(",") if names else []
        return json.dumps(
            {
                "bench_stock": base == "stock",
                "bench_only": chosen if sign == "+" else [],
                "bench_without": chosen if sign == "-" else [],
            }
        )


def checked(argv: list[str], what: str) -> str:
    """Run ``argv`` (in the project's directory); its output, or the end of it and an exit naming
    ``what`` when it fails."""
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"bench-postgres: {what} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}{result.stderr[-2000:]}"
        )
    return result.stdout


class Host:
    """The throwaway host: commands in it, as root or as postgres."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *command: str, user: str = "root") -> str:
        return checked(["docker", "exec", "-u", user, self.name, *command], shlex.join(command))

    def psql(self, database: str, sql: str) -> str:
        return self.run(
            "env", "PGOPTIONS=-c client_min_messages=warning",
            "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql, user="postgres",
        ).strip()  # fmt: skip


@dataclass(frozen=True)
class Config:
    rounds: int
    seconds: int
    warmup: int
    scale: int
    clients: int
    invoices: int
    users: int
    modes: tuple[str, ...]
    # The newest purchase date of the app's data: today when the benchmark starts, in every run.
    anchor: str


def parse_pgbench(output: str, what: str) -> Sample:
    tps = re.search(r"^tps = ([\d.]+)", output, re.MULTILINE)
    latency = re.search(r"^latency average = ([\d.]+) ms", output, re.MULTILINE)
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.MULTILINE)
    done = re.search(r"^number of transactions actually processed: (\d+)", output, re.MULTILINE)
    if tps is None or latency is None or done is None or (failed is not None and int(failed.group(1)) > 0):
        raise SystemExit(f"bench-postgres: {what}: no clean pgbench result:\n{output[-3000:]}")
    return Sample(float(tps.group(1)), float(latency.group(1)), int(done.group(1)))


def cpu_file(container: str) -> Path | None:
    """The file that counts the container's CPU time: cgroup v1's cpuacct.usage (ns) or v2's cpu.stat."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True, check=True
    ).stdout.strip()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            candidate = Path(f"/sys/fs/cgroup/{controllers}{path}/cpuacct.usage")
            if not candidate.exists():
                candidate = Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")
            return candidate if candidate.exists() else None
        if controllers == "" and Path(f"/sys/fs/cgroup{path}/cpu.stat").exists():
            return Path(f"/sys/fs/cgroup{path}/cpu.stat")
    return None


def cpu_ns(path: Path | None) -> int | None:
    if path is None:
        return None
    text = path.read_text()
    if path.name == "cpu.stat":
        return int(re.search(r"^usage_usec (\d+)", text, re.MULTILINE).group(1)) * 1000  # type: ignore[union-attr]
    return int(text)


class Bench:
    def __init__(self, host: Host, inventory: Path, config: Config) -> None:
        self.host = host
        self.inventory = inventory
        self.config = config
        self.cpu = cpu_file(host.name)

    def apply(self, variant: Variant) -> None:
        """The postgres role with this variant's settings; the ceiling is the budget's in every variant."""
        log(f"applying the postgres role: {variant.name}")
        checked(
            ["ansible-playbook", "-i", str(self.inventory), str(PLAYBOOK), "-e", variant.extra_vars()],
            "the postgres role",
        )

    def init_data(self) -> None:
        """Both databases from nothing, the same data every time, then a checkpoint."""
        host, config = self.host, self.config
        for database in (PGBENCH_DB, APP_DB):
            host.run("dropdb", "--if-exists", database, user="postgres")
            host.run("createdb", database, user="postgres")
        if {"select-only", "tpcb-like"} & set(config.modes):
            host.run("pgbench", "-i", "-q", "-s", str(config.scale), PGBENCH_DB, user="postgres")
        if any(mode.startswith("app-") for mode in config.modes):
            psql = ["env", "PGOPTIONS=-c client_min_messages=warning", "psql", "-XAtq", "-d", APP_DB]
            host.run(*psql, "-v", "ON_ERROR_STOP=1", "-f", f"{REMOTE}/schema.sql", user="postgres")
            host.run(
                *psql, "-v", f"users={config.users}", "-v", f"invoices={config.invoices}",
                "-v", f"anchor={config.anchor}", "-f", f"{REMOTE}/app-data.sql", user="postgres",
            )  # fmt: skip
        host.psql("postgres", "CHECKPOINT")

    def cold_start(self) -> None:
        """A stopped server, its files out of the page cache, started again: nothing cached anywhere."""
        data_directory = self.host.psql("postgres", "SHOW data_directory")
        self.host.run("systemctl", "stop", SERVICE)
        self.host.run(
            "python3",
            "-c",
            "import os, sys\n"
            "for root, _, files in os.walk(sys.argv[1]):\n"
            "    for name in files:\n"
            "        fd = os.open(os.path.join(root, name), os.O_RDONLY)\n"
            "        os.fsync(fd)\n"
            "        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n"
            "        os.close(fd)\n",
            data_directory,
        )
        self.host.run("systemctl", "start", SERVICE)
        for _ in range(60):
            ready = subprocess.run(
                ["docker", "exec", "-u", "postgres", self.host.name, "pg_isready", "-q"], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(1)
        raise SystemExit("bench-postgres: PostgreSQL did not come back after the cold start")

    def prewarm(self) -> None:
        """Every relation read once by PostgreSQL itself, so its page cache counts in the unit's ceiling."""
        for database in (PGBENCH_DB, APP_DB):
            self.host.psql(
                database,
                "CREATE EXTENSION IF NOT EXISTS pg_prewarm; "
                "SELECT sum(pg_prewarm(oid, 'read')) FROM pg_class "
                "WHERE relkind IN ('r', 'i', 't', 'm') AND relpersistence = 'p'",
            )

    def pgbench(self, mode: str, seconds: int) -> Sample:
        config = self.config
        common = ["-c", str(config.clients), "-j", "2", "-T", str(seconds)]
        if mode in APP_SCRIPTS:
            command = ["pgbench", "-n", "-M", "prepared", *common, *CURSOR_START]
            command += ["-f", f"{REMOTE}/{APP_SCRIPTS[mode]}", APP_DB]
        else:
            command = ["pgbench", "-b", mode, *common, PGBENCH_DB]
        before = cpu_ns(self.cpu)
        sample = parse_pgbench(self.host.run(*command, user="postgres"), mode)
        after = cpu_ns(self.cpu)
        if before is not None and after is not None:
            sample.cpu_ms = (after - before) / 1e6 / max(sample.transactions, 1)
        return sample

    def record(self, variant: Variant) -> None:
        """Every setting as PostgreSQL runs with it (SHOW) and the unit's ceiling, once per variant."""
        if variant.settings:
            return
        rows = self.host.psql(
            "postgres",
            "SELECT name || '=' || current_setting(name) FROM pg_settings WHERE context <> 'internal'",
        )
        variant.settings = dict(line.split("=", 1) for line in rows.splitlines())
        variant.memory_max = self.unit_property("MemoryMax")

    def unit_property(self, name: str) -> str:
        value = self.host.run("systemctl", "show", "-p", name, "--value", SERVICE).strip()
        return f"{int(value) // 2**20} MB" if value.isdigit() else value

    def run(self, variant: Variant, number: int, total: int) -> None:
        started = time.monotonic()
        log(f"run {number} of {total}: {variant.name}: re-creating the data")
        self.init_data()
        self.cold_start()
        self.prewarm()
        self.record(variant)
        figures = []
        for mode in self.config.modes:
            self.pgbench(mode, self.config.warmup)
            sample = self.pgbench(mode, self.config.seconds)
            variant.samples.setdefault(mode, []).append(sample)
            figures.append(f"{mode} {sample.tps:.0f} tps")
        variant.memory_used.append(self.unit_property("MemoryCurrent"))
        seconds = time.monotonic() - started
        log(f"run {number} of {total}: {variant.name}: {', '.join(figures)} ({seconds:.0f} s)")


def order(rounds: int) -> list[int]:
    """Variant indexes, ABBA: 0 1 1 0 0 1 ..."""
    return [index if number % 2 == 0 else 1 - index for number in range(rounds) for index in (0, 1)]


def spread(samples: list[Sample]) -> str:
    values = [s.tps for s in samples]
    return f"{statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})"


def letters(variants: list[Variant]) -> list[str]:
    """S and D for stock and derived; A and B when both names start alike."""
    first = [variant.name[0].upper() for variant in variants]
    return first if first[0] != first[1] else ["A", "B"]


def report(config: Config, variants: list[Variant], sizes: str, load_start: str) -> None:
    base, candidate = variants
    names = letters(variants)
    runs = " ".join(names[index] for index in order(config.rounds))
    print()
    print(
        f"bench-postgres: PostgreSQL 17 on a throwaway Debian 13 host, {os.cpu_count()} CPUs on the machine; "
        f"{names[0]} = {base.name}, {names[1]} = {candidate.name}"
    )
    print(
        f"  {config.rounds} runs of each, in this order: {runs}; each run: data re-created, cold start, the "
        f"same warm-up ({config.warmup} s a mode), then {config.seconds} s a mode, {config.clients} clients"
    )
    print(f"  pgbench scale {config.scale}; the app's data: {sizes}")
    print(
        f"  memory ceiling (MemoryMax): {base.name} {base.memory_max}, {candidate.name} "
        f"{candidate.memory_max}; in use at the end of each run (page cache included): {base.name} "
        f"{', '.join(base.memory_used)}, {candidate.name} {', '.join(candidate.memory_used)}"
    )
    differ = sorted(name for name in base.settings if base.settings[name] != candidate.settings.get(name))
    print(f"  settings that differ, {base.name} -> {candidate.name}:")
    for name in differ:
        print(f"    {name:<34} {base.settings[name]:>10} -> {candidate.settings.get(name)}")
    print(f"  load average at the start: {load_start}")
    print(f"  load average at the end:   {load_average()}")
    print()
    width = max(24, len(base.name) + 5, len(candidate.name) + 5)
    pair = f"{names[0]} / {names[1]}"
    print(
        f"{'mode':<14} {base.name + ' tps':>{width}} {candidate.name + ' tps':>{width}} {'ratio':>6}  "
        f"{'latency ms':>15}  {'CPU ms/transaction':>18}"
    )
    what = "median (min-max)"
    print(f"{'':<14} {what:>{width}} {what:>{width}} {names[1] + '/' + names[0]:>6}  {pair:>15}  {pair:>18}")
    for mode in config.modes:
        a, b = base.samples[mode], candidate.samples[mode]
        ratio = statistics.median(s.tps for s in b) / statistics.median(s.tps for s in a)
        latency = f"{median(s.latency_ms for s in a)} / {median(s.latency_ms for s in b)}"
        cpu = f"{median(s.cpu_ms for s in a)} / {median(s.cpu_ms for s in b)}"
        print(f"{mode:<14} {spread(a):>{width}} {spread(b):>{width}} {ratio:6.2f}  {latency:>15}  {cpu:>18}")
    print(
        f"\nratio: {candidate.name}'s median tps over {base.name}'s. Latency and CPU: medians; CPU is the"
        " whole host's (PostgreSQL and pgbench) per transaction, what a transaction costs, which other work"
        " on the machine moves less than it moves tps. app-visit is the app's workload as a whole."
    )


def median(values: Iterable[float | None]) -> str:
    known = [value for value in values if value is not None]
    return f"{statistics.median(known):.3g}" if known else "-"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1, 5, 15 min)"


def app_sizes(host: Host) -> str:
    return host.psql(
        APP_DB,
        "SELECT format('%s users, %s invoices (%s to %s per user, median %s), %s items, %s', "
        "(SELECT count(*) FROM users), sum(n), min(n), max(n), "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY n), (SELECT count(*) FROM invoice_items), "
        "pg_size_pretty(pg_database_size(current_database()))) "
        "FROM (SELECT count(*) AS n FROM invoices GROUP BY user_id) AS per_user",
    )


def environment_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", required=True, help="the throwaway host (a running container)")
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="a scratch directory")
    parser.add_argument("--variants", nargs=2, default=["stock", "derived"], metavar="VARIANT")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=environment_int("PGBENCH_ROUNDS", 3))
    parser.add_argument("--seconds", type=int, default=environment_int("PGBENCH_SECONDS", 20))
    parser.add_argument("--warmup", type=int, default=environment_int("PGBENCH_WARMUP", 5))
    parser.add_argument("--scale", type=int, default=environment_int("PGBENCH_SCALE", 30))
    parser.add_argument("--clients", type=int, default=environment_int("PGBENCH_CLIENTS", 8))
    parser.add_argument("--invoices", type=int, default=environment_int("PGBENCH_INVOICES", 100_000))
    parser.add_argument("--users", type=int, default=environment_int("PGBENCH_USERS", 1000))
    args = parser.parse_args()
    numbers = ("rounds", "seconds", "warmup", "scale", "clients", "invoices", "users")
    config = Config(
        **{name: getattr(args, name) for name in numbers},
        modes=tuple(mode for mode in MODES if mode in args.modes),
        anchor=date.today().isoformat(),
    )
    load_start = load_average()
    log(f"load average at the start: {load_start}")
    if not APP_PYTHON.exists():
        raise SystemExit("bench-postgres: needs the app's venv (make app-setup)")
    app = args.work / "app"
    subprocess.run(
        [str(APP_PYTHON), str(HERE / "app_workload.py"), str(app), "--users", str(config.users),
         "--anchor", config.anchor],
        check=True, cwd=ROOT,
    )  # fmt: skip
    (app / "app-data.sql").write_text((HERE / "app-data.sql").read_text())
    host = Host(args.host)
    host.run("mkdir", "-p", REMOTE)
    subprocess.run(["docker", "cp", f"{app}/.", f"{args.host}:{REMOTE}/"], check=True)
    host.run("chmod", "-R", "a+rX", REMOTE)

    variants = [Variant(name) for name in args.variants]
    for variant in variants:
        variant.extra_vars()  # refuses a misspelt variant before anything runs
    bench = Bench(host, args.inventory, config)
    applied = None
    runs = order(config.rounds)
    for number, index in enumerate(runs, 1):
        variant = variants[index]
        if applied is not variant:  # S D D S: the role runs when the variant changes
            bench.apply(variant)
            applied = variant
        bench.run(variant, number, len(runs))
    sizes = app_sizes(host) if any(mode.startswith("app-") for mode in config.modes) else "(not used)"
    report(config, variants, sizes, load_start)


if __name__ == "__main__":
    main()
