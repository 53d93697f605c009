"""The memory budget's inputs, validated: a nonsense value raises BudgetError naming the variable.

The inputs are one dict whose keys are the Ansible variables' names (group_vars/all/budget.yml), so
a message names exactly what to fix. Integers may arrive as digit strings (``-e budget_total_mb=16384``
on the command line); booleans and fractions are refused. A share is MB or a percent of the host
(``"12.5%"``); the API's overflow is connections or a percent of its pool (``"50%"``).

A host runs one or both parts (``budget_parts``): ``db`` (PostgreSQL) and ``app`` (Redis, the API, the
worker, the proxy); one host running both is the default. Its budget counts only the consumers of its
parts: the shares of the others may be listed (the shipped defaults list them all, so a per-host file
only changes what it needs) and count 0 MB. A db host's max_connections also holds the connections
the app hosts open to it (``budget_remote_db_connections``). Both inputs are optional: a dict without
them is a host running both parts with no other host connecting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from .pgtune import DISK_TYPES, VERSIONS

CONSUMERS = ("postgres", "redis", "api", "worker", "proxy", "monitoring", "os_reserve", "headroom")
# What each part of the application runs; monitoring, os_reserve and headroom are on every host.
PARTS = {"db": ("postgres",), "app": ("redis", "api", "worker", "proxy")}
EVERY_HOST = ("monitoring", "os_reserve", "headroom")
# superuser_reserved_connections (3) is carved out of max_connections; PostgreSQL refuses to start
# unless max_connections exceeds it, and an admin session plus a pg_dump need two more.
MIN_CONNECTION_RESERVE = 5
_MAX_MB = 16 * 1024 * 1024
# Docker's --cpu-shares range (the kernel's cpu.shares; cgroup v2's cpu.weight is mapped from it).
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262144

# Every integer input with its accepted range (inclusive).
INT_INPUTS = {
    "budget_total_mb": (1, _MAX_MB),
    "budget_vcpus": (1, 1024),
    "budget_api_workers": (0, 1024),
    "budget_api_worker_mb": (1, _MAX_MB),
    "budget_api_pool_size": (0, 10000),
    "budget_api_pool_per_vcpu": (1, 10000),
    "budget_worker_db_connections": (0, 10000),
    "budget_worker_job_db_connections": (1, 10000),
    "budget_worker_replicas": (0, 64),
    "budget_worker_concurrency": (0, 256),
    "budget_worker_process_mb": (1, _MAX_MB),
    "budget_worker_job_mb": (1, _MAX_MB),
    "budget_db_connection_reserve": (MIN_CONNECTION_RESERVE, 10000),
    "budget_postgres_autovacuum_max_workers": (1, 64),
    "budget_api_worker_threads": (1, 10000),
    "budget_worker_job_pids": (1, 10000),
    "budget_api_cpu_shares": (CPU_SHARES_MIN, CPU_SHARES_MAX),
    "budget_worker_cpu_shares": (CPU_SHARES_MIN, CPU_SHARES_MAX),
    "postgres_version": (VERSIONS.start, VERSIONS.stop - 1),
}
# Inputs that may be left out, with the value they then have: one host running everything.
OPTIONAL_INPUTS: dict[str, object] = {"budget_parts": list(PARTS), "budget_remote_db_connections": 0}
INPUTS = (*INT_INPUTS, "budget_api_max_overflow", "budget_disk_type", "budget_shares", *OPTIONAL_INPUTS)

_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d{1,6})?)%$")
_INTEGER = re.compile(r"^\d+$")


class BudgetError(ValueError):
    """A budget that is nonsense or does not fit the host; the message says why."""


@dataclass(frozen=True)
class Share:
    """One consumer's share in MB, and the percent of the total it was given as (None for MB)."""

    mb: int
    percent: Fraction | None = None

    def describe(self) -> str:
        return str(self.mb) if self.percent is None else f"{self.mb} ({float(self.percent):g}%)"


@dataclass(frozen=True)
class Budget:
    """The validated inputs."""

    total_mb: int
    vcpus: int
    disk_type: str
    shares: dict[str, Share]
    api_workers: int
    api_worker_mb: int
    api_pool_size: int
    api_pool_per_vcpu: int
    api_max_overflow: int | Fraction  # connections, or a Fraction: the percent of the pool
    worker_db_connections: int
    worker_job_db_connections: int
    worker_replicas: int
    worker_concurrency: int
    worker_process_mb: int
    worker_job_mb: int
    db_connection_reserve: int
    autovacuum_max_workers: int
    api_worker_threads: int
    worker_job_pids: int
    api_cpu_shares: int
    worker_cpu_shares: int
    postgres_version: int
    parts: tuple[str, ...] = tuple(PARTS)  # in PARTS's order
    remote_db_connections: int = 0

    def runs(self, consumer: str) -> bool:
        """Whether this host runs ``consumer`` (monitoring, os_reserve and headroom: always)."""
        return consumer in consumers_of(self.parts)


