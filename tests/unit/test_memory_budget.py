"""The memory plan (filter_plugins/memory_budget.py, plugin_utils/memory_plan): reference cases
computed by hand from PGTune's web-profile formulas, PostgreSQL's SHOW units, and refusals."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from memory_budget import FilterModule, library

ROOT = Path(__file__).resolve().parents[2]

plan_module = library("plan")
units = library("guc_units")
BudgetError = plan_module.BudgetError
make_plan = plan_module.make_plan

# Seed 000's 8 GB / 2 vCPU host as fixed amounts, the base of the formula cases below. The shipped
# defaults (group_vars/all/budget.yml: percents, derived pools) must give the same plan at 8 GB:
# test_the_shipped_defaults_give_the_seeds_8gb_table.
DEFAULT: dict[str, Any] = {
    "budget_total_mb": 8192,
    "budget_vcpus": 2,
    "budget_disk_type": "ssd",
    "budget_shares": {
        "postgres": "25%",
        "redis": 256,
        "api": 2560,
        "worker": 1024,
        "proxy": 256,
        "monitoring": 320,
        "os_reserve": 448,
        "headroom": "10%",
    },
    "budget_api_workers": 0,
    "budget_api_worker_mb": 500,
    "budget_api_pool_size": 10,
    "budget_api_pool_per_vcpu": 10,
    "budget_api_max_overflow": 5,
    "budget_worker_db_connections": 10,
    "budget_worker_job_db_connections": 4,
    "budget_worker_replicas": 0,
    "budget_worker_concurrency": 0,
    "budget_worker_process_mb": 384,
    "budget_worker_job_mb": 256,
    "budget_db_connection_reserve": 10,
    "budget_postgres_autovacuum_max_workers": 3,
    "budget_api_worker_threads": 40,
    "budget_worker_job_pids": 16,
    "budget_api_cpu_shares": 1024,
    "budget_worker_cpu_shares": 512,
    "postgres_version": 15,
}


def budget(**changes: Any) -> dict[str, Any]:
    """DEFAULT with ``changes``; a ``shares`` dict is merged into the default shares."""
    inputs = copy.deepcopy(DEFAULT)
    inputs["budget_shares"].update(changes.pop("shares", {}))
    inputs.update(changes)
    return inputs


def refusal(inputs: object) -> str:
    with pytest.raises(BudgetError) as refused:
        make_plan(inputs)
    return str(refused.value)


# --- Reference cases ----------------------------------------------------------------------------


def test_8gb_default_reproduces_the_seed_and_pgtune_web_on_the_2gb_share() -> None:
    plan = make_plan(DEFAULT)
    # share 2 GB = 2097152 kB: shared_buffers /4, effective_cache_size 3/4, maintenance_work_mem /16,
    # wal_buffers 3 % of shared_buffers = 15728 kB > 14 MB -> 16 MB,
    # work_mem (2097152 - 524288) / ((50 connections + 8 worker processes) x 3) = 9039 kB.
    assert plan["postgres"]["settings"] == {
        "max_connections": "50",
        "shared_buffers": "512MB",
        "effective_cache_size": "1536MB",
        "maintenance_work_mem": "128MB",
        "work_mem": "9039kB",
        "wal_buffers": "16MB",
        "min_wal_size": "1GB",
        "max_wal_size": "4GB",
        "checkpoint_completion_target": "0.9",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "default_statistics_target": "100",
        "max_worker_processes": "8",
        "max_parallel_workers": "2",
        "max_parallel_workers_per_gather": "1",
        "max_parallel_maintenance_workers": "1",
        "autovacuum_max_workers": "3",
        "huge_pages": "off",
        "jit": "off",
        "wal_compression": "lz4",
    }
    # 2 workers x (10 + 5) + 10 worker + 10 reserve; worst case 524288 + 16384 + 52 x 9039 x 2
    # + 3 x 131072 = 1873944 kB.
    assert plan["postgres"] | {"settings": None} == {
        "version": 15,
        "memory_mb": 2048,
        "max_connections": 50,
        "worst_case_mb": 1830,
        "settings": None,
    }
    assert plan["redis"] == {"memory_mb": 256, "maxmemory_mb": 192}
    assert plan["api"] == {
        "memory_mb": 2560,
        "workers": 2,
        "worker_memory_mb": 500,
        "pool_size": 10,
        "max_overflow": 5,
        "pids_limit": 158,
        "cpu_shares": 1024,
    }
    # One worker process (2 vCPUs) with the whole share, running 2 jobs at once (384 + 2 x 256 MB).
    assert plan["worker"] == {
        "memory_mb": 1024,
        "replicas": 1,
        "replica_memory_mb": 1024,
        "concurrency": 2,
        "db_connections": 10,
        "pids_limit": 127,
        "cpu_shares": 512,
    }
    assert plan["migrate"] == {"pids_limit": 95, "cpu_shares": 512}
    assert plan["proxy"] == {"memory_mb": 256, "pids_limit": 96, "cpu_shares": 1024}
    assert (plan["monitoring_mb"], plan["os_reserve_mb"], plan["headroom_mb"]) == (320, 448, 1280)
    assert plan["headroom_min_mb"] == 819


# The inputs budget.yml wires from elsewhere, as one host (group_vars/all/topology.yml: both parts,
# no app host of its own) running PostgreSQL 15 has them.
WIRED = {"postgres_version": 15, "budget_parts": ["db", "app"], "budget_remote_db_connections": 0}


def shipped() -> dict[str, Any]:
    """The inputs group_vars/all/budget.yml ships (its own values, not copies), for one host running
    PostgreSQL 15."""
    values = yaml.safe_load((ROOT / "group_vars" / "all" / "budget.yml").read_text())
    return {name: values[name] for name in values["budget_inputs"] if name not in WIRED} | WIRED


def test_the_shipped_defaults_give_the_seeds_8gb_table() -> None:
    """The shares ship as percents and the pools as derived, and at 8 GB / 2 vCPUs they are seed 000's
    table: postgres 2 GB, redis 256 MB, api 2.5 GB, worker 1 GB, proxy 256 MB, OS 1 GB with the proxy
    (monitoring 320 MB, the rest 448 MB), 1.25 GB free; 2 API workers with 10 + 5 connections each,
    1 worker process with 2 jobs and 10 connections, max_connections 50. Only the headroom's floor
    differs: 15 % instead of 10 %."""
    plan = make_plan(shipped())
    seed = make_plan(DEFAULT)
    assert plan["headroom_min_mb"] == 1228
    assert {key: value for key, value in plan.items() if key not in ("table", "headroom_min_mb")} == {
        key: value for key, value in seed.items() if key not in ("table", "headroom_min_mb")
    }
    memory = {consumer: plan[consumer]["memory_mb"] for consumer in ("postgres", "redis", "api", "worker")}
    assert memory == {"postgres": 2048, "redis": 256, "api": 2560, "worker": 1024}
    assert (plan["proxy"]["memory_mb"], plan["monitoring_mb"], plan["os_reserve_mb"]) == (256, 320, 448)
    assert plan["headroom_mb"] == 1280
    assert plan["postgres"]["max_connections"] == 50
    assert (plan["api"]["pool_size"], plan["api"]["max_overflow"], plan["worker"]["db_connections"]) == (
        10,
        5,
        10,
    )
    table = plan["table"]
    for row in (
        "redis         256 (3.125%)  maxmemory 192MB",
        "api          2560 (31.25%)  2 uvicorn workers x 500 MB, each with a pool of 10 + 5 overflow",
        "worker        1024 (12.5%)  1 process(es) x 1024 MB, 2 jobs at once each, 10 database connections",
        "headroom              1280  free (at least 1228 MB = 15%)",
    ):
        assert f"\n  {row}" in table


def test_a_16gb_4vcpu_host_gives_every_service_more_and_keeps_headroom_near_its_floor() -> None:
    """Seed 000's next step: the same shipped budget on 16 GB / 4 vCPUs, nothing else changed."""
    small = make_plan(shipped())
    big = make_plan(shipped() | {"budget_total_mb": 16384, "budget_vcpus": 4})
    for consumer in ("postgres", "redis", "api", "worker", "proxy"):
        assert big[consumer]["memory_mb"] > small[consumer]["memory_mb"], consumer
    assert big["os_reserve_mb"] > small["os_reserve_mb"]
    assert big["monitoring_mb"] > small["monitoring_mb"]
    assert big["headroom_min_mb"] <= big["headroom_mb"] <= big["headroom_min_mb"] * 1.10
    assert (big["headroom_mb"], big["headroom_min_mb"]) == (2560, 2457)
    # More of every count: API workers (4, seed 000's step), worker processes x jobs, pools, Redis,
    # PostgreSQL's memory settings and connections.
    assert (small["api"]["workers"], big["api"]["workers"]) == (2, 4)
    assert small["worker"]["replicas"] * small["worker"]["concurrency"] == 2
    assert big["worker"]["replicas"] * big["worker"]["concurrency"] == 4
    total_pool = [plan["api"]["workers"] * plan["api"]["pool_size"] for plan in (small, big)]
    assert total_pool == [20, 40]
    assert big["redis"]["maxmemory_mb"] == 2 * small["redis"]["maxmemory_mb"] == 384
    assert big["postgres"]["max_connections"] == 4 * 15 + 2 * 10 + 10
    for setting in ("shared_buffers", "effective_cache_size", "maintenance_work_mem", "work_mem"):
        sizes = [units.parse_memory(plan["postgres"]["settings"][setting]) for plan in (small, big)]
        assert sizes[1] > sizes[0], setting


