#!/usr/bin/python3
"""Day-two operations of the app's releases on this host.

Installed by the toolkit's app role as /usr/local/sbin/toolkit-app; settings come from
/etc/toolkit/app.json (the role writes it). The make targets of mk/operate.mk run it over SSH.

    toolkit-app status                  the live release (and whether a rollback pinned it), the
                                        deploy lock, the containers and their health, then the
                                        host's own checks (toolkit-healthcheck: disk, backups...)
    toolkit-app releases                the kept releases, newest first; * marks the live one
    toolkit-app logs [SERVICE] [-f] [-n N]
                                        api, worker, traefik, postgres or redis (default: api)
    toolkit-app exec [-i] -- CMD...     CMD in a fresh container of the live release (its image,
                                        env file and mounts), removed afterwards
    toolkit-app stop|start|restart [SERVICE]
                                        the live release's containers (default: all of them)
    toolkit-app unlock                  break a deploy lock whose run is dead
    toolkit-app audit [-n N]            the last deploys, rollbacks and the commands above

Files under the base directory (/opt/invoice-service): releases/<version>/ (each with .live, the
time it last went live), current (a link to the live release), pin.json (a rollback's pin: later
runs keep that release until an explicit deploy of another version), deploy.lock/ (held while a
deploy or rollback runs; holder.json says who, when and what), audit.log (one line per action).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/toolkit/app.json")
COMPOSE_SERVICES = ("api", "worker")


class AppError(Exception):
    """A command cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Settings:
    """What /etc/toolkit/app.json holds."""

    project: str
    base_dir: Path
    exec_service: str = "migrate"
    # Where the logs of the services outside the compose project are: a container's name, a log
    # file, or a systemd unit (journal).
    log_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    # Commands whose output `status` appends (the host's health checks).
    status_commands: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            raw = json.loads(path.read_text())
            return cls(
                project=str(raw["project"]),
                base_dir=Path(raw["base_dir"]),
                exec_service=str(raw.get("exec_service", "migrate")),
                log_sources={str(k): dict(v) for k, v in (raw.get("log_sources") or {}).items()},
                status_commands=tuple(tuple(map(str, c)) for c in raw.get("status_commands") or ()),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AppError(f"cannot read the settings in {path}: {error}") from error

    @property
    def releases_dir(self) -> Path:
        return self.base_dir / "releases"

    @property
    def current_link(self) -> Path:
        return self.base_dir / "current"

    @property
    def pin_file(self) -> Path:
        return self.base_dir / "pin.json"

    @property
    def lock_dir(self) -> Path:
        return self.base_dir / "deploy.lock"

    @property
    def audit_log(self) -> Path:
        return self.base_dir / "audit.log"


# --- Pure helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    live_since: str | None  # the .live stamp: when it last went live (None: never)


def order_releases(releases: Sequence[Release]) -> list[Release]:
    """Newest first: by when each last went live, then those that never did, by name."""
    lived = sorted((r for r in releases if r.live_since), key=lambda r: r.live_since or "", reverse=True)
    never = sorted((r for r in releases if not r.live_since), key=lambda r: r.version)
    return lived + never


def release_lines(releases: Sequence[Release], live: str | None, pinned: str | None) -> list[str]:
    lines = []
    width = max((len(r.version) for r in releases), default=0)
    for release in order_releases(releases):
        mark = "*" if release.version == live else " "
        when = f"went live {release.live_since}" if release.live_since else "never went live"
        pin = "  (pinned)" if release.version == pinned else ""
        lines.append(f"{mark} {release.version:<{width}}  {when}{pin}")
    return lines


def pin_line(pin: dict[str, Any] | None) -> str:
    if not pin:
        return "not pinned: a deploy puts the newest package live"
    return (
        f"PINNED to {pin.get('version')} by {pin.get('by', '?')} at {pin.get('at', '?')} "
        f"({pin.get('reason', '?')}); deploys keep it until an explicit deploy of another version "
        "(make app-deploy)"
    )


def lock_line(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "deploy lock: free"
    return (
        f"deploy lock: HELD by {holder.get('by', '?')} since {holder.get('at', '?')} "
        f"({holder.get('action', '?')} {holder.get('version', '?')})"
    )


def parse_compose_ps(output: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json`: one JSON object per line (compose >= 2.21) or one array."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def container_lines(containers: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for container in sorted(containers, key=lambda c: str(c.get("Service", ""))):
        health = container.get("Health") or ""
        state = str(container.get("State", "?")) + (f" ({health})" if health else "")
        lines.append(f"  {container.get('Service', '?'):<8} {state:<20} {container.get('Status', '')}")
    return lines or ["  (no container: the app is not deployed or was removed)"]


def log_command(
    settings: Settings, release_dir: Path, service: str, *, follow: bool, lines: int
) -> list[str]:
    """The command that prints (or follows) ``service``'s logs."""
    if service in COMPOSE_SERVICES:
        command = [*compose(settings, release_dir), "logs", "--no-color", "--tail", str(lines)]
        return [*command, "--timestamps", *(["--follow"] if follow else []), service]
    source = settings.log_sources.get(service)
    if not source:
        known = ", ".join([*COMPOSE_SERVICES, *sorted(settings.log_sources)])
        raise AppError(f"no service {service} (known: {known})")
    if "container" in source:
        return [
            "docker",
            "logs",
            "--tail",
            str(lines),
            *(["--follow"] if follow else []),
            source["container"],
        ]
    if "file" in source:
        matches = sorted(glob.glob(source["file"])) or [source["file"]]
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), matches[-1]]
    return ["journalctl", "--no-pager", "-n", str(lines), *(["-f"] if follow else []), "-u", source["unit"]]


def compose(settings: Settings, release_dir: Path) -> list[str]:
    return [
        "docker",
        "compose",
        "--project-name",
        settings.project,
        "--project-directory",
        str(release_dir),
        "--file",
        str(release_dir / "compose.yaml"),
    ]


def audit_entry(at: str, by: str, action: str, detail: str) -> str:
    return f"{at} {action} by {by}: {detail}".replace("\n", " ")


# --- The host ----------------------------------------------------------------------------------


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def operator() -> str:
    """Who runs the command: the controller's user@host the make targets pass, else the login."""
    return os.environ.get("TOOLKIT_OPERATOR") or (
        f"{os.environ.get('SUDO_USER') or os.environ.get('USER') or 'root'}@{socket.gethostname()}"
    )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def live_release(settings: Settings) -> Path:
    if not settings.current_link.is_symlink():
        raise AppError(f"no live release ({settings.current_link} is missing): run make deploy first")
    return settings.current_link.resolve()


def kept_releases(settings: Settings) -> list[Release]:
    if not settings.releases_dir.is_dir():
        return []
    releases = []
    for directory in settings.releases_dir.iterdir():
        if directory.is_dir():
            stamp = directory / ".live"
            releases.append(Release(directory.name, stamp.read_text().strip() if stamp.is_file() else None))
    return releases


def audit(settings: Settings, action: str, detail: str) -> None:
    with settings.audit_log.open("a") as log:
        log.write(audit_entry(now_text(), operator(), action, detail) + "\n")
    settings.audit_log.chmod(0o640)


def call(command: list[str]) -> int:
    return subprocess.run(command, check=False, cwd="/").returncode


# --- Commands ----------------------------------------------------------------------------------


def command_status(settings: Settings) -> int:
    release = live_release(settings)
    stamp = release / ".live"
    since = stamp.read_text().strip() if stamp.is_file() else "?"
    print(f"{settings.project} on {socket.gethostname()}")
    print(f"live release: {release.name} (went live {since})")
    print(pin_line(read_json(settings.pin_file)))
    print(lock_line(read_json(settings.lock_dir / "holder.json") if settings.lock_dir.is_dir() else None))
    done = subprocess.run(
        [*compose(settings, release), "ps", "--all", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    print("containers:")
    if done.returncode != 0:
        print(f"  docker compose ps failed: {done.stderr.strip()}")
    else:
        print("\n".join(container_lines(parse_compose_ps(done.stdout))))
    worst = 0 if done.returncode == 0 else 1
    for command in settings.status_commands:
        if shutil.which(command[0]) is None:
            print(f"{command[0]}: not installed")
            continue
        print(f"$ {' '.join(command)}", flush=True)
        worst = max(worst, call(list(command)))
    return worst


def command_releases(settings: Settings) -> int:
    live = live_release(settings).name if settings.current_link.is_symlink() else None
    pin = read_json(settings.pin_file)
    lines = release_lines(kept_releases(settings), live, (pin or {}).get("version"))
    print("\n".join(lines) if lines else f"no release in {settings.releases_dir}")
    return 0


def command_logs(settings: Settings, service: str, *, follow: bool, lines: int) -> int:
    release = live_release(settings) if service in COMPOSE_SERVICES else settings.base_dir
    return call(log_command(settings, release, service, follow=follow, lines=lines))


def command_exec(settings: Settings, argv: list[str], *, interactive: bool) -> int:
    if not argv:
        raise AppError('nothing to run: toolkit-app exec -- CMD... (make exec CMD="...")')
    release = live_release(settings)
    audit(settings, "exec", f"{release.name}: {' '.join(argv)}")
    tty = [] if interactive else ["-T"]
    return call([*compose(settings, release), "run", "--rm", "--no-deps", *tty, settings.exec_service, *argv])


def command_lifecycle(settings: Settings, action: str, service: str | None) -> int:
    release = live_release(settings)
    services = [service] if service else []
    if service and service not in COMPOSE_SERVICES:
        raise AppError(f"no service {service} in the release (known: {', '.join(COMPOSE_SERVICES)})")
    status = call([*compose(settings, release), action, *services])
    audit(settings, action, f"{release.name} {service or 'all services'}: exit {status}")
    return status


def command_unlock(settings: Settings) -> int:
    if not settings.lock_dir.is_dir():
        print("deploy lock: free (nothing to break)")
        return 0
    holder = read_json(settings.lock_dir / "holder.json")
    shutil.rmtree(settings.lock_dir)
    audit(settings, "unlock", "broke the deploy lock: " + lock_line(holder).removeprefix("deploy lock: "))
    print("broke the " + lock_line(holder))
    return 0


def command_audit(settings: Settings, lines: int) -> int:
    if not settings.audit_log.is_file():
        print(f"no audit log yet ({settings.audit_log})")
        return 0
    print("\n".join(settings.audit_log.read_text().splitlines()[-lines:]))
    return 0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="toolkit-app", description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="settings file (JSON)")
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="live release, pin, lock, containers, the host's checks")
    commands.add_parser("releases", help="the kept releases, * marks the live one")
    logs = commands.add_parser("logs", help="a service's logs")
    logs.add_argument("service", nargs="?", default="api")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    run = commands.add_parser("exec", help="a command in a fresh container of the live release")
    run.add_argument("-i", "--interactive", action="store_true", help="with a terminal")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    for action in ("stop", "start", "restart"):
        lifecycle = commands.add_parser(action, help=f"{action} the live release's containers")
        lifecycle.add_argument("service", nargs="?")
    commands.add_parser("unlock", help="break a deploy lock whose run is dead")
    trail = commands.add_parser("audit", help="the audit log's last lines")
    trail.add_argument("-n", "--lines", type=int, default=30)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.load(args.config)
        if args.command == "status":
            return command_status(settings)
        if args.command == "releases":
            return command_releases(settings)
        if args.command == "logs":
            return command_logs(settings, args.service, follow=args.follow, lines=args.lines)
        if args.command == "exec":
            argv_ = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            return command_exec(settings, argv_, interactive=args.interactive)
        if args.command in ("stop", "start", "restart"):
            return command_lifecycle(settings, args.command, args.service)
        if args.command == "unlock":
            return command_unlock(settings)
        return command_audit(settings, args.lines)
    except AppError as error:
        print(f"toolkit-app {args.command}: {error}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
