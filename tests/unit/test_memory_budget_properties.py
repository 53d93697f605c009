"""Property tests of the memory plan: every budget it accepts fits the host (checked from the rendered
settings, parsed back from PostgreSQL's SHOW units), every budget it refuses breaks a rule, and
every nonsense input is refused with its name."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from memory_budget import library

plan_module = library("plan")
units = library("guc_units")
BudgetError = plan_module.BudgetError
make_plan = plan_module.make_plan

CONSUMERS = ("postgres", "redis", "api", "worker", "proxy", "monitoring", "os_reserve", "headroom")
LEAST_MB = {"postgres": 256, "redis": 32, "worker": 64, "proxy": 32, "monitoring": 128, "os_reserve": 256}
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def percent(value: int) -> str:
    """A percent string with up to two decimals, from hundredths of a percent."""
    return f"{value // 100}.{value % 100:02d}%" if value % 100 else f"{value // 100}%"


def share_mb(share: int | str, total_mb: int) -> int:
    if isinstance(share, str):
        hundredths = round(float(share[:-1]) * 100)
        return total_mb * hundredths // 10000
    return share


def inputs_from(draw: st.DrawFn, total_mb: int, shares: dict[str, int | str], vcpus: int) -> dict[str, Any]:
    return {
        "budget_total_mb": total_mb,
        "budget_vcpus": vcpus,
        "budget_disk_type": draw(st.sampled_from(["ssd", "hdd", "network"])),
        "budget_shares": shares,
        "budget_api_workers": draw(st.sampled_from([0, 0, 1, 2])),
        "budget_api_worker_mb": draw(st.integers(64, 1024)),
        "budget_api_pool_size": draw(st.integers(0, 30)),
        "budget_api_pool_per_vcpu": draw(st.integers(1, 20)),
        "budget_api_max_overflow": draw(
            st.one_of(st.integers(0, 20), st.sampled_from(["0%", "50%", "100%"]))
        ),
        "budget_worker_db_connections": draw(st.integers(0, 50)),
        "budget_worker_job_db_connections": draw(st.integers(1, 6)),
        "budget_worker_replicas": 0,
        "budget_worker_concurrency": 0,
        "budget_worker_process_mb": draw(st.integers(16, 512)),
        "budget_worker_job_mb": draw(st.integers(16, 512)),
        "budget_db_connection_reserve": draw(st.integers(5, 50)),
        "budget_postgres_autovacuum_max_workers": draw(st.integers(1, 3)),
        "budget_api_worker_threads": draw(st.integers(1, 200)),
        "budget_worker_job_pids": draw(st.integers(1, 64)),
        "budget_api_cpu_shares": draw(st.integers(2, 262144)),
        "budget_worker_cpu_shares": draw(st.integers(2, 262144)),
        "postgres_version": draw(st.integers(13, 18)),
    }


@st.composite
def fitting_budgets(draw: st.DrawFn) -> dict[str, Any]:
    """Budgets built to fit: minimum shares met, the shares within the total, the API share holding
    its workers, at most 3 autovacuum workers and connections few enough that work_mem stays above
    its 64 kB floor, so PostgreSQL's worst case stays below 15/16 of its share."""
    vcpus = draw(st.integers(1, 16))
    shares: dict[str, int | str] = {}
    total_mb = draw(st.integers(1200, 262144))
    inputs = inputs_from(draw, total_mb, shares, vcpus)
    workers = inputs["budget_api_workers"] or 1
    one_worker = inputs["budget_worker_process_mb"] + inputs["budget_worker_job_mb"]
    least = LEAST_MB | {
        "api": workers * inputs["budget_api_worker_mb"],
        "worker": max(LEAST_MB["worker"], one_worker),
        "headroom": 0,
    }
    total_mb = max(total_mb, sum(least.values()))
    inputs["budget_total_mb"] = total_mb
    spare = total_mb - sum(least.values())
    for consumer in CONSUMERS:
        extra = draw(st.integers(0, spare))
        spare -= extra
        mb = least[consumer] + extra
        # Half of the time as the percent that gives back at least the MB needed (rounded up).
        hundredths = math.ceil(mb * 10000 / total_mb)
        as_percent = draw(st.booleans()) and share_mb(percent(hundredths), total_mb) <= mb + spare
        if as_percent:
            spare -= share_mb(percent(hundredths), total_mb) - mb
        shares[consumer] = percent(hundredths) if as_percent else mb
    return inputs


