"""The monitoring role's Prometheus and Alertmanager configurations, rendered by Ansible from the
role's variables and checked with the tools the hosts run: `promtool check config` and
`amtool check-config` (Debian's, from scripts/get-prometheus-tools.sh; make rules-test requires them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
TEMPLATES = {
    "prometheus.yml": "etc/prometheus/prometheus.yml.j2",
    "alertmanager.yml": "etc/prometheus/alertmanager.yml.j2",
    "blackbox.yml": "etc/prometheus/blackbox.yml.j2",
    "toolkit.rules.yml": "etc/prometheus/rules/toolkit.rules.yml.j2",
}
# A host running both parts in production: every scrape job, a dead man's switch.
PRODUCTION = {
    "monitoring_api_metrics_targets": ["127.0.0.1:8000"],
    "monitoring_worker_metrics_targets": ["127.0.0.1:9111", "127.0.0.1:9112"],
    "monitoring_traefik_metrics_targets": ["127.0.0.1:8082"],
    "monitoring_probe_urls": ["http://127.0.0.1:8000/health/ready"],
    "monitoring_probe_tls_endpoints": ["127.0.0.1:443"],
    "monitoring_tls_domain": "api.example.org",
    "monitoring_deadman_url": "https://hc-ping.com/0b9f0c1e-0000-4000-8000-000000000000",
}


def _tool(name: str) -> str:
    found = os.environ.get(name.upper()) or str(ROOT / ".local" / "bin" / name)
    if not Path(found).is_file():
        message = f"no {name}: run scripts/get-prometheus-tools.sh (make rules-test) or set {name.upper()}"
        if os.environ.get("PROMTOOL_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def render(tmp_path: Path, extra: dict[str, Any]) -> Path:
    """Render the templates with the role's defaults and vars plus ``extra``, as the role would."""
    out = tmp_path / "rendered"
    out.mkdir(parents=True)
    playbook = tmp_path / "render.yml"
    tasks = [
        {
            "name": f"Render {name}",
            "ansible.builtin.template": {"src": str(ROLE / "templates" / src), "dest": str(out / name)},
        }
        for name, src in TEMPLATES.items()
    ]
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render",
                    "hosts": "vps1",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
                    "tasks": tasks,
                }
            ]
        )
    )
    # The controller's own Python (the venv's) runs the template module on localhost.
    variables = {"ansible_python_interpreter": sys.executable, **extra}
    (tmp_path / "extra.json").write_text(json.dumps(variables))
    binary = shutil.which("ansible-playbook") or str(ROOT / ".venv" / "bin" / "ansible-playbook")
    done = subprocess.run(
        [binary, "-i", "vps1,", "-c", "local", str(playbook), "-e", f"@{tmp_path / 'extra.json'}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.parametrize("extra", [{}, PRODUCTION], ids=["defaults", "production"])
def test_promtool_and_amtool_accept_the_configuration(tmp_path: Path, extra: dict[str, Any]) -> None:
    promtool, amtool = _tool("promtool"), _tool("amtool")
    out = render(tmp_path, extra)
    checked = subprocess.run(
        [promtool, "check", "config", str(out / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = subprocess.run(
        [amtool, "check-config", str(out / "alertmanager.yml")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_part_is_scraped_on_loopback_only(tmp_path: Path) -> None:
    config = yaml.safe_load((render(tmp_path, PRODUCTION) / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        "prometheus",
        "alertmanager",
        "node",
        "blackbox",
        "postgres",
        "redis",
        "api",
        "worker",
        "traefik",
        "probe_http",
        "probe_tls",
    }
    targets = [
        t for job in jobs.values() for group in job.get("static_configs", []) for t in group["targets"]
    ]
    scraped = [t for t in targets if not t.startswith("http")]
    assert all(t.startswith("127.0.0.1:") for t in scraped), scraped
    assert jobs["worker"]["static_configs"][0]["targets"] == ["127.0.0.1:9111", "127.0.0.1:9112"]
    assert config["global"]["external_labels"] == {"host": "vps1"}


def test_a_db_host_without_the_app_scrapes_no_app_job(tmp_path: Path) -> None:
    config = yaml.safe_load(
        (render(tmp_path, {"monitoring_redis_enabled": False}) / "prometheus.yml").read_text()
    )
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"prometheus", "alertmanager", "node", "blackbox", "postgres"}


def test_each_alert_is_its_own_group_and_the_watchdog_goes_to_the_dead_mans_switch_only(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load((render(tmp_path, PRODUCTION) / "alertmanager.yml").read_text())
    route = config["route"]
    assert route["group_by"] == ["..."]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")
    watchdog = route["routes"][0]
    assert watchdog["matchers"] == ['alertname="Watchdog"']
    assert (watchdog["receiver"], watchdog["repeat_interval"]) == ("deadman", "5m")
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert receivers["deadman"]["webhook_configs"][0]["url"] == PRODUCTION["monitoring_deadman_url"]
    assert receivers["toolkit"]["webhook_configs"] == [
        {"url": "http://127.0.0.1:9095/alertmanager", "send_resolved": True}
    ]
    # Without a dead man's switch the Watchdog goes nowhere (never to the alert channel).
    quiet = yaml.safe_load((render(tmp_path / "quiet", {}) / "alertmanager.yml").read_text())
    assert quiet["route"]["routes"][0]["receiver"] == "nobody"
    assert "deadman" not in {receiver["name"] for receiver in quiet["receivers"]}


def test_ansible_renders_every_rules_annotation_whole(tmp_path: Path) -> None:
    """As Ansible renders the rules (its trim_blocks would join a line ending in a block tag with the
    next: the template turns it off in its first line), every alert keeps its one-line summary and
    its runbook link."""
    rules = yaml.safe_load((render(tmp_path, {}) / "toolkit.rules.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 26
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["runbook"] == f"docs/MONITORING.md#{rule['alert'].lower()}", rule
        assert "runbook" not in annotations["summary"], rule
        assert "\n" not in annotations["summary"], rule
