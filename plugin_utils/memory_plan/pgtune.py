"""PGTune's "web" profile, applied to PostgreSQL's share of the host instead of the host's RAM.

Source of the formulas: PGTune by Alexey Vasiliev, https://pgtune.leopard.in.ua, code at
https://github.com/le0pard/pgtune (src/features/configuration/configurationSlice.js, selectors
selectSharedBuffers ... selectWorkMem; DB type "web", OS "linux"). With ``memory`` = the share:

- shared_buffers = memory / 4; effective_cache_size = memory * 3 / 4
- maintenance_work_mem = memory / 16, at most 2 GB
- wal_buffers = 3 % of shared_buffers, at most 16 MB (raised to 16 MB above 14 MB), at least 32 kB
- work_mem = (memory - shared_buffers) / ((max_connections + max_worker_processes) * 3), >= 64 kB
- min_wal_size 1 GB, max_wal_size 4 GB, checkpoint_completion_target 0.9,
  default_statistics_target 100
- random_page_cost 1.1 (SSD and network storage) or 4 (HDD); effective_io_concurrency 200 (SSD),
  300 (network storage, PGTune's "san") or 2 (HDD)
- huge_pages "try" from 32 GB of memory on, "off" below
- from 4 CPUs on: max_worker_processes = max_parallel_workers = CPUs,
  max_parallel_workers_per_gather = max_parallel_maintenance_workers = min(4, ceil(CPUs / 2))

Where this module deliberately differs from PGTune:

- Fewer than 4 vCPUs: PGTune writes no parallel settings, which leaves PostgreSQL's defaults of 8
  parallel workers, 2 per Gather: on a 2 vCPU box shared with the API that lets one query take
  every core. Here max_parallel_workers = vCPUs and both per-query limits = vCPUs // 2 (1 on 2 vCPUs,
  0 = no parallel query on 1 vCPU); max_worker_processes keeps the default 8 (a slot count that costs
  nothing and that work_mem's formula already uses in this case, as PGTune does).
- Block-sized settings (shared_buffers, effective_cache_size, wal_buffers) are rounded down to whole
  8 kB pages, so the rendered value is exactly what ``SHOW`` prints (PostgreSQL would round them).
- effective_cache_size stays 3/4 of the share and does not count the page cache that the host's
  headroom could hold: PostgreSQL runs under a systemd MemoryMax equal to its share, and the kernel
  charges the page cache of PostgreSQL's reads to that cgroup, so cache beyond the share is reclaimed
  from PostgreSQL rather than kept for it. Promising the planner more cache than it can keep would
  make it pick index scans that then read from disk.
- PGTune does not set jit or wal_compression. jit = off: the web profile's queries are short, and
  JIT compilation (tens to hundreds of ms, triggered by cost estimates) costs more than it saves
  while competing with the API for 2 vCPUs. wal_compression: "lz4" from PostgreSQL 15 (an enum there;
  Debian builds with lz4, and it is cheaper in CPU than pglz, which "on" means and SHOW prints),
  "on" (pglz, a boolean) before 15. Less WAL means fewer full-page-write bytes to disk and backups.
- autovacuum_max_workers is written explicitly (default 3) because the worst case that
  ``memory_plan.plan`` checks counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .guc_units import show_memory, show_real, whole_blocks

DISK_TYPES = ("ssd", "hdd", "network")
# PostgreSQL versions the formulas are checked against (Debian 12 ships 15, Debian 13 ships 17).
VERSIONS = range(13, 19)

_RANDOM_PAGE_COST = {"ssd": 1.1, "hdd": 4.0, "network": 1.1}
_EFFECTIVE_IO_CONCURRENCY = {"ssd": 200, "hdd": 2, "network": 300}
_MAINTENANCE_WORK_MEM_CAP_KB = 2 * 1024 * 1024
_WAL_BUFFERS_CAP_KB = 16 * 1024
_WAL_BUFFERS_ROUND_UP_FROM_KB = 14 * 1024
_WAL_BUFFERS_MIN_KB = 32
_WORK_MEM_MIN_KB = 64
_HUGE_PAGES_FROM_KB = 32 * 1024 * 1024
_DEFAULT_MAX_WORKER_PROCESSES = 8
_MIN_WAL_SIZE_KB = 1024 * 1024
_MAX_WAL_SIZE_KB = 4 * 1024 * 1024
# The worst case counts every backend and parallel worker running one sort or hash at the same time,
# a hash being allowed hash_mem_multiplier (2.0 by default from PostgreSQL 15) times work_mem.
WORK_MEM_FACTOR = 2


@dataclass(frozen=True)
class PgTune:
    """The derived values, numbers in kB where they are memory."""

    version: int
    max_connections: int
    autovacuum_max_workers: int
    shared_buffers_kb: int
    effective_cache_size_kb: int
    maintenance_work_mem_kb: int
    work_mem_kb: int
    wal_buffers_kb: int
    max_worker_processes: int
    max_parallel_workers: int
    max_parallel_workers_per_gather: int
    max_parallel_maintenance_workers: int
    random_page_cost: float
    effective_io_concurrency: int
    huge_pages: str

    def worst_case_kb(self) -> int:
        """The most memory these settings let PostgreSQL use:

        shared_buffers + wal_buffers
        + (max_connections + max_parallel_workers) x work_mem x WORK_MEM_FACTOR
        + autovacuum_max_workers x maintenance_work_mem

        Memory a backend holds outside work_mem (catalog caches, a few MB) is not counted: that every
        backend hashes at once is pessimistic enough to cover it on a web workload.
        """
        backends = self.max_connections + self.max_parallel_workers
        return (
            self.shared_buffers_kb
            + self.wal_buffers_kb
            + backends * self.work_mem_kb * WORK_MEM_FACTOR
            + self.autovacuum_max_workers * self.maintenance_work_mem_kb
        )

    def settings(self) -> dict[str, str]:
        """Every setting as PostgreSQL's ``SHOW`` prints it, ready for a conf.d file."""
        return {
            "max_connections": str(self.max_connections),
            "shared_buffers": show_memory(self.shared_buffers_kb),
            "effective_cache_size": show_memory(self.effective_cache_size_kb),
            "maintenance_work_mem": show_memory(self.maintenance_work_mem_kb),
            "work_mem": show_memory(self.work_mem_kb),
            "wal_buffers": show_memory(self.wal_buffers_kb),
            "min_wal_size": show_memory(_MIN_WAL_SIZE_KB),
            "max_wal_size": show_memory(_MAX_WAL_SIZE_KB),
            "checkpoint_completion_target": show_real(0.9),
            "random_page_cost": show_real(self.random_page_cost),
            "effective_io_concurrency": str(self.effective_io_concurrency),
            "default_statistics_target": "100",
            "max_worker_processes": str(self.max_worker_processes),
            "max_parallel_workers": str(self.max_parallel_workers),
            "max_parallel_workers_per_gather": str(self.max_parallel_workers_per_gather),
            "max_parallel_maintenance_workers": str(self.max_parallel_maintenance_workers),
            "autovacuum_max_workers": str(self.autovacuum_max_workers),
            "huge_pages": self.huge_pages,
            "jit": "off",
            "wal_compression": "lz4" if self.version >= 15 else "on",
        }


