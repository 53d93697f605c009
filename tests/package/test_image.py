"""The acceptance check of `make package`: the tarball loads, and its containers migrate the
database, answer /health, report the database ready, run as a non-root user, turn healthy by the
image's own HEALTHCHECK, run the worker, and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import time
from collections.abc import Callable

from conftest import API_START_SECONDS, UID, Package, Services, container_logs, docker, http_get, wait_for


def sha256_of(path: object) -> str:
    digest = hashlib.sha256()
    with open(str(path), "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_config(image: str) -> dict[str, object]:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)


def find_key(document: object, key: str) -> object:
    """The value of `key` anywhere in a JSON document (None when absent)."""
    if isinstance(document, dict):
        if key in document:
            return document[key]
        for value in document.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def wait_healthy(container: str, timeout: float = API_START_SECONDS) -> None:
    """Wait until Docker reports the container healthy by the image's HEALTHCHECK command."""
    template = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"

    def healthy() -> str | None:
        status = docker("inspect", "--format", template, container).stdout.strip()
        return status if status == "healthy" else None

    wait_for(f"{container} healthy", healthy, timeout, context=lambda: container_logs(container))


# --- the tarball -------------------------------------------------------------------------------


def test_tarball_matches_its_manifest(package: Package) -> None:
    assert package.tarball.is_file(), f"{package.tarball} is missing"
    assert package.tarball.stat().st_size == package.manifest["tarball_bytes"]
    assert sha256_of(package.tarball) == package.manifest["sha256"], "the tarball differs from its sha256"
    with tarfile.open(package.tarball) as archive:
        (entry,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = set(archive.getnames())
    assert entry["RepoTags"] == [package.image]
    missing = [layer for layer in entry["Layers"] if layer not in names]
    assert not missing, f"layers named in manifest.json but not in the tarball: {missing}"
    assert entry["Config"].removesuffix(".json") == str(package.manifest["image_id"]).removeprefix("sha256:")


def test_docker_load_accepts_the_tarball(package: Package, loaded: subprocess.CompletedProcess[str]) -> None:
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded image: {package.image}" in loaded.stdout
    image_id = docker("image", "inspect", "--format", "{{.Id}}", package.image).stdout.strip()
    assert image_id == package.manifest["image_id"]


# --- the image ---------------------------------------------------------------------------------


def test_image_declares_user_port_healthcheck_and_entrypoint(image: str) -> None:
    config = image_config(image)
    assert config["User"] == f"{UID}:{UID}"
    assert "8000/tcp" in config["ExposedPorts"]  # type: ignore[operator]
    healthcheck = config["Healthcheck"]
    assert healthcheck, "the image has no HEALTHCHECK"
    assert "/usr/local/bin/invoice-healthcheck" in healthcheck["Test"]  # type: ignore[index]
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/usr/local/bin/invoice-service"]
    assert config["Cmd"] == ["api"]
    assert "UVICORN_WORKERS=2" in config["Env"]  # type: ignore[operator]


def test_tesseract_reads_portuguese(image: str) -> None:
    result = docker("run", "--rm", image, "tesseract", "--list-langs", check=False)
    assert result.returncode == 0, result.stderr
    assert "por" in (result.stdout + result.stderr).split()


def test_no_build_tools_or_wheels_remain(image: str) -> None:
    script = "for c in pip pip3 gcc cc; do command -v $c; done; ls -d /wheels /wheel 2>/dev/null; true"
    result = docker("run", "--rm", image, "sh", "-c", script)
    assert result.stdout.strip() == "", f"left in the image: {result.stdout.split()}"
    result = docker("run", "--rm", image, "python", "-c", "import pip", check=False)
    assert result.returncode != 0, "pip is importable in the runtime image"


# --- containers against PostgreSQL and Redis ---------------------------------------------------


Migrated = tuple[str, subprocess.CompletedProcess[str]]


def test_migrate_creates_the_schema(services: Services, migrated: Migrated) -> None:
    before, result = migrated
    assert before == "", f"the database was not empty before migrating: {before}"
    assert result.returncode == 0, f"migrate exited {result.returncode}:\n{result.stdout}{result.stderr}"
    assert services.psql("SELECT count(*) FROM alembic_version") == "1"
    tables = services.psql("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'")
    assert len(tables.split(",")) > 1, f"only {tables} after migrating"


def test_api_answers_health(api: tuple[str, str]) -> None:
    _, base = api
    status, body = http_get(f"{base}/health")
    assert status == 200, body


def test_api_reports_the_database_ready(api: tuple[str, str]) -> None:
    _, base = api
    status, body = http_get(f"{base}/health/ready")
    assert status == 200, body
    database = find_key(json.loads(body), "database")
    ok = database == "ok" or (isinstance(database, dict) and database.get("status") == "ok")
    assert ok, f"/health/ready does not report the database ok: {body}"


def test_api_runs_as_non_root(api: tuple[str, str]) -> None:
    name, _ = api
    rows = docker("top", name, "-o", "pid,uid,args").stdout.splitlines()[1:]
    assert rows, "no process in the api container"
    for row in rows:
        _, uid, args = row.split(None, 2)
        assert uid == UID, f"{args} runs as uid {uid}"
    assert any("invoice_service.serve" in row for row in rows), f"no API supervisor among {rows}"
    workers = [row for row in rows if "multiprocessing.spawn" in row]
    assert len(workers) == 2, f"UVICORN_WORKERS=2 but {len(workers)} worker processes: {rows}"


def test_api_turns_healthy_by_its_healthcheck(api: tuple[str, str]) -> None:
    name, _ = api
    wait_healthy(name)


def test_worker_runs_from_the_same_image(start_container: Callable[..., str]) -> None:
    name = start_container("worker", "--health-interval", "2s")
    wait_healthy(name)
    time.sleep(3)
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
    logs = docker("logs", name)
    assert state["Running"], f"the worker exited ({state['ExitCode']}):\n{logs.stdout}{logs.stderr}"
    assert "Traceback" not in logs.stdout + logs.stderr


def test_api_stops_cleanly_on_sigterm(start_container: Callable[..., str]) -> None:
    name = start_container("api", "--health-interval", "2s")
    wait_healthy(name)
    start = time.monotonic()
    docker("stop", "--time", "40", name)
    took = time.monotonic() - start
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']} after SIGTERM"
    # Nothing is in flight: a shutdown that waits out the 30 s grace period hangs somewhere.
    assert took < 20, f"took {took:.0f} s to stop with no request in flight"


def test_entrypoint_lists_its_commands(image: str) -> None:
    result = docker("run", "--rm", image, "help")
    for name in ("api", "worker", "migrate"):
        assert name in result.stdout
