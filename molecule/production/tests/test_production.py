"""The production inventory's promises on hosts reached like a VPS (Debian 12 and 13, over SSH).

converge ran playbooks/site.yml as the operator would: the first time as root (the deploy user did
not exist yet), the idempotence run as the deploy user. These tests log in as the deploy user with
sudo (molecule.yml) and look at what an operator looks at: who may log in, the health check, the
alerts and the backups, and what another machine on the network reaches.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import PROJECT, http_get, resolve, ssh_login, tcp_state_on

NETWORK = "production-bench"
LISTENER = "production-alerts"
SCENARIO = Path(__file__).resolve().parents[1]
BACKUPS = "/var/backups/toolkit"
OFFSITE = "/srv/offsite/restic"


@pytest.fixture(scope="module")
def address(host) -> str:
    """The host's fixed address on the scenario's network (its ansible_host)."""
    return str(resolve(host, "ansible_host"))


@pytest.fixture(scope="module")
def key() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "test_ed25519"


# --- The inventory under test -------------------------------------------------------------------


def test_the_production_inventory_itself_is_under_test(host) -> None:
    link = SCENARIO / "group_vars" / "vps" / "main.yml"
    assert link.is_symlink()
    assert link.resolve() == PROJECT / "inventories" / "production" / "group_vars" / "vps" / "main.yml"
    assert resolve(host, "toolkit_environment") == "production"
    # The vault generated from vault.yml.example: every key of the example, none a placeholder.
    example = (PROJECT / "inventories/production/group_vars/vps/vault.yml.example").read_text()
    keys = [line.split(":")[0] for line in example.splitlines() if line and line[0].isalpha()]
    assert keys
    assert (SCENARIO / "group_vars/vps/vault.yml").read_text().startswith("$ANSIBLE_VAULT;")
    for name in keys:
        value = str(resolve(host, name))
        assert len(value) >= 32, name
        assert not value.startswith("replace-with-"), name


# --- Root first, then the deploy user -------------------------------------------------------------


def test_the_first_run_logged_in_as_root_and_later_ones_as_deploy(host, run_playbook) -> None:
    journal = host.check_output("journalctl --no-pager -o cat _COMM=sshd-session _COMM=sshd")
    root = [line for line in journal.splitlines() if line.startswith("Accepted publickey for root ")]
    deploy = [line for line in journal.splitlines() if line.startswith("Accepted publickey for deploy ")]
    assert root, "no root session in sshd's journal: the first run did not log in as root"
    assert deploy, "no deploy session in sshd's journal"
    # The first deploy session came after root's (the base role created the user in between).
    assert journal.index(root[0]) < journal.index(deploy[0])
    # And a run now (the idempotence run did the same) chooses the deploy user.
    run = run_playbook(PROJECT / "playbooks" / "connect.yml")
    assert run.rc == 0, run.output
    assert f"connected to {host.backend.host} as deploy" in run.output


def test_the_controller_is_never_banned_by_its_own_hardening(host) -> None:
    """converge (root first, after one refused probe as deploy), the idempotence run and every
    playbook test_app.py ran since (as deploy) all came from the controller: none of it may have
    earned a fail2ban ban or an sshd penalty, or the next deploy would be locked out."""
    controller = host.check_output("ip -4 route show default").split()[2]
    for jail in ("sshd", "recidive"):
        status = host.check_output(f"fail2ban-client status {jail}")
        banned = status.split("Banned IP list:")[-1]
        assert controller not in banned, f"fail2ban's {jail} jail banned the controller:\n{status}"
    journal = host.check_output("journalctl --no-pager -o cat _COMM=sshd-session _COMM=sshd")
    penalised = [line for line in journal.splitlines() if "penalty" in line and controller in line]
    assert penalised == [], "sshd penalised the controller:\n" + "\n".join(penalised[:5])


def test_root_is_refused_and_the_deploy_user_logs_in(host, address: str, key: Path) -> None:
    refused = ssh_login(address, "root", key)
    assert refused.returncode == 255, refused.stdout + refused.stderr
    assert "Permission denied" in refused.stderr, refused.stderr
    # One refused key costs a PerSourcePenalties authfail (5 s) on Debian 13: wait it out.
    for _ in range(6):
        deploy = ssh_login(address, "deploy", key)
        if deploy.returncode == 0:
            break
        time.sleep(5)
    assert deploy.returncode == 0, deploy.stderr
    assert deploy.stdout.strip() == "deploy"
    # Key only, never a password; sudo without one (the key is the credential).
    assert "passwordauthentication no" in host.check_output("sshd -T").lower()
    assert ssh_login(address, "deploy", key, "sudo -n id --user --name").stdout.strip() == "root"


# --- What another machine reaches -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (22, "open"),
        # Allowed by the firewall; Traefik answers there when its image exists (tests/test_edge.py),
        # otherwise the host resets the connection instead of dropping it.
        (80, "allowed"),
        (443, "allowed"),
        # PostgreSQL, Redis, the API's loopback port, the worker's metrics, Docker's API, Traefik's ping.
        (5432, "closed"),
        (6379, "closed"),
        (8000, "closed"),
        (9101, "closed"),
        (2375, "closed"),
        (8082, "closed"),
    ],
)
def test_from_another_machine_only_ssh_http_and_https_answer(address: str, port: int, expected: str) -> None:
    state = tcp_state_on(NETWORK, address, port)
    if expected == "open":
        assert state == "open", f"port {port}: {state}"
    elif expected == "allowed":
        assert state in ("open", "refused"), f"port {port} is {state}: the firewall drops it"
    else:
        assert state != "open", f"port {port} answers from another machine"


# --- Monitoring, alerts, backups ------------------------------------------------------------------


def test_every_health_check_passes(host) -> None:
    run = host.run("toolkit-healthcheck")
    assert run.rc == 0, run.stdout + run.stderr
    lines = {line.split()[1]: line for line in run.stdout.splitlines() if line.split()}
    for check in ("api", "postgres", "redis", "memory", "units"):
        assert lines[check].startswith("PASS"), lines[check]
    # The bench's node exporter leaves out the test host's mounts, which are the controller's disk
    # (host_vars/_shared/bench.yml); the disk check's PASS and FAIL are proven in molecule/base.
    assert lines["disk"].startswith("SKIP disk      not checked: the node exporter watches no file system")
    assert "http://127.0.0.1:8000/health/ready" in lines["api"], lines["api"]
    # Before the first 03:00 run: pending, not a failure (or a set already exists).
    backup = lines["backup"]
    assert backup.startswith("PASS") or (backup.startswith("WARN") and "pending" in backup), backup
    assert not any(line.startswith("FAIL") for line in lines.values()), run.stdout


def test_an_alert_reaches_the_operators_webhook(host) -> None:
    marker = f"production-test-{uuid.uuid4().hex[:12]}"
    host.check_output(f"toolkit-alert --title 'bench check' --message {marker}")
    deadline = time.monotonic() + 20
    received: list[dict] = []
    while time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", LISTENER], capture_output=True, text=True, check=True).stdout
        received = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        received = [alert for alert in received if marker in alert["body"]]
        if received:
            break
        time.sleep(1)
    assert received, f"{marker} did not reach the webhook listener"
    alert = received[0]
    assert alert["path"] == "/toolkit-alerts"
    assert alert["headers"].get("Title") == "bench check", alert


def test_a_backup_run_makes_a_set_and_an_offsite_snapshot(host) -> None:
    host.check_output("systemctl start toolkit-backup.service")
    sets = host.check_output(f"ls {BACKUPS}").split()
    assert sets, "no backup set after a run"
    manifest = json.loads(host.check_output(f"cat {BACKUPS}/{sorted(sets)[-1]}/manifest.json"))
    assert manifest
    # The restic repository on its own volume holds a snapshot, readable with the vault's password.
    snapshots = json.loads(
        host.check_output(
            f"RESTIC_PASSWORD_FILE=/etc/toolkit/backup/restic-password restic -r {OFFSITE} snapshots --json"
        )
    )
    assert snapshots, "no snapshot in the offsite repository"
    assert host.check_output(f"findmnt --noheadings --output TARGET --target {OFFSITE}") == "/srv/offsite"
    # And the backup check passes now.
    run = host.run("toolkit-healthcheck --only backup")
    assert run.rc == 0, run.stdout + run.stderr
    assert run.stdout.startswith("PASS"), run.stdout


def _app_containers(host) -> set[str]:
    """The running containers of the app's compose project (its API and worker)."""
    return set(
        host.check_output("docker ps -q --filter label=com.docker.compose.project=invoice-service").split()
    )


