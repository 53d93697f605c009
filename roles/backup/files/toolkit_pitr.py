#!/usr/bin/python3
"""Point-in-time recovery of the PostgreSQL cluster with pgBackRest.

Installed by the toolkit's backup role as /usr/local/sbin/toolkit-pitr, beside toolkit-backup (whose
settings, lock and helpers it shares); settings come from the "pitr" part of
/etc/toolkit/backup.json, pgBackRest's own from /etc/pgbackrest.conf. PostgreSQL archives every WAL
segment into each repository (repo1 on this disk, repo2 offsite when configured) through
pgBackRest's archive-push; this command takes the base backups and restores.

    toolkit-pitr stanza                   create the stanza in each repository unless it exists (refusing
                                          a repository that holds another cluster), then check archiving
    toolkit-pitr backup full|diff [--if-none]
                                          a backup into each repository (--if-none: only where none is)
    toolkit-pitr verify                   pgbackrest verify of each repository
    toolkit-pitr info                     the backups and WAL each repository holds
    toolkit-pitr restore --time T|--latest|--backup LABEL [--repo N] [--yes]
                                          restore the whole cluster to that point (the app stopped
                                          meanwhile); the replaced data directory is kept beside
    toolkit-pitr restore --undo [--yes]   back to the data directory the newest restore replaced
    toolkit-pitr restore --drop-previous  delete the data directories restores and undos kept
    toolkit-pitr drill [--repo N] [--scratch-dir DIR]
                                          mark a restore point in the live cluster (writes to the app
                                          database held back for the moment it takes) and record every
                                          table's rows and checksum at it; restore that point from one
                                          repository (by default the one the previous drill did not
                                          use) into a scratch cluster beside the live one (or in
                                          DIR); compare every table; report the RTO; remove the
                                          scratch cluster

A restore stops the database's clients (the app's containers, the listed units) and refuses while
other sessions stay connected, naming them. It then stops PostgreSQL, renames the data directory to
<data>.before-<time> (same file system: nothing is copied), restores into a new one, starts
PostgreSQL, waits until recovery ends and the server is promoted, and starts the clients again. If
pgBackRest fails, the renamed directory is put back and started as it was.

An undo starts the kept directory with archive recovery on its own timeline: it replays its own WAL
to its end and is promoted on a new timeline, so the archive's "latest" follows it again and not the
undone restore.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toolkit_backup as tb

BEFORE = ".before-"
UNDONE = ".undone-"
RECOVERY_WAIT_SECONDS = 3600
# pgBackRest's error for a repository whose stanza was created by another cluster (its system
# identifier or version differs from this host's): the host is new and its data must be restored.
FOREIGN_CLUSTER = re.compile(r"do not match the database|\[028\]")
# pgBackRest's error for a lock another of its processes holds, and how many seconds to wait for it.
LOCK_BUSY = "[050]"
LOCK_RETRIES = 60
# pgBackRest's error for a WAL segment that did not reach the repositories within archive-timeout.
ARCHIVE_TIMEOUT = "[082]"
ARCHIVE_TIMEOUT_RETRIES = 2
# The drill's scratch cluster: its own port and socket directory, no TCP, no archiving, small memory.
DRILL_PORT = 5499
DRILL_SOCKET_DIR = Path("/run/toolkit-pitr-drill")
DRILL_CONF = """# toolkit-pitr drill: a scratch cluster restored beside the live one
port = {port}
listen_addresses = ''
unix_socket_directories = '{socket_dir}'
shared_buffers = 32MB
max_connections = 10
# No connections during recovery (which would need the live cluster's max_connections and the like):
# pg_ctl start waits for the end of recovery.
hot_standby = off
archive_mode = off
hba_file = '{data}/pg_hba.conf'
ident_file = '{data}/pg_ident.conf'
"""
# A restore point whose every table's contents are known: writers to the database's tables are held
# back (SHARE locks: writers that hold a lock have committed first, later ones wait) while the point
# is written to the WAL and the tables are read, so the restored point holds exactly what was read.
# The locks are the same set table facts reads; psql's \\gexec runs the generated LOCK statement.
MARK_POINT_SQL = """BEGIN;
SELECT 'LOCK TABLE ' || string_agg(format('%I.%I', n.nspname, c.relname), ', ') || ' IN SHARE MODE'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
HAVING count(*) > 0 \\gexec
SELECT pg_create_restore_point('{name}') \\gset
{facts}COMMIT;
"""
UNDO_SETTINGS_MARK = "# toolkit-pitr undo: archive recovery of this directory's own timeline"


@dataclass(frozen=True)
class PitrSettings:
    """The "pitr" part of /etc/toolkit/backup.json."""

    stanza: str
    pg_data: Path
    pg_service: str
    repos: tuple[int, ...]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PitrSettings:
        pitr = raw.get("pitr") or {}
        if not pitr.get("enabled"):
            raise tb.BackupError("point-in-time recovery is not enabled (backup_pitr_enabled is false)")
        return cls(
            stanza=str(pitr["stanza"]),
            pg_data=Path(pitr["pg_data"]),
            pg_service=str(pitr["pg_service"]),
            repos=tuple(int(repo) for repo in pitr["repos"]),
        )

    @classmethod
    def load(cls, path: Path) -> PitrSettings:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise tb.BackupError(f"cannot read the settings in {path}: {error}") from error


# --- Pure helpers ------------------------------------------------------------------------------


def restore_options(*, time_target: str | None, backup: str | None, repo: int | None) -> list[str]:
    """pgbackrest restore's options for a target: a moment, a named backup, or (neither) the end of
    the archive. A moment or a backup ends recovery there and promotes (pgBackRest's default for a
    target is to pause)."""
    options = [f"--repo={repo}"] if repo else []
    if time_target:
        options += ["--type=time", f"--target={time_target}", "--target-action=promote"]
    elif backup:
        options += [f"--set={backup}", "--type=immediate", "--target-action=promote"]
    return options


def parse_moment(text: str) -> dt.datetime:
    """A restore target: ISO 8601 with a time zone ('2026-12-01 05:30:00+00', '...Z')."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise tb.BackupError(
            f"--time must be a moment such as '2026-12-01 05:30:00+00', not '{text}'"
        ) from None
    if moment.tzinfo is None:
        raise tb.BackupError(f"--time needs a time zone, such as +00 (got '{text}')")
    return moment


