"""What the app role and playbooks/deploy.yml + rollback.yml promise, on the production hosts.

Each host runs Docker (the distribution's engine with compose v2), PostgreSQL and Redis from their
roles, Traefik's rendered configuration (no Traefik image can be had here; production never
publishes the API directly, so it answers on the host's loopback port only) and the release of the
REAL packaged image (dist/). Tests
that re-deploy use the same image re-tagged as other versions (a manifest naming the same image id),
so the host only tags it: the role loads a tarball only when the host lacks the image id.

The tests below the line "Releases" change the host in order and leave it as converge did.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from conftest import PROJECT, http_get, http_on_host

BASE = "/opt/invoice-service"
RELEASES = f"{BASE}/releases"
CURRENT = f"{BASE}/current"
DUMPS = "/var/backups/invoice-service"
UPLOADS = "/srv/invoice-service/uploads"
API_FILTER = (
    "--filter label=com.docker.compose.project=invoice-service --filter label=com.docker.compose.service=api"
)
PUBLISH_TARGET = "/etc/toolkit/invoice-service-publish.json"
TRAEFIK_ROUTE = "/etc/traefik/dynamic/invoice-service.yml"
API_ADDRESSES = ("172.30.255.250", "172.30.255.251")
WORKER = "invoice-service-worker-1"
READY = "http://127.0.0.1:8000/health/ready"
DIST = PROJECT / "dist"
DEPLOY = PROJECT / "playbooks" / "deploy.yml"
ROLLBACK = PROJECT / "playbooks" / "rollback.yml"
PIN = f"{BASE}/pin.json"
SECRETS = f"{BASE}/secrets.env"
LOCK = f"{BASE}/deploy.lock"
WRONG_DB_URL = "postgresql+asyncpg://invoice:not-the-password@host.docker.internal:5432/invoice"


def _current(host) -> str:
    return Path(host.check_output(f"readlink {CURRENT}")).name


def _ready(host) -> dict:
    body = http_get(host, READY)
    assert body, f"{READY} did not answer 200"
    return json.loads(body)


def _inspect(host, container: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {container}"))[0]


def _api(host) -> str:
    """The API container's name (a release swap creates the next number: invoice-service-api-N)."""
    names = host.check_output(f"docker ps --all {API_FILTER} --format '{{{{.Names}}}}'").split()
    assert len(names) == 1, f"expected one API container, found {names}"
    return names[0]


def _release_of_api(host) -> str:
    return _inspect(host, _api(host))["Config"]["Labels"]["toolkit.release"]


def _manifest(version: str) -> dict:
    return json.loads((DIST / f"invoice-service-{version}.json").read_text())


@pytest.fixture(scope="module")
def version(host) -> str:
    """The converged release: the version `current` names, whose manifest is in dist/."""
    return _current(host)


@pytest.fixture(scope="module")
def retag(tmp_path_factory: pytest.TempPathFactory, version: str) -> Callable[[str], Path]:
    """A manifest for the converged image under another version, beside a link to its tarball."""
    directory = tmp_path_factory.mktemp("releases")

    def make(suffix: str) -> Path:
        manifest = _manifest(version)
        new = f"{version}-{suffix}"
        tarball = directory / f"invoice-service-{new}.tar.gz"
        if not tarball.exists():
            tarball.symlink_to(DIST / manifest["tarball"])
        manifest.update(version=new, image=f"invoice-service:{new}", tarball=tarball.name)
        (directory / f"invoice-service-{new}.json").write_text(json.dumps(manifest))
        return tarball

    return make


# --- The converged release ---------------------------------------------------------------------


def test_api_answers_ready_on_the_loopback_port(host) -> None:
    ready = _ready(host)
    assert ready["checks"]["database"]["status"] == "ok"