def _ready_after_restart(host) -> dict:
    """The API's readiness report, once it answers again (at most a minute)."""
    ready = ""
    for _ in range(60):
        ready = http_get(host, "http://127.0.0.1:8000/health/ready")
        if ready:
            break
        time.sleep(1)
    return json.loads(ready)


@pytest.mark.on_host(
    "production-debian13",
    reason="toolkit-backup's restore does not change with the release; one host proves the wiring",
)
def test_a_live_restore_stops_the_apps_containers_and_brings_them_back(host) -> None:
    """group_vars/all wires the app's compose project into the backup role: a live restore stops the
    API and the worker, swaps the checked set in, and starts them again, ready."""
    running = _app_containers(host)
    assert running, "the app's containers do not run"
    try:
        restore = host.run("toolkit-backup restore --live latest --yes")
        assert restore.rc == 0, restore.stdout + restore.stderr
        assert (
            f"stopping the {len(running)} running containers of compose project invoice-service"
            in restore.stdout
        )
        assert "matches the backup" in restore.stdout
        assert f"starting {len(running)} containers again" in restore.stdout
        assert _app_containers(host) == running
        assert _ready_after_restart(host)["checks"]["database"]["status"] == "ok"
    finally:
        host.run("toolkit-backup restore --drop-previous")


