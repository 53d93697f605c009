"""`make plan`: the memory plan of each host of an inventory, as a plain table, and optionally the
same budget at other host sizes side by side (SIZES).

playbooks/plan.yml gathers, read-only, what the plan needs of each host (its budget inputs as the
inventory and group_vars/all make them, and the PostgreSQL version its distribution runs); this script
computes the plans with the memory_plan filter's own code (plugin_utils/memory_plan) and prints them
without Ansible's decoration. Exit status: 0 when every plan fits, 1 when one does not (its reasons
are printed), 2 when the inventory could not be read.

Usage: scripts/plan.py --inventory inventories/local/hosts.yml [--sizes 4,8,16,32] [-- ANSIBLE_ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "filter_plugins"))

from memory_budget import library  # noqa: E402

plan = library("plan")
compare = library("compare")
inputs_module = library("inputs")


def gather(inventory: str, ansible_args: list[str], directory: Path) -> tuple[list[dict[str, Any]], str]:
    """Run playbooks/plan.yml; each host's record (in inventory order) and the playbook's output."""
    environment = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    ansible = Path(sys.executable).parent / "ansible-playbook"
    done = subprocess.run(
        [
            str(ansible if ansible.exists() else "ansible-playbook"),
            "-i",
            inventory,
            str(ROOT / "playbooks" / "plan.yml"),
            "-e",
            f"plan_dir={directory}",
            *ansible_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        cwd=ROOT,
        env=environment,
    )
    records = [json.loads(path.read_text()) for path in directory.glob("*.json")]
    return sorted(records, key=lambda record: record["order"]), done.stdout


def _source(record: dict[str, Any]) -> str:
    version = record["inputs"].get("postgres_version")
    if record["version_known"] and record["release"].strip():
        return f"PostgreSQL {version}, what {record['release'].strip()} runs"
    if record["version_known"]:
        return f"PostgreSQL {version}, set by the inventory (postgres_version)"
    return (
        f"host not reached: planned for PostgreSQL {version} (Debian 13); a Debian 12 host runs 15 "
        "(set postgres_version: 15 in the inventory to plan for it)"
    )


def show_host(record: dict[str, Any], sizes: str | None) -> bool:
    """Print one host's plan (and its sizes side by side); False when something does not fit."""
    fits = True
    print(f"== {record['host']} ({_source(record)})")
    try:
        derived = plan.derive(record["inputs"])
    except inputs_module.BudgetError as nonsense:
        print(f"refused: {nonsense}\n")
        return False
    print(derived.table)
    if derived.problems:
        fits = False
        print("\nrefused:")
        print("\n".join(f"- {problem}" for problem in derived.problems))
    if sizes:
        text, refused = compare.compare(record["inputs"], compare.parse_sizes(sizes))
        print(f"\n{text}")
        fits = fits and not refused
    print()
    return fits


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--sizes", help="host sizes in GB (or GB:vCPUs), e.g. 4,8,16,32")
    parser.add_argument("ansible_args", nargs="*", help="passed to ansible-playbook (after --)")
    arguments = parser.parse_args()
    if arguments.sizes:
        try:
            compare.parse_sizes(arguments.sizes)
        except inputs_module.BudgetError as wrong:
            print(f"make plan: {wrong}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="toolkit-plan-") as directory:
        records, output = gather(arguments.inventory, arguments.ansible_args, Path(directory))
    if not records:
        print(output[-4000:], file=sys.stderr)
        print(f"make plan: no host of {arguments.inventory} could be planned (above: why)", file=sys.stderr)
        return 2
    fits = [show_host(record, arguments.sizes) for record in records]
    return 0 if all(fits) else 1


if __name__ == "__main__":
    sys.exit(main())
