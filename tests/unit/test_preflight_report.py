"""The filters behind preflight's report (filter_plugins/preflight.py) and the vault it points at."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from preflight import preflight_problems, preflight_report

ROOT = Path(__file__).resolve().parents[2]
VAULT_VARIABLES = ["postgres_app_password", "redis_password", "app_jwt_secret", "backup_restic_password"]


def test_each_failed_item_of_a_looped_check_is_one_problem() -> None:
    result = {
        "failed": True,
        "msg": "One or more items failed",
        "results": [
            {"failed": False, "msg": "All assertions passed"},
            {"failed": True, "msg": "app_jwt_secret must be\n  at least 32 characters"},
            {"failed": True, "msg": "app_domain is an example domain"},
        ],
    }
    assert preflight_problems(result, "app") == [
        {"role": "app", "msg": "app_jwt_secret must be at least 32 characters"},
        {"role": "app", "msg": "app_domain is an example domain"},
    ]


def test_argument_spec_failures_list_the_errors_not_the_spec() -> None:
    result = {
        "failed": True,
        "msg": "Validation of arguments failed:\nargument 'redis_port' is of type str ... " + "x" * 5000,
        "argument_errors": ["argument 'redis_port' is of type str and we were unable to convert to int"],
        "argument_spec_data": {"redis_port": {"type": "int"}},
    }
    problems = preflight_problems(result, "redis")
    assert len(problems) == 1
    assert problems[0]["msg"].startswith("argument 'redis_port' is of type str")
    assert "roles/redis/meta/argument_specs.yml" in problems[0]["msg"]
    assert "x" * 100 not in problems[0]["msg"]


def test_a_plain_failure_keeps_its_message() -> None:
    result = {"failed": True, "msg": "'monitoring_api_url' is undefined"}
    assert preflight_problems(result, "monitoring") == [
        {"role": "monitoring", "msg": "'monitoring_api_url' is undefined"}
    ]


def test_the_report_names_the_file_to_edit_for_each_problem() -> None:
    problems = [
        {"role": "base", "msg": "base_deploy_authorized_keys entry 1 is not a key (~/.ssh/id_ed25519.pub)."},
        {"role": "redis", "msg": "redis_password is the placeholder of group_vars/vps/vault.yml.example."},
        {"role": "backup", "msg": "backup_restic_enabled is true: set backup_restic_password."},
    ]
    report = preflight_report(problems, "vps1", "main.yml", "vault.yml", VAULT_VARIABLES)
    lines = report.splitlines()
    assert lines[0].startswith("Preflight refused vps1: 3 problems (nothing was changed on the host).")
    assert lines[1].startswith("1. [base] base_deploy_authorized_keys")
    assert lines[1].endswith("-> edit main.yml")
    assert lines[2].endswith("-> edit vault.yml")
    assert lines[3].endswith("-> edit main.yml (backup_restic_password in vault.yml)")


def test_every_secret_of_the_vault_example_is_known_to_preflight() -> None:
    """A problem naming a vault secret must point at the vault: preflight's list holds every one."""
    vault = yaml.safe_load((ROOT / "inventories/production/group_vars/vps/vault.yml.example").read_text())
    playbook = yaml.safe_load((ROOT / "playbooks/preflight.yml").read_text())
    play = next(play for play in playbook if play.get("name") == "Preflight")
    assert set(vault) <= set(play["vars"]["preflight_vault_variables"])
    assert all(re.match(r"^replace-with-", value) for value in vault.values()), (
        "placeholders are refused by prefix"
    )
