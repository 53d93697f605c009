"""toolkit-pitr's pure parts: restore targets, what pgBackRest's info says, the kept directories."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from role_scripts import load_role_script

tb = load_role_script("backup", "toolkit_backup")  # toolkit_pitr imports it under this name
tp = load_role_script("backup", "toolkit_pitr")

# pgbackrest info --output=json (2.45), trimmed to what toolkit-pitr reads: repo1 has a full and a
# diff backup, repo2 (offsite) a full one.
INFO = json.loads(
    """[{"name": "main",
         "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}},
                  {"key": 2, "status": {"code": 0, "message": "ok"}}],
         "backup": [{"label": "20261201-013000F", "type": "full", "database": {"id": 1, "repo-key": 1}},
                    {"label": "20261201-013000F", "type": "full", "database": {"id": 1, "repo-key": 2}},
                    {"label": "20261201-013000F_20261202-013000D", "type": "diff",
                     "database": {"id": 1, "repo-key": 1}}]}]"""
)
NEW_HOST = [
    {
        "name": "main",
        "repo": [
            {"key": 1, "status": {"code": 1, "message": "missing stanza path"}},
            {"key": 2, "status": {"code": 2, "message": "no valid backups"}},
        ],
        "backup": [],
    }
]


def test_a_moment_restores_to_it_and_promotes() -> None:
    assert tp.restore_options(time_target="2026-12-01 05:30:00+00", backup=None, repo=2) == [
        "--repo=2",
        "--type=time",
        "--target=2026-12-01 05:30:00+00",
        "--target-action=promote",
    ]


def test_a_backup_restores_to_its_end_and_latest_to_the_end_of_the_archive() -> None:
    assert tp.restore_options(time_target=None, backup="20261201-013000F", repo=None) == [
        "--set=20261201-013000F",
        "--type=immediate",
        "--target-action=promote",
    ]
    assert tp.restore_options(time_target=None, backup=None, repo=None) == []
    assert tp.restore_options(time_target=None, backup=None, repo=1) == ["--repo=1"]


@pytest.mark.parametrize(
    "text", ["2026-12-01 05:30:00+00", "2026-12-01T05:30:00Z", "2026-12-01 06:30:00+01:00"]
)
def test_moments_need_a_time_zone_and_mean_one_instant(text: str) -> None:
    assert tp.parse_moment(text) == dt.datetime(2026, 12, 1, 5, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "message"), [("2026-12-01 05:30", "needs a time zone"), ("yesterday", "--time")]
)
def test_a_moment_without_a_zone_or_unreadable_is_refused(text: str, message: str) -> None:
    with pytest.raises(tb.BackupError, match=message):
        tp.parse_moment(text)


def test_repositories_with_backups_and_without_the_stanza() -> None:
    assert tp.repos_with_backups(INFO) == {1, 2}
    assert tp.repos_missing_stanza(INFO, (1, 2)) == []
    assert tp.repos_with_backups(NEW_HOST) == set()
    assert tp.repos_missing_stanza(NEW_HOST, (1, 2)) == [1]
    # A repository info does not mention at all counts as missing.
    assert tp.repos_missing_stanza(NEW_HOST, (1, 2, 3)) == [1, 3]


def test_kept_directories_are_listed_oldest_first_and_only_the_clusters_own(tmp_path: Path) -> None:
    data = tmp_path / "main"
    for name in [
        "main.before-20261202T010000Z",
        "main.before-20261201T010000Z",
        "main.undone-20261203T010000Z",
    ]:
        (tmp_path / name).mkdir()
    (tmp_path / "other.before-20261201T010000Z").mkdir()
    assert [p.name for p in tp.kept_directories(data, tp.BEFORE)] == [
        "main.before-20261201T010000Z",
        "main.before-20261202T010000Z",
    ]
    assert [p.name for p in tp.kept_directories(data, tp.UNDONE)] == ["main.undone-20261203T010000Z"]


def test_settings_refuse_a_host_without_point_in_time_recovery() -> None:
    with pytest.raises(tb.BackupError, match="backup_pitr_enabled is false"):
        tp.PitrSettings.from_dict({"pitr": {"enabled": False}})
    pitr = tp.PitrSettings.from_dict(
        {
            "pitr": {
                "enabled": True,
                "stanza": "main",
                "pg_data": "/var/lib/postgresql/17/main",
                "pg_service": "postgresql@17-main",
                "repos": [1, 2],
            }
        }
    )
    assert pitr.repos == (1, 2)
    assert pitr.pg_data == Path("/var/lib/postgresql/17/main")


def test_a_foreign_clusters_repository_is_recognised() -> None:
    message = (
        "ERROR: [028]: backup and archive info files exist but do not match the database\n"
        "HINT: is this the correct stanza?"
    )
    assert tp.FOREIGN_CLUSTER.search(message)
    assert not tp.FOREIGN_CLUSTER.search("ERROR: [041]: unable to open file")


def test_a_repository_of_another_cluster_is_found_by_its_newest_system_identifier() -> None:
    info = [
        {
            "name": "main",
            "db": [
                {"id": 1, "repo-key": 1, "system-id": 111, "version": "15"},
                {"id": 1, "repo-key": 2, "system-id": 111, "version": "15"},
                # repo2 went on with an upgraded cluster (stanza-upgrade): its newest database counts.
                {"id": 2, "repo-key": 2, "system-id": 222, "version": "17"},
            ],
        }
    ]
    assert tp.foreign_repos(info, 111) == [2]
    assert tp.foreign_repos(info, 222) == [1]
    assert tp.foreign_repos(NEW_HOST, 111) == []


def test_the_drill_takes_the_repositories_in_turn() -> None:
    assert tp.next_drill_repo((1, 2), None) == 1
    assert tp.next_drill_repo((1, 2), 1) == 2
    assert tp.next_drill_repo((1, 2), 2) == 1
    # Only the local repository (no offsite), or a previous one that is gone: the first.
    assert tp.next_drill_repo((1,), 1) == 1
    assert tp.next_drill_repo((1,), 2) == 1
