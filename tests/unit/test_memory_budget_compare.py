"""`make plan SIZES=...`: one budget at several host sizes (plugin_utils/memory_plan/compare.py)."""

from __future__ import annotations

import pytest
from memory_budget import library
from test_memory_budget import shipped

compare = library("compare")
BudgetError = library("inputs").BudgetError


def test_sizes_are_gb_with_one_vcpu_per_4gb_unless_given() -> None:
    sizes = compare.parse_sizes("4, 8,16:8 32")
    assert [(size.total_mb, size.vcpus, size.label) for size in sizes] == [
        (4096, 1, "4 GB"),
        (8192, 2, "8 GB"),
        (16384, 8, "16 GB"),
        (32768, 8, "32 GB"),
    ]
    assert compare.parse_sizes("2")[0].vcpus == 1


@pytest.mark.parametrize("text", ["", "8,x", "0", "8:0", "16GB", "-4"])
def test_a_size_it_cannot_read_is_refused_naming_it(text: str) -> None:
    with pytest.raises(BudgetError, match="SIZES"):
        compare.parse_sizes(text)


def test_the_shipped_budget_at_4_8_16_and_32_gb() -> None:
    text, refused = compare.compare(shipped(), compare.parse_sizes("4,8,16,32"))
    rows = {
        line[:26].strip(): line[26:].split() for line in text.splitlines()[2:] if line[:1] not in ("", "-")
    }
    assert rows["postgres MB"] == ["1024", "2048", "4096", "8192"]
    assert rows["api MB"] == ["1280", "2560", "5120", "10240"]
    assert rows["processes x jobs"] == ["1", "x", "1", "1", "x", "2", "2", "x", "2", "4", "x", "2"]
    assert rows["max_connections"] == ["31", "50", "90", "170"]
    assert rows["headroom MB"] == ["640", "1280", "2560", "5120"]
    assert rows["floor MB"] == ["614", "1228", "2457", "4915"]
    assert rows["plan"] == ["refused", "fits", "fits", "fits"]
    # Only 4 GB is refused, with its reason under the table.
    assert list(refused) == ["4 GB"]
    assert refused["4 GB"] == [
        "budget_shares.os_reserve is 224 MB, below the 256 MB os_reserve needs",
        "budget_shares.worker is 512 MB: 1 worker replica(s) of 512 MB cannot hold budget_worker_process_mb "
        "= 384 MB plus 1 job(s) of budget_worker_job_mb = 256 MB",
    ]
    assert text.endswith("4 GB refused:\n- " + "\n- ".join(refused["4 GB"]))
