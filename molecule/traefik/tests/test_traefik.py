"""What the traefik role promises, checked on the converged Debian 13 host.

No Traefik image can be had on this machine: the rendered configuration is checked always (parsed
as YAML on the host), the running proxy whenever the image is present in the host's engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT, PlaybookRun, build_tiny_image, host_address, http_get, playbook_runner, resolve

DEFAULTS = yaml.safe_load((PROJECT / "roles/traefik/defaults/main.yml").read_text())
IMAGE: str = DEFAULTS["traefik_image"]
STATIC = "/etc/traefik/traefik.yml"
MIDDLEWARES = "/etc/traefik/dynamic/middlewares.yml"
DASHBOARD = "/etc/traefik/dynamic/dashboard.yml"
ACME = "/var/lib/traefik/acme/acme.json"
STAGING_CA = "https://acme-staging-v02.api.letsencrypt.org/directory"
RATE_MESSAGE = "traefik_rate_limit_average and traefik_rate_limit_burst must be positive"
NO_IMAGE = f"Traefik image {IMAGE} not present in the host's engine: no registry reachable from this machine"
# Syntactically a bcrypt htpasswd line; only rendered here, never checked by a running Traefik.
BCRYPT_USER = "admin:$2y$05$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def _parse(host, path: str) -> dict:
    """Parse a YAML file with the host's own PyYAML (what the role validates with)."""
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    return json.loads(host.check_output(f'python3 -c "{script}" {path}'))


def _image_present(host) -> bool:
    return host.run(f"docker image inspect {IMAGE}").rc == 0


def _md5(host, *paths: str) -> str:
    return host.check_output("md5sum " + " ".join(paths))


def _bindings(config: dict) -> dict[str, list[tuple[str, str]]]:
    """HostConfig.PortBindings as {port: sorted (address, host port)}."""
    return {
        port: sorted((binding["HostIp"], binding["HostPort"]) for binding in bindings or [])
        for port, bindings in config["PortBindings"].items()
    }


def _expected_bindings(host, http: int, https: int) -> dict[str, list[tuple[str, str]]]:
    """80 and 443 on the host's own address (its default IPv4 one, eth0's here: never 0.0.0.0) and
    on loopback for the host's probes; /ping on loopback only."""
    addresses = sorted([host_address(host), "127.0.0.1"])
    return {
        "80/tcp": [(address, str(http)) for address in addresses],
        "443/tcp": [(address, str(https)) for address in addresses],
        "8082/tcp": [("127.0.0.1", "8082")],
    }


@pytest.fixture
def running(host) -> None:
    if not _image_present(host):
        pytest.skip(NO_IMAGE)


# --- Rendered configuration (always) ------------------------------------------------------------