def test_the_api_pool_is_split_over_the_workers_and_the_worker_pool_follows_its_jobs() -> None:
    derived = {"budget_api_pool_size": 0, "budget_worker_db_connections": 0, "budget_api_max_overflow": "50%"}
    # One API worker on 2 vCPUs holds the whole 20 (+ 50 % overflow).
    one = make_plan(budget(**derived, budget_api_workers=1))
    assert (one["api"]["pool_size"], one["api"]["max_overflow"]) == (20, 10)
    # 3 workers on 2 vCPUs: 20 / 3 rounded up.
    three = make_plan(budget(**derived, budget_api_workers=3, shares={"api": 1536, "worker": 2048}))
    assert (three["api"]["pool_size"], three["api"]["max_overflow"]) == (7, 3)
    # A worker process with 3 jobs: 2 + 3 x 4 connections; with budget_worker_job_db_connections 2: 8.
    jobs = budget(**derived, budget_worker_concurrency=3, shares={"worker": 1280, "api": 2304})
    assert make_plan(jobs)["worker"]["db_connections"] == 14
    assert make_plan(jobs | {"budget_worker_job_db_connections": 2})["worker"]["db_connections"] == 8
    # A fixed overflow stays fixed.
    assert make_plan(budget(**derived | {"budget_api_max_overflow": 3}))["api"]["max_overflow"] == 3


