"""The Prometheus alert rules (roles/monitoring/templates/etc/prometheus/rules/toolkit.rules.yml.j2).

The template is rendered with plain jinja2 and the role's defaults, then checked and unit-tested with
promtool (tests/promtool/toolkit.rules.test.yml): the distribution's own, which
scripts/get-prometheus-tools.sh puts in .local/bin (make rules-test), or $PROMTOOL. Without promtool the
promtool tests are skipped, unless PROMTOOL_REQUIRED=1 (make rules-test sets it) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
TEMPLATE = ROLE / "templates" / "etc" / "prometheus" / "rules" / "toolkit.rules.yml.j2"
PROMTOOL_TESTS = ROOT / "tests" / "promtool" / "toolkit.rules.test.yml"
RULES_NAME = "toolkit.rules.yml"
SEVERITIES = {"critical", "warning", "none"}


def role_defaults() -> dict[str, Any]:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert isinstance(defaults, dict)
    return defaults


def render(**overrides: Any) -> str:
    """The rules as Ansible's template module writes them (ansible_managed is all Ansible adds)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    variables = {**role_defaults(), "ansible_managed": "Ansible managed", **overrides}
    return env.from_string(TEMPLATE.read_text()).render(**variables)


def rules_of(text: str) -> dict[str, dict[str, Any]]:
    """Alert name -> rule, from rendered rules (an alert defined twice is an error)."""
    rules: dict[str, dict[str, Any]] = {}
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert name not in rules, f"alert {name} defined twice"
            rules[name] = rule
    return rules


def promtool_path() -> Path | None:
    candidate = Path(os.environ.get("PROMTOOL") or ROOT / ".local" / "bin" / "promtool")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(str(candidate)) if not candidate.is_absolute() else None
    return Path(found) if found else None


@pytest.fixture(scope="module")
def promtool() -> Path:
    path = promtool_path()
    if path is None:
        message = "no promtool: run scripts/get-prometheus-tools.sh (make rules-test) or set PROMTOOL"
        if os.environ.get("PROMTOOL_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"rc {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture
def rendered_dir(tmp_path: Path) -> Path:
    """The rendered rules with the promtool tests beside them (their rule_files path is relative)."""
    (tmp_path / RULES_NAME).write_text(render())
    shutil.copy(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    return tmp_path


def test_promtool_check_rules(promtool: Path, rendered_dir: Path) -> None:
    result = run([str(promtool), "check", "rules", RULES_NAME], rendered_dir)
    assert result.returncode == 0, shown(result)
    assert f"SUCCESS: {len(rules_of(render()))} rules found" in result.stdout, shown(result)


def test_promtool_unit_tests(promtool: Path, rendered_dir: Path) -> None:
    result = run([str(promtool), "test", "rules", PROMTOOL_TESTS.name], rendered_dir)
    assert result.returncode == 0, shown(result)


def test_every_alert_has_a_promtool_test() -> None:
    alerts = set(rules_of(render()))
    tests = yaml.safe_load(PROMTOOL_TESTS.read_text())
    assert tests["rule_files"] == [RULES_NAME]
    tested: set[str] = set()
    firing: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            tested.add(check["alertname"])
            if check.get("exp_alerts"):
                firing.add(check["alertname"])
    assert sorted(alerts - tested) == [], "alerts without a test case in tests/promtool"
    assert sorted(tested - alerts) == [], "test cases for alerts the rules do not define"
    assert sorted(alerts - firing) == [], "alerts never shown firing in tests/promtool"


def test_labels_and_annotations() -> None:
    for name, rule in rules_of(render()).items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["runbook"] == f"docs/MONITORING.md#{name.lower()}", name
        summary = rule["annotations"]["summary"]
        assert "\n" not in summary.strip(), f"{name}: the summary is one line"
    assert rules_of(render())["Watchdog"]["labels"]["severity"] == "none"


def test_template_variables_are_defaults_and_in_the_spec() -> None:
    used = set(re.findall(r"\{\{\s*(monitoring_[a-z0-9_]+)", TEMPLATE.read_text()))
    assert used, "the template takes its thresholds from monitoring_* variables"
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    defaults = role_defaults()
    for name in sorted(used):
        assert name in defaults, f"{name} has no default in roles/monitoring/defaults/main.yml"
        assert name in options, f"{name} is not in roles/monitoring/meta/argument_specs.yml"
        assert options[name]["default"] == defaults[name], name


@pytest.mark.parametrize(
    ("variable", "value", "alert", "fragment"),
    [
        ("monitoring_disk_max_percent", 50, "DiskFull", "> 50"),
        ("monitoring_inodes_max_percent", 75, "InodesFull", "> 75"),
        ("monitoring_memory_available_min_percent", 15, "MemoryLow", "< 15"),
        ("monitoring_memory_psi_max_percent", 20, "MemoryPressure", "> 20"),
        ("monitoring_api_5xx_max_percent", 2.5, "ApiErrors5xx", "> 2.5"),
        ("monitoring_api_p99_max_seconds", 0.75, "ApiLatencyP99", "> 0.75"),
        ("monitoring_jobs_queued_max", 500, "JobQueueDeep", "> 500"),
        ("monitoring_jobs_oldest_age_max_seconds", 1200, "JobQueueStale", "> 1200"),
        ("monitoring_jobs_failed_max_per_hour", 20, "JobsFailing", "> 20"),
        ("monitoring_pg_connections_max_percent", 90, "PostgresConnectionsHigh", "> 90"),
        ("monitoring_pg_long_transaction_seconds", 60, "PostgresLongTransaction", "> 60"),
        ("monitoring_pg_xid_age_max", 500000000, "PostgresXidAge", "> 500000000"),
        ("monitoring_wal_max_waiting", 128, "WalArchivingLagging", "> 128"),
        ("monitoring_backup_max_age_hours", 50, "BackupTooOld", "> 50"),
        ("monitoring_tls_min_days", 30, "CertificateExpiring", "< 30"),
        ("monitoring_llm_daily_budget_usd", 25, "LlmDailySpendHigh", "> 25.0"),
    ],
)
def test_thresholds_come_from_the_variables(variable: str, value: float, alert: str, fragment: str) -> None:
    default_rule = rules_of(render())[alert]
    rule = rules_of(render(**{variable: value}))[alert]
    assert fragment in " ".join(rule["expr"].split()), rule["expr"]
    assert fragment not in " ".join(default_rule["expr"].split()), "pick a value unlike the default"
    assert f"{value}" in rule["annotations"]["summary"], "the summary names the limit"


def test_string_thresholds_from_the_inventory_render_as_numbers() -> None:
    """Extra vars (-e monitoring_disk_max_percent=50) arrive as strings: | int makes them numbers."""
    rule = rules_of(render(monitoring_disk_max_percent="50", monitoring_api_p99_max_seconds="1.5"))
    assert "> 50" in rule["DiskFull"]["expr"]
    assert "> 1.5" in rule["ApiLatencyP99"]["expr"]