def test_http_redirects_permanently_to_https(host) -> None:
    entry_points = _parse(host, STATIC)["entryPoints"]
    assert entry_points["web"]["address"] == ":80"
    assert entry_points["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert entry_points["websecure"]["address"] == ":443"


def test_websecure_routers_get_the_edge_chain_and_the_acme_resolver(host) -> None:
    websecure = _parse(host, STATIC)["entryPoints"]["websecure"]["http"]
    assert websecure["middlewares"] == ["edge@file"]
    assert websecure["tls"] == {"certResolver": "letsencrypt"}


def test_acme_uses_staging_when_asked_and_stores_in_the_volume(host) -> None:
    acme = _parse(host, STATIC)["certificatesResolvers"]["letsencrypt"]["acme"]
    assert acme["email"] == "ops@invoices.test"
    assert acme["storage"] == "/acme/acme.json"
    assert acme["caServer"] == STAGING_CA
    assert acme["httpChallenge"] == {"entryPoint": "web"}


def test_routes_come_from_the_watched_file_provider_only(host) -> None:
    """No Docker provider: Traefik needs no Docker socket (the app role writes the API's route)."""
    providers = _parse(host, STATIC)["providers"]
    assert providers == {"file": {"directory": "/etc/traefik/dynamic", "watch": True}}


def test_ping_json_access_log_and_no_dashboard_by_default(host) -> None:
    static = _parse(host, STATIC)
    assert static["ping"] == {"entryPoint": "ping"}
    assert static["entryPoints"]["ping"]["address"] == ":8082"
    assert static["accessLog"] == {"format": "json"}
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert "api" not in static, "the API/dashboard is enabled although traefik_dashboard_enabled is false"
    assert not host.file(DASHBOARD).exists


def test_security_headers(host) -> None:
    headers = _parse(host, MIDDLEWARES)["http"]["middlewares"]["security-headers"]["headers"]
    assert headers == {
        "stsSeconds": 31536000,
        "stsIncludeSubdomains": True,
        "stsPreload": False,
        "forceSTSHeader": True,
        "contentTypeNosniff": True,
        "frameDeny": True,
        "referrerPolicy": "strict-origin-when-cross-origin",
    }


def test_rate_limit_of_the_seed_and_compression(host) -> None:
    dynamic = _parse(host, MIDDLEWARES)
    middlewares = dynamic["http"]["middlewares"]
    assert middlewares["rate-limit"] == {"rateLimit": {"average": 100, "burst": 50, "period": "1m"}}
    assert middlewares["compress"] == {"compress": {}}
    assert middlewares["edge"] == {
        "chain": {"middlewares": ["security-headers", "rate-limit", "body-limit", "compress"]}
    }
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"


def test_bodies_longer_than_the_largest_upload_are_refused_and_buffered_on_disk(host) -> None:
    """The body limit (5 photos of 10 MiB plus 64 KiB of framing); what Traefik buffers goes to
    /var/lib/traefik/buffer, mounted as the container's /tmp, on disk and root-only."""
    middlewares = _parse(host, MIDDLEWARES)["http"]["middlewares"]
    assert middlewares["body-limit"] == {
        "buffering": {"maxRequestBodyBytes": 5 * 10 * 1024 * 1024 + 65536, "memRequestBodyBytes": 1048576}
    }
    buffer = host.file("/var/lib/traefik/buffer")
    assert (buffer.is_directory, buffer.user, buffer.mode) == (True, "root", 0o700)


def test_acme_json_is_readable_by_root_only(host) -> None:
    acme = host.file(ACME)
    assert acme.is_file
    assert (acme.user, acme.group, acme.mode) == ("root", "root", 0o600)
    directory = host.file("/var/lib/traefik/acme")
    assert (directory.user, directory.mode) == ("root", 0o700)


def test_configuration_files_belong_to_root(host) -> None:
    for path in ("/etc/traefik", "/etc/traefik/dynamic"):
        directory = host.file(path)
        assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o755), path
    for path in (STATIC, MIDDLEWARES):
        config = host.file(path)
        assert (config.user, config.group, config.mode) == ("root", "root", 0o644), path


def test_edge_network_comes_from_the_docker_pool(host) -> None:
    subnet = host.check_output("docker network inspect --format '{{(index .IPAM.Config 0).Subnet}}' edge")
    assert subnet.startswith("172.30."), subnet


def test_without_the_image_the_role_says_so_and_reports_traefik_running_false(host, run_playbook) -> None:
    if _image_present(host):
        pytest.skip(f"Traefik image {IMAGE} is present: the proxy runs, so this case does not arise")
    run = run_playbook("report.yml")
    assert run.rc == 0, run.output[-3000:]
    assert "Traefik is NOT running" in run.output, run.output[-3000:]
    assert "traefik_running=False" in run.output, run.output[-3000:]
    assert run.recap.get("changed") == 0, run.output[-3000:]
    assert host.run("docker container inspect traefik").rc != 0, (
        "a traefik container exists without its image"
    )


# --- Bad input and a missing image in production -------------------------------------------------


def test_required_image_fails_clearly_before_any_change(host, run_playbook) -> None:
    if _image_present(host):
        pytest.skip(f"Traefik image {IMAGE} is present: a required image does not fail")
    before = _md5(host, STATIC, MIDDLEWARES)
    # A changed value too: had the role gone on, it would have rewritten middlewares.yml.
    run = run_playbook("traefik.yml", {"traefik_image_required": True, "traefik_hsts_max_age": 600})
    assert run.rc != 0, run.output[-3000:]
    assert f"Traefik image {IMAGE} is not present" in run.output, run.output[-3000:]
    assert "traefik_image_required is true" in run.output, run.output[-3000:]
    assert run.recap.get("changed") == 0, run.output[-3000:]
    assert _md5(host, STATIC, MIDDLEWARES) == before


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"traefik_rate_limit_average": 0}, RATE_MESSAGE),
        ({"traefik_rate_limit_period": "0s"}, "traefik_rate_limit_period a"),
        ({"traefik_acme_email": "ops-at-invoices"}, "traefik_acme_email must be a real address"),
        ({"traefik_acme_email": ""}, "traefik_acme_email must be a real address"),
        ({"traefik_image": "traefik:latest"}, "traefik_image must name a pinned release"),
        ({"traefik_image": "traefik:v3"}, "traefik_image must name a pinned release"),
        (
            {"traefik_dashboard_enabled": True, "traefik_dashboard_host": "traefik.invoices.test"},
            "traefik_dashboard_users",
        ),
        (
            {
                "traefik_dashboard_enabled": True,
                "traefik_dashboard_host": "traefik.invoices.test",
                "traefik_dashboard_users": ["admin:plaintext-secret"],
            },
            'not bcrypt hashes (a plaintext password?): ["admin"]',
        ),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    # A changed value too: had validation passed, middlewares.yml would have changed.
    assert_refused_before_change(
        "traefik.yml",
        {"traefik_hsts_max_age": 600, **extra_vars},
        message,
        watch=f"md5sum {STATIC} {MIDDLEWARES}",
        secrets=("plaintext-secret",),
    )


