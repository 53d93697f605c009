"""Retention of backup sets (toolkit-backup): which of the dated sets survive 7 daily + 4 weekly."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from role_scripts import load_role_script

tb = load_role_script("backup", "toolkit_backup")

# The least a manifest holds for a set to count as readable (not damaged).
VALID_MANIFEST = '{"dump": {}}'


def _name(day: str, clock: str = "030000") -> str:
    return f"{day.replace('-', '')}T{clock}Z"


def _daily(first: dt.date, days: int, clock: str = "030000") -> list[str]:
    return [_name((first + dt.timedelta(days=i)).isoformat(), clock) for i in range(days)]


def test_thirty_nightly_sets_keep_seven_days_and_four_older_weeks() -> None:
    # 2026-10-01 (Thu) .. 2026-10-30 (Fri). ISO weeks: 40 = Oct 1-4, 41 = 5-11, 42 = 12-18,
    # 43 = 19-25, 44 = 26-30.
    names = _daily(dt.date(2026, 10, 1), 30)
    kept = tb.select_kept(names, keep_daily=7, keep_weekly=4)
    daily = {_name(f"2026-10-{d}") for d in range(24, 31)}
    # Older than Oct 24: the newest set of week 43 before the window is Oct 23, then Sundays.
    weekly = {_name("2026-10-23"), _name("2026-10-18"), _name("2026-10-11"), _name("2026-10-04")}
    assert kept == daily | weekly


def test_several_sets_a_day_keep_the_newest_of_each_day() -> None:
    names = [*_daily(dt.date(2026, 10, 1), 10), *_daily(dt.date(2026, 10, 1), 10, clock="140000")]
    kept = tb.select_kept(names, keep_daily=3, keep_weekly=0)
    assert kept == {
        _name("2026-10-10", "140000"),
        _name("2026-10-09", "140000"),
        _name("2026-10-08", "140000"),
    }


def test_an_older_set_of_the_oldest_daily_day_is_not_a_weekly_one() -> None:
    names = [_name("2026-10-30"), _name("2026-10-29", "140000"), _name("2026-10-29"), _name("2026-10-20")]
    assert tb.select_kept(names, keep_daily=2, keep_weekly=1) == {
        _name("2026-10-30"),
        _name("2026-10-29", "140000"),
        _name("2026-10-20"),
    }


def test_gaps_count_days_that_have_a_set_not_calendar_days() -> None:
    # A week without backups must not make retention delete the last good ones.
    names = [_name("2026-09-01"), _name("2026-09-02"), _name("2026-10-20")]
    assert tb.select_kept(names, keep_daily=7, keep_weekly=4) == set(names)


def test_weeks_without_sets_are_skipped_not_counted() -> None:
    names = [_name("2026-10-30"), _name("2026-10-01"), _name("2026-08-03"), _name("2026-06-01")]
    assert tb.select_kept(names, keep_daily=1, keep_weekly=2) == {
        _name("2026-10-30"),
        _name("2026-10-01"),
        _name("2026-08-03"),
    }


def test_iso_week_spans_new_year() -> None:
    # 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53: one weekly set.
    names = [_name("2027-01-20"), _name("2027-01-03"), _name("2026-12-31"), _name("2026-12-27")]
    kept = tb.select_kept(names, keep_daily=1, keep_weekly=2)
    assert kept == {_name("2027-01-20"), _name("2027-01-03"), _name("2026-12-27")}


def test_other_names_are_never_selected() -> None:
    names = ["pre-restore", ".partial-20261030T030000Z", "20261030T030000Z.old", "20261399T030000Z"]
    assert tb.select_kept([*names, _name("2026-10-01")], keep_daily=7, keep_weekly=4) == {_name("2026-10-01")}


def test_nothing_to_keep_from_nothing() -> None:
    assert tb.select_kept([], keep_daily=7, keep_weekly=4) == set()


@pytest.mark.parametrize(("daily", "weekly"), [(0, 4), (-1, 0), (1, -1)])
def test_bad_retention_is_refused(daily: int, weekly: int) -> None:
    with pytest.raises(ValueError, match="keep_daily"):
        tb.select_kept([_name("2026-10-01")], keep_daily=daily, keep_weekly=weekly)


# Sets within about three months, several a day at times: the cases where days and weeks collide.
_moments = st.lists(
    st.builds(
        lambda day, hour: dt.datetime(2026, 11, 1) + dt.timedelta(days=day, hours=hour),
        st.integers(-90, 0),
        st.integers(0, 23),
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(moments=_moments, daily=st.integers(1, 10), weekly=st.integers(0, 8))
def test_retention_properties(moments: list[dt.datetime], daily: int, weekly: int) -> None:
    names = sorted({tb.set_name(m.replace(tzinfo=dt.UTC)) for m in moments})
    kept = tb.select_kept(names, keep_daily=daily, keep_weekly=weekly)
    assert kept <= set(names)
    assert len(kept) <= daily + weekly
    if names:
        assert names[-1] in kept, "the newest set is always kept"
    days = {tb.set_time(n).date() for n in names}
    kept_days = {tb.set_time(n).date() for n in kept}
    newest_days = sorted(days, reverse=True)[:daily]
    for day in newest_days:
        newest_of_day = max(n for n in names if tb.set_time(n).date() == day)
        assert newest_of_day in kept
    # At most one set per ISO week among the weekly ones, and one per day among all.
    assert len(kept_days) == len(kept)
    weekly_sets = [n for n in kept if tb.set_time(n).date() not in newest_days]
    assert len({tb.set_time(n).isocalendar()[:2] for n in weekly_sets}) == len(weekly_sets)
    # Pruning what was kept keeps all of it: running retention twice deletes nothing more.
    assert tb.select_kept(sorted(kept), keep_daily=daily, keep_weekly=weekly) == kept


def test_prune_deletes_only_unkept_finished_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = _daily(dt.date(2026, 10, 1), 30)
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(VALID_MANIFEST)
    (tmp_path / ".partial-20261031T030000Z").mkdir()
    (tmp_path / "20261031T030000Z").mkdir()  # no manifest: unfinished, left alone
    (tmp_path / "pre-restore").mkdir()
    (tmp_path / "notes.txt").write_text("operator notes")
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None, lock_file=tmp_path / "lock")
    removed = tb.prune(config)
    assert len(removed) == 30 - 11
    left = {p.name for p in tmp_path.iterdir()}
    assert left - set(names) == {".partial-20261031T030000Z", "20261031T030000Z", "pre-restore", "notes.txt"}
    assert left & set(names) == tb.select_kept(names, keep_daily=7, keep_weekly=4)
    assert "kept 11 sets, deleted 19" in capsys.readouterr().out


def test_prune_dry_run_deletes_nothing(tmp_path: Path) -> None:
    for name in _daily(dt.date(2026, 10, 1), 12):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(VALID_MANIFEST)
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None, keep_daily=2, keep_weekly=1)
    assert len(tb.prune(config, dry_run=True)) == 9
    assert len(list(tmp_path.iterdir())) == 12


def _sets(root: Path, names: list[str], content: str = VALID_MANIFEST) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text(content)


@pytest.mark.parametrize("content", ["", '{"dump": {"file": "database.dump", "by', "[]", "{}"])
def test_a_set_whose_manifest_does_not_read_is_damaged(tmp_path: Path, content: str) -> None:
    _sets(tmp_path, ["20261001T030000Z", "20261003T030000Z"])
    _sets(tmp_path, ["20261002T030000Z"], content)
    valid, damaged = tb.sorted_sets(tmp_path)
    assert valid == ["20261001T030000Z", "20261003T030000Z"]
    assert list(damaged) == ["20261002T030000Z"]
    with pytest.raises(tb.BackupError, match="set 20261002T030000Z is damaged"):
        tb.choose_set(tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None), "20261002T030000Z")


def test_a_damaged_newest_set_is_skipped_and_goes_once_older_than_what_is_kept(tmp_path: Path) -> None:
    """An emptied newest manifest used to fail every later run; retention now passes over it, and
    `latest` is the newest set that reads."""
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None, keep_daily=2, keep_weekly=0)
    _sets(tmp_path, ["20261001T030000Z", "20261002T030000Z"])
    _sets(tmp_path, ["20261003T030000Z"], "")
    assert tb.choose_set(config, "latest") == "20261002T030000Z"
    assert tb.prune(config) == []
    _sets(tmp_path, ["20261004T030000Z", "20261005T030000Z"])
    # Kept: Oct 4 and 5. Oct 1 and 2 go by retention, the damaged Oct 3 as older than Oct 4.
    assert tb.prune(config) == ["20261001T030000Z", "20261002T030000Z", "20261003T030000Z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261004T030000Z", "20261005T030000Z"]


def test_pre_restore_copies_go_after_the_daily_window_but_the_newest_stays(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    befores = [tb.set_name(now - dt.timedelta(days=days)) for days in (40, 30, 20)] + [tb.set_name(now)]
    for name in befores:
        (tmp_path / "pre-restore" / name).mkdir(parents=True)
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None, keep_daily=7)
    tb.prune(config)
    assert sorted(p.name for p in (tmp_path / "pre-restore").iterdir()) == [befores[-1]]
    # The only copy left stays, however old.
    old = tmp_path / "old"
    (old / "pre-restore" / befores[0]).mkdir(parents=True)
    tb.prune(tb.Settings(database="app", backup_dir=old, uploads_dir=None, keep_daily=7))
    assert [p.name for p in (old / "pre-restore").iterdir()] == [befores[0]]


def test_a_set_that_would_fill_the_disk_is_refused_naming_the_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gib = 1024**3
    usage = tb.shutil._ntuple_diskusage(total=100 * gib, used=85 * gib, free=15 * gib)
    monkeypatch.setattr(tb.shutil, "disk_usage", lambda path: usage)
    assert tb.free_space_problem(Path("/b"), 4 * gib, 10) is None
    problem = tb.free_space_problem(Path("/b"), 6 * gib, 10)
    assert problem is not None
    assert "needs about 6.0 GiB, 15.0 GiB is free of 100.0 GiB" in problem
    assert "at least 10 % (10.0 GiB) must stay free" in problem


def test_uploads_count_whole_the_first_time_then_only_what_changed(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "b").write_bytes(b"y" * 50)
    os.utime(tmp_path / "a", (1_000_000_000, 1_000_000_000))
    assert tb.uploads_estimate(tmp_path, None) == 150
    # ctime cannot be set back: a file counts when either its mtime or its ctime is after the set.
    since = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert tb.uploads_estimate(tmp_path, since) == 0


def test_manifests_are_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "set" / "manifest.json"
    tb.write_json(target, {"dump": {"bytes": 1}})
    assert tb.read_manifest(tmp_path, "set") == {"dump": {"bytes": 1}}
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]


def test_list_marks_damaged_and_future_dated_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = '{"dump": {"bytes": 2048}, "uploads": null, "duration_seconds": 1.5}'
    _sets(tmp_path, ["20261001T030000Z", "29990101T030000Z"], manifest)
    _sets(tmp_path, ["20261002T030000Z"], "")
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None)
    assert tb.command_list(config) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "20261001T030000Z  dump 2.0 KiB  0 files 0 B  1.5 s"
    assert lines[1].startswith("20261002T030000Z  DAMAGED: set 20261002T030000Z: cannot read")
    assert lines[2].endswith("1.5 s  DATED IN THE FUTURE (clock?)")
