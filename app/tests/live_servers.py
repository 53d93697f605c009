"""Throwaway PostgreSQL and Redis servers on loopback, for the tests and `make bench-app`.

PostgreSQL: Debian's binaries (initdb/pg_ctl from /usr/lib/postgresql/<version>/bin), a cluster in a
temporary directory owned by the `postgres` user (initdb refuses to run as root), trust authentication
on 127.0.0.1 only, a free port. Redis: `redis-server` with no persistence on a free port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts on 127.0.0.1:port, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _pg_bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("PostgreSQL server binaries missing: run `make app-setup` (apt postgresql)")
    return versions[-1].parent


@dataclass
class PostgresServer:
    """A running throwaway cluster."""

    port: int
    datadir: Path
    bindir: Path
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_user(self.user, list(argv)), check=True, capture_output=True, text=True)

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name
        )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._run(
            str(self.bindir / "dropdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "--force",
            name,
        )


def _as_user(user: str, argv: list[str]) -> list[str]:
    if os.geteuid() == 0 and user != "root":
        return ["runuser", "-u", user, "--", *argv]
    return argv


@contextlib.contextmanager
def postgres_server(**server_options: str) -> Iterator[PostgresServer]:
    """Start a cluster; stop it and delete its directory afterwards."""
    bindir = _pg_bindir()
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    tmp = Path(tempfile.mkdtemp(prefix="invoice-pg-"))
    datadir = tmp / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, user, user)
    port = free_port()
    subprocess.run(
        _as_user(
            user,
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(tmp),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    } | server_options
    opts = " ".join(f"-c {key}={value}" for key, value in options.items())
    subprocess.run(
        _as_user(
            user,
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(tmp / "log"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    server = PostgresServer(port=port, datadir=datadir, bindir=bindir, user=user)
    try:
        yield server
    finally:
        subprocess.run(
            _as_user(user, [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """Start redis-server on a free port (no persistence); yield the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server missing: run `make app-setup` (apt redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