def test_8gb_table_shows_every_service_and_the_headroom() -> None:
    table = make_plan(DEFAULT)["table"]
    assert table.splitlines()[0] == "Memory plan: 8192 MB host, 2 vCPU, ssd storage, PostgreSQL 15"
    for row in (
        "postgres        2048 (25%)  shared_buffers 512MB, effective_cache_size 1536MB, wal_buffers 16MB",
        "redis                  256  maxmemory 192MB",
        "api                   2560  2 uvicorn workers x 500 MB",
        "worker                1024  1 process(es) x 1024 MB, 2 jobs at once each, 10 database connections",
        "proxy                  256",
        "monitoring             320  Prometheus, its exporters and Alertmanager (one systemd slice)",
        "os_reserve             448",
        "headroom              1280  free (at least 819 MB = 10%)",
        "total                 8192",
    ):
        assert f"\n  {row}" in table
    assert "max_connections 50 = 2 API workers x (10 pool + 5 overflow) + 1 x 10 worker + 10 reserve" in table
    assert "worst case 1830 MB" in table


def test_8gb_containers_get_pids_limits_and_cpu_shares() -> None:
    """2 vCPUs: one Python process of the service is 1 main thread + anyio's 40 + asyncio's executor
    min(32, 2 + 4) = 6 + 16 spare = 63 tasks. api 32 + 2 uvicorn workers x 63 = 158; a worker replica
    32 + 63 + 2 jobs x 16 = 127; migrate 32 + 63 = 95; Traefik 64 + 2 vCPUs x 16 = 96. CPU weights:
    the API and Traefik Docker's default 1024, the background work (the one replica, migrate) 512."""
    plan = make_plan(DEFAULT)
    limits = {
        container: (plan[container]["pids_limit"], plan[container]["cpu_shares"])
        for container in ("api", "worker", "migrate", "proxy")
    }
    assert limits == {"api": (158, 1024), "worker": (127, 512), "migrate": (95, 512), "proxy": (96, 1024)}
    assert "pids_limit 158, cpu_shares 1024" in plan["table"]
    assert (
        "pids_limit 127, cpu_shares 512 each; migrate (one-off): pids_limit 95, cpu_shares 512"
        in plan["table"]
    )


