"""One memory budget for the whole host, and the plan derived from it.

The budget (``memory_plan.inputs``) gives the host's memory, vCPUs and disk type and each
consumer's share (MB, or a percent of the total). The plan turns it into what each service runs with:
PostgreSQL's settings (``memory_plan.pgtune``: PGTune's web profile applied to PostgreSQL's
share), max_connections from the application's pools, Redis's maxmemory, the uvicorn worker count
and every service's memory ceiling. A plan that would not fit is refused (``BudgetError``) with every
reason and the whole capacity table (``memory_plan.table``).

The shares, headroom included (the least that must stay free), must add up to at most the total.

PostgreSQL's worst case (``PgTune.worst_case_kb``, formula and factor explained there) must fit
its share, which is also its systemd MemoryMax.

Redis: maxmemory bounds Redis's own accounting (used_memory), not the process's resident memory, which
adds allocator fragmentation (jemalloc's ratio is typically 1.1 to 1.3 for a cache that evicts and
refills) and the process itself. maxmemory is therefore 3/4 of Redis's share, the share being its
memory ceiling.

API: one uvicorn worker per vCPU (the workers are async and I/O-bound), fewer if the API's share does
not hold that many of budget_api_worker_mb each; budget_api_workers > 0 sets the count instead. The
API's pools together hold budget_api_pool_per_vcpu connections per vCPU, split evenly over its worker
processes (seed 000: 10 per process, 2 processes on 2 vCPUs), each process's pool plus
budget_api_max_overflow (a percent of the pool, or a count); budget_api_pool_size > 0 sets each
process's pool instead. The total follows the cores, not the square of them: PostgreSQL's throughput
peaks at a few active connections per core, and more connections only shrink work_mem.

Background worker: one process (a container replica) per two vCPUs, as far as the worker's share
holds a process (budget_worker_process_mb) running one job (budget_worker_job_mb): its jobs run OCR,
which is CPU-bound and shares the cores with the API. Each replica gets an equal part of the share as
its memory limit, and runs as many jobs at once as that part holds beside the process, at most one
per vCPU. budget_worker_replicas / budget_worker_concurrency > 0 set them instead. Each replica's pool
holds budget_worker_job_db_connections per job it runs at once plus WORKER_LOOP_CONNECTIONS (its claim
loop and the sweep of exhausted jobs); budget_worker_db_connections > 0 sets it instead.

With every share a percent of the host (the defaults), a bigger host gives every service a
proportionally bigger share and the headroom stays the same fraction: the counts that follow
(workers, replicas, jobs, pools, max_connections, PostgreSQL's settings) grow with it.

Containers' PIDs limits and CPU shares (api, each worker replica, migrate, proxy): ``memory_plan.limits``.

Two hosts (``budget_parts``, ``memory_plan.inputs``): each has its own budget and plans only what it
runs. A db host has no application processes, so its max_connections is the connections the app hosts
open to it (``budget_remote_db_connections``: the sum of their plans' ``db_connections``) plus the
reserve; an app host has no PostgreSQL to tune, and its plan says how many connections its processes
open to the db host (``db_connections``). A consumer the host does not run is None in the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .inputs import Budget, BudgetError, read_budget
from .limits import Limits, api_limits, migrate_limits, proxy_limits, worker_limits
from .pgtune import PgTune, tune
from .table import render_table

REDIS_MAXMEMORY_FRACTION = Fraction(3, 4)
# The smallest share each consumer runs in at all (MB); the API's follows from its workers.
MIN_SHARE_MB = {"postgres": 256, "redis": 32, "worker": 64, "proxy": 32, "monitoring": 128, "os_reserve": 256}
POSTGRES_MAX_CONNECTIONS = 262143
# Connections a worker process holds beside its jobs': its claim loop and the sweep of exhausted jobs.
WORKER_LOOP_CONNECTIONS = 2
# The plan's keys for what the app part runs (None on a host without it).
APP_KEYS = ("redis", "api", "worker", "migrate", "proxy")


def api_workers(budget: Budget) -> int:
    """Uvicorn workers: the explicit count, or one per vCPU as far as the API's share holds them;
    none on a host without the app."""
    if not budget.runs("api"):
        return 0
    if budget.api_workers:
        return budget.api_workers
    return min(budget.vcpus, budget.shares["api"].mb // budget.api_worker_mb)


@dataclass(frozen=True)
class ApiPool:
    """One API worker process's SQLAlchemy pool: its size and overflow."""

    size: int
    overflow: int

    @property
    def peak(self) -> int:
        return self.size + self.overflow


