"""What the backup role promises, checked on the converged Debian 12 and 13 hosts.

Converge left PostgreSQL with the app's tables (invoices 50 rows, line_items 120, audit_empty 0),
four upload files, and the backup role with a restic repository in a local directory and alerts
going to http://127.0.0.1:8765/toolkit-alerts, where a test starts a listener when it needs one.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator

import pytest

DATABASE = "invoice"
DRILL_DATABASE = "invoice_restore_drill"
UPLOADS = "/srv/invoice-service/uploads"
BACKUP_DIR = "/var/backups/toolkit"
TABLES = ("public.audit_empty", "public.invoices", "public.line_items")
LISTENER_PORT = 8765
# A webhook receiver for the host's loopback: it appends every POST to a JSON-lines file.
LISTENER = """
import http.server, json

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with open("{record}", "a") as out:
            out.write(json.dumps({{"path": self.path, "title": self.headers["Title"], "body": body}}) + "\\n")
        self.send_response(200)
        self.end_headers()

http.server.HTTPServer(("127.0.0.1", {port}), Handler).serve_forever()
"""


def _psql(host, sql: str, database: str = DATABASE) -> str:
    return host.check_output("runuser -u postgres -- psql -XAtq -d %s -c %s", database, sql)


def _counts(host, database: str = DATABASE) -> dict[str, int]:
    return {table: int(_psql(host, f"SELECT count(*) FROM {table}", database)) for table in TABLES}


def _checksums(host, root: str) -> dict[str, str]:
    output = host.check_output(f"cd '{root}' && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
    return {line[66:].removeprefix("./"): line[:64] for line in output.splitlines()}


def _backup(host) -> dict:
    """Run the nightly unit now, as its timer would, and return the new set's manifest."""
    host.check_output("systemctl start toolkit-backup.service")
    name = json.loads(host.file("/var/lib/toolkit-backup/last-backup.json").content_string)["name"]
    return json.loads(host.file(f"{BACKUP_DIR}/{name}/manifest.json").content_string)


def _change_live_data(host) -> None:
    _psql(
        host,
        "INSERT INTO invoices (supplier, total) SELECT 'late ' || g, 1 FROM generate_series(1, 7) g;"
        " DELETE FROM line_items WHERE id IN (SELECT id FROM line_items ORDER BY id LIMIT 5);"
        " INSERT INTO audit_empty VALUES (now());",
    )
    host.check_output(f"echo changed >> '{UPLOADS}/2026/11/invoice-0001.txt'")
    host.check_output(f"echo new > '{UPLOADS}/2026/12/invoice-0004.txt'")
    host.check_output(f"rm -f '{UPLOADS}/README'")


