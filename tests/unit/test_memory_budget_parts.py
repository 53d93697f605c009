"""Two hosts (budget_parts): a db host runs PostgreSQL only, an app host Redis, the API, the worker and
the proxy; each plans only what it runs (plugin_utils/memory_plan). One host running both stays the
default, with the plan it always had."""

from __future__ import annotations

from typing import Any

import pytest
from memory_budget import library
from test_memory_budget import DEFAULT, budget, refusal, shipped

plan_module = library("plan")
compare = library("compare")
units = library("guc_units")
make_plan = plan_module.make_plan

APP = ("redis", "api", "worker", "migrate", "proxy")


def db_host(remote: int = 40) -> dict[str, Any]:
    """The shipped 8 GB budget on a db host: PostgreSQL gets 75 %, the app's shares stay as shipped
    (and are ignored)."""
    inputs = shipped() | {"budget_parts": ["db"], "budget_remote_db_connections": remote}
    inputs["budget_shares"] = inputs["budget_shares"] | {"postgres": "75%"}
    return inputs


def app_host() -> dict[str, Any]:
    return shipped() | {"budget_parts": ["app"]}


def test_the_shipped_inputs_are_one_host_running_both_parts() -> None:
    inputs = shipped()
    assert (inputs["budget_parts"], inputs["budget_remote_db_connections"]) == (["db", "app"], 0)
    plan = make_plan(inputs)
    assert plan["parts"] == ["db", "app"]
    # 2 API workers x (10 + 5) + 1 replica x 10: what the host's own processes open.
    assert plan["db_connections"] == 40
    assert plan["postgres"]["max_connections"] == plan["db_connections"] + 10


def test_without_the_new_inputs_the_plan_is_the_one_host_plan() -> None:
    """Both inputs are optional: a dict without them plans one host running everything."""
    explicit = make_plan(DEFAULT | {"budget_parts": ["app", "db"], "budget_remote_db_connections": "0"})
    assert make_plan(DEFAULT) == explicit
    assert "parts:" not in explicit["table"]
    assert "from app hosts" not in explicit["table"]