def test_pids_limits_grow_with_workers_threads_and_jobs() -> None:
    default = make_plan(DEFAULT)
    # Each uvicorn worker is one more Python process of 63 tasks.
    three = make_plan(budget(budget_api_workers=3))
    assert three["api"]["pids_limit"] == default["api"]["pids_limit"] + 63
    # Each job at once adds budget_worker_job_pids to a replica.
    four_jobs = make_plan(budget(budget_worker_concurrency=4, shares={"worker": 1536, "api": 2048}))
    assert four_jobs["worker"]["pids_limit"] == default["worker"]["pids_limit"] + 2 * 16
    heavier_jobs = make_plan(budget(budget_worker_job_pids=24))
    assert heavier_jobs["worker"]["pids_limit"] == default["worker"]["pids_limit"] + 2 * 8
    # A bigger anyio pool counts once per Python process: both API workers, the replica, migrate.
    wider = make_plan(budget(budget_api_worker_threads=60))
    assert wider["api"]["pids_limit"] == default["api"]["pids_limit"] + 2 * 20
    assert wider["worker"]["pids_limit"] == default["worker"]["pids_limit"] + 20
    assert wider["migrate"]["pids_limit"] == default["migrate"]["pids_limit"] + 20
    # More vCPUs: a bigger asyncio executor per process and more Go threads in Traefik.
    six = make_plan(budget(budget_vcpus=6, budget_api_workers=2))
    assert six["api"]["pids_limit"] == default["api"]["pids_limit"] + 2 * 4
    assert six["proxy"]["pids_limit"] == default["proxy"]["pids_limit"] + 4 * 16


def test_worker_replicas_share_the_background_cpu_weight() -> None:
    """More replicas do not weigh more against the API: 512 split over 2 replicas is 256 each."""
    two = make_plan(budget(budget_worker_replicas=2, budget_worker_concurrency=1, shares={"worker": 1280}))
    assert (two["worker"]["replicas"], two["worker"]["cpu_shares"]) == (2, 256)
    assert two["api"]["cpu_shares"] == 1024
    assert two["migrate"]["cpu_shares"] == 512
    # Never below the kernel's minimum of 2.
    tiny = make_plan(
        budget(
            budget_worker_cpu_shares=2,
            budget_worker_replicas=2,
            shares={"worker": 1280},
            budget_worker_concurrency=1,
        )
    )
    assert tiny["worker"]["cpu_shares"] == 2
    favoured = make_plan(budget(budget_api_cpu_shares=2048))
    assert favoured["api"]["cpu_shares"] == favoured["proxy"]["cpu_shares"] == 2048


