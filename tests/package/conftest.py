"""Fixtures for the package check: the tarball `make package` wrote, and what its containers need.

PostgreSQL and Redis run on this machine (Debian's packages; `make package-check` installs them when
missing) in a throwaway directory, listening on the Docker bridge's gateway so that containers on
the default bridge reach them as they would reach a database on another host. Every container these
tests start is named `invoice-package-check-*` and removed afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("PACKAGE_DIST", REPO / "dist"))
UID = "10001"
API_START_SECONDS = float(os.environ.get("PACKAGE_CHECK_START_SECONDS", "120"))


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def wait_for(
    what: str,
    probe: Callable[[], str | None],
    timeout: float,
    interval: float = 0.5,
    context: Callable[[], str] | None = None,
) -> str:
    """Call probe until it returns a value (not None); fail naming `what`, the last error and context."""
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception as error:  # the last error is reported on timeout
            last = error
        else:
            if result is not None:
                return result
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last})" + (f"\n{context()}" if context else ""))


def container_logs(name: str, lines: int = 40) -> str:
    logs = docker("logs", "--tail", str(lines), name, check=False)
    return f"last log lines of {name}:\n{logs.stdout}{logs.stderr}"


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Package:
    manifest: dict[str, object]
    tarball: Path

    @property
    def image(self) -> str:
        return str(self.manifest["image"])


@dataclass
class Services:
    """PostgreSQL and Redis for the containers, with what the app's settings call them."""

    gateway: str
    env: dict[str, str]
    psql: Callable[[str], str]
    containers: list[str] = field(default_factory=list)

    def docker_env(self) -> list[str]:
        return [arg for key, value in self.env.items() for arg in ("--env", f"{key}={value}")]


@pytest.fixture(scope="session")
def package() -> Package:
    manifest_path = DIST / "invoice-service-latest.json"
    if not manifest_path.is_file():
        pytest.fail(f"{manifest_path} is missing: run `make package` first")
    manifest = json.loads(manifest_path.read_text())
    return Package(manifest=manifest, tarball=manifest_path.parent / str(manifest["tarball"]))


@pytest.fixture(scope="session")
def loaded(package: Package) -> subprocess.CompletedProcess[str]:
    """`docker load` of the tarball: the image every other test runs."""
    return docker("load", "--input", str(package.tarball), check=False)


@pytest.fixture(scope="session")
def image(package: Package, loaded: subprocess.CompletedProcess[str]) -> str:
    if loaded.returncode != 0:
        pytest.fail(f"docker load failed: {loaded.stderr.strip()}")
    return package.image


def bridge_network() -> tuple[str, str]:
    """(gateway, subnet) of Docker's default bridge."""
    out = docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}").stdout
    config = json.loads(out)[0]
    # dockerd leaves Gateway out when it picked the default: the subnet's first address.
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return gateway, config["Subnet"]


def postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing: apt-get install postgresql (make package-check does)")
    return str(found[-1])


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: apt-get install redis-server (make package-check does)")
    gateway, subnet = bridge_network()
    workdir = Path(tempfile.mkdtemp(prefix="invoice-package-check-"))
    shutil.chown(workdir, "postgres", "postgres")
    data = workdir / "pgdata"
    pg_port, redis_port = free_port(gateway), free_port(gateway)
    db_password, redis_password = secrets.token_hex(16), secrets.token_hex(16)
    containers: list[str] = []

    def as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=workdir,
        )
        if result.returncode != 0:
            pytest.fail(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def psql(sql: str) -> str:
        return as_postgres(
            "psql", "-h", str(workdir), "-p", str(pg_port), "-d", "invoice", "-XAtq", "-v", "ON_ERROR_STOP=1",
            "-c", sql,
        ).stdout.strip()  # fmt: skip

    redis: subprocess.Popen[bytes] | None = None
    try:
        as_postgres(postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                    "--auth-host=scram-sha-256")  # fmt: skip
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {subnet} scram-sha-256\n")
        options = f"-c listen_addresses={gateway} -c port={pg_port} -c unix_socket_directories={workdir}"
        log = str(workdir / "postgres.log")
        as_postgres(postgres_bin("pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w", "start")
        redis = subprocess.Popen(
            ["redis-server", "--bind", gateway, "--port", str(redis_port), "--requirepass", redis_password,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        admin = ["psql", "-h", str(workdir), "-p", str(pg_port), "-d", "postgres", "-XAtq"]
        as_postgres(*admin, "-c", f"CREATE ROLE invoice LOGIN PASSWORD '{db_password}'")
        as_postgres(*admin, "-c", "CREATE DATABASE invoice OWNER invoice")
        env = {
            "DATABASE_URL": f"postgresql+asyncpg://invoice:{db_password}@{gateway}:{pg_port}/invoice",
            "REDIS_URL": f"redis://:{redis_password}@{gateway}:{redis_port}/0",
            "JWT_SECRET": secrets.token_hex(32),
        }
        yield Services(gateway=gateway, env=env, psql=psql, containers=containers)
    finally:
        for name in containers:
            docker("rm", "--force", "--volumes", name, check=False)
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        stop = [postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *stop], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def start_container(image: str, services: Services) -> Callable[..., str]:
    """Start a detached container of the image with the services' settings; returns its name."""

    def start(command: str, *docker_args: str) -> str:
        name = f"invoice-package-check-{command}-{secrets.token_hex(3)}"
        services.containers.append(name)
        docker("run", "--detach", "--name", name, *services.docker_env(), *docker_args, image, command)
        return name

    return start


@pytest.fixture(scope="session")
def migrated(image: str, services: Services) -> tuple[str, subprocess.CompletedProcess[str]]:
    """(tables before, result) of the image's `migrate` against the empty database."""
    before = services.psql("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'")
    name = f"invoice-package-check-migrate-{secrets.token_hex(3)}"
    services.containers.append(name)
    result = docker("run", "--name", name, *services.docker_env(), image, "migrate", check=False, timeout=120)
    return before, result


@pytest.fixture(scope="session")
def api(
    start_container: Callable[..., str], migrated: tuple[str, subprocess.CompletedProcess[str]]
) -> tuple[str, str]:
    """(container, base URL) of the API, once its /health answered; health checked every 2 s."""
    name = start_container("api", "--publish", "127.0.0.1::8000", "--health-interval", "2s")
    host_port = docker("port", name, "8000/tcp").stdout.splitlines()[0].strip()
    base = f"http://{host_port}"

    def answers() -> str | None:
        if docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            pytest.fail(f"the api container exited\n{container_logs(name)}")
        status, _ = http_get(f"{base}/health", timeout=2)
        return "yes" if status == 200 else None

    # Generous: a busy 2-core machine takes a while to start two uvicorn processes.
    wait_for(f"{base}/health answering 200", answers, API_START_SECONDS, context=lambda: container_logs(name))
    return name, base
