"""The containers' PIDs limits and CPU shares, from the same budget as their memory.

PIDs limit (Docker's ``pids_limit``, the container cgroup's ``pids.max``): every task counts, each
process and each of its threads. It bounds a fork bomb or a thread leak to its container; a limit
too tight fails a thread or process start (``can't start new thread``), so each one is what the
container runs at its peak plus room, never a tight fit.

- A Python process of the service: its main thread, anyio's worker threads
  (``budget_api_worker_threads``: anyio's default limiter is 40 tokens; Starlette runs every sync
  endpoint, dependency and file operation there, and the worker its blocking calls), asyncio's
  default executor (``getaddrinfo`` and ``run_in_executor(None, ...)``: min(32, vCPUs + 4) threads)
  and ``PYTHON_SPARE_PIDS`` for the threads libraries start (the OCR provider's decoding pool,
  metrics, logging).
- ``CONTAINER_BASE_PIDS`` for what runs beside the service's processes: uvicorn's supervisor, the
  health check (a ``python3`` every 15 s, a few at once when they are slow) and ``docker exec``
  sessions (``make exec``).
- api: the base plus one Python process per uvicorn worker.
- worker (per replica): the base plus its Python process plus ``budget_worker_job_pids`` per job
  it runs at once: OCR runs a ``tesseract`` process per photo (with its OpenMP thread) beside the
  photo's decoding thread.
- migrate (one-off, alembic in one process): the base plus one Python process.
- proxy (Traefik, one Go process): ``PROXY_BASE_PIDS`` for the runtime's own threads, the threads
  of goroutines blocked in system calls (request bodies buffered to disk) and the ``traefik
  healthcheck`` process every 10 s, plus ``PROXY_PIDS_PER_VCPU`` per vCPU (GOMAXPROCS runs one
  thread per vCPU and parks more beside them).

CPU shares (Docker's ``cpu_shares``, a relative weight; 1024 is Docker's default for a container):
they matter only when the vCPUs are contended, and then divide the CPU in proportion. The API gets
``budget_api_cpu_shares`` (1024) and Traefik the same (every request passes through both); the
background work (OCR jobs, migrations) ``budget_worker_cpu_shares`` (512: half the API's, so a busy
OCR queue slows the API's answers less), split evenly among the worker replicas so more replicas
do not add weight (at least 2, the kernel's minimum). With cgroup v2, Docker maps shares onto
cpu.weight (1024 -> 39, 512 -> 20): the proportions hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from .inputs import CPU_SHARES_MIN, Budget

CONTAINER_BASE_PIDS = 32
PYTHON_SPARE_PIDS = 16
PROXY_BASE_PIDS = 64
PROXY_PIDS_PER_VCPU = 16


@dataclass(frozen=True)
class Limits:
    """One container's PIDs limit and CPU shares."""

    pids_limit: int
    cpu_shares: int

    def describe(self) -> str:
        return f"pids_limit {self.pids_limit}, cpu_shares {self.cpu_shares}"


def asyncio_executor_threads(vcpus: int) -> int:
    """Threads of asyncio's default executor (ThreadPoolExecutor's default size)."""
    return min(32, vcpus + 4)


def python_process_pids(budget: Budget) -> int:
    """Tasks of one Python process of the service at its peak."""
    return 1 + budget.api_worker_threads + asyncio_executor_threads(budget.vcpus) + PYTHON_SPARE_PIDS


def api_limits(budget: Budget, workers: int) -> Limits:
    """The API container: the base plus one Python process per uvicorn worker."""
    return Limits(CONTAINER_BASE_PIDS + workers * python_process_pids(budget), budget.api_cpu_shares)


def worker_limits(budget: Budget, replicas: int, concurrency: int) -> Limits:
    """One worker replica: the base, its Python process and what each job at once adds; its part of
    the background weight."""
    pids = CONTAINER_BASE_PIDS + python_process_pids(budget) + concurrency * budget.worker_job_pids
    return Limits(pids, max(CPU_SHARES_MIN, budget.worker_cpu_shares // max(replicas, 1)))


def migrate_limits(budget: Budget) -> Limits:
    """The one-off migration container: background work, one Python process."""
    return Limits(CONTAINER_BASE_PIDS + python_process_pids(budget), budget.worker_cpu_shares)


def proxy_limits(budget: Budget) -> Limits:
    """Traefik: a Go process, weighted like the API it fronts."""
    return Limits(PROXY_BASE_PIDS + PROXY_PIDS_PER_VCPU * budget.vcpus, budget.api_cpu_shares)