def test_16gb_host_gets_a_bigger_postgres_and_more_headroom() -> None:
    plan = make_plan(budget(budget_total_mb=16384))
    settings = plan["postgres"]["settings"]
    # share 4 GB: work_mem (4194304 - 1048576) / 174 = 18078 kB; wal_buffers stays at its 16 MB cap.
    assert {
        key: settings[key] for key in ("shared_buffers", "effective_cache_size", "maintenance_work_mem")
    } == {
        "shared_buffers": "1GB",
        "effective_cache_size": "3GB",
        "maintenance_work_mem": "256MB",
    }
    assert (settings["work_mem"], settings["wal_buffers"]) == ("18078kB", "16MB")
    assert plan["postgres"]["memory_mb"] == 4096
    assert plan["headroom_mb"] == 16384 - 4096 - 256 - 2560 - 1024 - 256 - 768


def test_six_vcpus_follow_pgtunes_parallel_formulas_and_the_api_share_caps_workers() -> None:
    plan = make_plan(budget(budget_vcpus=6))
    # one worker per vCPU would be 6, but 2560 MB holds 5 of 500 MB: 5 x 15 + 20 = 95 connections;
    # work_mem (2097152 - 524288) / ((95 + 6) x 3) = 5190 kB.
    assert plan["api"]["workers"] == 5
    settings = plan["postgres"]["settings"]
    assert settings["max_connections"] == "95"
    assert settings["work_mem"] == "5190kB"
    assert [settings[key] for key in ("max_worker_processes", "max_parallel_workers")] == ["6", "6"]
    assert settings["max_parallel_workers_per_gather"] == settings["max_parallel_maintenance_workers"] == "3"


def test_explicit_api_workers_override_the_vcpu_count() -> None:
    plan = make_plan(budget(budget_api_workers=1))
    assert plan["api"]["workers"] == 1
    assert plan["postgres"]["max_connections"] == 15 + 10 + 10


@pytest.mark.parametrize(
    ("disk_type", "random_page_cost", "effective_io_concurrency"),
    [("ssd", "1.1", "200"), ("hdd", "4", "2"), ("network", "1.1", "300")],
)
def test_disk_type_sets_the_io_costs(
    disk_type: str, random_page_cost: str, effective_io_concurrency: str
) -> None:
    settings = make_plan(budget(budget_disk_type=disk_type))["postgres"]["settings"]
    assert (settings["random_page_cost"], settings["effective_io_concurrency"]) == (
        random_page_cost,
        effective_io_concurrency,
    )


@pytest.mark.parametrize(("version", "wal_compression"), [(13, "on"), (14, "on"), (15, "lz4"), (17, "lz4")])
def test_wal_compression_follows_the_version(version: int, wal_compression: str) -> None:
    plan = make_plan(budget(postgres_version=version))
    assert plan["postgres"]["version"] == version
    assert plan["postgres"]["settings"]["wal_compression"] == wal_compression
    assert f"PostgreSQL {version}" in plan["table"]


def test_huge_pages_from_a_32gb_share() -> None:
    assert make_plan(budget(budget_total_mb=131072))["postgres"]["settings"]["huge_pages"] == "try"
    assert make_plan(budget(budget_total_mb=131068))["postgres"]["settings"]["huge_pages"] == "off"


def test_small_share_rounds_wal_buffers_to_whole_pages() -> None:
    # share 256 MB: shared_buffers 64 MB; 3 % = 1966 kB, rounded down to 8 kB pages = 1960 kB.
    settings = make_plan(budget(budget_total_mb=4096, shares={"postgres": 256, "api": 1000}))["postgres"][
        "settings"
    ]
    assert (settings["shared_buffers"], settings["wal_buffers"]) == ("64MB", "1960kB")


def test_integers_may_arrive_as_strings_from_the_command_line() -> None:
    assert make_plan(budget(budget_total_mb="16384", postgres_version="17"))["postgres"]["memory_mb"] == 4096


# --- Refusals ----------------------------------------------------------------------------------


def test_1gb_host_with_the_default_shares_is_refused_with_the_table() -> None:
    message = refusal(budget(budget_total_mb=1024))
    assert message.startswith("memory budget refused:\n- over-committed: the shares add up to 5222 MB")
    assert "more than budget_total_mb = 1024 MB" in message
    assert "Memory plan: 1024 MB host" in message
    assert "headroom             -4096  OVER-COMMITTED" in message
    assert "redis                  256  maxmemory 192MB" in message


