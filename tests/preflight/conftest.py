"""Fixtures for the preflight tests: throwaway Debian hosts and a copy of the production inventory.

The REAL playbooks/preflight.yml runs against containers started from the Debian 12 test-host image
(`make images`), reached with the community.docker.docker connection (preflight only gathers facts
and reads; no systemd is needed). Each test inventory is a temporary directory holding the
production inventory's own files: group_vars/all linked to the repository's, group_vars/vps/main.yml
copied as shipped, a vault made from vault.yml.example, and the test's changes in
group_vars/vps/overrides.yml (read after main.yml). Every container is named `toolkit-preflight-*`
and removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "inventories" / "production" / "group_vars" / "vps"
IMAGE = os.environ.get("PREFLIGHT_IMAGE", "toolkit/systemd-debian:bookworm")
BIN = REPO / ".venv" / "bin"
# A problem line of preflight's report: "3. [redis] redis_password is ... -> edit <file>".
PROBLEM = re.compile(r"^(\d+)\. \[([a-z_]+)\] (.*) -> edit (.+)$", re.MULTILINE)
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
# Paths the test bench itself writes in a host: Ansible's temporary files (docker connection as root).
BENCH_PATHS = ("/root/.ansible", "/tmp")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


@dataclass
class Host:
    """A throwaway container standing in for a freshly installed VPS."""

    name: str

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, "sh", "-c", command, check=False)

    def changes(self) -> list[str]:
        """`docker diff` against the image, without what the test bench writes itself."""
        changed = []
        for line in docker("diff", self.name).stdout.splitlines():
            kind, path = line.split(" ", 1)
            bench = path.startswith(BENCH_PATHS) or (
                kind == "C" and any(bench.startswith(path.rstrip("/") + "/") for bench in BENCH_PATHS)
            )
            if not bench:
                changed.append(line)
        return sorted(changed)


@dataclass
class Run:
    """One ansible-playbook run: exit code, output, the host's recap and the problems it listed."""

    rc: int
    output: str
    recap: dict[str, int]
    problems: list[tuple[str, str, str]]  # (role, message, file to edit), each once

    def problem_naming(self, variable: str) -> tuple[str, str, str]:
        found = [problem for problem in self.problems if re.search(rf"\b{variable}\b", problem[1])]
        assert found, f"no problem names {variable}; problems: {self.problems}\n{self.output[-4000:]}"
        return found[0]


@pytest.fixture(scope="session")
def make_host() -> Iterator[Callable[..., Host]]:
    """Start throwaway Debian 12 hosts on demand (``docker run`` options, e.g. a memory limit, may be
    given); all of them are removed at the end."""
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: run make images first")
    started: list[str] = []

    def start(*options: str) -> Host:
        name = f"toolkit-preflight-{uuid.uuid4().hex[:8]}"
        docker("run", "-d", "--name", name, *options, IMAGE, "sleep", "infinity")
        started.append(name)
        return Host(name)

    yield start
    for name in started:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="session")
def host(make_host: Callable[..., Host]) -> Host:
    """The Debian 12 host most tests share (preflight is read-only: each test checks it stays so)."""
    return make_host()


@pytest.fixture(scope="session")
def deploy_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real public key, made with ssh-keygen for the tests."""
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator@invoices.test", "-f", str(key)],
        check=True,
    )
    return key.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="session")
def image_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the app role's validation looks for on the controller: a tarball and its manifest beside
    it (`make package` writes the real ones; preflight only checks that they are there)."""
    directory = tmp_path_factory.mktemp("dist")
    tarball = directory / "invoice-service-0.0.0-test.tar.gz"
    tarball.write_bytes(b"")
    manifest = {"version": "0.0.0-test", "image": "invoice-service:0.0.0-test", "image_id": "sha256:0"}
    (directory / "invoice-service-0.0.0-test.json").write_text(
        json.dumps({**manifest, "tarball": tarball.name})
    )
    return tarball


def random_vault() -> dict[str, str]:
    """Every secret of vault.yml.example, with a random value."""
    example = yaml.safe_load((PRODUCTION / "vault.yml.example").read_text())
    return {name: secrets.token_urlsafe(36) for name in example}


def make_inventory(
    directory: Path,
    host: Host,
    overrides: dict[str, object] | None = None,
    vault: dict[str, str] | None = None,
    groups: tuple[str, ...] = (),
) -> Path:
    """A copy of the production inventory for `host`: main.yml as shipped, `vault` (default: the
    example's placeholders) and the test's `overrides`, the host also in `groups` (db, app) under
    vps; returns its hosts file."""
    group_vars = directory / "group_vars"
    (group_vars / "vps").mkdir(parents=True)
    (group_vars / "all").symlink_to(REPO / "group_vars" / "all")
    (group_vars / "vps" / "main.yml").write_text((PRODUCTION / "main.yml").read_text())
    vault_text = (
        (PRODUCTION / "vault.yml.example").read_text()
        if vault is None
        else yaml.safe_dump(vault, default_flow_style=False)
    )
    (group_vars / "vps" / "vault.yml").write_text(vault_text)
    if overrides:
        (group_vars / "vps" / "overrides.yml").write_text(yaml.safe_dump(overrides, default_flow_style=False))
    hosts = directory / "hosts.yml"
    hosts.write_text(
        yaml.safe_dump(
            {
                "vps": {
                    "hosts": {
                        host.name: {
                            "ansible_connection": "community.docker.docker",
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    },
                    **({"children": {name: {"hosts": {host.name: {}}} for name in groups}} if groups else {}),
                }
            }
        )
    )
    return hosts


def run_preflight(hosts: Path, host: Host, *extra: str) -> Run:
    """Run the real playbooks/preflight.yml against the inventory `hosts`."""
    return run_playbook("preflight.yml", hosts, host, *extra)


def run_playbook(playbook: str, hosts: Path, host: Host, *extra: str) -> Run:
    """Run the real playbooks/<playbook> against the inventory `hosts`; `host`'s recap and problems."""
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
    }
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(hosts), str(REPO / "playbooks" / playbook), *extra],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=environment,
        timeout=300,
    )
    output = done.stdout + done.stderr
    recaps = {match["host"]: match for match in RECAP.finditer(output)}
    assert host.name in recaps, f"no recap for {host.name}:\n{output[-4000:]}"
    recap = {key: int(recaps[host.name][key]) for key in ("ok", "changed", "unreachable", "failed")}
    problems = list(
        dict.fromkeys((role, message, where) for _, role, message, where in PROBLEM.findall(output))
    )
    return Run(done.returncode, output, recap, problems)
