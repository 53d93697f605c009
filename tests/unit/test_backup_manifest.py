"""What toolkit-backup records and compares: row counts, checksums, settings, the run lock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from role_scripts import load_role_script

tb = load_role_script("backup", "toolkit_backup")

MANIFEST = {
    "tables": {"public.invoices": 50, "public.line_items": 120, "public.empty": 0},
    "uploads": {
        "files": {
            "a.txt": {"bytes": 6, "sha256": "aa"},
            "2026/11/scan 1.jpg": {"bytes": 9, "sha256": "bb"},
        }
    },
}


def test_psql_table_lines_are_parsed() -> None:
    output = "public.invoices|50|16891173519431799646\npublic.odd|name|7|-42\n\npublic.empty|0|0\n"
    facts = tb.parse_table_facts(output)
    assert facts.counts == {"public.invoices": 50, "public.odd|name": 7, "public.empty": 0}
    assert facts.checksums == {
        "public.invoices": "16891173519431799646",
        "public.odd|name": "-42",
        "public.empty": "0",
    }


def test_the_same_number_of_other_rows_is_a_difference() -> None:
    """Counts alone passed a restore whose rows had changed; the checksums catch it."""
    manifest = {
        **MANIFEST,
        "uploads": None,
        "checksums": {"public.invoices": "111", "public.line_items": "222"},
    }
    counts = dict(MANIFEST["tables"])
    assert tb.compare(manifest, counts, {}, {"public.invoices": "111", "public.line_items": "222"}) == []
    assert tb.compare(manifest, counts, {}, {"public.invoices": "111", "public.line_items": "999"}) == [
        "table public.line_items: contents differ from the backup (the same 120 rows)"
    ]
    # A set from before checksums were recorded: compared by counts, as it was made.
    assert tb.compare({**manifest, "checksums": None}, counts, {}, {"public.line_items": "999"}) == []


def test_an_identical_restore_has_no_differences() -> None:
    files = {"a.txt": {"sha256": "aa"}, "2026/11/scan 1.jpg": {"sha256": "bb"}}
    assert tb.compare(MANIFEST, dict(MANIFEST["tables"]), files) == []


def test_every_kind_of_difference_is_named() -> None:
    tables = {"public.invoices": 49, "public.empty": 0, "public.extra": 3}
    files = {"a.txt": {"sha256": "zz"}, "new.txt": {"sha256": "cc"}}
    assert tb.compare(MANIFEST, tables, files) == [
        "table public.extra: not in the backup, present after restore (3 rows)",
        "table public.invoices: 50 rows backed up, 49 restored",
        "table public.line_items: in the backup (120 rows), missing after restore",
        "file 2026/11/scan 1.jpg: in the backup, missing after restore",
        "file a.txt: sha256 differs from the backup",
        "file new.txt: not in the backup, present after restore",
    ]


def test_a_database_only_set_compares_tables_alone() -> None:
    assert tb.compare({"tables": {"t": 1}, "uploads": None}, {"t": 1}, {}) == []


def test_a_database_restored_before_its_uploads_is_compared_by_its_tables() -> None:
    """A live restore checks the copy beside the live database before any upload moves."""
    assert tb.compare(MANIFEST, dict(MANIFEST["tables"]), None) == []
    assert tb.compare(MANIFEST, {**MANIFEST["tables"], "public.invoices": 49}, None) == [
        "table public.invoices: 50 rows backed up, 49 restored"
    ]


def test_checksums_cover_every_regular_file(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "x.bin").write_bytes(b"\x00\x01")
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "link").symlink_to("a.txt")
    tree = tb.checksum_tree(tmp_path)
    assert tree == {
        "a.txt": {"bytes": 6, "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"},
        "sub dir/x.bin": {
            "bytes": 2,
            "sha256": "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2",
        },
    }


def test_hard_linked_files_reuse_the_previous_checksum_and_others_are_read(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "same.txt").write_text("same")
    os.link(old / "same.txt", new / "same.txt")
    (old / "changed.txt").write_text("v1")
    (new / "changed.txt").write_text("v2")
    known = {"same.txt": {"sha256": "from-previous-manifest"}, "changed.txt": {"sha256": "stale"}}
    tree = tb.checksum_tree(new, old, known)
    assert tree["same.txt"]["sha256"] == "from-previous-manifest"
    assert tree["changed.txt"]["sha256"] == tb.sha256_of(new / "changed.txt")


def test_new_bytes_count_only_files_not_shared_with_an_older_set(tmp_path: Path) -> None:
    (tmp_path / "shared").write_bytes(b"x" * 100)
    os.link(tmp_path / "shared", tmp_path / "shared-again")
    (tmp_path / "fresh").write_bytes(b"y" * 7)
    assert tb.new_bytes(tmp_path) == 7


def test_env_file_follows_systemd_syntax(tmp_path: Path) -> None:
    env = tmp_path / "restic.env"
    env.write_text(
        "# comment\nRESTIC_REPOSITORY=s3:https://s3.eu-central-003.backblazeb2.com/b/p\n"
        "AWS_SECRET_ACCESS_KEY='with = sign'\n\nEMPTY=\nnot a line\n"
    )
    assert tb.read_env_file(env) == {
        "RESTIC_REPOSITORY": "s3:https://s3.eu-central-003.backblazeb2.com/b/p",
        "AWS_SECRET_ACCESS_KEY": "with = sign",
        "EMPTY": "",
    }


def test_settings_read_the_rendered_json(tmp_path: Path) -> None:
    path = tmp_path / "backup.json"
    path.write_text(
        '{"database": "invoice", "backup_dir": "/b", "uploads_dir": "", "keep_daily": 3,'
        ' "restic": {"enabled": true, "check_args": ["--read-data-subset=5%"]}}'
    )
    settings = tb.Settings.load(path)
    assert settings.uploads_dir is None
    assert settings.keep_daily == 3
    assert settings.keep_weekly == 4
    assert settings.restic.enabled
    assert settings.restic.check_args == ("--read-data-subset=5%",)
    assert settings.drill_database == "invoice_restore_drill"


def test_unreadable_settings_fail_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "backup.json"
    path.write_text("{not json")
    assert tb.main(["--config", str(path), "list"]) == tb.EXIT_ERROR
    assert f"cannot read the settings in {path}" in capsys.readouterr().err


def test_an_overlapping_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "toolkit-backup.lock"
    config = tmp_path / "backup.json"
    config.write_text(f'{{"database": "x", "backup_dir": "{tmp_path}/sets", "lock_file": "{lock}"}}')
    # flock(1) runs sleep as its child, which inherits the lock: end the whole process group.
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    try:
        for _ in range(50):
            if lock.exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert tb.main(["--config", str(config), "run"]) == tb.EXIT_LOCKED
        assert "refusing to start an overlapping run" in capsys.readouterr().err
        assert not (tmp_path / "sets").exists(), "a refused run must not touch the backup directory"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    # Once the holder is gone the lock is free again. Gone means its whole group: sleep, flock's
    # child, holds the lock too and may still be dying a moment after flock was reaped on a busy
    # machine, so the lock gets a few seconds to come free (a lock that stays held fails the test).
    deadline = time.monotonic() + 10
    while True:
        try:
            with tb.locked(lock):
                break
        except tb.BackupLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_drill_of_an_unknown_set_names_the_sets_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "20261001T030000Z").mkdir()
    (tmp_path / "20261001T030000Z" / "manifest.json").write_text('{"dump": {}}')
    config = tmp_path / "backup.json"
    config.write_text(f'{{"database": "x", "backup_dir": "{tmp_path}", "lock_file": "{tmp_path}/lock"}}')
    assert tb.main(["--config", str(config), "drill", "20990101T000000Z"]) == tb.EXIT_ERROR
    err = capsys.readouterr().err
    assert "no backup set named 20990101T000000Z" in err
    assert "(have: 20261001T030000Z)" in err


def test_a_lock_timeout_names_the_session_holding_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    postgres = tb.Postgres("postgres", lock_timeout_seconds=60)
    assert postgres.env["PGOPTIONS"] == "-c lock_timeout=60s"
    holder = "4242 invoice AccessExclusiveLock on invoices (idle in transaction, 00:12:03 in its transaction)"
    monkeypatch.setattr(postgres, "lock_holders", lambda database: [holder])
    error = postgres._explained(
        tb.BackupError("psql failed (exit 3): ERROR:  canceling statement due to lock timeout"), "invoice"
    )
    assert "gave up after waiting 60 s for a lock in invoice (backup_lock_timeout)" in str(error)
    assert holder in str(error)
    # pg_dump's --lock-wait-timeout ends its LOCK TABLE with a statement timeout.
    dumped = tb.BackupError(
        "pg_dump of invoice failed: ERROR:  canceling statement due to statement timeout\n"
        "pg_dump: detail: Query was: LOCK TABLE public.invoices IN ACCESS SHARE MODE"
    )
    assert holder in str(postgres._explained(dumped, "invoice"))
    other = tb.BackupError("psql failed (exit 2): connection refused")
    assert postgres._explained(other, "invoice") is other
    assert tb.Postgres("postgres").env["PGOPTIONS"] == "", "0 waits as long as it takes"