def test_postgres_worst_case_above_its_share_is_refused() -> None:
    # 10 autovacuum workers x 128 MB: 524288 + 16384 + 940056 + 1310720 kB = 2726 MB > 2048 MB.
    message = refusal(budget(budget_postgres_autovacuum_max_workers=10))
    assert "PostgreSQL's worst case of 2726 MB exceeds budget_shares.postgres = 2048 MB" in message
    assert "Memory plan: 8192 MB host" in message


def test_more_connections_than_the_share_holds_are_refused() -> None:
    # work_mem bottoms out at 64 kB: 3000 connections x 64 kB x 2 alone exceed 256 MB.
    message = refusal(
        budget(budget_total_mb=4096, shares={"postgres": 256, "api": 1000}, budget_worker_db_connections=3000)
    )
    assert "PostgreSQL's worst case" in message
    assert "work_mem 64kB" in message


def test_more_vcpus_and_a_bigger_worker_share_give_more_worker_processes() -> None:
    plan = make_plan(budget(budget_total_mb=16384, budget_vcpus=4, shares={"worker": 2048}))
    # 4 vCPUs: two processes of 1024 MB, each running 2 jobs; each holds its own connections.
    assert plan["worker"] == {
        "memory_mb": 2048,
        "replicas": 2,
        "replica_memory_mb": 1024,
        "concurrency": 2,
        "db_connections": 10,
        # Each replica's PIDs for its 2 jobs; the background weight of 512 split over the two.
        "pids_limit": 32 + (1 + 40 + 8 + 16) + 2 * 16,
        "cpu_shares": 256,
    }
    assert plan["postgres"]["max_connections"] == 4 * (10 + 5) + 2 * 10 + 10
    # The share caps the processes: 1024 MB holds one of 384 + 256 MB.
    assert make_plan(budget(budget_vcpus=8))["worker"]["replicas"] == 1
    # Explicit values win; concurrency is bounded by memory only when derived.
    explicit = make_plan(
        budget(
            budget_total_mb=16384,
            budget_worker_replicas=2,
            budget_worker_concurrency=1,
            shares={"worker": 1536},
        )
    )["worker"]
    assert (explicit["replicas"], explicit["replica_memory_mb"], explicit["concurrency"]) == (2, 768, 1)


def test_a_worker_share_too_small_for_its_processes_and_jobs_is_refused() -> None:
    message = refusal(budget(budget_worker_replicas=2, budget_worker_concurrency=2))
    assert (
        "budget_shares.worker is 1024 MB: 2 worker replica(s) of 512 MB cannot hold "
        "budget_worker_process_mb = 384 MB plus 2 job(s) of budget_worker_job_mb = 256 MB"
    ) in message


def test_api_share_too_small_for_its_workers_is_refused() -> None:
    assert "budget_shares.api is 2560 MB, too small for 6 API worker(s)" in refusal(
        budget(budget_api_workers=6)
    )
    assert "too small for 1 API worker(s)" in refusal(budget(shares={"api": 400}))