def repos_with_backups(info: list[dict[str, Any]]) -> set[int]:
    """The repositories that hold at least one backup of the stanza (pgbackrest info --output=json)."""
    return {int(backup["database"]["repo-key"]) for stanza in info for backup in stanza.get("backup", [])}


def repos_missing_stanza(info: list[dict[str, Any]], repos: tuple[int, ...]) -> list[int]:
    """The repositories where the stanza does not exist yet (status code 1, 'missing stanza path')."""
    known = {
        int(repo["key"]): int(repo["status"]["code"]) for stanza in info for repo in stanza.get("repo", [])
    }
    return [repo for repo in repos if known.get(repo, 1) == 1]


def foreign_repos(info: list[dict[str, Any]], system_id: int) -> list[int]:
    """The repositories whose stanza belongs to another cluster: the newest database they record
    (the highest id of each repository) has another system identifier than this host's cluster."""
    newest: dict[int, dict[str, Any]] = {}
    for stanza in info:
        for db in stanza.get("db", []):
            repo = int(db["repo-key"])
            if repo not in newest or int(db["id"]) > int(newest[repo]["id"]):
                newest[repo] = db
    return sorted(repo for repo, db in newest.items() if int(db["system-id"]) != system_id)


def next_drill_repo(repos: tuple[int, ...], previous: int | None) -> int:
    """The repository the drill uses next: the one after the previous drill's, in turn."""
    if previous not in repos:
        return repos[0]
    return repos[(repos.index(previous) + 1) % len(repos)]


def kept_directories(pg_data: Path, marker: str) -> list[Path]:
    """<data>.before-<time> (or .undone-) directories, oldest first."""
    return sorted(pg_data.parent.glob(f"{pg_data.name}{marker}*"))


# --- pgBackRest and the cluster ----------------------------------------------------------------


def wait_until_promoted(postgres: tb.Postgres, alive: Callable[[], bool], failure: str) -> None:
    """Wait until the server has ended recovery (at most RECOVERY_WAIT_SECONDS, while ``alive``)."""
    deadline = time.monotonic() + RECOVERY_WAIT_SECONDS
    while True:
        try:
            if postgres.psql("postgres", "SELECT pg_is_in_recovery();").strip() == "f":
                return
        except tb.BackupError:
            pass  # not accepting connections yet
        if time.monotonic() > deadline or not alive():
            raise tb.BackupError(failure)
        time.sleep(0.5)


