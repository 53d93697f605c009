"""toolkit-publish, the forwarder behind the API's published ports: real connections on 127.0.0.1 through
the script run as a process (--listen, or socket-activated as systemd does it) to small HTTP backends."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from role_scripts import ROLES, load_role_script

tp = load_role_script("app", "toolkit_publish")

SCRIPT = ROLES / "app" / "files" / "toolkit_publish.py"
HOST = "127.0.0.1"
TIMEOUT = 3.0  # any single wait: a connect, an answer, a process start or exit

# What systemd does before it runs the service: the listening socket on fd 3, LISTEN_FDS, and LISTEN_PID
# naming the process that execs (the pid stays the same across exec). argv: fd, pid ("" = own), command.
ACTIVATE = textwrap.dedent(
    """\
    import os, sys
    fd, pid, *command = sys.argv[1:]
    if int(fd) != 3:
        os.dup2(int(fd), 3)
        os.close(int(fd))
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=pid or str(os.getpid()))
    os.execv(sys.executable, [sys.executable, *command])
    """
)


def wait_until(done: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def free_port() -> int:
    """A port nothing listens on (for the forwarder's --listen, or as a target that refuses)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_target(path: Path, port: int | None = None, release: str = "", *, text: str | None = None) -> None:
    """Replace the target file as Ansible's copy does (a new file renamed over it). Its mtime is later than
    the old one's even on a file system with coarse timestamps, so that the change is seen."""
    if text is None:
        text = json.dumps({"address": HOST, "port": port, "release": release}) + "\n"
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    stamp = time.time_ns()
    with contextlib.suppress(FileNotFoundError):
        stamp = max(stamp, path.stat().st_mtime_ns + 1_000_000)
    os.utime(new, ns=(stamp, stamp))
    os.replace(new, path)


def send_get(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")


def read_answer(sock: socket.socket) -> str:
    """The body of one HTTP answer (Content-Length), leaving the connection open for the next request."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        body += chunk
    return body.decode()


def request(sock: socket.socket) -> str:
    send_get(sock)
    return read_answer(sock)


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=TIMEOUT)


def fetch(port: int) -> str:
    """One request on a new connection."""
    with connect(port) as sock:
        return request(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """All the data until the other side closes (a reset counts as closed); a hang fails on the timeout."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            data += chunk
    return data


@pytest.fixture
def backend() -> Iterator[Callable[[str], int]]:
    """Start an HTTP/1.1 (keep-alive) server on loopback that answers every GET with its name: its port."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> int:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return

        server = ThreadingHTTPServer((HOST, 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Forwarder:
    process: subprocess.Popen[bytes]
    port: int
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text()

    def wait_for_log(self, text: str) -> None:
        def logged() -> bool:
            if text in self.log():
                return True
            assert self.process.poll() is None, f"toolkit-publish exited:\n{self.log()}"
            return False

        wait_until(logged, f"{text!r} on toolkit-publish's stderr")

    def exit_code(self, timeout: float = TIMEOUT) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def run_forwarder(tmp_path: Path) -> Iterator[Callable[..., Forwarder]]:
    """Start toolkit-publish on --listen 127.0.0.1:<free port>, or on `activated` (a listening socket it gets
    as fd 3 like from systemd); returned once it listens. Terminated at the end of the test."""
    forwarders: list[Forwarder] = []

    def start(
        target: Path, *, drain: float = 2.0, activated: socket.socket | None = None, wait: bool = True
    ) -> Forwarder:
        command = [str(SCRIPT), "--target-file", str(target), "--drain", str(drain), "--connect-timeout", "1"]
        if activated is None:
            port = free_port()
            argv = [sys.executable, *command, "--listen", f"{HOST}:{port}"]
            fds: tuple[int, ...] = ()
        else:
            port = int(activated.getsockname()[1])
            argv = [sys.executable, "-c", ACTIVATE, str(activated.fileno()), "", *command]
            fds = (activated.fileno(),)
        stderr = tmp_path / f"toolkit-publish-{len(forwarders)}.log"
        with stderr.open("wb") as log:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, pass_fds=fds)
        forwarder = Forwarder(process, port, stderr)
        forwarders.append(forwarder)
        if wait:
            forwarder.wait_for_log("listening on")
        return forwarder

    yield start
    for forwarder in forwarders:
        if forwarder.process.poll() is None:
            forwarder.process.terminate()
            try:
                forwarder.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                forwarder.process.kill()
                forwarder.process.wait()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "publish.json"


def test_new_connections_go_to_the_new_target_while_open_ones_finish_on_the_old(
    backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    old, new = backend("release A"), backend("release B")
    write_target(target, old, "a")
    forwarder = run_forwarder(target)
    with connect(forwarder.port) as before:
        assert request(before) == "release A"  # this connection is now forwarded to A
        write_target(target, new, "b")
        assert fetch(forwarder.port) == "release B"
        assert fetch(forwarder.port) == "release B"
        assert request(before) == "release A"  # the same connection, after the switch
        assert request(before) == "release A"
    assert f"forwarding new connections to {HOST}:{new} (release b)" in forwarder.log()


@pytest.mark.parametrize("problem", ["target refuses", "no target file yet"])
def test_a_connection_without_a_reachable_target_is_closed_and_later_ones_are_served(
    problem: str, backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    if problem == "target refuses":
        write_target(target, free_port(), "gone")
    forwarder = run_forwarder(target)
    with connect(forwarder.port) as client:
        send_get(client)
        assert read_until_closed(client) == b""
    expected = "refused a connection" if problem == "target refuses" else "no target yet"
    assert expected in forwarder.log()

    write_target(target, backend("release A"), "a")
    assert fetch(forwarder.port) == "release A"
    assert forwarder.process.poll() is None


def test_a_malformed_target_file_keeps_the_previous_target(
    backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    first, second = backend("release A"), backend("release B")
    write_target(target, first, "a")
    forwarder = run_forwarder(target)
    assert fetch(forwarder.port) == "release A"

    write_target(target, text='{"address": "127.0.0.1", "po')  # e.g. caught half-written
    assert fetch(forwarder.port) == "release A"
    assert f"cannot read {target}: " in forwarder.log()
    assert f"keeping Target(address='{HOST}', port={first}, release='a')" in forwarder.log()

    write_target(target, second, "b")  # and a good file is used again
    assert fetch(forwarder.port) == "release B"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"address": "10.0.0.2", "port": 80',
        '{"address": "10.0.0.2"}',
        '{"port": 80}',
        '{"address": "10.0.0.2", "port": "http"}',
        '["10.0.0.2", 80]',
    ],
)
def test_any_malformed_target_keeps_the_previous_one_and_says_which_file(
    text: str, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = tp.TargetFile(target)
    write_target(target, 8000, "a")
    assert targets.current() == tp.Target(HOST, 8000, "a")
    write_target(target, text=text)
    assert targets.current() == tp.Target(HOST, 8000, "a")
    assert f"cannot read {target}: " in capsys.readouterr().err


def test_sigterm_stops_accepting_and_lets_the_open_connection_finish(
    backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    write_target(target, backend("release A"), "a")
    forwarder = run_forwarder(target, drain=10)
    with connect(forwarder.port) as open_connection:
        assert request(open_connection) == "release A"
        forwarder.process.send_signal(signal.SIGTERM)
        forwarder.wait_for_log("stopping: 1 open connection(s) get up to 10 s to finish")
        with pytest.raises(ConnectionRefusedError):
            connect(forwarder.port).close()
        assert request(open_connection) == "release A"
        assert forwarder.process.poll() is None  # still draining while the connection is open
    started = time.monotonic()
    assert forwarder.exit_code() == 0  # right after the last connection closed, not after 10 s
    assert time.monotonic() - started < 2


def test_sigterm_gives_open_connections_no_more_than_the_drain_time(
    backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    write_target(target, backend("release A"), "a")
    forwarder = run_forwarder(target, drain=0.5)
    with connect(forwarder.port) as idle:
        assert request(idle) == "release A"
        started = time.monotonic()
        forwarder.process.send_signal(signal.SIGTERM)
        assert forwarder.exit_code() == 0
        assert 0.4 < time.monotonic() - started < 2.5
        assert read_until_closed(idle) == b""


def test_a_target_that_resets_the_connection_closes_the_client_connection(
    run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    """An API container that dies mid-request: the client must not wait forever (nor hold up the stop)."""
    with socket.create_server((HOST, 0)) as server:

        def reset_after_the_request() -> None:
            connection, _ = server.accept()
            connection.recv(4096)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

        threading.Thread(target=reset_after_the_request, daemon=True).start()
        write_target(target, server.getsockname()[1], "dying")
        forwarder = run_forwarder(target, drain=30)
        with connect(forwarder.port) as client:
            send_get(client)
            assert read_until_closed(client) == b""
    forwarder.process.terminate()
    assert forwarder.exit_code() == 0


def test_socket_activated_it_serves_the_socket_systemd_passes_and_a_restart_loses_no_connection(
    backend: Callable[[str], int], run_forwarder: Callable[..., Forwarder], target: Path
) -> None:
    write_target(target, backend("release A"), "a")
    with socket.create_server((HOST, 0)) as held:  # the socket unit's socket: systemd keeps it open
        first = run_forwarder(target, activated=held)
        assert fetch(first.port) == "release A"
        first.process.terminate()
        assert first.exit_code() == 0

        with connect(held.getsockname()[1]) as waiting:  # accepted by the kernel while no forwarder runs
            send_get(waiting)
            run_forwarder(target, activated=held)
            assert read_answer(waiting) == "release A"


def test_a_socket_activation_meant_for_another_process_is_ignored(target: Path, tmp_path: Path) -> None:
    with socket.create_server((HOST, 0)) as held:
        stderr = tmp_path / "stderr.log"
        command = [str(SCRIPT), "--target-file", str(target)]
        with stderr.open("wb") as log:
            done = subprocess.run(
                [sys.executable, "-c", ACTIVATE, str(held.fileno()), "1", *command],
                stderr=log,
                pass_fds=(held.fileno(),),
                timeout=TIMEOUT,
                check=False,
            )
    assert done.returncode == 2
    assert "no socket: run from a systemd socket unit or give --listen" in stderr.read_text()


def test_activated_sockets_are_the_passed_fds_only_when_listen_pid_is_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server((HOST, 0)) as passed:
        monkeypatch.setattr(tp, "SD_LISTEN_FDS_START", passed.fileno())  # not fd 3: pytest's own fds
        monkeypatch.delenv("LISTEN_PID", raising=False)
        monkeypatch.setenv("LISTEN_FDS", "1")
        assert tp.activated_sockets() == []
        monkeypatch.setenv("LISTEN_PID", str(os.getppid()))
        assert tp.activated_sockets() == []
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
        monkeypatch.setenv("LISTEN_FDS", "0")
        assert tp.activated_sockets() == []

        monkeypatch.setenv("LISTEN_FDS", "1")
        (activated,) = tp.activated_sockets()
        try:
            assert activated.fileno() == passed.fileno()
            assert activated.getsockname() == passed.getsockname()
            assert activated.type == socket.SOCK_STREAM
        finally:
            activated.detach()  # the fd is `passed`'s, closed once


def test_the_target_file_is_read_again_only_when_its_mtime_or_size_changes(target: Path) -> None:
    targets = tp.TargetFile(target)
    assert targets.current() is None

    write_target(target, 8000, "a")
    assert targets.current() == tp.Target(HOST, 8000, "a")
    before = target.stat()

    # Other content, same size and mtime: not read again.
    target.write_text(target.read_text().replace('"a"', '"b"'))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert targets.current() == tp.Target(HOST, 8000, "a")

    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert targets.current() == tp.Target(HOST, 8000, "b")

    # Same mtime, other size: read again.
    stamp = target.stat().st_mtime_ns
    target.write_text(target.read_text().replace('"b"', '"ccc"'))
    os.utime(target, ns=(stamp, stamp))
    assert targets.current() == tp.Target(HOST, 8000, "ccc")

    target.unlink()  # gone: the last target stays
    assert targets.current() == tp.Target(HOST, 8000, "ccc")
