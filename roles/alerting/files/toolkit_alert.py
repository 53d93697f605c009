#!/usr/bin/python3
"""Send an alert: an ntfy-compatible webhook POST and/or a mail; always an err line in the journal.

Installed by the toolkit's alerting role as /usr/local/sbin/toolkit-alert; settings come from
/etc/toolkit/alert.json ({"webhook_url", "webhook_token", "mail_to", "mail_from"}, all optional).

    toolkit-alert --unit toolkit-backup.service     a unit failed: send its last journal lines
    toolkit-alert --title TITLE --message TEXT      anything else
        [--priority default --tags white_check_mark]  (ntfy headers; high and warning by default)

systemd units name it in OnFailure=toolkit-alert@%n.service. The exit code is non-zero when a
configured channel could not be reached, so the alert unit itself shows up as failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/toolkit/alert.json")
JOURNAL_LINES = 30


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go; with neither a webhook nor a mail address they reach the journal only."""

    webhook_url: str = ""
    webhook_token: str = ""
    mail_to: tuple[str, ...] = ()
    mail_from: str = ""

    @classmethod
    def load(cls, path: Path) -> AlertSettings:
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        return cls(
            webhook_url=str(raw.get("webhook_url") or ""),
            webhook_token=str(raw.get("webhook_token") or ""),
            mail_to=tuple(raw.get("mail_to") or ()),
            mail_from=str(raw.get("mail_from") or ""),
        )


@dataclass(frozen=True)
class Alert:
    title: str
    message: str
    priority: str = "high"
    tags: str = "warning"


def unit_alert(unit: str, host: str, journal: str) -> Alert:
    """The alert for a failed systemd unit, with the end of its journal."""
    return Alert(f"{unit} failed on {host}", f"{unit} failed on {host}.\n\nLast journal lines:\n{journal}")


def webhook_request(settings: AlertSettings, alert: Alert) -> urllib.request.Request:
    """An ntfy-style POST: the message is the body, the title and priority are headers."""
    headers = {
        "Title": alert.title,
        "Priority": alert.priority,
        "Tags": alert.tags,
        "Content-Type": "text/plain",
    }
    if settings.webhook_token:
        headers["Authorization"] = f"Bearer {settings.webhook_token}"
    return urllib.request.Request(
        settings.webhook_url, data=alert.message.encode(), headers=headers, method="POST"
    )


def mail_message(settings: AlertSettings, alert: Alert, host: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"[toolkit] {alert.title}"
    mail["From"] = settings.mail_from or f"root@{host}"
    mail["To"] = ", ".join(settings.mail_to)
    mail.set_content(alert.message)
    return mail


def find_sendmail() -> str:
    """The sendmail interface an MTA installs (postfix, msmtp-mta, ...), or "" without one."""
    return shutil.which("sendmail") or ("/usr/sbin/sendmail" if Path("/usr/sbin/sendmail").exists() else "")


def to_journal(text: str) -> None:
    subprocess.run(["logger", "-p", "user.err", "-t", "toolkit-alert", "--", text], check=False)


def send(settings: AlertSettings, alert: Alert, host: str) -> list[str]:
    """Deliver ``alert`` on every configured channel; return the failures."""
    to_journal(f"ALERT {alert.title}")
    failures: list[str] = []
    if settings.webhook_url:
        try:
            with urllib.request.urlopen(webhook_request(settings, alert), timeout=15) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as error:
            failures.append(f"webhook {settings.webhook_url}: {error}")
    if settings.mail_to:
        sendmail = find_sendmail()
        if not sendmail:
            failures.append("mail: no sendmail on this host (install an MTA such as msmtp-mta or postfix)")
        else:
            done = subprocess.run(
                [sendmail, "-t", "-oi"],
                input=mail_message(settings, alert, host).as_bytes(),
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                failures.append(f"mail: sendmail exit {done.returncode}: {done.stderr.decode().strip()}")
    for failure in failures:
        to_journal(f"alert not delivered: {failure}")
    return failures


def journal_tail(unit: str) -> str:
    done = subprocess.run(
        ["journalctl", "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager", "-o", "short-iso"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "(no journal lines)"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="toolkit-alert", description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    cli.add_argument("--unit", help="the systemd unit that failed")
    cli.add_argument("--title")
    cli.add_argument("--message", default="")
    cli.add_argument("--priority", default="high", help="ntfy priority: min, low, default, high, urgent")
    cli.add_argument("--tags", default="warning", help="ntfy tags (comma-separated)")
    args = cli.parse_args(argv)
    if not args.unit and not args.title:
        cli.error("give --unit or --title")
    host = socket.gethostname()
    alert = (
        unit_alert(args.unit, host, journal_tail(args.unit))
        if args.unit
        else Alert(args.title, args.message, args.priority, args.tags)
    )
    failures = send(AlertSettings.load(args.config), alert, host)
    for failure in failures:
        print(f"toolkit-alert: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