class Cluster:
    def __init__(self, settings: tb.Settings, pitr: PitrSettings) -> None:
        self.settings = settings
        self.pitr = pitr
        self.postgres = tb.Postgres(settings.postgres_user, settings.lock_timeout_seconds)

    def pgbackrest(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            "runuser",
            "-u",
            self.settings.postgres_user,
            "--",
            "pgbackrest",
            f"--stanza={self.pitr.stanza}",
        ]
        if check:
            return tb.run([*command, *args])
        return subprocess.run([*command, *args], text=True, capture_output=True, check=False, cwd="/")

    def info(self, repo: int | None = None) -> list[dict[str, Any]]:
        options = [f"--repo={repo}"] if repo else []
        return json.loads(self.pgbackrest(*options, "info", "--output=json").stdout)

    def system_id(self) -> int:
        """The running cluster's system identifier (pgBackRest's stanza records it)."""
        return int(self.postgres.psql("postgres", "SELECT system_identifier FROM pg_control_system();"))

    def running(self) -> bool:
        return (
            subprocess.run(
                ["systemctl", "is-active", "--quiet", self.pitr.pg_service], check=False
            ).returncode
            == 0
        )

    def stop(self) -> None:
        tb.say(f"stopping {self.pitr.pg_service}")
        tb.run(["systemctl", "stop", self.pitr.pg_service])

    def start_and_wait_for_promotion(self) -> float:
        """Start the cluster and wait until recovery has ended; the seconds that took."""
        started = time.monotonic()
        tb.say(f"starting {self.pitr.pg_service}; recovery replays the archived WAL")
        tb.run(["systemctl", "start", self.pitr.pg_service])
        wait_until_promoted(
            self.postgres,
            self.running,
            f"{self.pitr.pg_service} did not finish recovery (journalctl -u {self.pitr.pg_service}, "
            "/var/log/postgresql/postgresql-*-main.log)",
        )
        return time.monotonic() - started

    def fresh_data_directory(self) -> None:
        self.pitr.pg_data.mkdir(mode=0o700)
        shutil.chown(self.pitr.pg_data, self.settings.postgres_user, self.settings.postgres_user)


# --- Commands ----------------------------------------------------------------------------------


def foreign_cluster_error(stanza: str, what: str) -> tb.BackupError:
    return tb.BackupError(
        f"{what} holds stanza {stanza} of another PostgreSQL cluster, not of this host's. If this host "
        "replaces one that is gone, restore its data first: make restore ENV=<env> CONFIRM=<database> "
        "LATEST=1 REPO=2 (toolkit-pitr restore --latest --repo 2 on the host), then run site.yml again "
        "(docs/BACKUP_RESTORE.md, 'The VPS is gone'). Nothing was written to the repositories"
    )


def command_stanza(cluster: Cluster) -> int:
    info = cluster.info()
    # Before stanza-create, which would write this cluster's stanza into the empty repositories
    # before it fails on the other cluster's.
    foreign = foreign_repos(info, cluster.system_id())
    if foreign:
        raise foreign_cluster_error(cluster.pitr.stanza, "repo" + ", repo".join(map(str, foreign)))
    missing = repos_missing_stanza(info, cluster.pitr.repos)
    steps = (["stanza-create"] if missing else []) + ["check"]
    for step in steps:
        done = cluster.pgbackrest(step, check=False)
        # PostgreSQL's archiver may be running archive-push (failing until the stanza exists), which
        # holds the stanza's archive lock for a moment: wait for it.
        for _ in range(LOCK_RETRIES):
            if done.returncode == 0 or LOCK_BUSY not in (done.stderr or done.stdout):
                break
            time.sleep(1)
            done = cluster.pgbackrest(step, check=False)
        # Segments PostgreSQL failed to archive before the stanza existed send its archiver to sleep
        # for up to a minute between attempts, which a first check may wait out: check again.
        for _ in range(ARCHIVE_TIMEOUT_RETRIES):
            if step != "check" or done.returncode == 0 or ARCHIVE_TIMEOUT not in (done.stderr or done.stdout):
                break
            tb.say("a WAL segment reached no repository in time (the archiver was waiting): checking again")
            done = cluster.pgbackrest(step, check=False)
        if done.returncode == 0:
            continue
        detail = (done.stderr or done.stdout).strip()
        if FOREIGN_CLUSTER.search(detail):
            raise foreign_cluster_error(cluster.pitr.stanza, "a repository")
        raise tb.BackupError(f"pgbackrest {step} failed (exit {done.returncode}): {detail}")
    if missing:
        tb.say(f"stanza {cluster.pitr.stanza} created in repo {', '.join(map(str, missing))}")
    else:
        tb.say(f"stanza {cluster.pitr.stanza} exists in every repository")
    tb.say("archiving checked: a WAL segment reached every repository")
    return 0