def _database_exists(host, name: str) -> bool:
    return _psql(host, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'", "postgres") == "1"


@pytest.mark.parametrize(
    ("timer", "calendar"),
    [
        ("toolkit-backup.timer", "*-*-* 03:00:00"),
        ("toolkit-restore-drill.timer", "Sun *-*-* 04:30:00"),
        ("toolkit-backup-restic-check.timer", "Sun *-*-* 05:30:00"),
        ("toolkit-pitr-full.timer", "Sun *-*-* 01:30:00"),
        ("toolkit-pitr-diff.timer", "Mon..Sat *-*-* 01:30:00"),
        ("toolkit-pitr-verify.timer", "Sat *-*-* 05:00:00"),
        ("toolkit-pitr-drill.timer", "Sun *-*-* 05:00:00"),
    ],
)
def test_timers_are_enabled_on_their_schedule(host, timer: str, calendar: str) -> None:
    assert host.service(timer).is_enabled
    assert host.service(timer).is_running
    shown = host.check_output(f"systemctl show {timer} -p TimersCalendar -p Persistent")
    assert f"OnCalendar={calendar} " in shown, shown
    assert "Persistent=yes" in shown


@pytest.mark.parametrize(
    "unit",
    [
        "toolkit-backup.service",
        "toolkit-restore-drill.service",
        "toolkit-backup-restic-check.service",
        "toolkit-pitr-backup@full.service",
        "toolkit-pitr-verify.service",
        "toolkit-pitr-drill.service",
    ],
)
def test_failures_trigger_the_alert_unit(host, unit: str) -> None:
    assert (
        host.check_output(f"systemctl show {unit} -p OnFailure") == f"OnFailure=toolkit-alert@{unit}.service"
    )


def test_backup_records_what_it_took_and_logs_size_and_duration(host) -> None:
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    manifest = _backup(host)
    assert manifest["tables"] == _counts(host)
    assert manifest["tables"]["public.invoices"] >= 50
    # Each table's rows also have a checksum, taken in the dump's snapshot like the counts.
    assert set(manifest["checksums"]) == set(manifest["tables"])
    assert manifest["checksums"]["public.audit_empty"] == "0"
    files = {path: entry["sha256"] for path, entry in manifest["uploads"]["files"].items()}
    assert files == _checksums(host, UPLOADS)
    set_dir = f"{BACKUP_DIR}/{manifest['name']}"
    assert host.file(set_dir).mode == 0o700
    assert host.check_output(f"sha256sum {set_dir}/database.dump").split()[0] == manifest["dump"]["sha256"]
    # A custom-format dump of the app database (pg_restore can list it).
    listing = host.check_output(f"pg_restore --list {set_dir}/database.dump")
    assert "TABLE DATA public invoices" in listing
    journal = host.check_output(f"journalctl -u toolkit-backup.service --since '{since}' --no-pager -o cat")
    assert f"backup {manifest['name']} of invoice done in" in journal
    assert "upload files" in journal
    assert "retention (7 daily + 4 weekly)" in journal


def test_unchanged_uploads_are_hard_links_to_the_previous_set(host) -> None:
    path = "2026/12/invoice-0003.pdf"
    first = _backup(host)
    inode = host.check_output(f"stat -c %i '{BACKUP_DIR}/{first['name']}/uploads/{path}'")
    time.sleep(1.1)  # set names have a one-second resolution
    second = _backup(host)
    # Retention keeps one set a day, so the first set is usually gone by now: compare with the inode
    # its file had, which lives on in the second set when it is a hard link.
    assert host.check_output(f"stat -c %i '{BACKUP_DIR}/{second['name']}/uploads/{path}'") == inode, (
        "an unchanged file was copied again"
    )
    assert second["new_bytes"] < second["uploads"]["bytes"]


def test_drill_restores_the_backup_and_not_the_changed_live_data(host) -> None:
    manifest = _backup(host)
    backed_up_files = {path: entry["sha256"] for path, entry in manifest["uploads"]["files"].items()}
    _change_live_data(host)
    live_counts, live_files = _counts(host), _checksums(host, UPLOADS)
    assert live_counts != manifest["tables"]
    assert live_files != backed_up_files

    drill = host.run("toolkit-backup drill --keep")
    try:
        assert drill.rc == 0, drill.stdout + drill.stderr
        assert f"restore drill PASSED: set {manifest['name']}" in drill.stdout
        assert "RTO" in drill.stdout
        restored_counts = _counts(host, DRILL_DATABASE)
        restored_files = _checksums(host, f"{BACKUP_DIR}/.restore-drill")
        assert restored_counts == manifest["tables"]
        assert restored_files == backed_up_files
        assert restored_counts != live_counts
        assert restored_files != live_files
    finally:
        host.run(f"runuser -u postgres -- dropdb --if-exists --force {DRILL_DATABASE}")
        host.run(f"rm -rf {BACKUP_DIR}/.restore-drill")

    # Without --keep the scratch copies are gone afterwards, and the result is on record.
    plain = host.run("toolkit-backup drill")
    assert plain.rc == 0, plain.stdout + plain.stderr
    assert not _database_exists(host, DRILL_DATABASE)
    assert not host.file(f"{BACKUP_DIR}/.restore-drill").exists
    record = json.loads(host.file("/var/lib/toolkit-backup/last-drill.json").content_string)
    assert record["ok"] is True
    assert record["set"] == manifest["name"]
    assert record["rto_seconds"] > 0


def test_the_playbook_drill_reports_the_rto(host, run_playbook) -> None:
    _backup(host)
    run = run_playbook("../../playbooks/restore.yml")
    assert run.rc == 0, run.output[-3000:]
    assert "restore drill PASSED" in run.output
    assert "RTO" in run.output
    named = run_playbook("../../playbooks/restore.yml", {"backup_restore_set": "20000101T000000Z"})
    assert named.rc != 0
    assert "no backup set named 20000101T000000Z" in named.output


def test_drill_fails_on_any_difference(host) -> None:
    manifest = _backup(host)
    damaged = "29991231T000000Z"  # sorts after every real set
    host.check_output(f"cp -a {BACKUP_DIR}/{manifest['name']} {BACKUP_DIR}/{damaged}")
    try:
        host.check_output(
            "python3 -c 'import json, sys; p = sys.argv[1]; m = json.load(open(p));"
            ' m["tables"]["public.invoices"] += 1; m["checksums"]["public.line_items"] = "42";'
            ' json.dump(m, open(p, "w"))\''
            f" {BACKUP_DIR}/{damaged}/manifest.json"
        )
        host.check_output(f"echo tampered >> '{BACKUP_DIR}/{damaged}/uploads/2026/11/scan 0002.jpg'")
        drill = host.run(f"toolkit-backup drill {damaged}")
        assert drill.rc == 1, drill.stdout + drill.stderr
        invoices = manifest["tables"]["public.invoices"]
        assert f"table public.invoices: {invoices + 1} rows backed up, {invoices} restored" in drill.stdout
        assert "file 2026/11/scan 0002.jpg: sha256 differs from the backup" in drill.stdout
        # As many rows as backed up, but not the same ones (here: a checksum the set does not match).
        items = manifest["tables"]["public.line_items"]
        assert (
            f"table public.line_items: contents differ from the backup (the same {items} rows)"
            in drill.stdout
        )
        assert "restore drill FAILED (3 differences)" in drill.stdout
        assert not _database_exists(host, DRILL_DATABASE)
    finally:
        host.run(f"rm -rf {BACKUP_DIR}/{damaged}")


def test_an_overlapping_run_is_refused(host) -> None:
    before = host.check_output(f"ls {BACKUP_DIR}")
    # flock(1) holds the lock while the second run starts, as a running backup would.
    run = host.run("flock /run/lock/toolkit-backup.lock toolkit-backup run")
    assert run.rc == 75
    assert "refusing to start an overlapping run" in run.stderr
    assert host.check_output(f"ls {BACKUP_DIR}") == before


def test_retention_keeps_seven_daily_and_four_weekly_sets(host) -> None:
    # 30 nightly sets, 2026-10-01 (Thu) .. 2026-10-30 (Fri), in a scratch backup directory.
    root = "/var/tmp/retention-test"
    host.check_output(
        f"rm -rf {root} && mkdir -p {root} && cd {root}"
        " && for d in $(seq -w 1 30); do mkdir 202610${d}T030000Z"
        " && echo '{\"dump\": {}}' > 202610${d}T030000Z/manifest.json; done"
        " && mkdir pre-restore && touch notes.txt"
        ' && python3 -c \'import json, sys; c = json.load(open(sys.argv[1])); c["backup_dir"] = sys.argv[2];'
        " print(json.dumps(c))' /etc/toolkit/backup.json $PWD > backup.json"
    )
    try:
        pruned = host.check_output(f"toolkit-backup --config {root}/backup.json prune")
        assert "kept 11 sets, deleted 19" in pruned
        left = set(host.check_output(f"ls {root}").split())
        daily = {f"202610{day}T030000Z" for day in range(24, 31)}
        # Before Oct 24: the newest of ISO week 43 (Oct 19-25) is Oct 23, then Sundays 18, 11, 4.
        weekly = {"20261023T030000Z", "20261018T030000Z", "20261011T030000Z", "20261004T030000Z"}
        assert left == daily | weekly | {"pre-restore", "notes.txt", "backup.json"}
    finally:
        host.run(f"rm -rf {root}")


@pytest.fixture
def listener(host) -> Iterator[str]:
    """An HTTP listener on the host's loopback that records every POST; yields its record file."""
    record = "/var/tmp/webhook-posts.jsonl"
    host.check_output(
        f"printf %s {shlex.quote(LISTENER.format(record=record, port=LISTENER_PORT))} > /var/tmp/listener.py"
    )
    host.run("systemctl stop test-webhook-listener")
    host.check_output(
        f"rm -f {record} && systemd-run --unit test-webhook-listener python3 /var/tmp/listener.py"
    )
    for _ in range(50):
        if host.run(f"timeout 1 bash -c '</dev/tcp/127.0.0.1/{LISTENER_PORT}'").rc == 0:
            break
        time.sleep(0.1)
    try:
        yield record
    finally:
        host.run("systemctl stop test-webhook-listener")


@pytest.mark.parametrize("unit", ["toolkit-backup.service", "toolkit-restore-drill.service"])
def test_a_failure_sends_the_alert(host, listener: str, unit: str) -> None:
    _backup(host)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output("systemctl stop postgresql")
    try:
        assert host.run(f"systemctl start {unit}").rc != 0, f"{unit} succeeded without PostgreSQL"
        posts: list[dict[str, str]] = []
        for _ in range(60):
            if host.file(listener).exists:
                posts = [json.loads(line) for line in host.file(listener).content_string.splitlines()]
                if posts:
                    break
            time.sleep(0.5)
        assert posts, f"no alert reached the webhook after {unit} failed"
        assert posts[0]["path"] == "/toolkit-alerts"
        assert posts[0]["title"].startswith(f"{unit} failed on ")
        assert "toolkit-backup" in posts[0]["body"]
        errors = host.check_output(f"journalctl -t toolkit-alert -p err --since '{since}' --no-pager -o cat")
        assert f"ALERT {unit} failed on" in errors
    finally:
        host.check_output("systemctl start postgresql")
        host.run(f"systemctl reset-failed {unit} 'toolkit-alert@{unit}.service'")


def _posts_after(host, record: str, seconds: float = 30) -> list[dict[str, str]]:
    """The alerts the listener recorded, waiting up to ``seconds`` for the first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if host.file(record).exists:
            posts = [json.loads(line) for line in host.file(record).content_string.splitlines()]
            if posts:
                return posts
        time.sleep(0.5)
    return []


def test_runs_have_a_time_limit(host) -> None:
    for unit in (
        "toolkit-backup.service",
        "toolkit-restore-drill.service",
        "toolkit-backup-restic-check.service",
    ):
        assert host.check_output(f"systemctl show {unit} -p TimeoutStartUSec") == "TimeoutStartUSec=2h"


def test_a_table_lock_held_ends_the_run_in_its_lock_timeout_with_an_alert_naming_the_holder(
    host, listener: str
) -> None:
    """A session holding a table lock used to block the run until it was killed (its snapshot
    holding back vacuum, the timer unable to start another). Converge sets backup_lock_timeout: 10."""
    sets_before = host.check_output(f"ls {BACKUP_DIR}")
    holder = host.check_output(
        "systemd-run --unit test-lock-holder --property=Type=exec"
        " runuser -u postgres -- psql -XAtq -d invoice"
        " -c 'BEGIN; LOCK TABLE line_items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);'"
        " 2>&1; sleep 1; runuser -u postgres -- psql -XAtq -d invoice -c"
        " \"SELECT pid FROM pg_stat_activity WHERE query LIKE 'BEGIN; LOCK TABLE%'\""
    ).split()[-1]
    try:
        started = time.monotonic()
        run = host.run("systemctl start toolkit-backup.service")
        elapsed = time.monotonic() - started
        assert run.rc != 0, "the backup succeeded although a table was locked"
        assert elapsed < 60, f"the run took {elapsed:.0f} s: the lock timeout did not end it"
        journal = host.check_output("journalctl -u toolkit-backup.service -n 20 --no-pager -o cat")
        assert "gave up after waiting 10 s for a lock in invoice (backup_lock_timeout)" in journal, journal
        assert f"{holder} postgres AccessExclusiveLock on line_items" in journal, journal
        posts = _posts_after(host, listener)
        assert posts, "no alert reached the webhook"
        assert posts[0]["title"].startswith("toolkit-backup.service failed on ")
        # Nothing half-written stays behind, and no session of the run is left (its snapshot would
        # hold back vacuum): the lock holder is the only other session in the database.
        assert host.check_output(f"ls {BACKUP_DIR}") == sets_before
        others = f"SELECT count(*) FROM pg_stat_activity WHERE datname = 'invoice' AND pid <> {holder}"
        assert _psql(host, others + " AND pid <> pg_backend_pid()") == "0"
    finally:
        # A backend in pg_sleep does not notice its client going: end it, then the unit.
        host.run(f"runuser -u postgres -- psql -XAtq -c 'SELECT pg_terminate_backend({holder})'")
        host.run("systemctl stop test-lock-holder")
        host.run(
            "systemctl reset-failed toolkit-backup.service 'toolkit-alert@toolkit-backup.service.service'"
        )
    # With the lock gone, the next run goes through.
    assert _backup(host)["tables"] == _counts(host)


def test_a_damaged_set_does_not_stop_the_next_run(host) -> None:
    """An emptied newest manifest used to fail every later run. Now the run skips it, takes its set,
    and fails only to send the alert that names it."""
    newest = _backup(host)["name"]
    damaged = f"{BACKUP_DIR}/{newest}/manifest.json"
    host.check_output(f"cp {damaged} /var/tmp/manifest.saved && : > {damaged}")
    try:
        time.sleep(1.1)  # set names have a one-second resolution
        run = host.run("toolkit-backup run")
        assert run.rc == 3, run.stdout + run.stderr
        assert f"warning: skipping damaged set {newest}" in run.stdout
        assert f"1 older set(s) are damaged and were skipped: {newest}" in run.stderr
        taken = json.loads(host.file("/var/lib/toolkit-backup/last-backup.json").content_string)["name"]
        assert taken > newest
        # "latest" is the newest set that reads: the drill proves the new one. (Retention dropped
        # the damaged set with the day's other older sets: the newest of a day is the one kept.)
        drill = host.run("toolkit-backup drill")
        assert drill.rc == 0, drill.stdout + drill.stderr
        assert f"restore drill PASSED: set {taken}" in drill.stdout
    finally:
        host.run(f"test -d {BACKUP_DIR}/{newest} && cp /var/tmp/manifest.saved {damaged}")


def test_a_set_that_would_fill_the_disk_is_refused_and_postgres_keeps_writing(host) -> None:
    """Backups into a 2 MB file system: the run refuses before writing a byte (the dump would have
    filled it), says how much it needs, has, and must leave free; PostgreSQL goes on writing."""
    root = "/mnt/toolkit-small-backups"
    host.check_output(
        f"mkdir -p {root} && mount -t tmpfs -o size=2m toolkit-small {root}"
        ' && python3 -c \'import json, sys; c = json.load(open(sys.argv[1])); c["backup_dir"] = sys.argv[2];'
        f" print(json.dumps(c))' /etc/toolkit/backup.json {root} > /var/tmp/small-backup.json"
    )
    try:
        run = host.run("toolkit-backup --config /var/tmp/small-backup.json run")
        assert run.rc == 2, run.stdout + run.stderr
        assert f"not enough free space in {root}: the set needs about" in run.stderr
        assert "at least 10 % (204.8 KiB) must stay free" in run.stderr
        assert host.check_output(f"ls -A {root}") == ""
        _psql(host, "INSERT INTO audit_empty VALUES (now())")
    finally:
        host.run(f"umount {root}")
        host.run("rm -f /var/tmp/small-backup.json")


def _restic(host, command: str) -> str:
    return host.check_output(f"set -a && . /etc/toolkit/backup/restic.env && restic {command}")


def test_sets_are_copied_to_restic_and_the_repository_checks(host) -> None:
    manifest = _backup(host)
    snapshots = json.loads(_restic(host, "snapshots --json --tag toolkit"))
    assert any(f"{BACKUP_DIR}/{manifest['name']}" in snap["paths"] for snap in snapshots), snapshots
    set_dir = f"{BACKUP_DIR}/{manifest['name']}"
    offsite = _restic(host, f"dump latest --path {set_dir} {set_dir}/manifest.json")
    assert json.loads(offsite) == manifest
    # The repository is encrypted: the password file is what opens it.
    assert (
        host.run("RESTIC_REPOSITORY=/var/backups/toolkit-restic RESTIC_PASSWORD=wrong restic snapshots").rc
        != 0
    )
    assert host.file("/etc/toolkit/backup/restic-password").mode == 0o600
    assert host.run("systemctl start toolkit-backup-restic-check.service").rc == 0
    assert (
        host.check_output("systemctl show toolkit-backup-restic-check.service -p Result") == "Result=success"
    )


def _databases(host, prefix: str) -> list[str]:
    listed = _psql(
        host, f"SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1", "postgres"
    )
    return listed.split()


def _constraints(host) -> list[str]:
    return _psql(
        host,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || contype::text FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace ORDER BY 1",
    ).splitlines()


def test_live_restore_swaps_in_the_checked_set_keeps_the_old_database_and_undo_goes_back(host) -> None:
    manifest = _backup(host)
    _change_live_data(host)
    changed = _counts(host)
    refused = host.run(f"toolkit-backup restore --live {manifest['name']} < /dev/null")
    assert refused.rc != 0
    assert _counts(host) == changed, "a live restore ran without --yes"
    restore = host.run(f"toolkit-backup restore --live {manifest['name']} --yes")
    assert restore.rc == 0, restore.stdout + restore.stderr
    assert "matches the backup" in restore.stdout
    assert _counts(host) == manifest["tables"]
    assert _checksums(host, UPLOADS) == {p: e["sha256"] for p, e in manifest["uploads"]["files"].items()}
    # The app still owns its tables, and the database the restore replaced is kept whole.
    assert _psql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'invoices'") == "invoice"
    previous = _databases(host, "invoice_before_")[-1]
    assert _counts(host, previous) == changed
    assert f"the database it replaced is {previous}" in restore.stdout
    pre = host.check_output(f"ls -d {BACKUP_DIR}/pre-restore/*/ | tail -1").rstrip("/")
    assert host.file(f"{pre}/uploads/2026/12/invoice-0004.txt").exists

    undo = host.run("toolkit-backup restore --undo --yes")
    assert undo.rc == 0, undo.stdout + undo.stderr
    assert _counts(host) == changed
    assert host.file(f"{UPLOADS}/2026/12/invoice-0004.txt").exists
    assert _databases(host, "invoice_undone_"), "undo keeps the restored database aside too"

    dropped = host.run("toolkit-backup restore --drop-previous")
    assert dropped.rc == 0, dropped.stdout + dropped.stderr
    assert _databases(host, "invoice_before_") == _databases(host, "invoice_undone_") == []


WRITER_UNIT = "/etc/systemd/system/toolkit-test-writer.service"
# One session inserting a row every 10 ms, as the app's worker would (converge names the unit in
# backup_restore_stop_units).
WRITER = """#!/bin/bash
while sleep 0.01; do echo "INSERT INTO invoices (supplier, total) VALUES ('writer', 1);"; done \\
  | runuser -u postgres -- psql -Xq -d invoice
"""


def test_a_live_restore_with_a_writer_running_ends_consistent(host) -> None:
    """The writer used to keep writing through DROP and pg_restore: duplicate keys, a database
    without its primary and foreign keys. Now the writer is stopped first, the set restored beside
    the live database and checked, swapped in, and the writer started again."""
    manifest = _backup(host)
    constraints = _constraints(host)
    host.check_output(
        f"printf %s {shlex.quote(WRITER)} > /usr/local/bin/toolkit-test-writer"
        " && chmod 0755 /usr/local/bin/toolkit-test-writer"
        f" && printf '[Service]\\nExecStart=/usr/local/bin/toolkit-test-writer\\n' > {WRITER_UNIT}"
        " && systemctl daemon-reload"
    )
    host.check_output("systemctl start toolkit-test-writer.service")
    try:
        time.sleep(2)
        written = int(_psql(host, "SELECT count(*) FROM invoices WHERE supplier = 'writer'"))
        assert written > 10, "the writer does not write"
        since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
        restore = host.run(f"toolkit-backup restore --live {manifest['name']} --yes")
        assert restore.rc == 0, restore.stdout + restore.stderr
        assert "stopping toolkit-test-writer.service" in restore.stdout
        assert "matches the backup" in restore.stdout
        assert host.service("toolkit-test-writer.service").is_running, "the writer was not started again"
        time.sleep(1)
        # Every constraint is there, the writer's rows after the set are gone (they are in the
        # database the restore set aside), and it writes again without a duplicate key.
        assert _constraints(host) == constraints
        before = _databases(host, "invoice_before_")[-1]
        assert int(_psql(host, "SELECT count(*) FROM invoices WHERE supplier = 'writer'", before)) >= written
        max_id = _psql(host, "SELECT max(id) FROM invoices WHERE supplier <> 'writer'")
        assert (
            int(_psql(host, f"SELECT count(*) FROM invoices WHERE supplier = 'writer' AND id <= {max_id}"))
            == 0
        )
        assert int(_psql(host, "SELECT count(*) FROM invoices WHERE supplier = 'writer'")) > 0
        errors = host.run(f"journalctl -u toolkit-test-writer.service --since '{since}' --no-pager -o cat")
        assert "ERROR" not in errors.stdout, errors.stdout
    finally:
        host.run("systemctl stop toolkit-test-writer.service")
        host.run(f"rm -f {WRITER_UNIT} /usr/local/bin/toolkit-test-writer && systemctl daemon-reload")
        host.run("toolkit-backup restore --drop-previous")


def test_a_live_restore_refuses_while_another_session_is_connected(host) -> None:
    manifest = _backup(host)
    host.check_output(
        "systemd-run --unit toolkit-test-reader"
        " runuser -u postgres -- psql -Xq -d invoice -c 'SELECT pg_sleep(600)'"
    )
    try:
        time.sleep(1)
        pid = _psql(host, "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'", "postgres")
        before = _counts(host)
        refused = host.run(f"toolkit-backup restore --live {manifest['name']} --yes")
        assert refused.rc == 2, refused.stdout + refused.stderr
        assert "refusing: 1 other session(s) are connected to invoice" in refused.stderr
        assert f"{pid} postgres from the socket (psql, active)" in refused.stderr
        assert "nothing was changed" in refused.stderr
        assert _counts(host) == before
        assert _databases(host, "invoice_before_") == _databases(host, "invoice_restoring") == []
    finally:
        host.run(f"runuser -u postgres -- psql -XAtq -c 'SELECT pg_terminate_backend({pid})'")
        host.run("systemctl stop toolkit-test-reader")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"backup_schedule": "every night at three"},
            "backup_schedule is not a systemd OnCalendar expression",
        ),
        ({"backup_keep_daily": 0}, "backup_keep_daily and backup_restic_keep_daily at least 1"),
        ({"backup_restic_password": ""}, "backup_restic_password must be set"),
        ({"backup_restic_repository": ""}, "backup_restic_repository must name the repository"),
        (
            {"alerting_webhook_url": "ftp://example.org"},
            "alerting_webhook_url must be an http(s) URL",
        ),
        ({"backup_uploads_dir": "uploads"}, "backup_uploads_dir an absolute path"),
        ({"backup_pitr_offsite": {"type": "s3", "bucket": "b"}}, "backup_pitr_offsite must be {type: s3"),
        (
            {"backup_pitr_cipher_pass": "short"},
            "backup_pitr_cipher_pass (the offsite repository's encryption",
        ),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change(
        "converge.yml",
        extra_vars,
        message,
        watch="md5sum /etc/toolkit/backup.json /etc/systemd/system/toolkit-backup.timer /etc/pgbackrest.conf",
    )