def test_containers_reach_postgres_and_redis_on_the_host(host) -> None:
    checks = _ready(host)["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "ok"
    hosts = _inspect(host, _api(host))["HostConfig"]["ExtraHosts"]
    assert hosts == ["host.docker.internal:172.30.0.1"]


def test_no_container_publishes_the_hosts_socket_holds_the_loopback_port(host) -> None:
    """The API containers publish nothing (a release's container starts beside the old one); the
    app role's systemd socket holds 127.0.0.1:8000 only (production: never a public port of the
    app's own) and forwards to the live container's fixed address on Traefik's network. The worker
    publishes its metrics on loopback only, for Prometheus (app_worker_metrics_port)."""
    name = _api(host)
    api, worker = _inspect(host, name), _inspect(host, WORKER)
    assert not api["HostConfig"]["PortBindings"]
    assert worker["HostConfig"]["PortBindings"] == {"9101/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9111"}]}
    address = api["NetworkSettings"]["Networks"]["edge"]["IPAddress"]
    assert address in API_ADDRESSES
    assert "edge" not in worker["NetworkSettings"]["Networks"]
    listening = host.check_output("systemctl show --property=Listen invoice-service-publish.socket")
    assert listening == "Listen=127.0.0.1:8000 (Stream)", listening
    assert host.check_output("systemctl is-enabled invoice-service-publish.socket") == "enabled"
    target = json.loads(host.file(PUBLISH_TARGET).content_string)
    assert target == {"address": address, "port": 8000, "release": _release_of_api(host)}


def test_monitoring_probes_the_api_on_its_loopback_port(host) -> None:
    """The api check asks 127.0.0.1:8000, which answers Traefik or not (port 80 is Traefik's
    redirect in production); from another machine 8000 stays closed (test_stack.py)."""
    run = host.run("toolkit-healthcheck --only api")
    assert run.rc == 0, run.stdout + run.stderr
    assert run.stdout.startswith("PASS api       http://127.0.0.1:8000/health/ready answered 200"), run.stdout


def _status(host, url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET made on the host itself."""
    return http_on_host(host.backend.host, "GET", url, headers=headers)[0]


def test_the_api_trusts_the_edge_network_alone(host) -> None:
    """X-Forwarded-For is believed from Traefik's network only (its subnet fixed inside the Docker
    pool), not from any container of the pool."""
    edge = json.loads(host.check_output("docker network inspect edge"))[0]
    assert [c["Subnet"] for c in edge["IPAM"]["Config"]] == ["172.30.255.0/24"]
    content = host.file(f"{CURRENT}/app.env").content_string
    assert "TRUSTED_PROXY_NETWORKS='172.30.255.0/24'\n" in content
    assert "FORWARDED_ALLOW_IPS='172.30.255.0/24'\n" in content


def test_metrics_answer_the_hosts_probes_and_nothing_proxied(host) -> None:
    """The host's own scrapers read /metrics on the loopback port (through the edge network's
    gateway); a request that came through a proxy (X-Forwarded-For) gets the 404 of an unknown path,
    and the API docs and schema are off in production."""
    base = "http://127.0.0.1:8000"
    assert _status(host, f"{base}/metrics") == 200
    assert _status(host, f"{base}/metrics", {"X-Forwarded-For": "203.0.113.9"}) == 404
    assert [_status(host, f"{base}{path}") for path in ("/docs", "/redoc", "/openapi.json")] == [404] * 3


def test_the_api_spools_request_bodies_on_disk_not_in_ram(host) -> None:
    """Multipart parts over 1 MiB are spooled to TMPDIR: the spool directory on the host's disk, not
    the container's /tmp (a tmpfs counted against the API's memory limit). (Read from the container's
    configuration: `docker exec` cannot enter a container on these nested test hosts.)"""
    api = _inspect(host, _api(host))
    assert "TMPDIR=/var/lib/invoice-service/spool" in api["Config"]["Env"]
    mounts = {m["Destination"]: m for m in api["Mounts"]}
    spool = mounts["/var/lib/invoice-service/spool"]
    assert (spool["Type"], spool["Source"], spool["RW"]) == ("bind", "/srv/invoice-service/spool", True)
    assert list(api["HostConfig"]["Tmpfs"]) == ["/tmp"]  # /tmp stays a tmpfs; bodies are not spooled there
    assert host.check_output("stat -f -c %s /srv/invoice-service/spool", "%T") != "tmpfs"
    spool_dir = host.file("/srv/invoice-service/spool")
    assert (spool_dir.uid, spool_dir.gid, spool_dir.mode) == (10001, 10001, 0o750)


def test_traefiks_file_routes_the_domain_on_websecure_to_the_live_container(host) -> None:
    """Traefik's route is a file the app role writes (no Docker provider, no socket in Traefik)."""
    assert not any(key.startswith("traefik.") for key in _inspect(host, _api(host))["Config"]["Labels"])
    route = host.file(TRAEFIK_ROUTE)
    assert (route.user, route.mode) == ("root", 0o644)
    http = yaml.safe_load(route.content_string)["http"]
    router = http["routers"]["invoice-service"]
    # /metrics and the API docs stay inside: the router leaves them out (app_internal_paths).
    assert router["rule"] == (
        "Host(`api.invoices.test`) && !(PathPrefix(`/metrics`) || PathPrefix(`/docs`)"
        " || PathPrefix(`/redoc`) || PathPrefix(`/openapi.json`))"
    )
    assert router["entryPoints"] == ["websecure"]
    assert router["tls"] == {"certResolver": "letsencrypt"}
    servers = http["services"]["invoice-service"]["loadBalancer"]["servers"]
    assert servers == [{"url": f"http://{_api(host)}:8000"}]


