"""toolkit-alert-relay: what one Alertmanager notification becomes, and what Alertmanager is told."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from role_scripts import load_role_script

relay = load_role_script("monitoring", "toolkit_alert_relay")


def _alert(name: str, status: str = "firing", severity: str = "critical", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "host": "vps1", **labels},
        "annotations": {"summary": f"{name} summary", "runbook": f"docs/MONITORING.md#{name.lower()}"},
    }


def _payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    common = alerts[0]["labels"] if len(alerts) == 1 else {"host": "vps1"}
    return {"version": "4", "status": status, "alerts": list(alerts), "commonLabels": common}


def test_a_firing_alert_becomes_a_titled_message_with_its_runbook() -> None:
    found = relay.message(_payload(_alert("DiskFull", mountpoint="/srv")))
    assert found.title == "CRITICAL DiskFull on vps1: DiskFull summary"
    assert found.priority == "urgent"
    assert found.tags == "warning"
    assert found.text == (
        "FIRING DiskFull: DiskFull summary (mountpoint=/srv)\n  what to do: docs/MONITORING.md#diskfull"
    )
    assert relay.message(_payload(_alert("ProviderCircuitOpen", severity="warning"))).priority == "high"


def test_a_resolved_group_is_one_quiet_recovery_message() -> None:
    found = relay.message(_payload(_alert("DiskFull", status="resolved"), status="resolved"))
    assert (found.title, found.priority, found.tags) == (
        "RESOLVED DiskFull on vps1",
        "default",
        "white_check_mark",
    )
    assert found.text == "RESOLVED DiskFull: DiskFull summary"


def test_the_title_stays_latin_1_for_the_webhook_header() -> None:
    found = relay.message(_payload(_alert("DiskFull", mountpoint="/srv/fotos-ção✓")))
    command = relay.Message("DiskFull on /srv/✓", found.text, "high", "warning").command()
    assert command[:3] == ["toolkit-alert", "--title", "DiskFull on /srv/?"]


def test_an_empty_notification_is_refused() -> None:
    with pytest.raises(ValueError, match="no alert"):
        relay.message({"status": "firing", "alerts": []})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[Any], list[bool]]]:
    sent: list[Any] = []
    delivered = [True]

    def fake_deliver(found: Any) -> bool:
        sent.append(found)
        return delivered[0]

    monkeypatch.setattr(relay, "deliver", fake_deliver)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), relay.Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/alertmanager", sent, delivered
    httpd.shutdown()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_alertmanager_hears_500_until_toolkit_alert_delivers(
    server: tuple[str, list[Any], list[bool]],
) -> None:
    url, sent, delivered = server
    body = json.dumps(_payload(_alert("PostgresDown"))).encode()
    delivered[0] = False
    assert _post(url, body) == 500
    delivered[0] = True
    assert _post(url, body) == 200
    assert [found.title for found in sent] == ["CRITICAL PostgresDown on vps1: PostgresDown summary"] * 2
    assert _post(url, b"not json") == 400
    assert len(sent) == 2
