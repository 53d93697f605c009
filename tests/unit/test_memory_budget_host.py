"""Preflight's comparison of the memory budget with the host (plugin_utils/memory_plan/host.py): the
host's memory and vCPUs from /proc/meminfo and the CPUs online, lowered by a cgroup's limits (v2 or
v1), and the refusal naming both numbers."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from memory_budget import budget_host_problems, library

host = library("host")
ROOT = Path(__file__).resolve().parents[2]
# An "8 GB" KVM VPS: what the kernel leaves of the RAM it was sold with, and 2 vCPUs.
VPS_8GB = {host.MEMINFO: "MemTotal:        8131652 kB\nMemFree:  7000000 kB\n", host.CPUS_ONLINE: "0-1\n"}


def problems(total_mb: int, vcpus: int, files: dict[str, str], tolerance: int = 8) -> list[str]:
    return host.host_problems(total_mb, vcpus, tolerance, files)


def test_an_8gb_vps_fits_the_8gb_budget_despite_the_kernels_reserve() -> None:
    assert host.read_host(VPS_8GB) == host.HostSize(
        7941, "MemTotal in /proc/meminfo", 2, "CPUs online (/sys/devices/system/cpu/online)"
    )
    assert problems(8192, 2, VPS_8GB) == []
    # Without the tolerance the 251 MB the kernel keeps would refuse it.
    assert problems(8192, 2, VPS_8GB, tolerance=0)


def test_a_4gb_host_is_refused_naming_both_sizes_and_the_file_to_fix() -> None:
    small = {host.MEMINFO: "MemTotal:        4028256 kB\n", host.CPUS_ONLINE: "0\n"}
    memory, vcpus = problems(8192, 2, small)
    assert memory.startswith(
        "budget_total_mb is 8192 MB, but this host has 3933 MB (MemTotal in /proc/meminfo; up to 4247 MB "
        "is accepted with budget_host_memory_tolerance_percent = 8)"
    )
    assert vcpus.startswith("budget_vcpus is 2, but this host has 1 vCPU(s) (CPUs online")


@pytest.mark.parametrize(
    ("limits", "memory_mb", "vcpus"),
    [
        # cgroup v2 inside a container: memory.max and cpu.max ("quota period").
        ({host.CGROUP_MEMORY: "4294967296\n", host.CGROUP_CPU: "150000 100000\n"}, 4096, 1.5),
        # v2 at a host's root or without limits.
        ({host.CGROUP_MEMORY: "max\n", host.CGROUP_CPU: "max 100000\n"}, 7941, 2),
        # cgroup v1: limit_in_bytes, cfs quota and period; the root's "unlimited" page-rounded maximum.
        (
            {
                host.CGROUP1_MEMORY: "2147483648\n",
                host.CGROUP1_CPU_QUOTA: "100000\n",
                host.CGROUP1_CPU_PERIOD: "100000\n",
            },
            2048,
            1,
        ),
        ({host.CGROUP1_MEMORY: "9223372036854771712\n", host.CGROUP1_CPU_QUOTA: "-1\n"}, 7941, 2),
        # A limit above the machine's memory changes nothing.
        ({host.CGROUP_MEMORY: str(64 * 2**30)}, 7941, 2),
    ],
)
def test_a_cgroups_limits_are_the_hosts_size(limits: dict[str, str], memory_mb: int, vcpus: float) -> None:
    size = host.read_host(VPS_8GB | limits)
    assert (size.memory_mb, float(size.vcpus)) == (memory_mb, vcpus)


def test_a_fractional_cpu_quota_refuses_a_whole_vcpu_more() -> None:
    files = VPS_8GB | {host.CGROUP_CPU: "150000 100000"}
    assert problems(8192, 2, files) == [
        "budget_vcpus is 2, but this host has 1.50 vCPU(s) (the cgroup quota in /sys/fs/cgroup/cpu.max): "
        "set budget_vcpus to the host's, or use a bigger host"
    ]
    assert problems(8192, 1, files) == []


def test_cpus_online_ranges_are_counted() -> None:
    assert host.read_host(VPS_8GB | {host.CPUS_ONLINE: "0-3,6,8-9\n"}).vcpus == 7


def test_the_filter_decodes_slurp_and_refuses_nonsense_by_name() -> None:
    encoded = {path: base64.b64encode(text.encode()).decode() for path, text in VPS_8GB.items()}
    assert budget_host_problems(8192, 2, 8, encoded) == []
    assert budget_host_problems("16384", "4", 8, encoded)[0].startswith("budget_total_mb is 16384 MB")
    with pytest.raises(AnsibleFilterError, match="budget_host_memory_tolerance_percent"):
        budget_host_problems(8192, 2, "lots", encoded)
    with pytest.raises(AnsibleFilterError, match="no MemTotal in /proc/meminfo"):
        budget_host_problems(8192, 2, 8, {})


def test_preflight_reads_exactly_the_files_the_comparison_knows() -> None:
    play = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())[0]
    [read] = [
        task for task in play["tasks"] if task["name"] == "Read the host's memory, CPUs and cgroup limits"
    ]
    assert tuple(read["loop"]) == host.FILES