def consumers_of(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The consumers a host running ``parts`` has, in CONSUMERS's order."""
    return tuple(c for c in CONSUMERS if c in EVERY_HOST or any(c in PARTS[part] for part in parts))


def _integer(name: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python: `true` in YAML must not become 1.
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BudgetError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise BudgetError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _percent(name: str, value: str, of: str) -> Fraction:
    found = _PERCENT.match(value.strip())
    if found is None or Fraction(found.group(1)) > 100:
        raise BudgetError(f"{name} must be a percent of {of} from 0% to 100%, got {value!r}")
    return Fraction(found.group(1))


def _share(consumer: str, value: object, total_mb: int) -> Share:
    name = f"budget_shares.{consumer}"
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _percent(name, value, "the total")
        return Share(math.floor(total_mb * percent / 100), percent)
    try:
        return Share(_integer(name, value, 0, _MAX_MB))
    except BudgetError:
        raise BudgetError(
            f"{name} must be a whole number of MB or a percent like '25%', got {value!r}"
        ) from None


def _parts(value: object) -> tuple[str, ...]:
    """The parts as a tuple in PARTS's order; a list that is empty, repeats or names an unknown part
    is refused (a string too: ``"db"`` is not ``[db]``)."""
    name = "budget_parts"
    if not isinstance(value, list | tuple) or not value:
        raise BudgetError(f"{name} must be a non-empty list of {', '.join(PARTS)}, got {value!r}")
    unknown = [part for part in value if not isinstance(part, str) or part not in PARTS]
    if unknown:
        raise BudgetError(f"{name} has unknown part(s) {unknown!r}; known: {', '.join(PARTS)}")
    if len(set(value)) != len(value):
        raise BudgetError(f"{name} names a part more than once: {value!r}")
    return tuple(part for part in PARTS if part in value)


def _shares(value: object, total_mb: int, parts: tuple[str, ...]) -> dict[str, Share]:
    """Every consumer's share; those of consumers the host does not run are checked but count 0 MB."""
    if not isinstance(value, Mapping):
        raise BudgetError(f"budget_shares must be a dict of {', '.join(CONSUMERS)}, got {value!r}")
    unknown = sorted(str(key) for key in value if key not in CONSUMERS)
    if unknown:
        raise BudgetError(
            f"budget_shares has unknown consumer(s) {', '.join(unknown)}; known: {', '.join(CONSUMERS)}"
        )
    run = consumers_of(parts)
    missing = [consumer for consumer in run if consumer not in value]
    if missing:
        raise BudgetError(
            f"budget_shares lacks {', '.join(missing)}: each of {', '.join(run)} needs a share"
            + ("" if len(parts) == len(PARTS) else f" on a host running {', '.join(parts)}")
        )
    given = {
        consumer: _share(consumer, value[consumer], total_mb) for consumer in CONSUMERS if consumer in value
    }
    return {consumer: given[consumer] if consumer in run else Share(0) for consumer in CONSUMERS}


def _overflow(value: object) -> int | Fraction:
    name = "budget_api_max_overflow"
    if isinstance(value, str) and value.strip().endswith("%"):
        return _percent(name, value, "the pool")
    try:
        return _integer(name, value, 0, 10000)
    except BudgetError:
        raise BudgetError(
            f"{name} must be a whole number of connections or a percent of the pool like '50%', got {value!r}"
        ) from None


def read_budget(inputs: object) -> Budget:
    """Validate the inputs; a nonsense one raises BudgetError naming the variable."""
    if not isinstance(inputs, Mapping):
        raise BudgetError(f"memory_plan takes a dict of {', '.join(INPUTS)}, got {inputs!r}")
    unknown = sorted(str(key) for key in inputs if key not in INPUTS)
    if unknown:
        raise BudgetError(
            f"memory_plan got unknown input(s) {', '.join(unknown)}; known: {', '.join(INPUTS)}"
        )
    missing = [key for key in INPUTS if key not in inputs and key not in OPTIONAL_INPUTS]
    if missing:
        raise BudgetError(f"memory_plan lacks input(s) {', '.join(missing)}")
    inputs = {**OPTIONAL_INPUTS, **inputs}
    ints = {key: _integer(key, inputs[key], low, high) for key, (low, high) in INT_INPUTS.items()}
    disk_type = inputs["budget_disk_type"]
    if not isinstance(disk_type, str) or disk_type not in DISK_TYPES:
        raise BudgetError(f"budget_disk_type must be one of {', '.join(DISK_TYPES)}, got {disk_type!r}")
    parts = _parts(inputs["budget_parts"])
    # At most PostgreSQL's own limit on max_connections.
    remote = _integer("budget_remote_db_connections", inputs["budget_remote_db_connections"], 0, 262143)
    if remote and "db" not in parts:
        raise BudgetError(
            f"budget_remote_db_connections is {remote}, but this host runs no PostgreSQL (budget_parts: "
            f"{', '.join(parts)}): set it on the db host, or to 0 here"
        )
    return Budget(
        total_mb=ints["budget_total_mb"],
        vcpus=ints["budget_vcpus"],
        disk_type=str(disk_type),
        shares=_shares(inputs["budget_shares"], ints["budget_total_mb"], parts),
        api_workers=ints["budget_api_workers"],
        api_worker_mb=ints["budget_api_worker_mb"],
        api_pool_size=ints["budget_api_pool_size"],
        api_pool_per_vcpu=ints["budget_api_pool_per_vcpu"],
        api_max_overflow=_overflow(inputs["budget_api_max_overflow"]),
        worker_db_connections=ints["budget_worker_db_connections"],
        worker_job_db_connections=ints["budget_worker_job_db_connections"],
        worker_replicas=ints["budget_worker_replicas"],
        worker_concurrency=ints["budget_worker_concurrency"],
        worker_process_mb=ints["budget_worker_process_mb"],
        worker_job_mb=ints["budget_worker_job_mb"],
        db_connection_reserve=ints["budget_db_connection_reserve"],
        autovacuum_max_workers=ints["budget_postgres_autovacuum_max_workers"],
        api_worker_threads=ints["budget_api_worker_threads"],
        worker_job_pids=ints["budget_worker_job_pids"],
        api_cpu_shares=ints["budget_api_cpu_shares"],
        worker_cpu_shares=ints["budget_worker_cpu_shares"],
        postgres_version=ints["postgres_version"],
        parts=parts,
        remote_db_connections=remote,
    )