def test_secrets_are_root_only_outside_the_release_and_wired_to_the_host(host) -> None:
    """The secrets are in one file every release reads (a rollback keeps the current ones); the
    release's own env file holds its settings only."""
    secrets = host.file(SECRETS)
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o600)
    content = secrets.content_string
    assert "DATABASE_URL='postgresql+asyncpg://invoice:" in content
    assert "@host.docker.internal:5432/invoice'" in content
    assert "REDIS_URL='redis://:" in content
    assert re.search(r"^JWT_SECRET='.{32,}'$", content, re.MULTILINE)
    env = host.file(f"{CURRENT}/app.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert not re.search(r"^(DATABASE_URL|REDIS_URL|JWT_SECRET)=", env.content_string, re.MULTILINE)
    assert "UVICORN_WORKERS=" in env.content_string
    compose = host.file(f"{CURRENT}/compose.yaml").content_string
    assert f"- {SECRETS}\n" in compose


def test_memory_limits_and_workers_follow_the_budget(host, run_playbook) -> None:
    run = run_playbook("report.yml")
    assert run.rc == 0, run.output
    report = {key: int(value) for key, value in re.findall(r"APP (\w+)=(\d+)", run.output)}
    assert len(report) == 11, run.output
    assert report["api_memory_mb"] == report["budget_api_memory_mb"]
    # The budget's 1024 MB worker share on 2 vCPUs: one process with all of it, running 2 jobs at once.
    assert report["worker_memory_mb"] == report["budget_worker_replica_memory_mb"] == 1024
    assert report["budget_worker_memory_mb"] == 1024
    assert report["worker_replicas"] == report["budget_worker_replicas"] == 1
    assert report["worker_concurrency"] == report["budget_worker_concurrency"] == 2
    workers = host.check_output(
        "docker ps --filter label=com.docker.compose.service=worker --format '{{.Names}}'"
    )
    assert workers.split() == [WORKER]
    assert report["api_workers"] == report["budget_api_workers"]
    mib = 1024 * 1024
    assert _inspect(host, _api(host))["HostConfig"]["Memory"] == report["api_memory_mb"] * mib
    assert _inspect(host, WORKER)["HostConfig"]["Memory"] == report["worker_memory_mb"] * mib
    # No swap beyond the limit.
    assert _inspect(host, _api(host))["HostConfig"]["MemorySwap"] == report["api_memory_mb"] * mib
    env = host.file(f"{CURRENT}/app.env").content_string
    assert f"UVICORN_WORKERS='{report['api_workers']}'" in env
    assert f"WORKER_CONCURRENCY='{report['worker_concurrency']}'" in env


def test_release_directory_current_link_and_image(host, version: str) -> None:
    assert host.file(CURRENT).is_symlink
    assert host.file(CURRENT).linked_to == f"{RELEASES}/{version}"
    assert host.file(f"{RELEASES}/{version}/compose.yaml").exists
    # The running containers are the packaged image of that version, loaded from its tarball.
    api = _inspect(host, _api(host))
    assert api["Image"] == _manifest(version)["image_id"]
    assert api["Config"]["Labels"]["toolkit.image-id"] == api["Image"]
    assert _release_of_api(host) == version


def test_a_restorable_dump_was_taken_before_the_release(host, version: str) -> None:
    dumps = host.check_output(f"ls {DUMPS}").split()
    mine = [name for name in dumps if name.startswith(f"pre-release-{version}-") and name.endswith(".dump")]
    assert mine, dumps
    dump = host.file(f"{DUMPS}/{mine[0]}")
    assert (dump.user, dump.mode) == ("postgres", 0o600)
    # A valid custom-format archive (what pg_restore reads back).
    assert "Archive created at" in host.check_output(f"pg_restore --list {DUMPS}/{mine[0]}")


def test_uploads_directory_is_writable_by_the_image_user(host, version: str) -> None:
    uploads = host.file(UPLOADS)
    assert (uploads.uid, uploads.gid, uploads.mode) == (10001, 10001, 0o750)
    probe = f"{UPLOADS}/.probe"
    host.check_output(
        f"docker run --rm -v {UPLOADS}:/var/lib/invoice-service/uploads invoice-service:{version}"
        " sh -c 'touch /var/lib/invoice-service/uploads/.probe'"
    )
    assert host.file(probe).uid == 10001
    host.check_output(f"rm -f {probe}")


# --- Releases (in order; the host ends as converge left it) ------------------------------------
#
# Converge and the idempotence run put a release live on both hosts; the release mechanics below
# (rollback, retention, refusals) are the app role's own logic and run on Debian 12, whose engine
# (docker.io 20.10 with compose v2 from Debian 13) is the older of the two.
ON_ONE_HOST = pytest.mark.on_host(
    "production-debian12",
    reason="the app role's release logic does not change with the release; both hosts went live in converge",
)


class OnHostProbe:
    """scripts/probe_health.py on the test host: /health/ready on the published loopback port every
    100 ms, each probe a new connection (a client arriving during the swap), until stopped."""

    def __init__(self, host, url: str = READY, host_header: str = "") -> None:
        self.host = host
        container = host.backend.host
        subprocess.run(
            [
                "docker",
                "cp",
                str(PROJECT / "scripts" / "probe_health.py"),
                f"{container}:/tmp/probe_health.py",
            ],
            check=True,
        )
        host.run("rm -f /tmp/probe.stop /tmp/probe.out")
        host.run(
            f"nohup python3 /tmp/probe_health.py --url {url} --stop-file /tmp/probe.stop --json"
            + (f" --host-header {host_header}" if host_header else "")
            + " > /tmp/probe.out 2>&1 &"
        )

    def stop(self) -> dict:
        self.host.run("touch /tmp/probe.stop")
        for _ in range(100):
            lines = self.host.run("cat /tmp/probe.out").stdout.splitlines()
            if lines and lines[-1].startswith("{"):
                print(lines[-2] if len(lines) > 1 else "")  # the readable summary, for the log
                return json.loads(lines[-1])
            time.sleep(0.1)
        raise AssertionError("the probe did not report: " + self.host.run("cat /tmp/probe.out").stdout)


@ON_ONE_HOST
def test_broken_release_is_rolled_back_and_the_play_fails_with_the_reason(
    host, run_playbook, retag, version: str
) -> None:
    """A release whose API never gets ready is removed before anything routes to it: the play fails
    with its answer and logs, and a client probing all along never noticed."""
    broken = f"{version}-broken"
    probe = OnHostProbe(host)
    try:
        run = run_playbook(
            "app.yml",
            {
                "app_image_tarball": str(retag("broken")),
                "app_api_environment": {"DATABASE_URL": WRONG_DB_URL},
                "app_health_timeout": 30,
            },
        )
    finally:
        seen = probe.stop()
    assert run.rc != 0
    assert f"Release {broken} of invoice-service failed." in run.output
    assert re.search(
        r"never got ready, so nothing was routed to it: the last answer of"
        r" http://172\.30\.255\.25[01]:8000/health/ready was HTTP 503",
        run.output,
    ), run.output[-4000:]
    assert f"Rollback: {version} serves again" in run.output
    assert "Last log lines of the failed release" in run.output
    assert _current(host) == version
    assert _release_of_api(host) == version
    assert _ready(host)["checks"]["database"]["status"] == "ok"
    assert seen["failures"] == {}, seen
    assert seen["releases"] == [version], seen


@ON_ONE_HOST
def test_new_release_goes_live_after_a_dump_and_no_client_is_refused(
    host, run_playbook, retag, version: str
) -> None:
    """The new release's API container starts beside the old one at the other fixed address; the
    published port's forwarder switches to it once it is ready; then the old one stops. A client
    probing all along is answered every time, by the old release and then by the new one."""
    before = _inspect(host, _api(host))["NetworkSettings"]["Networks"]["edge"]["IPAddress"]
    probe = OnHostProbe(host)
    try:
        run = run_playbook("app.yml", {"app_image_tarball": str(retag("next"))})
    finally:
        seen = probe.stop()
    assert run.rc == 0, run.output
    assert _current(host) == f"{version}-next"
    assert _release_of_api(host) == f"{version}-next"
    assert host.run(f"ls {DUMPS}/pre-release-{version}-next-*.dump").rc == 0
    assert _ready(host)["checks"]["database"]["status"] == "ok"
    assert seen["failures"] == {}, seen
    assert seen["answered"] > 20, seen
    assert seen["releases"] == [version, f"{version}-next"], seen
    after = _inspect(host, _api(host))["NetworkSettings"]["Networks"]["edge"]["IPAddress"]
    assert {before, after} == set(API_ADDRESSES), (before, after)
    assert json.loads(host.file(PUBLISH_TARGET).content_string)["address"] == after


@ON_ONE_HOST
def test_behind_traefik_a_release_swap_fails_no_request(host, run_playbook, retag) -> None:
    """Where Traefik runs: a release (here the same version with one more setting, then without it)
    swaps the API container while a client probes through Traefik's HTTPS port; every probe answers.
    Traefik's file is the route (checked here and by tests/unit/test_traefik_schemas.py)."""
    if host.run("docker inspect --format '{{.State.Running}}' traefik").stdout.strip() != "true":
        pytest.skip(
            "Traefik does not run on this host: no Traefik image can be had on this machine (no registry). "
            "The swap without Traefik is tested above; Traefik's file for the API by "
            "test_traefiks_file_routes_the_domain_on_websecure_to_the_live_container"
        )
    for extra in ({"app_api_environment": {"SWAP_CHECK": "1"}}, {}):
        probe = OnHostProbe(host, url="https://127.0.0.1:443/health/ready", host_header="api.invoices.test")
        try:
            run = run_playbook("app.yml", {"app_image_tarball": str(retag("next")), **extra})
        finally:
            seen = probe.stop()
        assert run.rc == 0, run.output[-3000:]
        assert seen["failures"] == {}, seen
        assert seen["answered"] > 20, seen


def _pin(host) -> dict:
    pin = host.file(PIN)
    return json.loads(pin.content_string) if pin.exists else {}


@ON_ONE_HOST
def test_make_rollback_brings_back_the_previous_release_and_pins_the_host(
    host, run_make, version: str
) -> None:
    run = run_make("rollback")
    assert run.rc == 0, run.output
    assert f"invoice-service {version} runs again and passed the health gate" in run.output
    assert _current(host) == version
    assert _release_of_api(host) == version
    pin = _pin(host)
    assert (pin["version"], pin["by"]) == (version, "tester@bench")
    assert pin["reason"] == f"rollback from {version}-next"
    assert not host.file(LOCK).exists, "the rollback left its deploy lock behind"


@ON_ONE_HOST
def test_make_rollback_to_a_named_release(host, run_make, version: str) -> None:
    run = run_make("rollback", TO=f"{version}-next")
    assert run.rc == 0, run.output
    assert _current(host) == f"{version}-next"
    assert _release_of_api(host) == f"{version}-next"
    assert _pin(host)["version"] == f"{version}-next"
    assert _ready(host)["checks"]["database"]["status"] == "ok"


@ON_ONE_HOST
def test_rollback_to_an_unknown_release_fails_and_changes_nothing(host, run_playbook, version: str) -> None:
    run = run_playbook(ROLLBACK, {"app_rollback_to": "9.9.9"})
    assert run.rc != 0
    assert f"No release 9.9.9 in {RELEASES}" in run.output
    assert run.recap.get("changed") == 0
    assert _current(host) == f"{version}-next"


@ON_ONE_HOST
def test_a_later_run_keeps_the_rolled_back_release_and_prunes_around_it(
    host, run_playbook, version: str
) -> None:
    """What site.yml's deploy play does on a pinned host (the app role with no release named): the
    newest package in dist/ is {version}, yet the host stays on the release the rollback chose.
    Releases beyond app_releases_keep go, with their images: the failed attempt first."""
    run = run_playbook("app.yml", {"app_releases_keep": 2})
    assert run.rc == 0, run.output
    assert f"stays on {version}-next: pinned by tester@bench" in run.output
    assert _current(host) == f"{version}-next"
    assert _release_of_api(host) == f"{version}-next"
    kept = set(host.check_output(f"ls {RELEASES}").split())
    assert kept == {version, f"{version}-next"}
    tags = host.check_output("docker image ls --format '{{.Tag}}' invoice-service").split()
    assert f"{version}-broken" not in tags
    assert {version, f"{version}-next"} <= set(tags)


@ON_ONE_HOST
def test_a_deploy_is_refused_while_another_holds_the_lock_and_make_unlock_breaks_it(
    host, run_playbook, run_make, version: str
) -> None:
    holder = {"by": "alice@laptop", "at": "2026-12-01T08:00:00+00:00", "action": "deploy", "version": "9.9.9"}
    host.check_output(f"mkdir {LOCK} && echo '{json.dumps(holder)}' > {LOCK}/holder.json")
    try:
        run = run_playbook("app.yml")
        assert run.rc != 0
        assert (
            "invoice-service is locked on production-debian12: deploy 9.9.9 by alice@laptop since"
            " 2026-12-01T08:00:00+00:00" in run.output
        ), run.output[-3000:]
        assert "make unlock" in run.output
        assert run.recap.get("changed") == 0
        assert host.file(f"{LOCK}/holder.json").exists, "a refused run must not take or drop the lock"
        status = run_make("status")
        held = "deploy lock: HELD by alice@laptop since 2026-12-01T08:00:00+00:00 (deploy 9.9.9)"
        assert held in status.output, status.output
        unlock = run_make("unlock")
        assert unlock.rc == 0, unlock.output
        assert "broke the deploy lock: HELD by alice@laptop" in unlock.output
        assert not host.file(LOCK).exists
    finally:
        host.run(f"rm -rf {LOCK}")
    assert run_playbook("app.yml").rc == 0


@ON_ONE_HOST
def test_make_app_deploy_puts_the_newest_package_live_and_ends_the_pin(host, run_make, version: str) -> None:
    run = run_make("app-deploy")
    assert run.rc == 0, run.output[-3000:]
    # The app alone: no host role ran (--tags app); Ansible validates every role's arguments anyway.
    assert "TASK [app : " in run.output
    ran = set(re.findall(r"^TASK \[(\w+) : (?!Validating arguments)", run.output, re.MULTILINE))
    assert ran == {"app"}, ran
    assert _current(host) == version
    assert _release_of_api(host) == version
    assert not host.file(PIN).exists
    assert _ready(host)["checks"]["database"]["status"] == "ok"


@ON_ONE_HOST
def test_make_status_and_releases_show_the_live_release_the_containers_and_the_hosts_checks(
    host, run_make, version: str
) -> None:
    status = run_make("status")
    assert f"live release: {version} (went live " in status.output, status.output
    assert "not pinned" in status.output
    assert "deploy lock: free" in status.output
    # Just restarted by make app-deploy: the health check may still be starting.
    assert re.search(r"^  api +running \((healthy|starting)\)", status.output, re.MULTILINE), status.output
    assert re.search(r"^  worker +running", status.output, re.MULTILINE), status.output
    # The host's own checks: the API, the disk, the backups.
    assert re.search(r"^PASS api ", status.output, re.MULTILINE), status.output
    assert re.search(r"^\w+ +disk ", status.output, re.MULTILINE), status.output
    assert re.search(r"^\w+ +backup ", status.output, re.MULTILINE), status.output
    releases = run_make("releases")
    assert releases.rc == 0, releases.output
    lines = releases.output.splitlines()
    assert next(line for line in lines if line.startswith("* ")).startswith(f"* {version} "), lines
    assert any(line.startswith(f"  {version}-next ") for line in lines), lines


@ON_ONE_HOST
def test_make_logs_of_each_service_and_follow(host, run_make) -> None:
    api = run_make("logs", SERVICE="api", LINES="20")
    assert api.rc == 0, api.output
    assert re.search(r"api-\d+ +\| \d{4}-\d\d-\d\dT", api.output), api.output
    postgres = run_make("logs", SERVICE="postgres", LINES="5")
    assert postgres.rc == 0, postgres.output
    # Debian's log file: "2026-12-01 07:02:24.828 -03 [22333] user@db LEVEL:  ..."
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] "
    assert re.search(line, postgres.output, re.MULTILINE), postgres.output
    for service in ("worker", "redis"):
        run = run_make("logs", SERVICE=service, LINES="5")
        assert run.rc == 0, run.output
        assert run.output.strip(), f"make logs SERVICE={service} printed nothing"
    unknown = run_make("logs", SERVICE="nginx")
    assert unknown.rc != 0
    assert "no service nginx (known: api, worker, postgres, redis, traefik)" in unknown.output
    # FOLLOW=1 keeps streaming: it only ends when stopped.
    follow = run_make("logs", timeout=15, SERVICE="api", LINES="0", FOLLOW="1")
    assert follow.rc == 124, follow.output


