"""Retention of backup sets (toolkit-backup): which of the dated sets survive 7 daily + 4 weekly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from role_scripts import load_role_script

tb = load_role_script("backup", "toolkit_backup")


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
        (tmp_path / name / "manifest.json").write_text("{}")
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
        (tmp_path / name / "manifest.json").write_text("{}")
    config = tb.Settings(database="app", backup_dir=tmp_path, uploads_dir=None, keep_daily=2, keep_weekly=1)
    assert len(tb.prune(config, dry_run=True)) == 9
    assert len(list(tmp_path.iterdir())) == 12
