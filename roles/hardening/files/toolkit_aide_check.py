#!/usr/bin/python3
"""Run AIDE's file integrity check and send what changed to the alert channel.

Installed by the toolkit's hardening role as /usr/local/sbin/toolkit-aide-check; its daily timer
(toolkit-aide-check.timer) runs it.

    toolkit-aide-check --init                      record the files as they are (the baseline)
    toolkit-aide-check [--alert-command CMD] [--accept]
        compare the files with the baseline; when something was added, removed or changed, send
        the list through CMD (toolkit-alert) and, with --accept, make the new state the baseline
        so each change is reported once.

The exit code is 0 when the check ran (with or without changes) and the alert, if any, went out;
non-zero when AIDE failed or the alert could not be sent (the baseline then stays as it was, so
the next run reports the same changes again).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = Path("/etc/aide/aide.conf")
DATABASE = Path("/var/lib/aide/aide.db")
NEW_DATABASE = Path("/var/lib/aide/aide.db.new")
# AIDE's exit code is a bit field of what differs (1 added, 2 removed, 4 changed); 14 and up are errors.
DIFFERENCES = range(1, 8)
MAX_LISTED = 40
_SECTION = re.compile(r"^(Added|Removed|Changed) entries:$")
_ENTRY = re.compile(r"^\S[^:]*:\s(/.*)$")


@dataclass
class Report:
    """What AIDE found: the paths per kind of difference."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def message(self, limit: int = MAX_LISTED) -> str:
        lines = [f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed."]
        listed = 0
        for title, paths in (("Added", self.added), ("Removed", self.removed), ("Changed", self.changed)):
            for path in paths:
                if listed == limit:
                    lines.append(f"... and {self.total - limit} more: aide --config {CONFIG} --check")
                    return "\n".join(lines)
                lines.append(f"{title}: {path}")
                listed += 1
        return "\n".join(lines)


def parse(output: str) -> Report:
    """The added, removed and changed paths of AIDE's report (the summary part, not the details)."""
    report = Report()
    section: list[str] | None = None
    for raw in output.splitlines():
        line = raw.strip()
        header = _SECTION.match(line)
        if header:
            section = {"Added": report.added, "Removed": report.removed, "Changed": report.changed}[header[1]]
            continue
        if line.startswith("Detailed information"):
            break
        entry = _ENTRY.match(line)
        if section is not None and entry:
            section.append(entry[1])
    return report


def aide(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["aide", f"--config={config}", *args], capture_output=True, text=True, check=False)


def init(config: Path, database: Path, new_database: Path) -> int:
    result = aide("--init", config=config)
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        return result.returncode
    os.replace(new_database, database)
    print(f"baseline recorded in {database}")
    return 0


def check(config: Path, database: Path, new_database: Path, alert_command: str, accept: bool) -> int:
    # --update compares like --check and also writes the current state to the new database.
    result = aide("--update", config=config)
    if result.returncode == 0:
        print("AIDE: no file added, removed or changed")
        new_database.unlink(missing_ok=True)
        return 0
    if result.returncode not in DIFFERENCES:
        print(f"AIDE failed (exit {result.returncode}):\n{result.stdout}{result.stderr}", file=sys.stderr)
        return result.returncode
    report = parse(result.stdout)
    message = report.message()
    print(f"AIDE: {message}")
    title = f"AIDE on {socket.gethostname()}: {report.total} files added, removed or changed"
    sent = subprocess.run([alert_command, "--title", title, "--message", message], check=False)
    if sent.returncode != 0:
        print(
            f"{alert_command} failed (exit {sent.returncode}): the baseline stays as it was", file=sys.stderr
        )
        return 1
    if accept:
        os.replace(new_database, database)
        print("the reported state is the new baseline")
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="toolkit-aide-check", description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=CONFIG)
    cli.add_argument("--database", type=Path, default=DATABASE)
    cli.add_argument("--new-database", type=Path, default=NEW_DATABASE)
    cli.add_argument("--init", action="store_true", help="record the baseline and stop")
    cli.add_argument("--alert-command", default="/usr/local/sbin/toolkit-alert")
    cli.add_argument("--accept", action="store_true", help="make the reported state the new baseline")
    args = cli.parse_args(argv)
    if args.init:
        return init(args.config, args.database, args.new_database)
    return check(args.config, args.database, args.new_database, args.alert_command, args.accept)


if __name__ == "__main__":
    sys.exit(main())