def api_pool(budget: Budget, workers: int) -> ApiPool:
    """Each API process's pool: the explicit size, or its part of budget_api_pool_per_vcpu per vCPU;
    the overflow a count or a percent of the pool; none on a host without the app."""
    if not budget.runs("api"):
        return ApiPool(0, 0)
    size = budget.api_pool_size or math.ceil(budget.api_pool_per_vcpu * budget.vcpus / max(workers, 1))
    overflow = budget.api_max_overflow
    if isinstance(overflow, Fraction):
        overflow = math.floor(size * overflow / 100)
    return ApiPool(size, overflow)


@dataclass(frozen=True)
class WorkerPlan:
    """The background worker: how many processes, each with what memory limit, job concurrency and
    database connections."""

    replicas: int
    replica_mb: int
    concurrency: int
    db_connections: int


def worker_plan(budget: Budget) -> WorkerPlan:
    """Replicas, concurrency and connections from the worker's share (see the module's docstring);
    none on a host without the app."""
    if not budget.runs("worker"):
        return WorkerPlan(0, 0, 0, 0)
    share = budget.shares["worker"].mb
    smallest = budget.worker_process_mb + budget.worker_job_mb
    replicas = budget.worker_replicas or max(1, min(budget.vcpus // 2, share // smallest))
    replica_mb = share // replicas
    room = (replica_mb - budget.worker_process_mb) // budget.worker_job_mb
    concurrency = budget.worker_concurrency or max(1, min(room, budget.vcpus))
    connections = budget.worker_db_connections or (
        WORKER_LOOP_CONNECTIONS + concurrency * budget.worker_job_db_connections
    )
    return WorkerPlan(replicas, replica_mb, concurrency, connections)


def db_connections(workers: int, pool: ApiPool, worker: WorkerPlan) -> int:
    """The connections this host's processes open to PostgreSQL at their peak: every API process's
    pool at its peak and each worker replica's pool (0 without the app)."""
    return workers * pool.peak + worker.replicas * worker.db_connections


def max_connections(budget: Budget, local: int) -> int:
    """This host's ``local`` connections, the app hosts' and the admin/backup reserve; 0 without
    PostgreSQL."""
    if not budget.runs("postgres"):
        return 0
    return local + budget.remote_db_connections + budget.db_connection_reserve


@dataclass(frozen=True)
class Derived:
    """Everything derived from a budget, whether it fits or not (``problems`` says why not)."""

    budget: Budget
    workers: int
    pool: ApiPool
    worker: WorkerPlan
    db_connections: int  # what this host's processes open to PostgreSQL
    connections: int  # this host's max_connections (0 without PostgreSQL)
    pg: PgTune | None
    worst_case_kb: int | None
    redis_maxmemory_mb: int
    headroom_mb: int
    limits: dict[str, Limits]
    problems: list[str]
    table: str


def _app_problems(budget: Budget, workers: int, worker: WorkerPlan) -> list[str]:
    shares = budget.shares
    problems = []
    jobs_mb = worker.concurrency * budget.worker_job_mb
    if worker.replica_mb < budget.worker_process_mb + jobs_mb:
        problems.append(
            f"budget_shares.worker is {shares['worker'].mb} MB: {worker.replicas} worker replica(s) of "
            f"{worker.replica_mb} MB cannot hold budget_worker_process_mb = {budget.worker_process_mb} MB "
            f"plus {worker.concurrency} job(s) of budget_worker_job_mb = {budget.worker_job_mb} MB"
        )
    if workers == 0 or workers * budget.api_worker_mb > shares["api"].mb:
        problems.append(
            f"budget_shares.api is {shares['api'].mb} MB, too small for {max(workers, 1)} API worker(s) "
            f"of budget_api_worker_mb = {budget.api_worker_mb} MB"
        )
    return problems


def _problems(
    budget: Budget, workers: int, worker: WorkerPlan, connections: int, worst_case_kb: int | None
) -> list[str]:
    """Why the budget does not fit; a consumer the host does not run (share 0 MB) is never a reason."""
    shares = budget.shares
    problems = [
        f"budget_shares.{consumer} is {shares[consumer].mb} MB, below the {least} MB {consumer} needs"
        for consumer, least in MIN_SHARE_MB.items()
        if budget.runs(consumer) and shares[consumer].mb < least
    ]
    if "app" in budget.parts:
        problems += _app_problems(budget, workers, worker)
    committed = sum(share.mb for share in shares.values())
    if committed > budget.total_mb:
        problems.append(
            f"over-committed: the shares add up to {committed} MB (the minimum headroom of "
            f"{shares['headroom'].mb} MB included), more than budget_total_mb = {budget.total_mb} MB"
        )
    if connections > POSTGRES_MAX_CONNECTIONS:
        problems.append(
            f"max_connections {connections} exceeds PostgreSQL's limit of {POSTGRES_MAX_CONNECTIONS}"
        )
    if worst_case_kb is not None and worst_case_kb > shares["postgres"].mb * 1024:
        problems.append(
            f"PostgreSQL's worst case of {worst_case_kb // 1024} MB exceeds budget_shares.postgres = "
            f"{shares['postgres'].mb} MB: lower the pools ({', '.join(_pool_inputs(budget))}) or "
            "budget_postgres_autovacuum_max_workers, or raise the share"
        )
    return problems


def _pool_inputs(budget: Budget) -> list[str]:
    """The inputs that set this host's max_connections."""
    names = []
    if "app" in budget.parts:
        names += [
            "budget_api_pool_size",
            "budget_api_pool_per_vcpu",
            "budget_api_max_overflow",
            "budget_worker_db_connections",
            "budget_worker_job_db_connections",
        ]
    names.append("budget_db_connection_reserve")
    if budget.remote_db_connections or "app" not in budget.parts:
        names.append("budget_remote_db_connections: the app hosts' pools")
    return names


def _limits(budget: Budget, workers: int, worker: WorkerPlan) -> dict[str, Limits]:
    """The app's containers' limits; none on a host without the app."""
    if "app" not in budget.parts:
        return {}
    return {
        "api": api_limits(budget, workers),
        "worker": worker_limits(budget, worker.replicas, worker.concurrency),
        "migrate": migrate_limits(budget),
        "proxy": proxy_limits(budget),
    }


def derive(inputs: object) -> Derived:
    """Everything the budget ``inputs`` give, with the reasons it does not fit (if it does not);
    BudgetError only when an input is nonsense."""
    budget = read_budget(inputs)
    shares = budget.shares
    workers = api_workers(budget)
    pool = api_pool(budget, workers)
    worker = worker_plan(budget)
    local = db_connections(workers, pool, worker)
    connections = max_connections(budget, local)
    pg = None
    if budget.runs("postgres") and shares["postgres"].mb >= MIN_SHARE_MB["postgres"]:
        pg = tune(
            shares["postgres"].mb * 1024,
            vcpus=budget.vcpus,
            disk_type=budget.disk_type,
            max_connections=connections,
            version=budget.postgres_version,
            autovacuum_max_workers=budget.autovacuum_max_workers,
        )
    worst_case_kb = pg.worst_case_kb() if pg else None
    # Shares of consumers the host does not run are 0 MB (memory_plan.inputs): no maxmemory, and the
    # headroom is what the consumers it runs leave.
    redis_maxmemory_mb = math.floor(shares["redis"].mb * REDIS_MAXMEMORY_FRACTION)
    headroom_mb = budget.total_mb - sum(
        share.mb for consumer, share in shares.items() if consumer != "headroom"
    )
    limits = _limits(budget, workers, worker)
    table = render_table(
        budget,
        workers=workers,
        pool=(pool.size, pool.overflow),
        worker=(worker.replicas, worker.replica_mb, worker.concurrency, worker.db_connections),
        connections=connections,
        pg=pg,
        worst_case_kb=worst_case_kb,
        redis_maxmemory_mb=redis_maxmemory_mb,
        headroom_mb=headroom_mb,
        limits=limits,
    )
    problems = _problems(budget, workers, worker, connections, worst_case_kb)
    return Derived(
        budget=budget,
        workers=workers,
        pool=pool,
        worker=worker,
        db_connections=local,
        connections=connections,
        pg=pg,
        worst_case_kb=worst_case_kb,
        redis_maxmemory_mb=redis_maxmemory_mb,
        headroom_mb=headroom_mb,
        limits=limits,
        problems=problems,
        table=table,
    )


def _postgres_plan(derived: Derived) -> dict[str, object] | None:
    budget, pg, worst_case_kb = derived.budget, derived.pg, derived.worst_case_kb
    if pg is None or worst_case_kb is None:
        return None
    return {
        "version": budget.postgres_version,
        "memory_mb": budget.shares["postgres"].mb,
        "max_connections": derived.connections,
        "worst_case_mb": worst_case_kb // 1024,
        "settings": pg.settings(),
    }


def _app_plan(derived: Derived) -> dict[str, object]:
    budget, worker, limits = derived.budget, derived.worker, derived.limits
    shares = budget.shares
    return {
        "redis": {"memory_mb": shares["redis"].mb, "maxmemory_mb": derived.redis_maxmemory_mb},
        "api": {
            "memory_mb": shares["api"].mb,
            "workers": derived.workers,
            "worker_memory_mb": budget.api_worker_mb,
            "pool_size": derived.pool.size,
            "max_overflow": derived.pool.overflow,
            "pids_limit": limits["api"].pids_limit,
            "cpu_shares": limits["api"].cpu_shares,
        },
        "worker": {
            "memory_mb": shares["worker"].mb,
            "replicas": worker.replicas,
            "replica_memory_mb": worker.replica_mb,
            "concurrency": worker.concurrency,
            "db_connections": worker.db_connections,
            "pids_limit": limits["worker"].pids_limit,
            "cpu_shares": limits["worker"].cpu_shares,
        },
        "migrate": {"pids_limit": limits["migrate"].pids_limit, "cpu_shares": limits["migrate"].cpu_shares},
        "proxy": {
            "memory_mb": shares["proxy"].mb,
            "pids_limit": limits["proxy"].pids_limit,
            "cpu_shares": limits["proxy"].cpu_shares,
        },
    }


def make_plan(inputs: object) -> dict[str, object]:
    """The plan for ``inputs`` (the dict group_vars/all/budget.yml builds); BudgetError when an input
    is nonsense or the plan does not fit. What the host does not run is None: postgres without the db
    part; redis, api, worker, migrate and proxy without the app part."""
    derived = derive(inputs)
    budget = derived.budget
    postgres = _postgres_plan(derived)
    if derived.problems or (budget.runs("postgres") and postgres is None):
        reasons = "\n".join(f"- {problem}" for problem in derived.problems)
        raise BudgetError(f"memory budget refused:\n{reasons}\n\n{derived.table}")
    app = _app_plan(derived) if "app" in budget.parts else dict.fromkeys(APP_KEYS)
    return {
        "total_mb": budget.total_mb,
        "vcpus": budget.vcpus,
        "disk_type": budget.disk_type,
        "parts": list(budget.parts),
        "db_connections": derived.db_connections,
        "postgres": postgres,
        **app,
        "monitoring_mb": budget.shares["monitoring"].mb,
        "os_reserve_mb": budget.shares["os_reserve"].mb,
        "headroom_mb": derived.headroom_mb,
        "headroom_min_mb": budget.shares["headroom"].mb,
        "table": derived.table,
    }
