"""`make plan` (scripts/plan.py over playbooks/plan.yml) against a temporary inventory of three hosts:
the real group_vars/all, the real memory_plan code, the real playbook and script.

host8 is this machine (local connection: its facts say which PostgreSQL a host of its release runs),
host16 an unroutable address (TEST-NET-3: planned without facts, for PostgreSQL 17, and said so), host1
a 1 GB host whose inventory pins PostgreSQL 15 (so it is not contacted) and whose plan is refused."""

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
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
    host16:
      ansible_host: 203.0.113.16
      ansible_timeout: 3
      budget_total_mb: 16384
      budget_vcpus: 4
    host1:
      ansible_host: 203.0.113.1
      budget_total_mb: 1024
      postgres_version: 15
"""


def release() -> tuple[str, int]:
    """This machine's Debian release and the PostgreSQL it ships (roles/postgres/vars)."""
    os_release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    major = os_release["VERSION_ID"].strip('"')
    return major, {"12": 15, "13": 17}[major]


def make_plan(inventory: Path, *variables: str) -> tuple[int, str]:
    done = subprocess.run(
        ["make", "--no-print-directory", "plan", f"INVENTORY={inventory}", *variables],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=180,
    )
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("inventory")
    (directory / "hosts.yml").write_text(INVENTORY)
    (directory / "group_vars").mkdir()
    (directory / "group_vars" / "all").symlink_to(ROOT / "group_vars" / "all")
    return directory / "hosts.yml"


@pytest.fixture(scope="module")
def plan_run(inventory: Path) -> tuple[int, dict[str, str]]:
    """Exit code of `make plan` and each host's section of its output."""
    returncode, output = make_plan(inventory)
    parts = re.split(r"^== (host\d+) ", output, flags=re.MULTILINE)
    return returncode, dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_output_is_a_plain_table_in_inventory_order(plan_run: tuple[int, dict[str, str]]) -> None:
    _, sections = plan_run
    assert list(sections) == ["host8", "host16", "host1"]
    text = "".join(sections.values())
    assert not ANSI.search(text)
    for decoration in ("TASK [", "PLAY ", "ok: [", "msg:", "=> {"):
        assert decoration not in text


def test_a_reached_host_is_planned_for_the_postgresql_its_release_runs(
    plan_run: tuple[int, dict[str, str]],
) -> None:
    major, version = release()
    section = plan_run[1]["host8"]
    assert section.startswith(f"(PostgreSQL {version}, what Debian {major}")
    assert f"Memory plan: 8192 MB host, 2 vCPU, ssd storage, PostgreSQL {version}" in section
    assert "postgres        2048 (25%)  shared_buffers 512MB, effective_cache_size 1536MB" in section
    assert (
        "max_connections 50 = 2 API workers x (10 pool + 5 overflow) + 1 x 10 worker + 10 reserve" in section
    )
    assert "headroom              1280  free (at least 1228 MB = 15%)" in section
    assert "refused" not in section


def test_an_unreached_host_is_planned_for_17_and_says_so(plan_run: tuple[int, dict[str, str]]) -> None:
    section = plan_run[1]["host16"]
    assert section.startswith("(host not reached: planned for PostgreSQL 17 (Debian 13)")
    assert "Memory plan: 16384 MB host, 4 vCPU, ssd storage, PostgreSQL 17" in section
    assert "postgres        4096 (25%)  shared_buffers 1GB, effective_cache_size 3GB" in section
    assert "headroom              2560  free (at least 2457 MB = 15%)" in section


def test_a_1gb_host_is_refused_with_the_reasons_and_a_non_zero_exit(
    plan_run: tuple[int, dict[str, str]],
) -> None:
    returncode, sections = plan_run
    assert returncode != 0
    section = sections["host1"]
    assert section.startswith("(PostgreSQL 15, set by the inventory (postgres_version))")
    assert "Memory plan: 1024 MB host, 2 vCPU, ssd storage, PostgreSQL 15" in section
    assert "\nrefused:\n- budget_shares.monitoring is 40 MB, below the 128 MB monitoring needs" in section
    assert "\n- budget_shares.os_reserve is 56 MB, below the 256 MB os_reserve needs" in section
    assert "- budget_shares.api is 320 MB, too small for 1 API worker(s) of budget_api_worker_mb" in section


def test_sizes_side_by_side(inventory: Path, tmp_path: Path) -> None:
    one = tmp_path / "hosts.yml"
    one.write_text(
        "vps:\n  hosts:\n    host8:\n      ansible_host: 203.0.113.8\n      postgres_version: 17\n"
    )
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all").symlink_to(ROOT / "group_vars" / "all")

    returncode, output = make_plan(one, "SIZES=8,16:4,32")
    assert returncode == 0, output
    table = output[output.index("Memory plans side by side") :]
    rows = {line[:26].strip(): line[26:].split() for line in table.splitlines()[2:] if line.strip()}
    assert table.splitlines()[1].split() == ["8", "GB", "16", "GB", "32", "GB"]
    assert rows["vCPUs"] == ["2", "4", "8"]
    assert rows["postgres MB"] == ["2048", "4096", "8192"]
    assert rows["uvicorn workers"] == ["2", "4", "8"]
    assert rows["headroom MB"] == ["1280", "2560", "5120"]
    assert rows["plan"] == ["fits", "fits", "fits"]

    # 4 GB (one vCPU) is too small for these proportions: shown, refused, and the exit says so.
    returncode, output = make_plan(one, "SIZES=4,8")
    assert returncode != 0
    assert (
        "4 GB refused:\n- budget_shares.os_reserve is 224 MB, below the 256 MB os_reserve needs\n"
        "- budget_shares.worker is 512 MB: 1 worker replica(s) of 512 MB cannot hold" in output
    )

    returncode, output = make_plan(one, "SIZES=8,lots")
    assert returncode != 0
    assert "SIZES: 'lots' is not a size: give GB or GB:vCPUs, like 16 or 16:4" in output
