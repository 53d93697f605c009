"""Point-in-time recovery with pgBackRest, on the converged Debian 12 and 13 hosts (PostgreSQL 15
and 17).

Converge set up archiving into a local repository (repo1, /var/lib/pgbackrest) and an encrypted
"offsite" one (repo2, a directory: /srv/offsite/pgbackrest), with WAL archived at least every 10 s
(postgres_archive_timeout), and took the first full backup into each. These tests run after
test_backup.py's (file order): they replace the whole cluster.
"""

from __future__ import annotations

import json
import time

import pytest
from test_backup import DATABASE, _psql

ARCHIVE_TIMEOUT = 10  # converge.yml's postgres_archive_timeout
OFFSITE = "/srv/offsite/pgbackrest"
LOCAL = "/var/lib/pgbackrest"


def _version(host) -> str:
    """The cluster's PostgreSQL major version: 15 on Debian 12, 17 on Debian 13."""
    return host.check_output("ls /etc/postgresql")


def _pg_data(host) -> str:
    return f"/var/lib/postgresql/{_version(host)}/main"


def _service(host) -> str:
    return f"postgresql@{_version(host)}-main"


def _facts(host) -> dict[str, str]:
    """Row count and content checksum of every table of the app database (as the drill takes them)."""
    tables = _psql(
        host, "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    ).split()
    return {
        table: _psql(
            host,
            "SELECT count(*) || '|' || coalesce(sum(('x' || left(md5(t::text), 16))"
            f"::bit(64)::bigint::numeric), 0) FROM {table} t",
        )
        for table in tables
    }


def _info(host) -> list[dict]:
    return json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=main info --output=json"))


def _archive_now(host) -> None:
    """Close the current WAL segment and wait until PostgreSQL has it archived (in every repository)."""
    segment = _psql(host, "SELECT pg_walfile_name(pg_switch_wal())", "postgres")
    for _ in range(120):
        if _psql(host, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", "postgres") >= segment:
            return
        time.sleep(0.5)
    pytest.fail(f"WAL segment {segment} was not archived within 60 s")


def _timeline(host) -> int:
    return int(_psql(host, "SELECT timeline_id FROM pg_control_checkpoint()", "postgres"))


def test_wal_is_archived_into_both_repositories_each_with_a_full_backup(host) -> None:
    assert _psql(host, "SHOW archive_mode", "postgres") == "on"
    assert _psql(host, "SHOW archive_timeout", "postgres") == f"{ARCHIVE_TIMEOUT}s"
    assert "archive-push" in _psql(host, "SHOW archive_command", "postgres")
    check = host.run("runuser -u postgres -- pgbackrest --stanza=main check")
    assert check.rc == 0, check.stdout + check.stderr
    # (Archiving failed while PostgreSQL was set up before pgBackRest: it has succeeded since.)
    assert (
        _psql(
            host,
            "SELECT last_failed_time IS NULL OR last_archived_time > last_failed_time FROM pg_stat_archiver",
            "postgres",
        )
        == "t"
    )
    (stanza,) = _info(host)
    assert {repo["key"]: repo["status"]["code"] for repo in stanza["repo"]} == {1: 0, 2: 0}
    full = {backup["database"]["repo-key"] for backup in stanza["backup"] if backup["type"] == "full"}
    assert full == {1, 2}
    # The offsite copy is encrypted before it leaves (OpenSSL's salted format), the local one is not.
    assert host.check_output(f"head -c 8 {OFFSITE}/backup/main/backup.info") == "Salted__"
    assert "[backup:current]" in host.check_output(f"cat {LOCAL}/backup/main/backup.info")
    # The configuration holds the passphrase: root writes it, pgBackRest (postgres) reads it.
    conf = host.file("/etc/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)


def test_a_backup_goes_into_each_repository_and_verify_passes(host) -> None:
    # Inside the budget's os_reserve, with its own ceiling.
    assert host.check_output("systemctl show -p MemoryMax --value toolkit-pitr-backup@diff.service") == str(
        256 * 1024 * 1024
    )
    host.check_output("systemctl start toolkit-pitr-backup@diff.service")
    (stanza,) = _info(host)
    diff = {backup["database"]["repo-key"] for backup in stanza["backup"] if backup["type"] == "diff"}
    assert diff == {1, 2}
    record = json.loads(host.file("/var/lib/toolkit-backup/last-pitr-backup.json").content_string)
    assert (record["type"], record["repos"], record["failed"]) == ("diff", [1, 2], [])
    host.check_output("systemctl start toolkit-pitr-verify.service")
    journal = host.check_output("journalctl -u toolkit-pitr-verify.service --no-pager -o cat")
    assert "repo1: verified" in journal
    assert "repo2: verified" in journal


def test_the_drill_restores_each_repository_in_turn_and_proves_every_table_while_a_writer_runs(host) -> None:
    """The drill marks a restore point with every table's checksum at it, restores that point from
    one repository into a scratch cluster and compares: with a writer inserting every 10 ms, the
    restored point must hold exactly the rows read at the mark (the writer held back meanwhile, not
    broken), and the live cluster goes on untouched."""
    _psql(host, "CREATE TABLE IF NOT EXISTS drill_marks (at timestamptz DEFAULT clock_timestamp())")
    _archive_now(host)
    others = {table: facts for table, facts in _facts(host).items() if table != "public.drill_marks"}
    # A promoted cluster that archived would push its new timeline's history file: the repositories'
    # timelines are the same after the drills.
    histories = f"find {LOCAL}/archive {OFFSITE}/archive -name '*.history*' | sort"
    timelines = host.check_output(histories)
    other_rows = sum(int(facts.split("|")[0]) for facts in others.values())
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output(
        "systemd-run --unit toolkit-test-drill-writer bash -c 'while sleep 0.01; do"
        ' echo "INSERT INTO drill_marks DEFAULT VALUES;"; done | runuser -u postgres -- psql -Xq -d invoice\''
    )
    try:
        records = []
        for _ in range(2):
            before = int(_psql(host, "SELECT count(*) FROM drill_marks"))
            drill = host.run("systemctl start toolkit-pitr-drill.service")
            assert drill.rc == 0, host.run(
                f"journalctl -u toolkit-pitr-drill.service --since '{since}' -n 60 --no-pager -o cat"
            ).stdout
            record = json.loads(host.file("/var/lib/toolkit-backup/last-pitr-drill.json").content_string)
            assert record["ok"] is True, record
            assert record["contents"] == "equal"
            assert record["rto_seconds"] > 0
            assert record["tables"] == len(others) + 1
            # The point was marked while the writer wrote: its rows are there, and the writer went on.
            marked = record["rows"] - other_rows
            assert marked >= before
            assert int(_psql(host, "SELECT count(*) FROM drill_marks")) > marked
            records.append(record)
        assert [record["repo"] for record in records] == [1, 2], (
            "the weekly drill takes the local and the offsite repository in turn"
        )
        journal = host.check_output("journalctl -u toolkit-pitr-drill.service --no-pager -o cat")
        assert f"PITR drill PASSED: {records[1]['point']} restored from repo2 and promoted in" in journal
        assert "rows of invoice equal to the live database's at that point" in journal
        writer = host.run(f"journalctl -u toolkit-test-drill-writer --since '{since}' --no-pager -o cat")
        assert "ERROR" not in writer.stdout, writer.stdout
        assert host.service("toolkit-test-drill-writer").is_running, "the writer died during the drill"
    finally:
        host.run("systemctl stop toolkit-test-drill-writer")
    # The live cluster went on untouched and still archives; the scratch clusters archived nothing
    # (archiving off) and are gone.
    assert {table: facts for table, facts in _facts(host).items() if table != "public.drill_marks"} == others
    assert host.check_output(histories) == timelines
    assert host.run(f"ls -d {_pg_data(host)}.pitr-drill").rc != 0
    check = host.run("runuser -u postgres -- pgbackrest --stanza=main check")
    assert check.rc == 0, check.stdout + check.stderr


def test_a_drill_that_would_fill_the_disk_is_refused_before_it_marks_or_restores(host) -> None:
    root = "/mnt/toolkit-small-drill"
    host.check_output(f"mkdir -p {root} && mount -t tmpfs -o size=2m toolkit-small-drill {root}")
    try:
        drill = host.run(f"toolkit-pitr drill --repo 1 --scratch-dir {root}")
        assert drill.rc == 2, drill.stdout + drill.stderr
        assert f"not enough free space in {root}: the drill's scratch cluster needs about" in drill.stderr
        assert "the live cluster and the repositories were not touched" in drill.stderr
        assert "restore point" not in drill.stdout
        assert host.check_output(f"ls -A {root}") == ""
        record = json.loads(host.file("/var/lib/toolkit-backup/last-pitr-drill.json").content_string)
        assert record["ok"] is False
        assert "not enough free space" in record["error"]
    finally:
        host.run(f"umount {root}")


def test_a_restore_to_a_moment_has_every_write_before_it_and_none_after_and_undo_goes_back(host) -> None:
    _psql(host, "CREATE TABLE IF NOT EXISTS pitr_marks (note text, at timestamptz DEFAULT clock_timestamp())")
    _psql(host, "INSERT INTO pitr_marks (note) VALUES ('before')")
    at_moment = _facts(host)
    moment = _psql(
        host, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
    )
    time.sleep(1.5)
    # After the moment: a row, an UPDATE of every invoice, a dropped table.
    _psql(host, "INSERT INTO pitr_marks (note) VALUES ('after'); UPDATE invoices SET total = total + 1")
    _psql(host, "DROP TABLE audit_empty")
    after = _facts(host)
    assert after != at_moment
    _archive_now(host)  # recovery must see the first commit after the moment to stop before it

    refused = host.run(f"toolkit-pitr restore --time '{moment}' < /dev/null")
    assert refused.rc != 0
    assert _facts(host) == after, "a restore ran without --yes"
    restore = host.run(f"toolkit-pitr restore --time '{moment}' --yes")
    assert restore.rc == 0, restore.stdout + restore.stderr
    assert _psql(host, "SELECT string_agg(note, ',') FROM pitr_marks") == "before"
    assert _facts(host) == at_moment, "the restored tables differ from their state at the moment"
    kept = host.check_output(f"ls -d {_pg_data(host)}.before-*").split()
    assert len(kept) == 1
    assert f"before it: {kept[0]}" in restore.stdout
    restored_timeline = _timeline(host)

    undo = host.run("toolkit-pitr restore --undo --yes")
    assert undo.rc == 0, undo.stdout + undo.stderr
    assert _facts(host) == after
    # The undone state continues on a timeline of its own, newer than the restore's, so the
    # archive's "latest" follows it; and its WAL is archived again.
    assert _timeline(host) > restored_timeline
    assert _psql(host, "SHOW restore_command", "postgres") == ""
    _archive_now(host)

    dropped = host.run("toolkit-pitr restore --drop-previous")
    assert dropped.rc == 0, dropped.stdout + dropped.stderr
    assert host.run(f"ls -d {_pg_data(host)}.before-* {_pg_data(host)}.undone-*").rc != 0


HEARTBEAT = (
    "while runuser -u postgres -- psql -Xq -d invoice -c 'INSERT INTO heartbeat DEFAULT VALUES'"
    " && date +%s.%N > /run/toolkit-test-heartbeat; do sleep 1; done"
)


def test_the_vps_is_gone_rpo_of_a_restore_from_the_offsite_repository_alone(
    host, run_playbook, capsys
) -> None:
    """docs/BACKUP_RESTORE.md's "The VPS is gone", on this host: a heartbeat row every second;
    PostgreSQL killed, its data directory and the local repository lost; a new empty cluster, as a
    new host's package makes, whose archiving refuses the old cluster's repository and names the
    restore to run; the playbook restores the latest point from the offsite repository alone. The
    rows lost span at most archive_timeout + 10 s, and archiving then resumes into both."""
    _psql(host, "CREATE TABLE heartbeat (at timestamptz PRIMARY KEY DEFAULT clock_timestamp())")
    host.check_output(f"systemd-run --unit toolkit-test-heartbeat bash -c {json.dumps(HEARTBEAT)}")
    try:
        time.sleep(2.5 * ARCHIVE_TIMEOUT)
        version, pg_data, service = _version(host), _pg_data(host), _service(host)
        host.check_output(f"systemctl kill -s KILL {service}")
        last_written = float(host.check_output("cat /run/toolkit-test-heartbeat"))
        # (Its loop ends by itself once an insert fails; the transient unit may be gone already.)
        host.run("systemctl stop toolkit-test-heartbeat")
        host.check_output(f"rm -rf {pg_data} {LOCAL}/*")
        host.check_output(
            f"install -d -o postgres -g postgres -m 0700 {pg_data}"
            f" && runuser -u postgres -- /usr/lib/postgresql/{version}/bin/initdb -D {pg_data} >/dev/null"
            f" && systemctl reset-failed {service} && systemctl start {service}"
        )
        stanza = host.run("toolkit-pitr stanza")
        assert stanza.rc == 2, stanza.stdout + stanza.stderr
        assert "repo2 holds stanza main of another PostgreSQL cluster" in stanza.stderr
        assert host.run(f"ls -A {LOCAL} | grep -q .").rc != 0, "the refused stanza wrote into repo1"
        assert "make restore ENV=<env> CONFIRM=<database> LATEST=1 REPO=2" in stanza.stderr

        refused = run_playbook("../../playbooks/pitr-restore.yml", {"pitr_restore_latest": True})
        assert refused.rc != 0
        assert "CONFIRM=invoice" in refused.output, refused.output[-2000:]
        run = run_playbook(
            "../../playbooks/pitr-restore.yml",
            {"pitr_restore_latest": True, "pitr_restore_repo": 2, "pitr_restore_confirm": DATABASE},
        )
        assert run.rc == 0, run.output[-3000:]
        restored = float(_psql(host, "SELECT extract(epoch FROM max(at)) FROM heartbeat"))
        lost = last_written - restored
        with capsys.disabled():
            print(f"\nRPO measured: {lost:.1f} s of heartbeats lost (archive_timeout {ARCHIVE_TIMEOUT} s)")
        assert lost <= ARCHIVE_TIMEOUT + 10, f"{lost:.1f} s of writes lost"
        assert int(_psql(host, "SELECT count(*) FROM invoices")) > 0

        # site.yml again: the stanza is this cluster's now, the new local repository gets its first
        # full backup, and archiving reaches both repositories.
        again = host.run("toolkit-pitr stanza && toolkit-pitr backup full --if-none")
        assert again.rc == 0, again.stdout + again.stderr
        assert "created in repo 1" in again.stdout
        assert "full backup into repo1 took" in again.stdout
        assert "repo2" not in again.stdout.split("created in repo 1")[1], "repo2 had a backup already"
    finally:
        host.run("systemctl stop toolkit-test-heartbeat; systemctl reset-failed toolkit-test-heartbeat")
        host.run("toolkit-pitr restore --drop-previous")
