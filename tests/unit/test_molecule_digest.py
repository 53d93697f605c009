"""scripts/molecule_digest.py: the few lines that say why a scenario failed, from logs shaped like
Molecule's (its bar before what Ansible and testinfra print, colours, the cleanup after a failure)."""

from __future__ import annotations

from molecule_digest import digest

START = """INFO     production ➜ destroy: Executing
INFO     production ➜ destroy: Executed: Successful
INFO     production ➜ create: Executing
INFO     production ➜ converge: Executing
  │ TASK [Log in as the inventory's user] ***
  │ fatal: [production-debian12]: UNREACHABLE! =>
  │     msg: 'Permission denied (publickey).'
  │ ...ignoring
  │
INFO     production ➜ converge: Executed: Successful
"""
CLEANUP = """INFO     production ➜ cleanup: Executing
INFO     production ➜ destroy: Executing
INFO     production ➜ destroy: Executed: Successful
production ➜ idempotence: Executed: Successful
"""


def test_an_idempotence_failure_names_each_changed_task_and_handler_with_its_host() -> None:
    log = (
        START
        + "INFO     production ➜ idempotence: Executing\n"
        + "  │ TASK [hardening : Turn on sysstat's resource history] ***\n"
        + "  │ ok: [production-debian13]\n"
        + "  │ \x1b[0;33mchanged: [production-debian12]\x1b[0m\n"
        + "  │ TASK [hardening : Install the daily AIDE check] ***\n"
        + "  │ ok: [production-debian12] => (item=toolkit-aide-check.service)\n"
        + "  │ changed: [production-debian12] => (item=toolkit-aide-check.timer)\n"
        + "  │ RUNNING HANDLER [hardening : Restart sysstat] ***\n"
        + "  │ changed: [production-debian12]\n"
        + "  │ PLAY RECAP ***\n"
        + "  │ production-debian12 : ok=500 changed=3 unreachable=0 failed=0\n"
        + "CRITICAL Idempotence test failed because of the following tasks:\n"
        + "* [production-debian12] => hardening : Install the daily AIDE check\n"
        + CLEANUP
    )
    assert digest(log) == [
        "failed at: idempotence",
        "changed on the second converge: hardening : Turn on sysstat's resource history"
        " [production-debian12]",
        "changed on the second converge: hardening : Install the daily AIDE check [production-debian12]"
        " => (item=toolkit-aide-check.timer)",
        "changed on the second converge: handler hardening : Restart sysstat [production-debian12]",
    ]


def test_a_failed_task_is_named_with_its_host_and_message_and_ignored_ones_are_not() -> None:
    log = (
        START.replace("converge: Executed: Successful", "converge: Executed: Failed")
        + "  │ TASK [backup : Take the first backup] ***\n"
        + "  │ fatal: [production-debian13]: FAILED! => changed=true\n"
        + "  │   msg: non-zero return code\n"
        + "  │   stderr: 'ERROR: [082]: WAL segment was not archived before the 60000ms timeout'\n"
        + "  │\n"
        + CLEANUP
    )
    lines = digest(log)
    assert lines[0] == "failed at: converge"
    assert len(lines) == 2, lines
    assert lines[1].startswith(
        "task failed: backup : Take the first backup [production-debian13]: changed=true"
    )
    assert "WAL segment was not archived" in lines[1]
    assert "Permission denied" not in "\n".join(lines)


def test_failed_tests_are_listed() -> None:
    log = (
        START
        + "INFO     production ➜ verify: Executing\n"
        + "  │ FAILED tests/test_backup.py::test_restore_keeps_rows[production-debian12] - AssertionError\n"
        + "  │ ERROR tests/test_alerts.py::test_webhook - TimeoutError\n"
        + "  │ ===== 1 failed, 130 passed, 1 error in 612.00s =====\n"
        + CLEANUP
    )
    assert digest(log) == [
        "failed at: verify",
        "test FAILED tests/test_backup.py::test_restore_keeps_rows[production-debian12] - AssertionError",
        "test ERROR tests/test_alerts.py::test_webhook - TimeoutError",
    ]


def test_a_scenario_that_failed_before_converging_says_so() -> None:
    log = "INFO     base ➜ destroy: Executing\nCRITICAL Failed to pull image\n"
    assert digest(log) == ["failed at: destroy or create"]
