#!/usr/bin/python3
"""Alertmanager's webhook receiver: hand each notification to toolkit-alert, one message per group.

Installed by the toolkit's monitoring role as /usr/local/sbin/toolkit-alert-relay, run by
toolkit-alert-relay.service on loopback. Alertmanager groups, de-duplicates and repeats; this only
turns its JSON (webhook payload version 4) into a title and a message and runs

    toolkit-alert --title TITLE --message TEXT [--priority P --tags T]

which sends them through the alerting role's channels (webhook, mail) and the journal. It answers
200 once toolkit-alert delivered, 500 otherwise: Alertmanager then retries the notification.

    toolkit-alert-relay --listen 127.0.0.1:9095
    toolkit-alert-relay --print < payload.json     the title and message a payload gives, sent nowhere
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024
# ntfy's priorities and tags by the alert's severity label; a resolved group is always "default".
PRIORITY = {"critical": "urgent", "warning": "high"}


@dataclass(frozen=True)
class Message:
    title: str
    text: str
    priority: str
    tags: str

    def command(self) -> list[str]:
        # The webhook carries the title in an HTTP header: Latin-1 only.
        title = self.title.encode("latin-1", "replace").decode("latin-1")
        return [
            "toolkit-alert",
            "--title",
            title,
            "--message",
            self.text,
            "--priority",
            self.priority,
            "--tags",
            self.tags,
        ]


def _line(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    summary = annotations.get("summary") or labels.get("alertname", "alert")
    where = ", ".join(
        f"{name}={value}"
        for name, value in sorted(labels.items())
        if name not in ("alertname", "severity", "host")
    )
    status = "RESOLVED" if alert.get("status") == "resolved" else "FIRING"
    line = f"{status} {labels.get('alertname', '?')}: {summary}"
    if where:
        line += f" ({where})"
    runbook = annotations.get("runbook")
    return f"{line}\n  what to do: {runbook}" if runbook and status == "FIRING" else line


def message(payload: dict[str, Any]) -> Message:
    """The title and text of one Alertmanager notification (one group: one alert, with group_by '...')."""
    alerts = [alert for alert in payload.get("alerts") or [] if isinstance(alert, dict)]
    if not alerts:
        raise ValueError("the notification holds no alert")
    common = payload.get("commonLabels") or {}
    names = sorted({str((alert.get("labels") or {}).get("alertname", "?")) for alert in alerts})
    host = common.get("host") or (alerts[0].get("labels") or {}).get("host") or "the host"
    firing = [alert for alert in alerts if alert.get("status") != "resolved"]
    if payload.get("status") == "resolved" or not firing:
        title = f"RESOLVED {', '.join(names)} on {host}"
        return Message(title, "\n".join(_line(alert) for alert in alerts), "default", "white_check_mark")
    severity = str(common.get("severity") or (firing[0].get("labels") or {}).get("severity") or "warning")
    summary = (firing[0].get("annotations") or {}).get("summary", "") if len(firing) == 1 else ""
    title = f"{severity.upper()} {', '.join(names)} on {host}" + (f": {summary}" if summary else "")
    text = "\n".join(_line(alert) for alert in alerts)
    return Message(title, text, PRIORITY.get(severity, "default"), "warning")


def deliver(found: Message) -> bool:
    done = subprocess.run(found.command(), check=False, timeout=120)
    return done.returncode == 0


class Handler(BaseHTTPRequestHandler):
    server_version = "toolkit-alert-relay"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._answer(400, "a JSON body of at most 1 MiB is needed\n")
            return
        try:
            payload = json.loads(self.rfile.read(length))
            found = message(payload)
        except (ValueError, TypeError, AttributeError) as error:
            self._answer(400, f"not an Alertmanager notification: {error}\n")
            return
        if deliver(found):
            self._answer(200, "sent\n")
        else:
            self._answer(500, "toolkit-alert could not deliver it; Alertmanager will retry\n")

    def _answer(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.address_string()} {format % args}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="toolkit-alert-relay", description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--listen", default="127.0.0.1:9095", metavar="ADDRESS:PORT")
    cli.add_argument("--print", action="store_true", help="read one payload on stdin, print its message")
    args = cli.parse_args(argv)
    if args.print:
        found = message(json.load(sys.stdin))
        print(f"{found.title}\n[{found.priority}, {found.tags}]\n{found.text}")
        return 0
    address, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((address, int(port)), Handler)
    print(f"toolkit-alert-relay: listening on {args.listen}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