# --- The running proxy (only where the image is present) -----------------------------------------


def _status_and_location(host, url: str) -> tuple[int, str]:
    script = (
        "import http.client, sys, urllib.parse; u = urllib.parse.urlsplit(sys.argv[1]);"
        " c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5);"
        " c.request('GET', u.path or '/', headers={'Host': 'invoices.test'}); r = c.getresponse();"
        " print(r.status, r.getheader('Location') or '')"
    )
    status, _, location = host.check_output(f'python3 -c "{script}" {url}').partition(" ")
    return int(status), location


def test_running_proxy_answers_ping_and_redirects_to_https(host, running: None) -> None:
    assert http_get(host, "http://127.0.0.1:8082/ping") == "OK"
    status, location = _status_and_location(host, "http://127.0.0.1:80/some/path")
    assert status in (301, 308), status
    assert location == "https://invoices.test/some/path"
    health = host.check_output("docker inspect --format '{{.State.Health.Status}}' traefik")
    assert health == "healthy"


def test_running_proxy_is_the_only_outside_publisher_and_is_confined(host, running: None) -> None:
    inspect = json.loads(host.check_output("docker inspect traefik"))[0]
    assert _bindings(inspect["HostConfig"]) == _expected_bindings(host, 80, 443)
    assert inspect["HostConfig"]["Memory"] == 256 * 1024 * 1024
    mounts = {mount["Destination"]: mount for mount in inspect["Mounts"]}
    assert not any("docker.sock" in mount["Source"] for mount in inspect["Mounts"]), mounts
    assert mounts["/etc/traefik"]["RW"] is False
    assert mounts["/acme"]["Source"] == str(Path(ACME).parent)
    assert "edge" in inspect["NetworkSettings"]["Networks"]


def test_only_a_static_change_restarts_the_proxy(host, run_playbook, running: None) -> None:
    def started() -> str:
        return host.check_output("docker inspect --format '{{.State.StartedAt}}' traefik")

    before = started()
    try:
        dynamic = run_playbook("traefik.yml", {"traefik_hsts_max_age": 600})
        after_dynamic = started()
        static = run_playbook("traefik.yml", {"traefik_hsts_max_age": 600, "traefik_log_level": "DEBUG"})
        after_static = started()
    finally:
        run_playbook("traefik.yml")
    assert dynamic.rc == 0, dynamic.output[-3000:]
    assert after_dynamic == before, "a change of dynamic configuration restarted the proxy"
    assert static.rc == 0, static.output[-3000:]
    assert after_static != before, "a change of static configuration did not restart the proxy"


# --- The role's container handling and the dashboard, with a stand-in image (runs everywhere) --

STANDIN_IMAGE = "toolkit/traefik-standin:v0.0.1"
STANDIN_ENTRYPOINT = r"""#!/bin/sh
# Not Traefik: answers /ping on 8082 like the real ping entrypoint, so the role's container
# handling can be tested where no Traefik image exists.
if [ "$1" = healthcheck ]; then
  reply=$(printf 'GET /ping HTTP/1.0\r\n\r\n' | nc 127.0.0.1 8082)
  case "$reply" in *OK*) exit 0 ;; esac
  exit 1
fi
exec httpd -f -p 8082 -h /standin
"""