def _wal_buffers_kb(shared_buffers_kb: int) -> int:
    wal_buffers = min(3 * shared_buffers_kb // 100, _WAL_BUFFERS_CAP_KB)
    if wal_buffers > _WAL_BUFFERS_ROUND_UP_FROM_KB:
        wal_buffers = _WAL_BUFFERS_CAP_KB
    return whole_blocks(max(wal_buffers, _WAL_BUFFERS_MIN_KB))


def _parallel(vcpus: int) -> tuple[int, int, int, int]:
    """max_worker_processes, max_parallel_workers, ..._per_gather, max_parallel_maintenance_workers."""
    if vcpus >= 4:
        per_query = min(4, math.ceil(vcpus / 2))
        return vcpus, vcpus, per_query, per_query
    return _DEFAULT_MAX_WORKER_PROCESSES, vcpus, vcpus // 2, vcpus // 2


def tune(
    memory_kb: int,
    *,
    vcpus: int,
    disk_type: str,
    max_connections: int,
    version: int,
    autovacuum_max_workers: int,
) -> PgTune:
    """PGTune's web profile for ``memory_kb`` of memory (PostgreSQL's share, not the host's RAM)."""
    shared_buffers = whole_blocks(memory_kb // 4)
    worker_processes, parallel_workers, per_gather, maintenance_workers = _parallel(vcpus)
    work_mem = (memory_kb - shared_buffers) // ((max_connections + worker_processes) * 3)
    return PgTune(
        version=version,
        max_connections=max_connections,
        autovacuum_max_workers=autovacuum_max_workers,
        shared_buffers_kb=shared_buffers,
        effective_cache_size_kb=whole_blocks(memory_kb * 3 // 4),
        maintenance_work_mem_kb=min(memory_kb // 16, _MAINTENANCE_WORK_MEM_CAP_KB),
        work_mem_kb=max(work_mem, _WORK_MEM_MIN_KB),
        wal_buffers_kb=_wal_buffers_kb(shared_buffers),
        max_worker_processes=worker_processes,
        max_parallel_workers=parallel_workers,
        max_parallel_workers_per_gather=per_gather,
        max_parallel_maintenance_workers=maintenance_workers,
        random_page_cost=_RANDOM_PAGE_COST[disk_type],
        effective_io_concurrency=_EFFECTIVE_IO_CONCURRENCY[disk_type],
        huge_pages="try" if memory_kb >= _HUGE_PAGES_FROM_KB else "off",
    )
