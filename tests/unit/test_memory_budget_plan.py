"""`make plan` against a temporary inventory of three hosts (8 GB, 16 GB, 1 GB): the real
group_vars/all, the real filter, the real playbook. The hosts' addresses are unroutable (TEST-NET-3),
so a plan that tried to reach a host would fail as unreachable instead of printing its table."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INVENTORY = """\
vps:
  hosts:
    host8:
      ansible_host: 203.0.113.8
    host16:
      ansible_host: 203.0.113.16
      budget_total_mb: 16384
    host1:
      ansible_host: 203.0.113.1
      budget_total_mb: 1024
"""


@pytest.fixture(scope="module")
def plan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, str], str]:
    """Exit code of `make plan`, each host's result in its output, and the play recap."""
    inventory = tmp_path_factory.mktemp("inventory")
    (inventory / "hosts.yml").write_text(INVENTORY)
    (inventory / "group_vars").mkdir()
    (inventory / "group_vars" / "all").symlink_to(ROOT / "group_vars" / "all")
    done = subprocess.run(
        ["make", "--no-print-directory", "plan", f"INVENTORY={inventory / 'hosts.yml'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    output = ANSI.sub("", done.stdout)
    # A host's result runs from its "ok: [host]" or "fatal: [host]" line to the next such line, the
    # next "[ERROR]" (printed before a failed host's result) or the recap.
    parts = re.split(r"^(?:(?:ok|fatal): \[(host\d+)\]|\[(ERROR)\]|(PLAY RECAP))", output, flags=re.MULTILINE)
    sections = {
        (host or error or recap): text
        for host, error, recap, text in zip(*[iter(parts[1:])] * 4, strict=True)
    }
    return (
        done.returncode,
        {key: text for key, text in sections.items() if key.startswith("host")},
        sections["PLAY RECAP"],
    )


def test_the_default_8gb_host_gets_the_seeds_plan(plan_run: tuple[int, dict[str, str], str]) -> None:
    table = plan_run[1]["host8"]
    assert "Memory plan: 8192 MB host, 2 vCPU, ssd storage, PostgreSQL 15" in table
    assert (
        "postgres    2048 (25%)  shared_buffers 512MB, effective_cache_size 1536MB, wal_buffers 16MB" in table
    )
    assert "work_mem 9039kB, maintenance_work_mem 128MB" in table
    assert "max_connections 50 = 2 API workers" in table
    assert "redis              256  maxmemory 192MB" in table
    assert "headroom          1280  free" in table
    assert "refused" not in table


def test_a_16gb_host_gets_a_bigger_plan(plan_run: tuple[int, dict[str, str], str]) -> None:
    table = plan_run[1]["host16"]
    assert "Memory plan: 16384 MB host" in table
    assert "postgres    4096 (25%)  shared_buffers 1GB, effective_cache_size 3GB" in table
    assert "work_mem 18078kB, maintenance_work_mem 256MB" in table
    assert "headroom          7424  free" in table


def test_a_1gb_host_is_refused_with_the_reason_and_the_table(
    plan_run: tuple[int, dict[str, str], str],
) -> None:
    returncode, by_host, _ = plan_run
    assert returncode != 0
    refusal = by_host["host1"]
    assert "over-committed: the shares add up to 5222 MB" in refusal
    assert "more than budget_total_mb = 1024 MB" in refusal
    assert "Memory plan: 1024 MB host" in refusal
    assert "headroom         -4096  OVER-COMMITTED" in refusal


def test_no_host_is_contacted(plan_run: tuple[int, dict[str, str], str]) -> None:
    recap = plan_run[2]
    assert re.search(r"host8 +: ok=1 .* unreachable=0 +failed=0", recap)
    assert re.search(r"host16 +: ok=1 .* unreachable=0 +failed=0", recap)
    assert re.search(r"host1 +: ok=0 .* unreachable=0 +failed=1", recap)
