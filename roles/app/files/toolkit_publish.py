#!/usr/bin/python3
"""toolkit-publish: the API's published ports on the host, forwarded to the live release's container.

Docker binds a published port to one container, so a new release could only take the port once the
old one had stopped: clients saw the old one's stop plus the new one's start-up (about 3 s of
refused connections). Here systemd holds the ports (a socket unit: they stay open across releases
and restarts of this forwarder) and this forwarder connects each accepted connection to the address
in the target file, read again whenever the file changes. The app role starts the new release's
API container beside the old one, rewrites the target once it is ready, then stops the old one:
new connections go to the new release at once, connections already open finish on the old one.

    toolkit-publish --target-file /etc/toolkit/publish.json            (socket-activated)
    toolkit-publish --target-file FILE --listen 127.0.0.1:18000        (without systemd: tests)

The target file: {"address": "172.30.255.251", "port": 8000, "release": "0.1.0-..."}.
On SIGTERM it stops accepting (systemd keeps the sockets; new connections wait for the next start)
and lets the open connections finish for up to --drain seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

SD_LISTEN_FDS_START = 3
BUFFER = 65536


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    release: str = ""


class TargetFile:
    """The target, read again when the file's modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._target: Target | None = None

    def current(self) -> Target | None:
        try:
            stat = self.path.stat()
        except OSError:
            return self._target
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text())
                target = Target(str(raw["address"]), int(raw["port"]), str(raw.get("release", "")))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log(f"cannot read {self.path}: {error}; keeping {self._target}")
                return self._target
            self._stamp = stamp
            if target != self._target:
                release = target.release or "?"
                log(f"forwarding new connections to {target.address}:{target.port} (release {release})")
            self._target = target
        return self._target


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def activated_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed (sd_listen_fds), none when not socket-activated."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=SD_LISTEN_FDS_START + index) for index in range(count)]


def listening_socket(spec: str) -> socket.socket:
    host, _, port = spec.rpartition(":")
    sock = socket.create_server((host.strip("[]") or "127.0.0.1", int(port)), reuse_port=False)
    sock.setblocking(False)
    return sock


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (an HTTP client may still read). On a reset or an
    error, abort the other side: otherwise it would wait for data that cannot come (a client for the
    answer of an API container that died), and the connection would hold up a stop for --drain."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


class Forwarder:
    def __init__(self, targets: TargetFile, connect_timeout: float) -> None:
        self.targets = targets
        self.connect_timeout = connect_timeout
        self.open: set[asyncio.Task[None]] = set()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.open.add(task)
        try:
            target = self.targets.current()
            if target is None:
                log("no target yet: connection closed")
                return
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(target.address, target.port), self.connect_timeout
                )
            except (OSError, TimeoutError) as error:
                log(f"{target.address}:{target.port} refused a connection: {error}")
                return
            try:
                await asyncio.gather(
                    pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer)
                )
            finally:
                upstream_writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await upstream_writer.wait_closed()
        finally:
            client_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await client_writer.wait_closed()
            self.open.discard(task)


async def serve(sockets: list[socket.socket], forwarder: Forwarder, drain: float) -> None:
    servers = [await asyncio.start_server(forwarder.handle, sock=sock) for sock in sockets]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    forwarder.targets.current()
    log("listening on " + ", ".join(str(sock.getsockname()) for sock in sockets))
    await stop.wait()
    for server in servers:
        server.close()
    if forwarder.open:
        log(f"stopping: {len(forwarder.open)} open connection(s) get up to {drain:g} s to finish")
        await asyncio.wait(set(forwarder.open), timeout=drain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target-file", type=Path, required=True)
    parser.add_argument("--listen", action="append", default=[], help="host:port, without socket activation")
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=60.0)
    args = parser.parse_args(argv)
    sockets = activated_sockets() + [listening_socket(spec) for spec in args.listen]
    if not sockets:
        parser.error("no socket: run from a systemd socket unit or give --listen")
    asyncio.run(serve(sockets, Forwarder(TargetFile(args.target_file), args.connect_timeout), args.drain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