@ON_ONE_HOST
def test_make_exec_runs_a_one_off_command_in_a_fresh_container_with_the_releases_env(host, run_make) -> None:
    before = host.check_output("docker ps --all --quiet | sort")
    command = 'echo "db=${DATABASE_URL##*@} user=$(id -u)"; invoice-migrate current 2>&1'
    run = run_make("exec", CMD=command)
    assert run.rc == 0, run.output
    assert "db=host.docker.internal:5432/invoice user=10001" in run.output
    assert "(head)" in run.output, run.output
    after = host.check_output("docker ps --all --quiet | sort")
    assert after == before, "the one-off container was left behind"
    failing = run_make("exec", CMD="exit 3")
    assert failing.rc != 0


@ON_ONE_HOST
def test_make_app_stop_start_restart_and_the_audit_log(host, run_make, version: str) -> None:
    stop = run_make("app-stop", ONLY="worker")
    assert stop.rc == 0, stop.output
    assert _inspect(host, WORKER)["State"]["Running"] is False
    assert _inspect(host, _api(host))["State"]["Running"] is True
    start = run_make("app-start", ONLY="worker")
    assert start.rc == 0, start.output
    assert _inspect(host, WORKER)["State"]["Running"] is True
    started = _inspect(host, _api(host))["State"]["StartedAt"]
    restart = run_make("app-restart")
    assert restart.rc == 0, restart.output
    assert _inspect(host, _api(host))["State"]["StartedAt"] != started
    assert _ready_within(host, 60)["checks"]["database"]["status"] == "ok"
    audit = run_make("audit", LINES="50")
    assert audit.rc == 0, audit.output
    for entry in (
        f"deploy by tester@bench: {version}-broken FAILED",
        f"rollback by tester@bench: {version} went live (was {version}-next); pinned",
        f"unpin by tester@bench: {version} was deployed explicitly; the pin to {version}-next",
        "unlock by tester@bench: broke the deploy lock: HELD by alice@laptop",
        f"exec by tester@bench: {version}: sh -c",
        f"stop by tester@bench: {version} worker: exit 0",
        f"restart by tester@bench: {version} all services: exit 0",
    ):
        assert entry in audit.output, f"{entry!r} not in the audit log:\n{audit.output}"