def _changed_tasks(output: str) -> list[str]:
    """The tasks and handlers a run's output reports as changed, in order ("role : name")."""
    changed: list[str] = []
    task = ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: [") and (not changed or changed[-1] != task):
            changed.append(task)
    return changed


@dataclass(frozen=True)
class StandinRuns:
    """The runs of the stand-in sequence and what was read on the host after each.

    One sequence of four ansible-playbook runs serves the container handling, its idempotence and
    the dashboard (each run costs up to half a minute on this machine): the second run changes a
    dynamic setting only, so every other task of it shows the first run's result is kept; the
    static change that must restart the container is the dashboard's own (its API is static
    configuration) plus a log level.
    """

    first: PlaybookRun  # report.yml, the stand-in image: creates the container
    dynamic: PlaybookRun  # the same plus a dynamic change only (HSTS max-age)
    static: PlaybookRun  # plus static changes: the log level and the dashboard
    restored: PlaybookRun  # the defaults again, the stand-in container removed
    before: str  # the container's StartedAt after `first`
    after_dynamic: str
    after_static: str
    middlewares_after_dynamic: dict
    inspect: dict  # docker inspect after the static change
    ping: str
    static_config: dict  # traefik.yml after the static change
    dashboard: dict  # dashboard.yml after the static change
    dashboard_mode: int
    dashboard_after_restore: bool  # dashboard.yml exists after the restore
    static_after_restore: dict


def _build_standin_image(host) -> str:
    """A busybox image playing Traefik's part for the container plumbing, built on the host."""
    tiny_image = build_tiny_image(host)
    if host.run(f"docker image inspect {STANDIN_IMAGE}").rc != 0:
        host.check_output(
            "rm -rf /tmp/standin && mkdir -p /tmp/standin/www && echo OK > /tmp/standin/www/ping"
        )
        host.check_output(f"cat > /tmp/standin/traefik <<'EOF'\n{STANDIN_ENTRYPOINT}EOF")
        host.check_output("chmod 0755 /tmp/standin/traefik")
        dockerfile = (
            f"FROM {tiny_image}\\nCOPY traefik /bin/traefik\\nCOPY www /standin\\n"
            'ENTRYPOINT ["/bin/traefik"]\\n'
        )
        host.check_output(f"printf '{dockerfile}' > /tmp/standin/Dockerfile")
        host.check_output(f"docker build -q -t {STANDIN_IMAGE} /tmp/standin")
    return STANDIN_IMAGE


@pytest.fixture(scope="module")
def standin_runs(host) -> StandinRuns:
    """Runs the stand-in sequence once for the tests below, then puts the defaults back."""
    run_playbook = playbook_runner(host)
    standin = {
        "traefik_image": _build_standin_image(host),
        "traefik_container_name": "traefik-standin",
        "traefik_http_port": 18080,
        "traefik_https_port": 18443,
    }
    dashboard_vars = {
        "traefik_dashboard_enabled": True,
        "traefik_dashboard_host": "traefik.invoices.test",
        "traefik_dashboard_users": [BCRYPT_USER],
    }

    def started() -> str:
        return host.check_output("docker inspect --format '{{.State.StartedAt}}' traefik-standin")

    try:
        first = run_playbook("report.yml", standin)
        before = started()
        dynamic = run_playbook("traefik.yml", {**standin, "traefik_hsts_max_age": 600})
        after_dynamic = started()
        middlewares_after_dynamic = _parse(host, MIDDLEWARES)
        static = run_playbook(
            "traefik.yml",
            {**standin, "traefik_hsts_max_age": 600, "traefik_log_level": "WARN", **dashboard_vars},
        )
        after_static = started()
        inspect = json.loads(host.check_output("docker inspect traefik-standin"))[0]
        ping = http_get(host, "http://127.0.0.1:8082/ping")
        static_config = _parse(host, STATIC)
        dashboard = _parse(host, DASHBOARD)
        dashboard_mode = host.file(DASHBOARD).mode
    finally:
        host.run("docker rm -f traefik-standin")
        # The defaults again; dashboard off (the dashboard test asserts this run's effects).
        restored = run_playbook("traefik.yml")
    return StandinRuns(
        first=first,
        dynamic=dynamic,
        static=static,
        restored=restored,
        before=before,
        after_dynamic=after_dynamic,
        after_static=after_static,
        middlewares_after_dynamic=middlewares_after_dynamic,
        inspect=inspect,
        ping=ping,
        static_config=static_config,
        dashboard=dashboard,
        dashboard_mode=dashboard_mode,
        dashboard_after_restore=host.file(DASHBOARD).exists,
        static_after_restore=_parse(host, STATIC),
    )


def test_container_handling_with_a_standin_image(host, standin_runs: StandinRuns) -> None:
    """Ports, mounts, limits, health wait, the running fact, idempotence and restart-only-for-static."""
    runs = standin_runs
    first, dynamic, inspect = runs.first, runs.dynamic, runs.inspect
    assert first.rc == 0, first.output[-3000:]
    assert "traefik_running=True" in first.output, first.output[-3000:]
    # Idempotence: the run after it changes the middlewares it was asked to change, nothing else.
    assert dynamic.rc == 0, dynamic.output[-3000:]
    assert _changed_tasks(dynamic.output) == ["traefik : Write the middlewares"], dynamic.output[-3000:]
    assert dynamic.recap.get("changed") == 1, dynamic.output[-3000:]
    assert inspect["State"]["Health"]["Status"] == "healthy"
    assert runs.ping == "OK"
    config = inspect["HostConfig"]
    assert _bindings(config) == _expected_bindings(host, 18080, 18443)
    assert config["Memory"] == 256 * 1024 * 1024
    # The budget's PIDs limit and CPU shares for the proxy (group_vars/all/app.yml wires them).
    pids_limit, cpu_shares = resolve(host, "[traefik_pids_limit | int, traefik_cpu_shares | int]")
    assert (config["PidsLimit"], config["CpuShares"]) == (pids_limit, cpu_shares)
    assert pids_limit > 0
    assert cpu_shares > 0
    assert "no-new-privileges:true" in config["SecurityOpt"]
    assert config["ReadonlyRootfs"] is True
    assert config["CapDrop"] == ["ALL"]
    assert config["RestartPolicy"]["Name"] == "unless-stopped"
    assert inspect["Config"]["Cmd"] == ["--configFile=/etc/traefik/traefik.yml"]
    mounts = {mount["Destination"]: mount for mount in inspect["Mounts"]}
    # No Docker socket: routes come from files only.
    assert set(mounts) == {"/etc/traefik", "/acme", "/tmp"}, mounts
    assert mounts["/etc/traefik"]["RW"] is False
    assert (mounts["/acme"]["Source"], mounts["/acme"]["RW"]) == ("/var/lib/traefik/acme", True)
    # Buffered request bodies: the container's /tmp is a directory on the host's disk, not a tmpfs.
    assert (mounts["/tmp"]["Source"], mounts["/tmp"]["RW"]) == ("/var/lib/traefik/buffer", True)
    assert not config.get("Tmpfs")
    assert list(inspect["NetworkSettings"]["Networks"]) == ["edge"]
    headers = runs.middlewares_after_dynamic["http"]["middlewares"]["security-headers"]["headers"]
    assert headers["stsSeconds"] == 600, "the dynamic change did not reach middlewares.yml"
    assert runs.after_dynamic == runs.before, "a change of dynamic configuration restarted the container"
    assert runs.static.rc == 0, runs.static.output[-3000:]
    assert runs.static_config["log"]["level"] == "WARN"
    assert runs.after_static != runs.after_dynamic, (
        "a change of static configuration did not restart the container"
    )
    assert runs.restored.rc == 0, runs.restored.output[-3000:]


def test_dashboard_is_its_own_router_behind_basic_auth_when_enabled(standin_runs: StandinRuns) -> None:
    """Enabled in the stand-in sequence's static change, turned off by its restoring run."""
    runs = standin_runs
    assert runs.static.rc == 0, runs.static.output[-3000:]
    assert BCRYPT_USER.split(":", 1)[1] not in runs.static.output, "the password hash was logged"
    assert runs.static_config["api"] == {"dashboard": True, "insecure": False}
    router = runs.dashboard["http"]["routers"]["dashboard"]
    assert router["rule"] == "Host(`traefik.invoices.test`)"
    assert router["service"] == "api@internal"
    assert router["entryPoints"] == ["websecure"]
    assert router["middlewares"] == ["dashboard-auth"]
    assert runs.dashboard["http"]["middlewares"]["dashboard-auth"] == {"basicAuth": {"users": [BCRYPT_USER]}}
    assert runs.dashboard_mode == 0o600
    # Turned off again: the router file is gone and the API with it.
    assert runs.restored.rc == 0, runs.restored.output[-3000:]
    assert not runs.dashboard_after_restore
    assert "api" not in runs.static_after_restore