def test_a_db_host_tunes_postgresql_for_the_app_hosts_connections() -> None:
    plan = make_plan(db_host())
    assert plan["parts"] == ["db"]
    assert plan["db_connections"] == 0
    for consumer in APP:
        assert plan[consumer] is None, consumer
    postgres = plan["postgres"]
    assert postgres["memory_mb"] == 6144
    assert postgres["max_connections"] == 40 + 10
    assert postgres["settings"]["max_connections"] == "50"
    # PGTune on the 6 GB share: shared_buffers a quarter, effective_cache_size three quarters.
    assert postgres["settings"]["shared_buffers"] == units.show_memory(6144 * 1024 // 4) == "1536MB"
    assert postgres["settings"]["effective_cache_size"] == "4608MB"
    assert postgres["worst_case_mb"] <= 6144
    # Only PostgreSQL, monitoring and the OS count: 8192 - 6144 - 320 - 448.
    assert (plan["monitoring_mb"], plan["os_reserve_mb"]) == (320, 448)
    assert (plan["headroom_mb"], plan["headroom_min_mb"]) == (1280, 1228)
    table = plan["table"]
    assert "\n  parts: db (PostgreSQL); on other hosts: app (" in table
    assert "max_connections 50 = 40 connections from app hosts + 10 reserve" in table
    assert "API workers" not in table
    for consumer in ("redis", "api", "worker", "proxy"):
        assert f"\n  {consumer:<12}{'-':>14}  on the app host(s)" in table


def test_a_db_host_with_no_app_host_connecting_yet_still_keeps_its_reserve() -> None:
    plan = make_plan(db_host(remote=0))
    assert plan["postgres"]["max_connections"] == 10
    assert "max_connections 10 = 0 connections from app hosts + 10 reserve" in plan["table"]


def test_a_db_host_ignores_the_app_shares_and_settings() -> None:
    """Shares and settings that would refuse the app mean nothing on a host without it."""
    inputs = db_host() | {
        "budget_api_workers": 50,
        "budget_worker_replicas": 8,
        "budget_worker_concurrency": 16,
    }
    inputs["budget_shares"] = {
        "postgres": "75%",
        "monitoring": "3.90625%",
        "os_reserve": "5.46875%",
        "headroom": "15%",
        "api": 1,
    }
    assert make_plan(inputs)["postgres"] == make_plan(db_host())["postgres"]


def test_an_app_host_plans_the_app_and_what_it_opens_to_the_db_host() -> None:
    both = make_plan(shipped())
    plan = make_plan(app_host())
    assert plan["parts"] == ["app"]
    assert plan["postgres"] is None
    assert plan["db_connections"] == both["db_connections"]
    assert plan["db_connections"] == (
        both["api"]["workers"] * (both["api"]["pool_size"] + both["api"]["max_overflow"])
        + both["worker"]["replicas"] * both["worker"]["db_connections"]
    )
    for consumer in APP:
        assert plan[consumer] == both[consumer], consumer
    # The postgres share is free on this host.
    assert plan["headroom_mb"] == both["headroom_mb"] + both["postgres"]["memory_mb"]
    table = plan["table"]
    assert table.splitlines()[0] == "Memory plan: 8192 MB host, 2 vCPU, ssd storage"
    assert "\n  parts: app (" in table
    assert (
        f"\n  postgres{'-':>18}  on the db host: {plan['db_connections']} connections from here = "
        "2 API workers x (10 pool + 5 overflow) + 1 x 10 worker\n"
    ) in table
    assert "budget_remote_db_connections" in table
    assert "shared_buffers" not in table


def test_an_app_host_needs_no_postgres_share_but_its_own() -> None:
    inputs = app_host()
    inputs["budget_shares"] = {k: v for k, v in inputs["budget_shares"].items() if k != "postgres"}
    assert make_plan(inputs)["postgres"] is None
    del inputs["budget_shares"]["redis"]
    assert "budget_shares lacks redis" in refusal(inputs)


def test_a_db_host_still_needs_its_own_shares_and_refuses_unknown_ones() -> None:
    inputs = db_host()
    inputs["budget_shares"] = {"monitoring": 320, "os_reserve": 448, "headroom": "15%"}
    assert "budget_shares lacks postgres" in refusal(inputs)
    inputs["budget_shares"] = db_host()["budget_shares"] | {"celery": 512}
    assert "unknown consumer(s) celery" in refusal(inputs)


def test_a_db_host_is_refused_when_the_app_hosts_connections_do_not_fit_its_share() -> None:
    message = refusal(db_host(remote=30000))
    assert "PostgreSQL's worst case of" in message
    assert "budget_remote_db_connections" in message
    assert "max_connections 30010 = 30000 connections from app hosts + 10 reserve" in message


def test_a_db_host_below_postgresql_s_minimum_share_is_refused() -> None:
    inputs = db_host()
    inputs["budget_shares"] = inputs["budget_shares"] | {"postgres": 200}
    assert "budget_shares.postgres is 200 MB, below the 256 MB postgres needs" in refusal(inputs)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "budget_parts must be a non-empty list"),
        ("db", "budget_parts must be a non-empty list"),
        (None, "budget_parts must be a non-empty list"),
        (["db", "web"], "budget_parts has unknown part(s) ['web']"),
        ([["db"]], "budget_parts has unknown part(s)"),
        (["app", "app"], "budget_parts names a part more than once"),
    ],
)
def test_nonsense_parts_are_refused(parts: object, message: str) -> None:
    assert message in refusal(budget(budget_parts=parts))


@pytest.mark.parametrize("remote", [-1, "many", True])
def test_nonsense_remote_connections_are_refused(remote: object) -> None:
    assert "budget_remote_db_connections" in refusal(budget(budget_remote_db_connections=remote))


def test_remote_connections_on_a_host_without_postgresql_are_refused() -> None:
    message = refusal(app_host() | {"budget_remote_db_connections": 40})
    assert "budget_remote_db_connections is 40, but this host runs no PostgreSQL" in message


def test_one_host_with_app_hosts_connecting_too_counts_both() -> None:
    plan = make_plan(budget(budget_remote_db_connections=20))
    assert plan["postgres"]["max_connections"] == 40 + 20 + 10
    assert plan["db_connections"] == 40
    assert (
        "max_connections 70 = 2 API workers x (10 pool + 5 overflow) + 1 x 10 worker + "
        "20 connections from app hosts + 10 reserve"
    ) in plan["table"]


def test_sizes_side_by_side_show_what_the_host_does_not_run_as_dashes() -> None:
    text, refused = compare.compare(db_host(), compare.parse_sizes("8,16"))
    rows = {line[:26].strip(): line[26:].split() for line in text.splitlines()[2:] if line.strip()}
    assert rows["postgres MB"] == ["6144", "12288"]
    assert rows["max_connections"] == ["50", "50"]
    assert rows["api MB"] == rows["uvicorn workers"] == ["-", "-"]
    assert not refused
    text, _ = compare.compare(app_host(), compare.parse_sizes("8"))
    rows = {line[:26].strip(): line[26:].split() for line in text.splitlines()[2:] if line.strip()}
    assert rows["postgres MB"] == rows["max_connections"] == rows["shared_buffers"] == ["-"]
    assert rows["uvicorn workers"] == ["2"]