def command_backup(cluster: Cluster, kind: str, *, if_none: bool) -> int:
    have = repos_with_backups(cluster.info()) if if_none else set()
    failed: list[str] = []
    took: list[int] = []
    for repo in cluster.pitr.repos:
        if repo in have:
            continue
        started = time.monotonic()
        done = cluster.pgbackrest(f"--repo={repo}", f"--type={kind}", "backup", check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            failed.append(f"repo{repo}: {lines[-1] if lines else f'exit {done.returncode}'}")
            continue
        took.append(repo)
        tb.say(f"{kind} backup into repo{repo} took {time.monotonic() - started:.1f} s")
    if not took and not failed:
        tb.say(f"every repository holds a backup already ({kind} not needed)")
    state = {"at": tb.now_text(), "type": kind, "repos": took, "failed": failed}
    tb.write_json(cluster.settings.state_dir / "last-pitr-backup.json", state)
    if failed:
        raise tb.BackupError(f"{kind} backup failed in {'; '.join(failed)} (the others were taken)")
    return 0


def command_verify(cluster: Cluster) -> int:
    failed = []
    for repo in cluster.pitr.repos:
        done = cluster.pgbackrest(f"--repo={repo}", "verify", check=False)
        tb.say(f"repo{repo}: {'verified' if done.returncode == 0 else 'FAILED'}")
        if done.returncode != 0:
            failed.append(f"repo{repo}: {(done.stderr or done.stdout).strip()}")
    if failed:
        raise tb.BackupError("verify failed: " + "; ".join(failed))
    return 0


def archive_current_segment(cluster: Cluster) -> str | None:
    """Switch the WAL segment in progress and wait until every repository has it (pgbackrest check);
    None when done, otherwise why not."""
    done = cluster.pgbackrest("check", check=False)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def archive_last_writes(cluster: Cluster, *, latest: bool) -> None:
    """Archive the WAL segment in progress (pgbackrest check switches it and waits for every
    repository), so the archive ends where the running cluster is: without this, "latest" would lose
    what was written since the last segment was archived. For --latest a failure stops the restore."""
    detail = archive_current_segment(cluster)
    if detail is None:
        tb.say("the running cluster's last writes are archived")
        return
    if latest:
        raise tb.BackupError(
            f"cannot archive the running cluster's last writes (the latest point would lose them): {detail}; "
            "nothing was changed (restore to a --time or --backup, or fix archiving first)"
        )
    tb.say(f"warning: the running cluster's last writes could not be archived: {detail}")


def command_restore(
    cluster: Cluster, *, time_target: str | None, backup: str | None, repo: int | None, yes: bool
) -> int:
    pitr, settings = cluster.pitr, cluster.settings
    if time_target and parse_moment(time_target) > dt.datetime.now(dt.UTC):
        raise tb.BackupError(f"--time {time_target} is in the future; nothing was changed")
    if repo is not None and repo not in pitr.repos:
        raise tb.BackupError(f"--repo {repo} is not configured (there are {pitr.repos}); nothing was changed")
    target = (
        f"the moment {time_target}" if time_target else f"backup {backup}" if backup else "the latest moment"
    )
    with tb.locked(settings.lock_file):
        # Fails here, before anything changes, when the repository cannot be read.
        info = cluster.info(repo)
        available = repos_with_backups(info)
        if not available:
            raise tb.BackupError(f"repo{repo or ''} holds no backup to restore from; nothing was changed")
        if not yes and not tb.confirm(settings, target):
            return tb.EXIT_ERROR
        started = time.monotonic()
        stamp = tb.set_name(dt.datetime.now(dt.UTC))
        kept = pitr.pg_data.with_name(f"{pitr.pg_data.name}{BEFORE}{stamp}")
        stopped = tb.stop_clients(settings)
        try:
            if cluster.running():
                tb.refuse_connected(cluster.postgres, settings.database, stopped)
                if foreign_repos(info, cluster.system_id()):
                    tb.say("the running cluster is not the one the repository holds (a new host): set aside")
                else:
                    archive_last_writes(cluster, latest=not (time_target or backup))
                cluster.stop()
            if pitr.pg_data.exists():
                pitr.pg_data.rename(kept)
                tb.say(f"the data directory it replaces is kept as {kept}")
            cluster.fresh_data_directory()
            source = f"repo{repo}" if repo else "the first repository that has it"
            tb.say(f"restoring {target} from {source}")
            try:
                cluster.pgbackrest(
                    *restore_options(time_target=time_target, backup=backup, repo=repo), "restore"
                )
                recovery = cluster.start_and_wait_for_promotion()
            except tb.BackupError as error:
                subprocess.run(["systemctl", "stop", pitr.pg_service], check=False)
                shutil.rmtree(pitr.pg_data, ignore_errors=True)
                if kept.exists():
                    kept.rename(pitr.pg_data)
                    subprocess.run(["systemctl", "start", pitr.pg_service], check=False)
                raise tb.BackupError(f"{error}; the data directory was put back as it was") from None
            facts = cluster.postgres.table_facts(settings.database)
        finally:
            tb.start_clients(stopped)
    rto = time.monotonic() - started
    before = str(kept) if kept.exists() else "nothing (there was no data directory)"
    for table in sorted(facts.counts):
        tb.say(f"{table}: {facts.counts[table]} rows, checksum {facts.checksums.get(table, '')}")
    tb.write_json(
        settings.state_dir / "last-pitr-restore.json",
        {"at": tb.now_text(), "target": target, "repo": repo, "seconds": round(rto, 2), "kept": str(kept)},
    )
    tb.say(
        f"restored {target} in {rto:.1f} s (recovery {recovery:.1f} s); before it: {before} "
        "(toolkit-pitr restore --undo goes back to it)"
    )
    return 0


def command_undo(cluster: Cluster, *, yes: bool) -> int:
    pitr, settings = cluster.pitr, cluster.settings
    with tb.locked(settings.lock_file):
        befores = kept_directories(pitr.pg_data, BEFORE)
        if not befores:
            raise tb.BackupError(f"no restore to undo: no {pitr.pg_data}{BEFORE}<time> directory")
        previous = befores[-1]
        if not yes and not tb.confirm(settings, f"the data directory {previous}"):
            return tb.EXIT_ERROR
        undone = pitr.pg_data.with_name(f"{pitr.pg_data.name}{UNDONE}{tb.set_name(dt.datetime.now(dt.UTC))}")
        stopped = tb.stop_clients(settings)
        try:
            if cluster.running():
                tb.refuse_connected(cluster.postgres, settings.database, stopped)
                cluster.stop()
            pitr.pg_data.rename(undone)
            previous.rename(pitr.pg_data)
            # Archive recovery of its own timeline to its end, then promotion onto a new timeline.
            (pitr.pg_data / "recovery.signal").touch()
            shutil.chown(pitr.pg_data / "recovery.signal", settings.postgres_user, settings.postgres_user)
            with (pitr.pg_data / "postgresql.auto.conf").open("a") as auto:
                auto.write(
                    f"\n{UNDO_SETTINGS_MARK}\n"
                    f"restore_command = 'pgbackrest --stanza={pitr.stanza} archive-get %f \"%p\"'\n"
                    "recovery_target_timeline = 'current'\n"
                )
            cluster.start_and_wait_for_promotion()
            cluster.postgres.psql(
                "postgres",
                "ALTER SYSTEM RESET restore_command;\nALTER SYSTEM RESET recovery_target_timeline;\n"
                "SELECT pg_reload_conf();\n",
            )
        finally:
            tb.start_clients(stopped)
    tb.say(f"the cluster runs {previous.name}'s data again, on a new timeline; the restored one is {undone}")
    return 0


def mark_drill_point(cluster: Cluster) -> tuple[str, tb.TableFacts]:
    """Create a named restore point in the live cluster and read every table of the database at it,
    then archive the WAL that holds it into every repository; the point's name and the facts."""
    name = "toolkit-drill-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    started = time.monotonic()
    output = cluster.postgres.psql(
        cluster.settings.database, MARK_POINT_SQL.format(name=name, facts=tb.TABLE_FACTS_SQL)
    )
    facts = tb.parse_table_facts(output)
    tb.say(
        f"restore point {name}: {len(facts.counts)} tables of {cluster.settings.database} read "
        f"(writes held back for {time.monotonic() - started:.1f} s)"
    )
    problem = archive_current_segment(cluster)
    if problem:
        raise tb.BackupError(f"the WAL holding {name} could not be archived into every repository: {problem}")
    return name, facts


def drill_space_problem(cluster: Cluster, scratch: Path) -> str | None:
    """Why the scratch cluster must not be restored beside the live one, or None when it fits: it
    needs about the live cluster's size, and PostgreSQL's WAL shares the file system."""
    needed = int(cluster.postgres.psql("postgres", "SELECT sum(pg_database_size(oid)) FROM pg_database;"))
    return tb.free_space_problem(
        scratch.parent,
        needed,
        cluster.settings.min_free_percent,
        what="the drill's scratch cluster",
        remedy="free space there; the live cluster and the repositories were not touched",
    )


def command_drill(cluster: Cluster, repo: int | None, scratch_dir: Path | None = None) -> int:
    """Mark a restore point in the live cluster with every table's rows and checksum at it, restore
    that point from one repository into a scratch cluster beside the live one (archiving off, WAL
    fetched from that repository only), wait for it to be promoted, compare every table, report the
    RTO, and remove it. The live cluster's data is not touched. The scratch cluster goes beside the
    live data directory unless ``scratch_dir`` names another place."""
    pitr, settings = cluster.pitr, cluster.settings
    record = settings.state_dir / "last-pitr-drill.json"
    previous = json.loads(record.read_text()).get("repo") if record.is_file() else None
    repo = repo or next_drill_repo(pitr.repos, previous)
    if repo not in pitr.repos:
        raise tb.BackupError(f"--repo {repo} is not configured (there are {pitr.repos})")
    scratch = (scratch_dir or pitr.pg_data.parent) / f"{pitr.pg_data.name}.pitr-drill"
    pg_ctl = Path("/usr/lib/postgresql") / pitr.pg_data.parent.name / "bin" / "pg_ctl"
    user = settings.postgres_user
    scratch_pg = tb.Postgres(user)
    scratch_pg.env = {**scratch_pg.env, "PGHOST": str(DRILL_SOCKET_DIR), "PGPORT": str(DRILL_PORT)}

    def stop_scratch() -> None:
        if (scratch / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", user, "--", str(pg_ctl), "-D", str(scratch), "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
                cwd="/",
            )

    with tb.locked(settings.lock_file):
        stop_scratch()
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            problem = drill_space_problem(cluster, scratch)
            if problem:
                raise tb.BackupError(problem)
            point, expected = mark_drill_point(cluster)
            for directory in (scratch, DRILL_SOCKET_DIR):
                directory.mkdir(mode=0o700, exist_ok=True)
                shutil.chown(directory, user, user)
            started = time.monotonic()
            tb.say(f"restoring {point} from repo{repo} into {scratch}")
            restore_command = (
                f'pgbackrest --stanza={pitr.stanza} --repo={repo} --pg1-path={scratch} archive-get %f "%p"'
            )
            cluster.pgbackrest(
                f"--repo={repo}",
                f"--pg1-path={scratch}",
                "--archive-mode=off",
                "--type=name",
                f"--target={point}",
                "--target-action=promote",
                f"--recovery-option=restore_command={restore_command}",
                "restore",
            )
            (scratch / "postgresql.conf").write_text(
                DRILL_CONF.format(port=DRILL_PORT, socket_dir=DRILL_SOCKET_DIR, data=scratch)
            )
            (scratch / "pg_hba.conf").write_text(f"local all {user} peer\n")
            (scratch / "pg_ident.conf").write_text("")
            for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
                shutil.chown(scratch / name, user, user)
            tb.run(
                [
                    "runuser",
                    "-u",
                    user,
                    "--",
                    str(pg_ctl),
                    "-D",
                    str(scratch),
                    "-w",
                    "-t",
                    str(RECOVERY_WAIT_SECONDS),
                    "-l",
                    str(scratch / "drill.log"),
                    "start",
                ]
            )
            wait_until_promoted(
                scratch_pg,
                lambda: (scratch / "postmaster.pid").exists(),
                f"the scratch cluster did not finish recovery ({scratch}/drill.log)",
            )
            rto = time.monotonic() - started
            facts = scratch_pg.table_facts(settings.database)
            differences = tb.compare(
                {"tables": expected.counts, "checksums": expected.checksums},
                facts.counts,
                None,
                facts.checksums,
            )
            if differences:
                raise tb.BackupError(f"the restored {point} differs: " + "; ".join(differences))
        except tb.BackupError as error:
            log = scratch / "drill.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-12:] if log.is_file() else []
            tb.write_json(record, {"at": tb.now_text(), "repo": repo, "ok": False, "error": str(error)})
            raise tb.BackupError(f"PITR drill of repo{repo} FAILED: {error} {' | '.join(tail)}") from None
        finally:
            stop_scratch()
            shutil.rmtree(scratch, ignore_errors=True)
    rows = sum(facts.counts.values())
    tb.write_json(
        record,
        {
            "at": tb.now_text(),
            "repo": repo,
            "ok": True,
            "point": point,
            "rto_seconds": round(rto, 2),
            "tables": len(facts.counts),
            "rows": rows,
            "contents": "equal",
        },
    )
    tb.say(
        f"PITR drill PASSED: {point} restored from repo{repo} and promoted in {rto:.1f} s (the RTO); "
        f"all {len(facts.counts)} tables / {rows} rows of {settings.database} equal to the live "
        "database's at that point (row counts and checksums)"
    )
    return 0


def command_drop_previous(cluster: Cluster) -> int:
    pitr = cluster.pitr
    with tb.locked(cluster.settings.lock_file):
        kept = kept_directories(pitr.pg_data, BEFORE) + kept_directories(pitr.pg_data, UNDONE)
        for path in kept:
            shutil.rmtree(path)
    tb.say(f"deleted {len(kept)} kept data directories{': ' + ', '.join(map(str, kept)) if kept else ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="toolkit-pitr", description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=tb.DEFAULT_CONFIG, help="settings file (JSON)")
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("stanza", help="create the stanza where missing, then check archiving")
    backup = commands.add_parser("backup", help="a full or differential backup into each repository")
    backup.add_argument("kind", choices=["full", "diff", "incr"])
    backup.add_argument("--if-none", action="store_true", help="only into repositories without a backup")
    commands.add_parser("verify", help="pgbackrest verify of each repository")
    commands.add_parser("info", help="what each repository holds")
    drill = commands.add_parser(
        "drill", help="restore a fresh restore point into scratch, compare every table, report the RTO"
    )
    drill.add_argument(
        "--repo", type=int, help="this repository (default: the one the last drill did not use)"
    )
    drill.add_argument(
        "--scratch-dir", type=Path, help="restore the scratch cluster here (default: beside the live one)"
    )
    restore = commands.add_parser("restore", help="restore the cluster to a point (app stopped)")
    what = restore.add_mutually_exclusive_group(required=True)
    what.add_argument("--time", metavar="MOMENT", help="a moment such as '2026-12-01 05:30:00+00'")
    what.add_argument("--latest", action="store_true", help="the end of the archive")
    what.add_argument("--backup", metavar="LABEL", help="the end of a backup (toolkit-pitr info lists them)")
    what.add_argument(
        "--undo", action="store_true", help="back to the data directory the last restore replaced"
    )
    what.add_argument("--drop-previous", action="store_true", help="delete the kept data directories")
    restore.add_argument("--repo", type=int, help="restore from this repository (1 local, 2 offsite)")
    restore.add_argument("--yes", action="store_true", help="do not ask")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cluster = Cluster(tb.Settings.load(args.config), PitrSettings.load(args.config))
        if args.command == "stanza":
            return command_stanza(cluster)
        if args.command == "backup":
            return command_backup(cluster, args.kind, if_none=args.if_none)
        if args.command == "verify":
            return command_verify(cluster)
        if args.command == "drill":
            return command_drill(cluster, args.repo, args.scratch_dir)
        if args.command == "info":
            tb.say(cluster.pgbackrest("info").stdout.rstrip())
            return 0
        if args.undo:
            return command_undo(cluster, yes=args.yes)
        if args.drop_previous:
            return command_drop_previous(cluster)
        return command_restore(
            cluster, time_target=args.time, backup=args.backup, repo=args.repo, yes=args.yes
        )
    except tb.BackupLocked as error:
        print(f"toolkit-pitr: {error}", file=sys.stderr, flush=True)
        return tb.EXIT_LOCKED
    except tb.BackupError as error:
        print(f"toolkit-pitr {args.command} failed: {error}", file=sys.stderr, flush=True)
        return tb.EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