def _database_password(host) -> str:
    url = re.search(r"^DATABASE_URL='([^']*)'$", host.file(SECRETS).content_string, re.MULTILINE)
    assert url, "no DATABASE_URL in the secrets file"
    return unquote(url.group(1).split("://invoice:", 1)[1].rsplit("@", 1)[0])


def _login_works(host, password: str) -> bool:
    """Whether PostgreSQL takes the app role's password, from a container of the app's image on the
    Docker bridge, as the app logs in (pg_hba admits the app role from the Docker networks only)."""
    login = (
        "import asyncio, asyncpg, sys; "
        "asyncio.run(asyncpg.connect(user='invoice', password=sys.argv[1], database='invoice',"
        " host='host.docker.internal', port=5432))"
    )
    run = host.run(
        f"docker run --rm --add-host host.docker.internal:172.30.0.1 --entrypoint python3"
        f" invoice-service:{_current(host)} -c {shlex.quote(login)} {shlex.quote(password)}"
    )
    if run.rc != 0:
        assert "password authentication failed" in run.stderr, run.stdout + run.stderr
    return run.rc == 0


@ON_ONE_HOST
def test_make_rotate_secrets_changes_both_sides_together_and_a_rollback_keeps_the_new_ones(
    host, run_make, tmp_path: Path, version: str
) -> None:
    """New values for the database and Redis passwords and the JWT secret (standing in for a vault
    edit): one play changes PostgreSQL, Redis and the app, which serves again with them; the old
    password is refused. A rollback to an older release runs with the new secrets. Then the vault's
    values come back the same way."""
    old_password = _database_password(host)
    rotated = {
        "postgres_app_password": "rotated-" + secrets.token_hex(12),
        "redis_password": "rotated-" + secrets.token_hex(12),
        "app_jwt_secret": secrets.token_hex(24),
    }
    extra = tmp_path / "rotated.json"
    extra.write_text(json.dumps(rotated))
    try:
        run = run_make("rotate-secrets", ANSIBLE_ARGS=f"--extra-vars=@{extra}")
        assert run.rc == 0, run.output[-3000:]
        for secret in rotated.values():
            assert secret not in run.output, "a secret leaked into the output"
        assert _database_password(host) == rotated["postgres_app_password"]
        assert _login_works(host, rotated["postgres_app_password"])
        assert not _login_works(host, old_password), "PostgreSQL still takes the old password"
        checks = _ready_within(host, 60)["checks"]
        assert (checks["database"]["status"], checks["redis"]["status"]) == ("ok", "ok")
        assert _current(host) == version, "rotating the secrets changed the release"
        # The previous release's directory holds no secret: it comes back with the new ones.
        back = run_make("rollback")
        assert back.rc == 0, back.output[-3000:]
        assert _current(host) == f"{version}-next"
        checks = _ready_within(host, 60)["checks"]
        assert (checks["database"]["status"], checks["redis"]["status"]) == ("ok", "ok")
    finally:
        restored = run_make("rotate-secrets")
        host.run(f"rm -f {PIN}")
    assert restored.rc == 0, restored.output[-3000:]
    assert _login_works(host, old_password)
    assert _ready_within(host, 60)["checks"]["redis"]["status"] == "ok"


def _ready_within(host, seconds: int) -> dict:
    for _ in range(seconds):
        body = http_get(host, READY)
        if body:
            return json.loads(body)
        time.sleep(1)
    pytest.fail(f"{READY} did not answer 200 within {seconds} s")


@ON_ONE_HOST
def test_a_bad_secret_fails_before_any_change(assert_refused_before_change) -> None:
    assert_refused_before_change(
        "app.yml",
        {"app_jwt_secret": "short-secret-x"},
        "app_jwt_secret must be at least 32 characters",
        watch=f"md5sum {CURRENT}/app.env {CURRENT}/compose.yaml",
        secrets=("short-secret-x",),
    )


@ON_ONE_HOST
def test_a_missing_tarball_says_to_run_make_package(host, run_playbook, tmp_path: Path) -> None:
    run = run_playbook("app.yml", {"app_image_tarball": str(tmp_path / "invoice-service-0.0.0.tar.gz")})
    assert run.rc != 0
    assert "run make package first" in run.output
    assert run.recap.get("changed") == 0
