"""toolkit-alert: the ntfy-style webhook POST, the mail, and the journal when nothing is configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from role_scripts import load_role_script

ta = load_role_script("alerting", "toolkit_alert")


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(ta, "to_journal", lines.append)
    return lines


@pytest.fixture
def listener() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A webhook receiver on loopback: its URL and the requests it got."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append({"path": self.path, "body": body, **dict(self.headers.items())})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/toolkit-alerts", received
    finally:
        server.shutdown()


def test_webhook_gets_an_ntfy_style_post(
    listener: tuple[str, list[dict[str, str]]], journal: list[str]
) -> None:
    url, received = listener
    settings = ta.AlertSettings(webhook_url=url, webhook_token="s3cret")
    alert = ta.unit_alert("toolkit-backup.service", "vps1", "pg_dump: error: connection refused")
    assert ta.send(settings, alert, "vps1") == []
    assert len(received) == 1
    request = received[0]
    assert request["path"] == "/toolkit-alerts"
    assert request["Title"] == "toolkit-backup.service failed on vps1"
    assert request["Priority"] == "high"
    assert request["Authorization"] == "Bearer s3cret"
    assert "pg_dump: error: connection refused" in request["body"]
    assert journal == ["ALERT toolkit-backup.service failed on vps1"]


def test_nothing_configured_still_reaches_the_journal(journal: list[str]) -> None:
    assert ta.send(ta.AlertSettings(), ta.Alert("disk full", "95%"), "vps1") == []
    assert journal == ["ALERT disk full"]


def test_an_unreachable_webhook_is_a_failure_logged_to_the_journal(journal: list[str]) -> None:
    settings = ta.AlertSettings(webhook_url="http://127.0.0.1:9/nothing-listens")
    failures = ta.send(settings, ta.Alert("t", "m"), "vps1")
    assert len(failures) == 1
    assert failures[0].startswith("webhook http://127.0.0.1:9/nothing-listens")
    assert journal[-1].startswith("alert not delivered: webhook")


def test_mail_goes_through_sendmail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: list[str]
) -> None:
    outbox = tmp_path / "outbox"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f'#!/bin/sh\necho "$@" > {outbox}.args\ncat > {outbox}\n')
    sendmail.chmod(0o755)
    monkeypatch.setattr(ta, "find_sendmail", lambda: str(sendmail))
    settings = ta.AlertSettings(mail_to=("ops@example.org", "me@example.org"))
    assert ta.send(settings, ta.Alert("backup failed", "details"), "vps1") == []
    mail = outbox.read_text()
    assert "Subject: [toolkit] backup failed" in mail
    assert "To: ops@example.org, me@example.org" in mail
    assert "From: root@vps1" in mail
    assert "details" in mail
    assert Path(f"{outbox}.args").read_text().split() == ["-t", "-oi"]


def test_mail_without_an_mta_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, journal: list[str]
) -> None:
    monkeypatch.setattr(ta, "find_sendmail", lambda: "")
    failures = ta.send(ta.AlertSettings(mail_to=("ops@example.org",)), ta.Alert("t", "m"), "vps1")
    assert failures == ["mail: no sendmail on this host (install an MTA such as msmtp-mta or postfix)"]


def test_settings_file_is_optional_and_read_when_present(tmp_path: Path) -> None:
    assert ta.AlertSettings.load(tmp_path / "missing.json") == ta.AlertSettings()
    path = tmp_path / "alert.json"
    path.write_text(
        json.dumps({"webhook_url": "https://ntfy.sh/x", "mail_to": ["a@b.c"], "webhook_token": ""})
    )
    assert ta.AlertSettings.load(path) == ta.AlertSettings(
        webhook_url="https://ntfy.sh/x", mail_to=("a@b.c",)
    )


def test_command_line_exit_code_follows_delivery(
    tmp_path: Path, listener: tuple[str, list[dict[str, str]]], journal: list[str]
) -> None:
    url, received = listener
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"webhook_url": url}))
    assert ta.main(["--config", str(good), "--title", "drill failed", "--message", "3 differences"]) == 0
    assert received[-1]["body"] == "3 differences"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"webhook_url": "http://127.0.0.1:9/"}))
    assert ta.main(["--config", str(bad), "--title", "t"]) == 1