def test_wal_is_archived_into_the_local_and_the_offsite_repository(host) -> None:
    """pgBackRest (2.45 on Debian 12, 2.55 on 13) archives every WAL segment into both repositories,
    the offsite one encrypted on its own volume, and each holds the full backup converge took."""
    check = host.run("runuser -u postgres -- pgbackrest --stanza=main check")
    assert check.rc == 0, check.stdout + check.stderr
    (stanza,) = json.loads(
        host.check_output("runuser -u postgres -- pgbackrest --stanza=main info --output=json")
    )
    assert {repo["key"]: repo["status"]["code"] for repo in stanza["repo"]} == {1: 0, 2: 0}
    assert {b["database"]["repo-key"] for b in stanza["backup"] if b["type"] == "full"} == {1, 2}
    assert host.check_output("head -c 8 /srv/offsite/pgbackrest/backup/main/backup.info") == "Salted__"
    assert host.service("toolkit-pitr-full.timer").is_enabled
    assert host.service("toolkit-pitr-diff.timer").is_enabled
    wal = host.run("toolkit-healthcheck --only wal")
    assert wal.rc == 0, wal.stdout + wal.stderr
    assert wal.stdout.startswith("PASS wal"), wal.stdout


@pytest.mark.on_host(
    "production-debian12",
    reason="the restore mechanics are proven on Debian 13 in molecule/backup; this proves PostgreSQL 15"
    " and pgBackRest 2.45 with the app running",
)
def test_a_point_in_time_restore_from_the_offsite_repository_with_the_app_running(host) -> None:
    host.check_output(
        "runuser -u postgres -- psql -Xq -d invoice -c 'CREATE TABLE pitr_probe (at timestamptz)'"
        " -c 'INSERT INTO pitr_probe VALUES (now())'"
    )
    running = _app_containers(host)
    try:
        restore = host.run("toolkit-pitr restore --latest --repo 2 --yes")
        assert restore.rc == 0, restore.stdout + restore.stderr
        assert "stopping the" in restore.stdout
        probe = host.check_output(
            "runuser -u postgres -- psql -XAtq -d invoice -c 'SELECT count(*) FROM pitr_probe'"
        )
        assert probe == "1"
        assert _app_containers(host) == running
        assert _ready_after_restart(host)["checks"]["database"]["status"] == "ok"
    finally:
        host.run("toolkit-pitr restore --drop-previous")
        host.run("runuser -u postgres -- psql -Xq -d invoice -c 'DROP TABLE IF EXISTS pitr_probe'")
