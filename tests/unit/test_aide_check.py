"""roles/hardening/files/toolkit_aide_check.py: AIDE's report to the alert channel, each change once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from role_scripts import load_role_script

aide = load_role_script("hardening", "toolkit_aide_check")

# AIDE 0.19's report (Debian 13); 0.18 (Debian 12) prints the same sections.
REPORT = """Start timestamp: 2026-12-01 12:48:05 -0300 (AIDE 0.19.1)
AIDE found differences between database and filesystem!!

Summary:
  Total number of entries:\t9576
  Added entries:\t\t1
  Removed entries:\t\t1
  Changed entries:\t\t2

---------------------------------------------------
Added entries:
---------------------------------------------------

f++++++++++++++++++: /usr/local/bin/evil

---------------------------------------------------
Removed entries:
---------------------------------------------------

f------------------: /etc/cron.d/gone

---------------------------------------------------
Changed entries:
---------------------------------------------------

f > ... mc..H      : /etc/hosts.allow
d = ... mc.n       : /usr/local/bin

---------------------------------------------------
Detailed information about changes:
---------------------------------------------------

File: /etc/hosts.allow
 Size      : 411                              | 415
"""


def test_the_report_is_read_by_section() -> None:
    report = aide.parse(REPORT)
    assert report.added == ["/usr/local/bin/evil"]
    assert report.removed == ["/etc/cron.d/gone"]
    assert report.changed == ["/etc/hosts.allow", "/usr/local/bin"]
    assert report.message().splitlines() == [
        "1 added, 1 removed, 2 changed.",
        "Added: /usr/local/bin/evil",
        "Removed: /etc/cron.d/gone",
        "Changed: /etc/hosts.allow",
        "Changed: /usr/local/bin",
    ]


def test_a_long_report_is_cut_with_the_command_that_shows_it_all() -> None:
    report = aide.Report(changed=[f"/etc/file{n}" for n in range(100)])
    lines = report.message(limit=3).splitlines()
    assert lines[1:4] == ["Changed: /etc/file0", "Changed: /etc/file1", "Changed: /etc/file2"]
    assert lines[4].startswith("... and 97 more: aide --config")


class FakeRun:
    """Stands in for subprocess.run: AIDE's exit code and report, then the alert command's exit code."""

    def __init__(self, aide_rc: int, alert_rc: int = 0, stdout: str = REPORT) -> None:
        self.aide_rc, self.alert_rc, self.stdout = aide_rc, alert_rc, stdout
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if argv[0] == "aide":
            return subprocess.CompletedProcess(argv, self.aide_rc, self.stdout, "")
        return subprocess.CompletedProcess(argv, self.alert_rc, "", "")


@pytest.fixture
def databases(tmp_path: Path) -> tuple[Path, Path]:
    database, new = tmp_path / "aide.db", tmp_path / "aide.db.new"
    database.write_text("old")
    new.write_text("new")
    return database, new


def _check(databases: tuple[Path, Path], accept: bool = True) -> int:
    return aide.check(Path("/etc/aide/aide.conf"), *databases, "/usr/local/sbin/toolkit-alert", accept)


def test_changes_are_sent_then_accepted(
    monkeypatch: pytest.MonkeyPatch, databases: tuple[Path, Path]
) -> None:
    run = FakeRun(aide_rc=5)
    monkeypatch.setattr(aide.subprocess, "run", run)
    assert _check(databases) == 0
    alert = run.calls[1]
    assert alert[0] == "/usr/local/sbin/toolkit-alert"
    assert alert[alert.index("--title") + 1].endswith(": 4 files added, removed or changed")
    assert "Added: /usr/local/bin/evil" in alert[alert.index("--message") + 1]
    assert databases[0].read_text() == "new"
    assert not databases[1].exists()


def test_without_accept_the_baseline_stays(
    monkeypatch: pytest.MonkeyPatch, databases: tuple[Path, Path]
) -> None:
    monkeypatch.setattr(aide.subprocess, "run", FakeRun(aide_rc=4))
    assert _check(databases, accept=False) == 0
    assert databases[0].read_text() == "old"


def test_an_alert_that_cannot_be_sent_keeps_the_baseline_and_fails(
    monkeypatch: pytest.MonkeyPatch, databases: tuple[Path, Path]
) -> None:
    monkeypatch.setattr(aide.subprocess, "run", FakeRun(aide_rc=4, alert_rc=1))
    assert _check(databases) == 1
    assert databases[0].read_text() == "old", "an unreported change was accepted"


def test_no_change_sends_nothing(monkeypatch: pytest.MonkeyPatch, databases: tuple[Path, Path]) -> None:
    run = FakeRun(aide_rc=0, stdout="AIDE found NO differences")
    monkeypatch.setattr(aide.subprocess, "run", run)
    assert _check(databases) == 0
    assert len(run.calls) == 1
    assert databases[0].read_text() == "old"


def test_an_aide_error_fails_the_unit_without_an_alert_of_its_own(
    monkeypatch: pytest.MonkeyPatch, databases: tuple[Path, Path]
) -> None:
    """The unit's OnFailure sends that alert (toolkit-alert@)."""
    run = FakeRun(aide_rc=17, stdout="")
    monkeypatch.setattr(aide.subprocess, "run", run)
    assert _check(databases) == 17
    assert len(run.calls) == 1
    assert databases[0].read_text() == "old"
