"""The capacity table: every service's memory ceiling, what was derived from it, and the headroom.

A host that runs one part only (``budget_parts``) says so in a ``parts`` line and shows the services it
does not run as ``-``; a db host's max_connections names the connections from the app hosts, and an app
host's postgres row the connections it opens to the db host. A host running both parts (the default)
shows neither.
"""

from __future__ import annotations

from .guc_units import show_memory
from .inputs import PARTS, Budget
from .limits import Limits
from .pgtune import WORK_MEM_FACTOR, PgTune

_WIDTH = 12
_MEMORY_WIDTH = 14
_PART_NAMES = {"db": "PostgreSQL", "app": "Redis, the API, the worker and the proxy"}


def _row(service: str, memory: str, *details: str) -> list[str]:
    first, *rest = details or ("",)
    lines = [f"  {service:<{_WIDTH}}{memory:>{_MEMORY_WIDTH}}  {first}".rstrip()]
    lines += [f"  {'':<{_WIDTH}}{'':>{_MEMORY_WIDTH}}  {detail}" for detail in rest]
    return lines


def _parts(budget: Budget) -> list[str]:
    """The line naming what the host runs, when it is not everything."""
    if len(budget.parts) == len(PARTS):
        return []
    here = "; ".join(f"{part} ({_PART_NAMES[part]})" for part in budget.parts)
    elsewhere = "; ".join(f"{part} ({_PART_NAMES[part]})" for part in PARTS if part not in budget.parts)
    return [f"  parts: {here}; on other hosts: {elsewhere}"]


def _postgres(
    budget: Budget,
    workers: int,
    pool: tuple[int, int],
    worker: tuple[int, int, int, int],
    connections: int,
    pg: PgTune | None,
) -> list[str]:
    local = [
        f"{workers} API workers x ({pool[0]} pool + {pool[1]} overflow)",
        f"{worker[0]} x {worker[3]} worker",
    ]
    if not budget.runs("postgres"):
        opened = workers * (pool[0] + pool[1]) + worker[0] * worker[3]
        return _row(
            "postgres",
            "-",
            f"on the db host: {opened} connections from here = {' + '.join(local)}",
            "(count them in the db host's budget_remote_db_connections)",
        )
    terms = [*local] if budget.runs("api") else []
    if budget.remote_db_connections or not budget.runs("api"):
        terms.append(f"{budget.remote_db_connections} connections from app hosts")
    terms.append(f"{budget.db_connection_reserve} reserve")
    pools = f"max_connections {connections} = {' + '.join(terms)}"
    if pg is None:
        return _row("postgres", budget.shares["postgres"].describe(), pools, "(share too small to tune)")
    settings = pg.settings()
    return _row(
        "postgres",
        budget.shares["postgres"].describe(),
        f"shared_buffers {settings['shared_buffers']}, "
        f"effective_cache_size {settings['effective_cache_size']}, wal_buffers {settings['wal_buffers']}",
        f"work_mem {settings['work_mem']}, maintenance_work_mem {settings['maintenance_work_mem']}, "
        f"autovacuum_max_workers {settings['autovacuum_max_workers']}",
        pools,
        f"parallel workers {settings['max_parallel_workers']} ({settings['max_parallel_workers_per_gather']} "
        f"per query), random_page_cost {settings['random_page_cost']}, "
        f"effective_io_concurrency {settings['effective_io_concurrency']}",
        f"jit {settings['jit']}, wal_compression {settings['wal_compression']}, "
        f"huge_pages {settings['huge_pages']}",
    )


def _app(
    budget: Budget,
    workers: int,
    pool: tuple[int, int],
    worker: tuple[int, int, int, int],
    redis_maxmemory_mb: int,
    limits: dict[str, Limits],
) -> list[str]:
    shares = budget.shares
    if not budget.runs("api"):
        return [line for consumer in PARTS["app"] for line in _row(consumer, "-", "on the app host(s)")]
    redis = shares["redis"].mb
    lines = _row(
        "redis",
        shares["redis"].describe(),
        f"maxmemory {redis_maxmemory_mb}MB, allkeys-lru; {redis - redis_maxmemory_mb} MB for "
        "fragmentation and the process",
    )
    lines += _row(
        "api",
        shares["api"].describe(),
        f"{workers} uvicorn workers x {budget.api_worker_mb} MB, each with a pool of "
        f"{pool[0]} + {pool[1]} overflow connections",
        limits["api"].describe(),
    )
    replicas, replica_mb, concurrency, db_connections = worker
    lines += _row(
        "worker",
        shares["worker"].describe(),
        f"{replicas} process(es) x {replica_mb} MB, {concurrency} jobs at once each, "
        f"{db_connections} database connections each",
        f"{limits['worker'].describe()} each; migrate (one-off): {limits['migrate'].describe()}",
    )
    lines += _row("proxy", shares["proxy"].describe(), "reverse proxy container", limits["proxy"].describe())
    return lines


def render_table(
    budget: Budget,
    *,
    workers: int,
    pool: tuple[int, int],
    worker: tuple[int, int, int, int],
    connections: int,
    pg: PgTune | None,
    worst_case_kb: int | None,
    redis_maxmemory_mb: int,
    headroom_mb: int,
    limits: dict[str, Limits],
) -> str:
    """The table as one string (what ``make plan`` prints, and what a refusal shows)."""
    shares = budget.shares
    version = f", PostgreSQL {budget.postgres_version}" if budget.runs("postgres") else ""
    lines = [
        f"Memory plan: {budget.total_mb} MB host, {budget.vcpus} vCPU, {budget.disk_type} storage{version}",
        *_parts(budget),
        f"  {'service':<{_WIDTH}}{'memory MB':>{_MEMORY_WIDTH}}  derived settings",
        *_postgres(budget, workers, pool, worker, connections, pg),
    ]
    if pg is not None and worst_case_kb is not None:
        lines += _row(
            "",
            "",
            f"worst case {worst_case_kb // 1024} MB = shared_buffers + wal_buffers",
            f"  + ({pg.max_connections} connections + {pg.max_parallel_workers} parallel workers)"
            f" x work_mem x {WORK_MEM_FACTOR}",
            f"  + {pg.autovacuum_max_workers} autovacuum workers x maintenance_work_mem",
        )
    lines += _app(budget, workers, pool, worker, redis_maxmemory_mb, limits)
    lines += _row(
        "monitoring",
        shares["monitoring"].describe(),
        "Prometheus, its exporters and Alertmanager (one systemd slice)",
    )
    lines += _row(
        "os_reserve", shares["os_reserve"].describe(), "kernel, sshd, journald, dockerd, page tables"
    )
    minimum = shares["headroom"]
    state = "free" if headroom_mb >= minimum.mb else "OVER-COMMITTED"
    least = (
        f"{minimum.mb} MB" if minimum.percent is None else f"{minimum.mb} MB = {float(minimum.percent):g}%"
    )
    lines += _row("headroom", str(headroom_mb), f"{state} (at least {least})")
    lines += _row("total", str(budget.total_mb), f"{show_memory(budget.total_mb * 1024)} of host memory")
    return "\n".join(lines)