@st.composite
def any_budgets(draw: st.DrawFn) -> dict[str, Any]:
    """A fitting budget, then up to three changes that may break it: a smaller host, one share of any
    size, more autovacuum workers, more connections, more API workers."""
    inputs = draw(fitting_budgets())
    total = inputs["budget_total_mb"]
    changes = {
        "budget_total_mb": st.integers(1, total),
        "budget_postgres_autovacuum_max_workers": st.integers(1, 20),
        "budget_worker_db_connections": st.integers(0, 5000),
        "budget_api_workers": st.integers(0, 16),
        "budget_worker_replicas": st.integers(0, 8),
        "budget_worker_concurrency": st.integers(0, 16),
    }
    for change in draw(st.lists(st.sampled_from([*changes, "share"]), max_size=3)):
        if change == "share":
            consumer = draw(st.sampled_from(CONSUMERS))
            inputs["budget_shares"][consumer] = draw(
                st.one_of(st.integers(0, total), st.integers(0, 10000).map(percent))
            )
        else:
            inputs[change] = draw(changes[change])
    return inputs


def check_fits(inputs: dict[str, Any], plan: dict[str, Any]) -> None:
    """The plan fits its shares; memory figures recomputed from the rendered settings."""
    total = inputs["budget_total_mb"]
    shares = {consumer: share_mb(value, total) for consumer, value in inputs["budget_shares"].items()}
    pg = plan["postgres"]
    settings_ = pg["settings"]
    kb = {name: units.parse_memory(settings_[name]) for name in ("shared_buffers", "wal_buffers", "work_mem")}
    kb["maintenance_work_mem"] = units.parse_memory(settings_["maintenance_work_mem"])
    for name, value in kb.items():
        assert units.show_memory(value) == settings_[name], f"{name} is not written as SHOW prints it"
    assert kb["shared_buffers"] % 8 == 0
    assert kb["wal_buffers"] % 8 == 0
    backends = int(settings_["max_connections"]) + int(settings_["max_parallel_workers"])
    worst_kb = (
        kb["shared_buffers"]
        + kb["wal_buffers"]
        + backends * kb["work_mem"] * 2
        + int(settings_["autovacuum_max_workers"]) * kb["maintenance_work_mem"]
    )
    assert worst_kb <= pg["memory_mb"] * 1024 == shares["postgres"] * 1024
    assert kb["maintenance_work_mem"] >= 1024
    assert kb["work_mem"] >= 64

    api = plan["api"]
    # Each API process's pool: explicit, or its part of the per-vCPU total (rounded up, so the
    # processes together hold at least that); the overflow a count or a percent of it.
    pool = inputs["budget_api_pool_size"]
    if not pool:
        pool = api["pool_size"]
        assert api["workers"] * pool >= inputs["budget_api_pool_per_vcpu"] * inputs["budget_vcpus"]
        assert api["workers"] * (pool - 1) < inputs["budget_api_pool_per_vcpu"] * inputs["budget_vcpus"]
    overflow = inputs["budget_api_max_overflow"]
    if isinstance(overflow, str):
        overflow = pool * int(overflow[:-1]) // 100
    assert (api["pool_size"], api["max_overflow"]) == (pool, overflow)
    # Each worker process's pool: explicit, or 2 plus budget_worker_job_db_connections per job.
    worker_connections = inputs["budget_worker_db_connections"] or (
        2 + plan["worker"]["concurrency"] * inputs["budget_worker_job_db_connections"]
    )
    assert plan["worker"]["db_connections"] == worker_connections
    expected_connections = (
        api["workers"] * (pool + overflow)
        + plan["worker"]["replicas"] * worker_connections
        + inputs["budget_db_connection_reserve"]
    )
    assert pg["max_connections"] == int(settings_["max_connections"]) == expected_connections
    assert int(settings_["max_parallel_workers"]) <= min(
        inputs["budget_vcpus"], int(settings_["max_worker_processes"])
    )

    assert 0 < plan["redis"]["maxmemory_mb"] < plan["redis"]["memory_mb"] == shares["redis"]
    worker = plan["worker"]
    assert worker["replicas"] >= 1
    assert worker["concurrency"] >= 1
    assert worker["replicas"] * worker["replica_memory_mb"] <= worker["memory_mb"] == shares["worker"]
    assert (
        inputs["budget_worker_process_mb"] + worker["concurrency"] * inputs["budget_worker_job_mb"]
        <= worker["replica_memory_mb"]
    )
    assert api["workers"] >= 1
    assert api["workers"] * api["worker_memory_mb"] <= api["memory_mb"] == shares["api"]
    if not inputs["budget_api_workers"]:
        assert api["workers"] <= inputs["budget_vcpus"]
    limits = [pg["memory_mb"], plan["redis"]["memory_mb"], api["memory_mb"]]
    limits += [
        plan["worker"]["memory_mb"],
        plan["proxy"]["memory_mb"],
        plan["monitoring_mb"],
        plan["os_reserve_mb"],
    ]
    assert sum(limits) + plan["headroom_mb"] == total
    assert plan["headroom_mb"] >= plan["headroom_min_mb"] == shares["headroom"]

    # Every container gets a positive PIDs limit that holds its processes' threads, and a CPU weight
    # in Docker's range; the worker replicas together weigh no more than the background share.
    threads = inputs["budget_api_worker_threads"]
    for container in ("api", "worker", "migrate", "proxy"):
        assert plan[container]["pids_limit"] > 0
        assert 2 <= plan[container]["cpu_shares"] <= 262144
    assert api["pids_limit"] > api["workers"] * threads
    assert worker["pids_limit"] > threads + worker["concurrency"] * inputs["budget_worker_job_pids"]
    assert plan["migrate"]["pids_limit"] > threads
    assert api["cpu_shares"] == plan["proxy"]["cpu_shares"] == inputs["budget_api_cpu_shares"]
    assert plan["migrate"]["cpu_shares"] == inputs["budget_worker_cpu_shares"]
    assert worker["cpu_shares"] == max(2, inputs["budget_worker_cpu_shares"] // worker["replicas"])


@FAST
@given(fitting_budgets())
def test_every_budget_that_fits_is_accepted_and_its_plan_fits(inputs: dict[str, Any]) -> None:
    check_fits(inputs, make_plan(inputs))


@FAST
@given(any_budgets())
def test_a_budget_is_accepted_exactly_when_it_fits(inputs: dict[str, Any]) -> None:
    total = inputs["budget_total_mb"]
    shares = {consumer: share_mb(value, total) for consumer, value in inputs["budget_shares"].items()}
    try:
        plan = make_plan(inputs)
    except BudgetError as refused:
        event("refused")
        message = str(refused)
        assert message.startswith("memory budget refused:\n- ")
        assert f"Memory plan: {total} MB host" in message, "a refusal shows the table"
        broken = [f"budget_shares.{c} is" for c in LEAST_MB if shares[c] < LEAST_MB[c]]
        if sum(shares.values()) > total:
            broken.append("over-committed")
        workers = inputs["budget_api_workers"] or min(
            inputs["budget_vcpus"], shares["api"] // inputs["budget_api_worker_mb"]
        )
        if workers == 0 or workers * inputs["budget_api_worker_mb"] > shares["api"]:
            broken.append("budget_shares.api is")
        process, job = inputs["budget_worker_process_mb"], inputs["budget_worker_job_mb"]
        vcpus = inputs["budget_vcpus"]
        replicas = inputs["budget_worker_replicas"] or max(
            1, min(vcpus // 2, shares["worker"] // (process + job))
        )
        replica_mb = shares["worker"] // replicas
        concurrency = inputs["budget_worker_concurrency"] or max(1, min((replica_mb - process) // job, vcpus))
        if replica_mb < process + concurrency * job:
            broken.append("budget_shares.worker is")
        if not broken:
            broken.append("PostgreSQL's worst case")
        for reason in broken:
            assert reason in message
    else:
        event("accepted")
        check_fits(inputs, plan)


NONSENSE = {
    "budget_total_mb": st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=3)),
    "budget_vcpus": st.one_of(st.integers(max_value=0), st.integers(min_value=1025), st.just("two")),
    "budget_disk_type": st.text(max_size=8).filter(lambda text: text not in ("ssd", "hdd", "network")),
    "budget_api_pool_size": st.one_of(st.integers(max_value=-1), st.none()),
    "budget_api_pool_per_vcpu": st.one_of(st.integers(max_value=0), st.just("10/vcpu")),
    "budget_api_max_overflow": st.one_of(st.integers(max_value=-1), st.just("101%"), st.just("half")),
    "budget_worker_job_db_connections": st.one_of(st.integers(max_value=0), st.booleans()),
    "budget_db_connection_reserve": st.integers(max_value=4),
    "budget_postgres_autovacuum_max_workers": st.one_of(st.integers(max_value=0), st.integers(min_value=65)),
    "budget_api_worker_threads": st.one_of(st.integers(max_value=0), st.booleans()),
    "budget_worker_job_pids": st.one_of(st.integers(max_value=0), st.just("16 pids")),
    "budget_api_cpu_shares": st.one_of(st.integers(max_value=1), st.integers(min_value=262145)),
    "budget_worker_cpu_shares": st.one_of(st.integers(max_value=1), st.floats()),
    "postgres_version": st.one_of(st.integers(max_value=12), st.integers(min_value=19), st.just("fifteen")),
}
BAD_SHARES = st.one_of(
    st.integers(max_value=-1),
    st.integers(10001, 99999).map(percent),
    st.text(alphabet="abc %-.", min_size=1, max_size=6).filter(lambda text: not text.rstrip("%").isdigit()),
    st.floats(allow_nan=True),
    st.booleans(),
)


@FAST
@given(fitting_budgets(), st.sampled_from(sorted(NONSENSE)), st.data())
def test_every_nonsense_input_is_refused_naming_it(
    inputs: dict[str, Any], name: str, data: st.DataObject
) -> None:
    inputs[name] = data.draw(NONSENSE[name])
    with pytest.raises(BudgetError, match=re.escape(name)):
        make_plan(inputs)


@FAST
@given(fitting_budgets(), st.sampled_from(CONSUMERS), BAD_SHARES)
def test_every_nonsense_share_is_refused_naming_it(
    inputs: dict[str, Any], consumer: str, value: object
) -> None:
    inputs["budget_shares"][consumer] = value
    with pytest.raises(BudgetError, match=re.escape(f"budget_shares.{consumer} must be")):
        make_plan(inputs)


@FAST
@given(fitting_budgets(), st.text(min_size=1, max_size=12).filter(lambda name: name not in CONSUMERS))
def test_an_unknown_consumer_is_refused_naming_it(inputs: dict[str, Any], consumer: str) -> None:
    inputs["budget_shares"][consumer] = 100
    with pytest.raises(BudgetError, match=f"unknown consumer.*{re.escape(consumer)}"):
        make_plan(inputs)
