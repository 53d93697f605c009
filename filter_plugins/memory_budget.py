"""Ansible filter ``memory_plan``: the whole host's memory plan from one budget.

``{{ budget_inputs | memory_plan }}`` (group_vars/all/budget.yml) returns PostgreSQL's settings
(PGTune's web profile applied to PostgreSQL's share, written as ``SHOW`` prints them), its
max_connections from the application's pools, Redis's maxmemory, the uvicorn worker count, every
service's memory ceiling, the containers' PIDs limits and CPU shares and a capacity table; an
over-committed or nonsense budget fails with a message that names the problem and shows the table.
A host that runs only the db or the app part (``budget_parts``) gets the plan of what it runs, the
rest None, and its app processes' connections to PostgreSQL (``db_connections``).
``{{ budget_total_mb | budget_host_problems(budget_vcpus, tolerance, files) }}`` (playbooks/preflight.yml)
lists why the budget is bigger than the host the files (its meminfo and cgroup limits) describe.
The logic is the package ``plugin_utils/memory_plan`` (see its modules' docstrings for the formulas
and where they deliberately differ from PGTune), loaded from beside this directory as Ansible loads
plugins: by path.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

PACKAGE = "memory_plan"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "plugin_utils" / PACKAGE


def library(module: str) -> ModuleType:
    """``memory_plan.<module>``; the package is registered under its own name on first use, so its
    modules import each other normally (and the tests import them through this function)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {PACKAGE} from {PACKAGE_DIR}")
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{module}")


def memory_plan(inputs: object) -> dict[str, object]:
    """The plan for the budget ``inputs``; AnsibleFilterError (with the table) when it is refused."""
    plan = library("plan")
    try:
        return plan.make_plan(inputs)
    except plan.BudgetError as refused:
        # Imported here: the package and its tests run without Ansible.
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(str(refused)) from None


def budget_host_problems(
    total_mb: object, vcpus: object, tolerance_percent: object, contents: Mapping[str, str]
) -> list[str]:
    """Why the budget does not fit the host: ``contents`` maps the files
    ``memory_plan.host.FILES`` to their base64 content (what ``slurp`` returns; missing ones are
    left out). An empty list when it fits."""
    host = library("host")
    files = {path: base64.b64decode(text).decode(errors="replace") for path, text in contents.items()}
    try:
        return host.host_problems(total_mb, vcpus, tolerance_percent, files)
    except host.BudgetError as refused:
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(str(refused)) from None


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Callable[..., object]]:
        return {"memory_plan": memory_plan, "budget_host_problems": budget_host_problems}
