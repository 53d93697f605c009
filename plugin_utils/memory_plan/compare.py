"""The memory plan of one budget at several host sizes, side by side (``make plan SIZES=...``).

A size is ``GB`` or ``GB:vCPUs``; without vCPUs it gets one per 4 GB (at least one), the ratio of the
VPS lines the seeds name (Hostinger's KVM 1/2/4/8: 4 GB/1, 8 GB/2, 16 GB/4, 32 GB/8). Each column is
the budget with only budget_total_mb and budget_vcpus changed; a size the budget does not fit is shown
all the same, marked refused, and its reasons are listed under the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .inputs import BudgetError
from .plan import Derived, derive

_SIZE = re.compile(r"^(\d{1,5})(?::(\d{1,4}))?$")
_LABEL = 26
_COLUMN = 12
GB_PER_VCPU = 4


@dataclass(frozen=True)
class Size:
    """A host size: memory in MB and vCPUs."""

    total_mb: int
    vcpus: int

    @property
    def label(self) -> str:
        gb = self.total_mb / 1024
        return f"{gb:g} GB"


def parse_sizes(text: str) -> list[Size]:
    """``"4,8,16:4,32"`` (commas or spaces) -> sizes; BudgetError naming a size it cannot read."""
    sizes = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        found = _SIZE.match(item)
        if found is None or int(found.group(1)) == 0 or found.group(2) == "0":
            raise BudgetError(f"SIZES: {item!r} is not a size: give GB or GB:vCPUs, like 16 or 16:4")
        gb = int(found.group(1))
        vcpus = int(found.group(2)) if found.group(2) else max(1, gb // GB_PER_VCPU)
        sizes.append(Size(gb * 1024, vcpus))
    if not sizes:
        raise BudgetError("SIZES is empty: give sizes in GB, like SIZES=4,8,16,32")
    return sizes


def at_size(inputs: Mapping[str, object], size: Size) -> dict[str, object]:
    """The budget ``inputs`` for a host of ``size``."""
    return {**inputs, "budget_total_mb": size.total_mb, "budget_vcpus": size.vcpus}


def _rows(derived: Derived) -> list[tuple[str, str]]:
    """One column; what the host does not run (``budget_parts``) is ``-``."""
    budget, shares = derived.budget, derived.budget.shares
    worker, pool = derived.worker, derived.pool
    settings = derived.pg.settings() if derived.pg else {}

    def mb(consumer: str) -> str:
        return str(shares[consumer].mb) if budget.runs(consumer) else "-"

    def app(value: str) -> str:
        return value if budget.runs("api") else "-"

    return [
        ("vCPUs", str(budget.vcpus)),
        ("postgres MB", mb("postgres")),
        ("  shared_buffers", settings.get("shared_buffers", "-")),
        ("  effective_cache_size", settings.get("effective_cache_size", "-")),
        ("  work_mem", settings.get("work_mem", "-")),
        ("  max_connections", str(derived.connections) if budget.runs("postgres") else "-"),
        ("  parallel workers", settings.get("max_parallel_workers", "-")),
        ("redis MB", mb("redis")),
        ("  maxmemory", app(f"{derived.redis_maxmemory_mb}MB")),
        ("api MB", mb("api")),
        ("  uvicorn workers", app(str(derived.workers))),
        ("  pool + overflow each", app(f"{pool.size} + {pool.overflow}")),
        ("worker MB", mb("worker")),
        ("  processes x jobs", app(f"{worker.replicas} x {worker.concurrency}")),
        ("  connections each", app(str(worker.db_connections))),
        ("proxy MB", mb("proxy")),
        ("monitoring MB", str(shares["monitoring"].mb)),
        ("os_reserve MB", str(shares["os_reserve"].mb)),
        ("headroom MB", str(derived.headroom_mb)),
        ("  floor MB", str(shares["headroom"].mb)),
        ("plan", "refused" if derived.problems else "fits"),
    ]


def compare(inputs: Mapping[str, object], sizes: Sequence[Size]) -> tuple[str, dict[str, list[str]]]:
    """The side-by-side table and, per refused size's label, its reasons."""
    columns = [(size, derive(at_size(inputs, size))) for size in sizes]
    first = columns[0][1].budget
    version = f"PostgreSQL {first.postgres_version}, " if first.runs("postgres") else ""
    lines = [
        f"Memory plans side by side: {version}{first.disk_type} storage, "
        "the same shares and settings at each size",
        f"{'':<{_LABEL}}" + "".join(f"{size.label:>{_COLUMN}}" for size, _ in columns),
    ]
    table = [_rows(derived) for _, derived in columns]
    for index, (label, _) in enumerate(table[0]):
        lines.append(f"{label:<{_LABEL}}" + "".join(f"{rows[index][1]:>{_COLUMN}}" for rows in table))
    refused = {size.label: derived.problems for size, derived in columns if derived.problems}
    for label, problems in refused.items():
        lines += ["", f"{label} refused:", *(f"- {problem}" for problem in problems)]
    return "\n".join(lines), refused
