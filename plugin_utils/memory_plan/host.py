"""Does the budget fit the host it is for? Preflight reads the host's size and this compares.

The host's memory is /proc/meminfo's MemTotal, or its cgroup's memory limit when that is lower (a
container, or a VPS sold as one: its limit is what the host really has); its vCPUs are the CPUs online,
or its cgroup's CPU quota when that is lower. Both cgroup versions are read: v2's memory.max and
cpu.max, v1's memory.limit_in_bytes and cpu.cfs_quota_us / cpu.cfs_period_us (a host's own root
cgroup has no limit: v2 has no such files there, v1 shows an unlimited value).

MemTotal is below what the provider sells (the kernel keeps its code and reserved areas: an "8 GB" VPS
reports about 7.8 GB), so budget_total_mb may exceed it by budget_host_memory_tolerance_percent; vCPUs
must be there in full.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from .inputs import BudgetError, _integer

MEMINFO = "/proc/meminfo"
CPUS_ONLINE = "/sys/devices/system/cpu/online"
CGROUP_MEMORY = "/sys/fs/cgroup/memory.max"
CGROUP_CPU = "/sys/fs/cgroup/cpu.max"
CGROUP1_MEMORY = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
CGROUP1_CPU_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP1_CPU_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
# The files preflight reads (playbooks/preflight.yml); only the first two exist everywhere.
FILES = (
    MEMINFO,
    CPUS_ONLINE,
    CGROUP_MEMORY,
    CGROUP_CPU,
    CGROUP1_MEMORY,
    CGROUP1_CPU_QUOTA,
    CGROUP1_CPU_PERIOD,
)

_MEMTOTAL = re.compile(r"^MemTotal:\s+(\d+) kB$", re.MULTILINE)


@dataclass(frozen=True)
class HostSize:
    """What the host has: memory in MB and vCPUs (a Fraction: a cgroup quota may give 1.5), and where
    each figure came from."""

    memory_mb: int
    memory_from: str
    vcpus: Fraction
    vcpus_from: str


def _cpu_count(online: str) -> int:
    """``0-3,6`` -> 5."""
    count = 0
    for part in online.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def read_host(files: Mapping[str, str]) -> HostSize:
    """The host's size from the text of FILES (the cgroup ones may be missing)."""
    found = _MEMTOTAL.search(files.get(MEMINFO, ""))
    if found is None:
        raise BudgetError(f"cannot read the host's memory: no MemTotal in {MEMINFO}")
    memory_mb, memory_from = int(found.group(1)) // 1024, f"MemTotal in {MEMINFO}"
    for path in (CGROUP_MEMORY, CGROUP1_MEMORY):
        limit = files.get(path, "max").strip()
        if limit.isdigit() and int(limit) // 1048576 < memory_mb:
            memory_mb, memory_from = int(limit) // 1048576, f"the cgroup limit in {path}"
    vcpus, vcpus_from = Fraction(_cpu_count(files.get(CPUS_ONLINE, "0"))), f"CPUs online ({CPUS_ONLINE})"
    quota, _, period = files.get(CGROUP_CPU, "max").strip().partition(" ")
    quotas = [(quota, period, CGROUP_CPU)]
    quotas.append(
        (
            files.get(CGROUP1_CPU_QUOTA, "-1").strip(),
            files.get(CGROUP1_CPU_PERIOD, "").strip(),
            CGROUP1_CPU_QUOTA,
        )
    )
    for quota, period, path in quotas:
        if quota.isdigit() and period.isdigit() and int(period) and Fraction(int(quota), int(period)) < vcpus:
            vcpus, vcpus_from = Fraction(int(quota), int(period)), f"the cgroup quota in {path}"
    return HostSize(memory_mb, memory_from, vcpus, vcpus_from)


def _show(vcpus: Fraction) -> str:
    return str(vcpus.numerator) if vcpus.denominator == 1 else f"{float(vcpus):.2f}"


def host_problems(
    total_mb: object, vcpus: object, tolerance_percent: object, files: Mapping[str, str]
) -> list[str]:
    """Why a budget of ``total_mb`` MB and ``vcpus`` vCPUs does not fit the host ``files`` describe."""
    total = _integer("budget_total_mb", total_mb, 1, 16 * 1024 * 1024)
    wanted_vcpus = _integer("budget_vcpus", vcpus, 1, 1024)
    tolerance = _integer("budget_host_memory_tolerance_percent", tolerance_percent, 0, 50)
    host = read_host(files)
    problems = []
    allowed_mb = math.floor(host.memory_mb * (100 + tolerance) / 100)
    if total > allowed_mb:
        problems.append(
            f"budget_total_mb is {total} MB, but this host has {host.memory_mb} MB ({host.memory_from}; "
            f"up to {allowed_mb} MB is accepted with budget_host_memory_tolerance_percent = {tolerance}): "
            f"set budget_total_mb to the memory the host was sold with (and check `make plan`), or use a "
            "bigger host"
        )
    if wanted_vcpus > host.vcpus:
        problems.append(
            f"budget_vcpus is {wanted_vcpus}, but this host has {_show(host.vcpus)} vCPU(s) "
            f"({host.vcpus_from}): set budget_vcpus to the host's, or use a bigger host"
        )
    return problems
