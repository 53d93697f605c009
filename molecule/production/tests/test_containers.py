"""Every container on the production hosts runs bounded and confined (CIS Docker Benchmark 5.x):
a memory limit, a PIDs limit and CPU shares (from the memory budget), no-new-privileges, Docker's
AppArmor profile where the kernel offers AppArmor, and no port published on a wildcard address.

Runs after test_app.py (file order), which leaves the converged release running; its helpers find
the API and worker containers.
"""

from __future__ import annotations

import json

import yaml
from conftest import resolve
from test_app import CURRENT, WORKER, _api, _inspect

# A published port bound to one of these is reachable on every interface of the host.
WILDCARDS = {"", "0.0.0.0", "::"}
NO_NEW_PRIVILEGES = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}


def _running(host) -> dict[str, dict]:
    """docker inspect of every running container, by name."""
    ids = host.check_output("docker ps --quiet --no-trunc").split()
    assert ids, "no container runs on the host: the app's release should"
    # Container ids are hex digits: nothing to quote.
    inspected = json.loads(host.check_output("docker inspect " + " ".join(ids)))
    return {found["Name"].lstrip("/"): found for found in inspected}


def test_every_container_has_memory_pids_and_cpu_limits(host) -> None:
    unbounded = {
        name: {key: found["HostConfig"].get(key) for key in ("Memory", "PidsLimit", "CpuShares")}
        for name, found in _running(host).items()
        if not all((found["HostConfig"].get(key) or 0) > 0 for key in ("Memory", "PidsLimit", "CpuShares"))
    }
    assert not unbounded, f"containers without a memory limit, PIDs limit or CPU shares: {unbounded}"


def test_every_container_runs_without_new_privileges(host) -> None:
    missing = {
        name: found["HostConfig"].get("SecurityOpt")
        for name, found in _running(host).items()
        if not NO_NEW_PRIVILEGES & set(found["HostConfig"].get("SecurityOpt") or [])
    }
    assert not missing, f"containers without no-new-privileges: {missing}"


def test_every_container_has_dockers_apparmor_profile_where_the_kernel_offers_it(host) -> None:
    """What the roles decide from Ansible's apparmor fact (the same path): docker-default where the
    kernel has AppArmor (the docker role installed the parser that loads it), no profile where not."""
    apparmor = host.file("/sys/kernel/security/apparmor").exists
    for name, found in _running(host).items():
        options = found["HostConfig"].get("SecurityOpt") or []
        if apparmor:
            assert "apparmor=docker-default" in options, (name, options)
            assert found["AppArmorProfile"] == "docker-default", (name, found["AppArmorProfile"])
        else:
            assert not [option for option in options if option.startswith("apparmor")], (name, options)


def test_no_port_is_published_on_a_wildcard_address(host) -> None:
    """Asked for (HostConfig.PortBindings) and bound (NetworkSettings.Ports): never 0.0.0.0, :: or
    an empty address, which would publish the port on every interface."""
    wildcard = []
    for name, found in _running(host).items():
        asked = found["HostConfig"].get("PortBindings") or {}
        bound = found["NetworkSettings"].get("Ports") or {}
        for port, bindings in [*asked.items(), *bound.items()]:
            wildcard += [
                (name, port, binding) for binding in bindings or [] if binding["HostIp"] in WILDCARDS
            ]
    assert not wildcard, f"ports published on a wildcard address: {wildcard}"


def test_the_apps_containers_take_the_budgets_limits(host) -> None:
    """The figures group_vars/all/app.yml wires from the memory budget, in each container (and in the
    release's compose file for the one-off migrate)."""
    names = [
        "app_api_pids_limit",
        "app_api_cpu_shares",
        "app_worker_pids_limit",
        "app_worker_cpu_shares",
        "app_migrate_pids_limit",
        "app_migrate_cpu_shares",
    ]
    wired = resolve(host, "[" + ", ".join(f"{name} | int" for name in names) + "]")
    assert isinstance(wired, list)
    expected = dict(zip(names, wired, strict=True))
    assert all(value > 0 for value in expected.values()), expected
    api = _inspect(host, _api(host))["HostConfig"]
    worker = _inspect(host, WORKER)["HostConfig"]
    assert (api["PidsLimit"], api["CpuShares"]) == (
        expected["app_api_pids_limit"],
        expected["app_api_cpu_shares"],
    )
    assert (worker["PidsLimit"], worker["CpuShares"]) == (
        expected["app_worker_pids_limit"],
        expected["app_worker_cpu_shares"],
    )
    # The API is favoured over the background work when the vCPUs are contended.
    assert api["CpuShares"] > worker["CpuShares"]
    migrate = yaml.safe_load(host.file(f"{CURRENT}/compose.yaml").content_string)["services"]["migrate"]
    assert (migrate["pids_limit"], migrate["cpu_shares"]) == (
        expected["app_migrate_pids_limit"],
        expected["app_migrate_cpu_shares"],
    )


def test_each_process_opens_at_most_the_connections_the_budget_counts(host) -> None:
    """max_connections counts each API process's pool plus overflow and each worker process's pool
    (group_vars/all/budget.yml): the worker runs with exactly its own pool and no overflow, the API with
    the budget's pool and overflow, as the containers' environment shows."""
    plan = resolve(host, "budget_plan")
    assert isinstance(plan, dict)

    def environment(container: str) -> dict[str, str]:
        pairs = [item.split("=", 1) for item in _inspect(host, container)["Config"]["Env"]]
        return dict(pairs)

    worker = environment(WORKER)
    assert (worker["DB_POOL_SIZE"], worker["DB_MAX_OVERFLOW"]) == (str(plan["worker"]["db_connections"]), "0")
    api = environment(_api(host))
    assert (api["DB_POOL_SIZE"], api["DB_MAX_OVERFLOW"]) == (
        str(plan["api"]["pool_size"]),
        str(plan["api"]["max_overflow"]),
    )