@pytest.mark.parametrize(
    ("consumer", "mb"),
    [
        ("postgres", 255),
        ("redis", 31),
        ("worker", 63),
        ("proxy", 31),
        ("monitoring", 127),
        ("os_reserve", 255),
    ],
)
def test_a_share_below_what_its_consumer_needs_is_refused(consumer: str, mb: int) -> None:
    message = refusal(budget(shares={consumer: mb}))
    assert f"budget_shares.{consumer} is {mb} MB, below the {mb + 1} MB {consumer} needs" in message
    assert "Memory plan: 8192 MB host" in message


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        (budget(budget_total_mb=-8192), "budget_total_mb"),
        (budget(budget_total_mb=0), "budget_total_mb"),
        (budget(budget_total_mb="8 GB"), "budget_total_mb"),
        (budget(budget_total_mb=8192.5), "budget_total_mb"),
        (budget(budget_vcpus=True), "budget_vcpus"),
        (budget(budget_vcpus=0), "budget_vcpus"),
        (budget(budget_disk_type="nvme"), "budget_disk_type"),
        (budget(budget_api_pool_size=-1), "budget_api_pool_size"),
        (budget(budget_api_pool_per_vcpu=0), "budget_api_pool_per_vcpu"),
        (budget(budget_api_max_overflow="150%"), "budget_api_max_overflow"),
        (budget(budget_api_max_overflow="five"), "budget_api_max_overflow"),
        (budget(budget_worker_job_db_connections=0), "budget_worker_job_db_connections"),
        (budget(budget_api_max_overflow=-1), "budget_api_max_overflow"),
        (budget(budget_db_connection_reserve=2), "budget_db_connection_reserve"),
        (budget(budget_postgres_autovacuum_max_workers=0), "budget_postgres_autovacuum_max_workers"),
        (budget(postgres_version=12), "postgres_version"),
        (budget(budget_api_worker_threads=0), "budget_api_worker_threads"),
        (budget(budget_worker_job_pids=0), "budget_worker_job_pids"),
        (budget(budget_api_cpu_shares=1), "budget_api_cpu_shares"),
        (budget(budget_worker_cpu_shares=262145), "budget_worker_cpu_shares"),
        (budget(postgres_version=19), "postgres_version"),
        (budget(shares={"postgres": -1}), "budget_shares.postgres"),
        (budget(shares={"redis": "150%"}), "budget_shares.redis"),
        (budget(shares={"redis": "-5%"}), "budget_shares.redis"),
        (budget(shares={"api": "lots"}), "budget_shares.api"),
        (budget(shares={"api": "25 %"}), "budget_shares.api"),
        (budget(shares={"worker": 1.5}), "budget_shares.worker"),
        (budget(shares={"headroom": None}), "budget_shares.headroom"),
        (budget(shares={"celery": 512}), "celery"),
        (budget(budget_shares=["postgres"]), "budget_shares"),
        (budget(budget_shares_typo=1), "budget_shares_typo"),
        ({key: value for key, value in DEFAULT.items() if key != "budget_vcpus"}, "budget_vcpus"),
        ("8192", "memory_plan takes a dict"),
    ],
)
def test_nonsense_input_is_refused_naming_it(inputs: object, named: str) -> None:
    assert named in refusal(inputs)


def test_a_missing_share_is_named() -> None:
    inputs = budget()
    del inputs["budget_shares"]["proxy"]
    assert "budget_shares lacks proxy" in refusal(inputs)


# --- The Ansible filter ------------------------------------------------------------------------


def test_the_filter_returns_the_plan_and_raises_ansibles_error_with_the_table() -> None:
    memory_plan = FilterModule().filters()["memory_plan"]
    assert memory_plan(DEFAULT)["postgres"]["settings"]["shared_buffers"] == "512MB"
    with pytest.raises(AnsibleFilterError, match=r"(?s)over-committed.*Memory plan: 1024 MB host"):
        memory_plan(budget(budget_total_mb=1024))


# --- PostgreSQL's SHOW units --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kb", "shown"),
    [
        (2048 * 1024, "2GB"),
        (1536 * 1024, "1536MB"),
        (9039, "9039kB"),
        (16384, "16MB"),
        (1024**3, "1TB"),
        (1024**3 + 1024, "1048577MB"),
        (0, "0"),
    ],
)
def test_memory_is_shown_in_the_largest_unit_that_divides_evenly(kb: int, shown: str) -> None:
    assert units.show_memory(kb) == shown
    assert units.parse_memory(shown) == kb


def test_whole_blocks_and_reals() -> None:
    assert [units.whole_blocks(kb) for kb in (1966, 1960, 7)] == [1960, 1960, 0]
    assert [units.show_real(value) for value in (0.9, 1.1, 4.0)] == ["0.9", "1.1", "4"]
    with pytest.raises(ValueError, match="not a PostgreSQL memory size"):
        units.parse_memory("512")
