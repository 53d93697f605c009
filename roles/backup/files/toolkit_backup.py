#!/usr/bin/python3
"""Back up the app database and uploads, prune old sets, prove a set restores, restore for real.

Installed by the toolkit's backup role as /usr/local/sbin/toolkit-backup; settings come from
/etc/toolkit/backup.json (the role renders it). Python 3 standard library only: hosts have python3.

    toolkit-backup run                  take a backup set, apply retention, copy offsite (restic)
    toolkit-backup list                 the sets, oldest first
    toolkit-backup prune [--dry-run]    apply retention only
    toolkit-backup drill [SET] [--keep] restore SET (default: the newest) into a scratch database and
                                        directory, compare with the manifest, report the RTO
    toolkit-backup restore --live SET   restore SET beside the live database, check it, swap it in
                                        (the app stopped meanwhile; asks first unless --yes)
    toolkit-backup restore --undo       back to the state before the newest live restore
    toolkit-backup restore --drop-previous  drop the databases live restores set aside
    toolkit-backup restic-init          create the restic repository when it does not exist
    toolkit-backup restic-check         `restic check` the offsite repository

Consistency: one REPEATABLE READ transaction exports its snapshot; pg_dump runs with --snapshot on it
and the per-table row counts and checksums are taken inside that same transaction, so the manifest
describes exactly the rows in the dump. The uploads are copied after the dump (a file uploaded in
between is in the set without a row pointing at it, which a restore tolerates).

A run always ends: its sessions wait at most lock_timeout_seconds for a table lock (and name the
session holding it), the systemd unit has a time limit, and a run that fails still applies
retention. It refuses to start when the set would leave less than min_free_percent of the file
system free. What it writes is on disk (fsync) before the manifest, written last, marks the set
complete; a set whose manifest cannot be read is damaged: later runs skip it, take their set, and
exit EXIT_DAMAGED so the failure alert names it, until it is removed or retention drops it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_CONFIG = Path("/etc/toolkit/backup.json")
SET_NAME = re.compile(r"^(\d{8}T\d{6}Z)$")
SET_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
DUMP = "database.dump"
UPLOADS = "uploads"
PARTIAL_PREFIX = ".partial-"
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
EXIT_DIFFERENT = 1
EXIT_ERROR = 2
EXIT_DAMAGED = 3  # the run took its set, but an older set is damaged
PRE_RESTORE = "pre-restore"
# A set named later than this past the clock is flagged (a clock that jumped back, or forward then back).
FUTURE_TOLERANCE = dt.timedelta(minutes=5)

# Row count and content checksum of every ordinary table, in one statement (query_to_xml runs one
# scan per table). The checksum is the sum of the first 64 bits of each row's md5 (its text form):
# independent of row order and computed in constant memory, so a restored table must hold the very
# same rows, not only as many.
TABLE_FACTS_SQL = """
SELECT n.nspname || '.' || c.relname || '|' ||
       (xpath('/row/c/text()', query_to_xml(format(
           'SELECT count(*) || ''|'' || coalesce(sum((''x'' || left(md5(t::text), 16))'
           '::bit(64)::bigint::numeric), 0) AS c FROM %I.%I t', n.nspname, c.relname),
         false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
 ORDER BY 1;
"""


class BackupError(Exception):
    """A step failed; the message says which and why."""


# --- Settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResticSettings:
    """The optional offsite copy."""

    enabled: bool = False
    env_file: str = "/etc/toolkit/backup/restic.env"
    keep_daily: int = 7
    keep_weekly: int = 4
    check_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """What /etc/toolkit/backup.json holds."""

    database: str
    backup_dir: Path
    uploads_dir: Path | None
    keep_daily: int = 7
    keep_weekly: int = 4
    lock_file: Path = Path("/run/lock/toolkit-backup.lock")
    state_dir: Path = Path("/var/lib/toolkit-backup")
    postgres_user: str = "postgres"
    restore_stop_units: tuple[str, ...] = ()
    restore_stop_compose_projects: tuple[str, ...] = ()
    lock_timeout_seconds: int = 60
    min_free_percent: int = 10
    restic: ResticSettings = field(default_factory=ResticSettings)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Settings:
        restic = raw.get("restic") or {}
        uploads = raw.get("uploads_dir") or ""
        return cls(
            database=str(raw["database"]),
            backup_dir=Path(raw["backup_dir"]),
            uploads_dir=Path(uploads) if uploads else None,
            keep_daily=int(raw.get("keep_daily", 7)),
            keep_weekly=int(raw.get("keep_weekly", 4)),
            lock_file=Path(raw.get("lock_file", "/run/lock/toolkit-backup.lock")),
            state_dir=Path(raw.get("state_dir", "/var/lib/toolkit-backup")),
            postgres_user=str(raw.get("postgres_user", "postgres")),
            restore_stop_units=tuple(raw.get("restore_stop_units", [])),
            restore_stop_compose_projects=tuple(raw.get("restore_stop_compose_projects", [])),
            lock_timeout_seconds=int(raw.get("lock_timeout_seconds", 60)),
            min_free_percent=int(raw.get("min_free_percent", 10)),
            restic=ResticSettings(
                enabled=bool(restic.get("enabled", False)),
                env_file=str(restic.get("env_file", "/etc/toolkit/backup/restic.env")),
                keep_daily=int(restic.get("keep_daily", 7)),
                keep_weekly=int(restic.get("keep_weekly", 4)),
                check_args=tuple(restic.get("check_args", [])),
            ),
        )

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise BackupError(f"cannot read the settings in {path}: {error}") from error

    @property
    def drill_database(self) -> str:
        return f"{self.database}_restore_drill"


# --- Retention (pure) --------------------------------------------------------------------------


def set_time(name: str) -> dt.datetime | None:
    """The time a set was taken, from its name (UTC, e.g. 20261125T030000Z); None if not a set name."""
    if not SET_NAME.match(name):
        return None
    try:
        return dt.datetime.strptime(name, SET_TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def set_name(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(SET_TIME_FORMAT)


def select_kept(names: Iterable[str], keep_daily: int, keep_weekly: int) -> set[str]:
    """The set names that retention keeps.

    Daily: the newest set of each of the ``keep_daily`` newest days that have a set. Weekly: among
    the sets from days before the oldest daily one, the newest set of each of the ``keep_weekly``
    newest ISO weeks. Names that are not set names are never selected (the caller leaves them alone).
    """
    if keep_daily < 1 or keep_weekly < 0:
        raise ValueError("keep_daily must be at least 1 and keep_weekly at least 0")
    dated = sorted(((t, n) for n in names if (t := set_time(n)) is not None), reverse=True)
    kept: set[str] = set()
    days: list[dt.date] = []
    for moment, name in dated:
        if moment.date() not in days:
            if len(days) == keep_daily:
                break
            days.append(moment.date())
            kept.add(name)
    if not days:
        return kept
    weeks: list[tuple[int, int]] = []
    for moment, name in dated:
        if moment.date() >= days[-1]:
            continue
        week = moment.isocalendar()[:2]
        if week not in weeks:
            if len(weeks) == keep_weekly:
                break
            weeks.append(week)
            kept.add(name)
    return kept


# --- Manifests and comparison (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class TableFacts:
    """Per table (schema.table): its row count and the checksum of its rows."""

    counts: dict[str, int]
    checksums: dict[str, str]


def parse_table_facts(output: str) -> TableFacts:
    """Read ``schema.table|count|checksum`` lines (psql -A -t)."""
    counts: dict[str, int] = {}
    checksums: dict[str, str] = {}
    for line in output.splitlines():
        if line.count("|") < 2:
            continue
        table, count, checksum = line.rsplit("|", 2)
        counts[table] = int(count)
        checksums[table] = checksum
    return TableFacts(counts, checksums)


def compare(
    expected: dict[str, Any],
    tables: dict[str, int],
    files: dict[str, dict[str, Any]] | None,
    checksums: dict[str, str] | None = None,
) -> list[str]:
    """Every difference between a manifest and what a restore produced, as readable lines. Sets
    made before checksums were recorded are compared by row counts alone; files=None compares the
    tables alone (a database restored before its uploads)."""
    differences: list[str] = []
    want_tables: dict[str, int] = expected.get("tables", {})
    want_checksums: dict[str, str] = expected.get("checksums") or {}
    for table in sorted(want_tables.keys() | tables.keys()):
        if table not in tables:
            differences.append(
                f"table {table}: in the backup ({want_tables[table]} rows), missing after restore"
            )
        elif table not in want_tables:
            differences.append(
                f"table {table}: not in the backup, present after restore ({tables[table]} rows)"
            )
        elif tables[table] != want_tables[table]:
            differences.append(
                f"table {table}: {want_tables[table]} rows backed up, {tables[table]} restored"
            )
        elif (
            checksums is not None
            and table in want_checksums
            and checksums.get(table) != want_checksums[table]
        ):
            differences.append(
                f"table {table}: contents differ from the backup (the same {tables[table]} rows)"
            )
    if files is None:
        return differences
    uploads = expected.get("uploads")
    want_files: dict[str, dict[str, Any]] = uploads["files"] if uploads else {}
    for path in sorted(want_files.keys() | files.keys()):
        if path not in files:
            differences.append(f"file {path}: in the backup, missing after restore")
        elif path not in want_files:
            differences.append(f"file {path}: not in the backup, present after restore")
        elif files[path]["sha256"] != want_files[path]["sha256"]:
            differences.append(f"file {path}: sha256 differs from the backup")
    return differences


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - unreachable


# --- Files -------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_tree(
    root: Path, previous: Path | None = None, known: dict[str, Any] | None = None
) -> dict[str, Any]:
    """sha256 and size of every regular file under ``root``, keyed by relative path.

    A file that is the same inode as the file at the same path under ``previous`` (rsync
    --link-dest made it a hard link: unchanged since that set) reuses that set's checksum from
    ``known`` instead of reading it again.
    """
    files: dict[str, Any] = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            info = path.lstat()
            if not path.is_file() or path.is_symlink():
                continue
            relative = path.relative_to(root).as_posix()
            reused = None
            if previous is not None and known and relative in known:
                with contextlib.suppress(OSError):
                    old = (previous / relative).lstat()
                    if (old.st_ino, old.st_dev) == (info.st_ino, info.st_dev):
                        reused = known[relative]["sha256"]
            files[relative] = {"bytes": info.st_size, "sha256": reused or sha256_of(path)}
    return dict(sorted(files.items()))


def new_bytes(root: Path) -> int:
    """Bytes under ``root`` in files with a single link (not shared with an older set)."""
    total = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            info = Path(directory, name).lstat()
            if info.st_nlink == 1:
                total += info.st_size
    return total


def complete_sets(backup_dir: Path) -> list[str]:
    """Names of the finished sets (a manifest is written last), oldest first."""
    if not backup_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in backup_dir.iterdir()
        if set_time(entry.name) is not None and (entry / MANIFEST).is_file()
    )


def read_manifest(backup_dir: Path, name: str) -> dict[str, Any]:
    path = backup_dir / name / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"set {name}: cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("dump"), dict):
        raise BackupError(f"set {name}: {path} is not a toolkit-backup manifest")
    return manifest


def sorted_sets(backup_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The complete sets whose manifest reads (oldest first), and the damaged ones with the reason."""
    valid: list[str] = []
    damaged: dict[str, str] = {}
    for name in complete_sets(backup_dir):
        try:
            read_manifest(backup_dir, name)
        except BackupError as error:
            damaged[name] = str(error)
        else:
            valid.append(name)
    return valid, damaged


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all: a synced temporary file renamed over it, the directory synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as out:
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    fsync_path(path.parent)


def free_space_problem(
    target: Path,
    needed_bytes: int,
    min_free_percent: int,
    *,
    what: str = "the set",
    remedy: str = "free space or lower backup_keep_daily/backup_keep_weekly",
) -> str | None:
    """Why ``what`` (``needed_bytes``) must not be written under ``target``, or None when it fits."""
    usage = shutil.disk_usage(target)
    left = usage.free - needed_bytes
    floor = usage.total * min_free_percent // 100
    if left >= floor:
        return None
    return (
        f"not enough free space in {target}: {what} needs about {human(needed_bytes)}, "
        f"{human(usage.free)} is free of {human(usage.total)}, and at least {min_free_percent} % "
        f"({human(floor)}) must stay free (PostgreSQL writes its WAL on the same disk); {remedy}"
    )


# --- Processes ---------------------------------------------------------------------------------


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def say(message: str) -> None:
    print(message, flush=True)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; a non-zero exit becomes a BackupError carrying its stderr."""
    done = subprocess.run(command, text=True, capture_output=True, check=False, cwd="/", **kwargs)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise BackupError(f"{command[0]} failed (exit {done.returncode}): {detail}")
    return done


# Sessions holding a lock that is not the weakest (ACCESS SHARE, what a dump takes) in a database.
LOCK_HOLDERS_SQL = """
SELECT DISTINCT a.pid || ' ' || coalesce(a.usename, '?') || ' ' || l.mode || ' on '
       || coalesce(l.relation::regclass::text, l.locktype) || ' (' || coalesce(a.state, '?') || ', '
       || coalesce(to_char(now() - a.xact_start, 'HH24:MI:SS'), '?') || ' in its transaction): '
       || left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted AND l.mode <> 'AccessShareLock' AND a.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
"""


class Postgres:
    """psql, pg_dump and pg_restore as the postgres user over the local socket.

    Every session waits at most ``lock_timeout_seconds`` for a lock (0: as long as it takes), so a
    run never queues behind a session holding a table lock until the unit's time limit kills it.
    """

    def __init__(self, user: str, lock_timeout_seconds: int = 0) -> None:
        self.user = user
        self.lock_timeout_seconds = lock_timeout_seconds
        options = f"-c lock_timeout={lock_timeout_seconds}s" if lock_timeout_seconds else ""
        self.env = {**os.environ, "PGOPTIONS": options}

    def _as_user(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *command]
        return command

    def psql(self, database: str, sql: str) -> str:
        command = self._as_user(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database])
        try:
            return run(command, input=sql, env=self.env).stdout
        except BackupError as error:
            raise self._explained(error, database) from None

    def lock_holders(self, database: str) -> list[str]:
        """The sessions holding more than a share lock in ``database`` (for a lock timeout's message)."""
        command = self._as_user(["psql", "-X", "-q", "-A", "-t", "-d", database])
        done = subprocess.run(
            command, input=LOCK_HOLDERS_SQL, text=True, capture_output=True, check=False, cwd="/"
        )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def _explained(self, error: BackupError, database: str) -> BackupError:
        """A lock timeout's error with the sessions holding locks named; any other error as it is.
        (pg_dump's --lock-wait-timeout fails its LOCK TABLE with a statement timeout.)"""
        text = str(error)
        if "lock timeout" not in text and not ("statement timeout" in text and "LOCK TABLE" in text):
            return error
        holders = self.lock_holders(database)
        named = "; ".join(holders) if holders else "the session has ended since"
        return BackupError(
            f"gave up after waiting {self.lock_timeout_seconds} s for a lock in {database} "
            f"(backup_lock_timeout) held by another session: {named}. {error}"
        )

    def table_facts(self, database: str, snapshot: str | None = None) -> TableFacts:
        if snapshot is None:
            return parse_table_facts(self.psql(database, TABLE_FACTS_SQL))
        sql = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
            f"SET TRANSACTION SNAPSHOT '{snapshot}';\n{TABLE_FACTS_SQL}COMMIT;\n"
        )
        return parse_table_facts(self.psql(database, sql))

    @contextlib.contextmanager
    def exported_snapshot(self, database: str) -> Iterator[str]:
        """Hold a REPEATABLE READ transaction open and yield its exported snapshot id."""
        command = self._as_user(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database])
        with subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env=self.env,
        ) as holder:
            assert holder.stdin is not None  # Popen with PIPE
            assert holder.stdout is not None
            holder.stdin.write(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n"
            )
            holder.stdin.flush()
            snapshot = holder.stdout.readline().strip()
            if not re.fullmatch(r"[0-9A-F-]+", snapshot):
                holder.stdin.close()
                error = holder.stderr.read().strip() if holder.stderr else ""
                holder.wait()
                raise BackupError(f"psql could not export a snapshot of {database}: {error or snapshot}")
            try:
                yield snapshot
            finally:
                holder.stdin.write("COMMIT;\n")
                holder.stdin.close()
                holder.wait()

    def dump(self, database: str, target: Path, snapshot: str | None = None) -> None:
        command = ["pg_dump", "-Fc", database]
        if snapshot:
            command[2:2] = ["--snapshot", snapshot]
        if self.lock_timeout_seconds:
            command[2:2] = [f"--lock-wait-timeout={self.lock_timeout_seconds}s"]
        with target.open("wb") as out:
            done = subprocess.run(
                self._as_user(command), stdout=out, stderr=subprocess.PIPE, check=False, cwd="/", env=self.env
            )
            if done.returncode == 0:
                out.flush()
                os.fsync(out.fileno())
        if done.returncode != 0:
            error = BackupError(f"pg_dump of {database} failed: {done.stderr.decode().strip()}")
            raise self._explained(error, database)

    def size(self, database: str) -> int:
        return int(self.psql("postgres", f"SELECT pg_database_size('{database}');").strip())

    def restore(self, dump: Path, database: str, *, as_dumped: bool = False) -> None:
        """pg_restore the dump into ``database``, in one transaction (all or nothing). ``as_dumped``
        keeps the objects' owners and privileges (a live restore); otherwise the connecting
        superuser owns everything (a scratch copy)."""
        command = ["pg_restore", "--exit-on-error", "--single-transaction"]
        if not as_dumped:
            command += ["--no-owner", "--no-privileges"]
        command += ["-d", database]
        with dump.open("rb") as source:
            done = subprocess.run(
                self._as_user(command), stdin=source, capture_output=True, check=False, cwd="/"
            )
        if done.returncode != 0:
            raise BackupError(f"pg_restore into {database} failed: {done.stderr.decode().strip()}")

    def drop(self, database: str) -> None:
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE);')

    def sessions(self, database: str) -> list[str]:
        """The other sessions connected to ``database``, described for an operator."""
        sql = (
            "SELECT pid || ' ' || coalesce(usename, '?')"
            " || ' from ' || coalesce(client_addr::text, 'the socket')"
            " || ' (' || coalesce(nullif(application_name, ''), 'no application name') || ', '"
            " || coalesce(state, '?') || '): ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
            f" FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid();"
        )
        return [line for line in self.psql("postgres", sql).splitlines() if line.strip()]

    def wait_for_no_sessions(self, database: str, seconds: float) -> list[str]:
        """Wait up to ``seconds`` for the sessions of stopped clients to go; those still there."""
        deadline = time.monotonic() + seconds
        while True:
            left = self.sessions(database)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.5)

    def create_like(self, database: str, like: str) -> None:
        """An empty database with the owner, encoding, locale and settings of ``like``."""
        facts = self.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) || '|' || pg_encoding_to_char(encoding) || '|' || datcollate"
            f" || '|' || datctype FROM pg_database WHERE datname = '{like}';",
        ).strip()
        if not facts:
            raise BackupError(f"database {like} does not exist")
        owner, encoding, collate, ctype = facts.split("|")
        self.psql(
            "postgres",
            f'CREATE DATABASE "{database}" OWNER "{owner}" TEMPLATE template0 ENCODING \'{encoding}\''
            f" LC_COLLATE '{collate}' LC_CTYPE '{ctype}';",
        )
        self.copy_settings(like, database)

    def copy_settings(self, source: str, target: str) -> None:
        """ALTER DATABASE target SET ... for every setting ALTER DATABASE gave ``source``."""
        settings = self.psql(
            "postgres",
            "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
            f" WHERE d.datname = '{source}' AND s.setrole = 0;",
        ).splitlines()
        for setting in filter(None, settings):
            name, value = setting.split("=", 1)
            quoted = value.replace("'", "''")
            self.psql("postgres", f'ALTER DATABASE "{target}" SET "{name}" = \'{quoted}\';')

    def swap(self, live: str, replacement: str, previous: str) -> None:
        """Rename ``live`` to ``previous`` and ``replacement`` to ``live``, with connections to
        ``live`` blocked; refuses (changing nothing) when a session is still connected to it."""
        self.psql("postgres", f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS false;')
        try:
            connected = self.sessions(live)
            if connected:
                raise BackupError(
                    f"a session connected to {live} while it was being replaced: {'; '.join(connected)}"
                )
            self.psql("postgres", f'ALTER DATABASE "{live}" RENAME TO "{previous}";')
        except BackupError:
            self.psql("postgres", f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true;')
            raise
        try:
            self.psql("postgres", f'ALTER DATABASE "{replacement}" RENAME TO "{live}";')
        except BackupError:
            self.psql("postgres", f'ALTER DATABASE "{previous}" RENAME TO "{live}";')
            self.psql("postgres", f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true;')
            raise
        self.psql("postgres", f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true;')
        self.psql("postgres", f'ALTER DATABASE "{previous}" ALLOW_CONNECTIONS true;')

    def databases(self, prefix: str) -> list[str]:
        """Names of the databases starting with ``prefix``, sorted."""
        sql = f"SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1;"
        return [line for line in self.psql("postgres", sql).splitlines() if line.strip()]

    def create(self, database: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{database}";')


def rsync(source: Path, target: Path, *, link_dest: Path | None = None, delete: bool = False) -> None:
    """Copy a directory tree with rsync -a (exit 24, files that vanished while copying, is accepted)."""
    command = ["rsync", "-a", "--numeric-ids"]
    if delete:
        command.append("--delete")
    if link_dest is not None and link_dest.is_dir():
        command.append(f"--link-dest={link_dest}")
    command += [f"{source}/", f"{target}/"]
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, text=True, capture_output=True, check=False)
    if done.returncode == 24:
        say(f"warning: files vanished from {source} while it was copied (they were deleted meanwhile)")
    elif done.returncode != 0:
        raise BackupError(
            f"rsync {source} -> {target} failed (exit {done.returncode}): {done.stderr.strip()}"
        )


# --- Lock --------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = False) -> Iterator[IO[str]]:
    """Hold an exclusive flock on ``path``; refuse (BackupLocked) when another run holds it, or
    with ``wait`` wait for it (bounded by the unit's time limit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BackupLocked(path) from None
            say(f"waiting for the run that holds {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class BackupLocked(BackupError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"another toolkit-backup run holds the lock {path}; refusing to start an overlapping run"
        )


# --- Restic ------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (systemd EnvironmentFile syntax: # comments, optional quotes)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


class Restic:
    def __init__(self, settings: ResticSettings) -> None:
        self.settings = settings

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        if shutil.which("restic") is None:
            raise BackupError("restic is not installed but backup_restic_enabled is true")
        env = {**os.environ, **read_env_file(Path(self.settings.env_file))}
        return run(["restic", *args], env=env)

    def init(self) -> bool:
        """Create the repository unless it exists; True when it was created."""
        try:
            self._run("cat", "config")
        except BackupError:
            self._run("init")
            return True
        return False

    def unlock_stale(self) -> None:
        """Remove stale locks (`restic unlock` leaves live ones alone): a run killed mid-way, by the
        time limit or a reboot, would otherwise fail every later one. Runs under toolkit-backup's
        own lock, so no other restic of ours is running."""
        self._run("unlock")

    def backup(self, path: Path) -> str:
        self.unlock_stale()
        done = self._run("backup", "--tag", "toolkit", "--host", socket.gethostname(), str(path))
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def forget(self) -> None:
        self._run(
            "forget",
            "--tag",
            "toolkit",
            "--group-by",
            "host,tags",
            "--keep-daily",
            str(self.settings.keep_daily),
            "--keep-weekly",
            str(self.settings.keep_weekly),
            "--prune",
        )

    def check(self) -> str:
        self.unlock_stale()
        return self._run("check", *self.settings.check_args).stdout


# --- Commands ----------------------------------------------------------------------------------


def prune(settings: Settings, *, dry_run: bool = False) -> list[str]:
    """Delete the sets retention does not keep; return their names.

    Retention picks among the sets that read; a damaged set goes once it is older than the oldest
    kept one. Pre-restore copies (a live restore's "before") are kept as long as daily sets are,
    and the newest of them always.
    """
    names, damaged = sorted_sets(settings.backup_dir)
    kept = select_kept(names, settings.keep_daily, settings.keep_weekly)
    oldest_kept = min(kept) if kept else ""
    removed = [name for name in names if name not in kept]
    removed += [name for name in damaged if oldest_kept and name < oldest_kept]
    pre_restore = settings.backup_dir / PRE_RESTORE
    befores: list[str] = []
    if pre_restore.is_dir():
        befores = sorted(entry.name for entry in pre_restore.iterdir() if set_time(entry.name))
    horizon = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.keep_daily)
    old_befores = [name for name in befores[:-1] if (set_time(name) or horizon) < horizon]
    if not dry_run:
        for name in removed:
            shutil.rmtree(settings.backup_dir / name)
        for name in old_befores:
            shutil.rmtree(pre_restore / name)
    verb = "would delete" if dry_run else "deleted"
    befores_text = f"; {verb} {len(old_befores)} pre-restore copies older than {settings.keep_daily} days"
    say(
        f"retention ({settings.keep_daily} daily + {settings.keep_weekly} weekly): kept {len(kept)} sets, "
        f"{verb} {len(removed)}{': ' + ', '.join(sorted(removed)) if removed else ''}"
        + (befores_text if old_befores else "")
    )
    return sorted(removed)


def uploads_estimate(uploads_dir: Path, since: dt.datetime | None) -> int:
    """Bytes the uploads add to a set: every file's size, or those changed since the previous set
    (the others are hard links to it)."""
    cutoff = since.timestamp() if since is not None else None
    total = 0
    for folder, _dirs, files in os.walk(uploads_dir):
        for file_name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(folder, file_name))
                if cutoff is None or info.st_mtime >= cutoff or info.st_ctime >= cutoff:
                    total += info.st_size
    return total


def take_backup(settings: Settings, postgres: Postgres) -> dict[str, Any]:
    """Write a new set (dump, uploads, manifest) and return its manifest."""
    started = time.monotonic()
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.backup_dir, 0o700)
    for stale in settings.backup_dir.glob(PARTIAL_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    now = dt.datetime.now(dt.UTC)
    while (settings.backup_dir / set_name(now)).exists():  # a set from the same second
        time.sleep(0.2)
        now = dt.datetime.now(dt.UTC)
    name = set_name(now)
    previous_sets, _damaged = sorted_sets(settings.backup_dir)
    previous = settings.backup_dir / previous_sets[-1] if previous_sets else None
    needed = postgres.size(settings.database)
    if settings.uploads_dir is not None and settings.uploads_dir.is_dir():
        needed += uploads_estimate(settings.uploads_dir, set_time(previous.name) if previous else None)
    problem = free_space_problem(settings.backup_dir, needed, settings.min_free_percent)
    if problem:
        raise BackupError(problem)
    partial = settings.backup_dir / (PARTIAL_PREFIX + name)
    partial.mkdir(mode=0o700)
    try:
        with postgres.exported_snapshot(settings.database) as snapshot:
            facts = postgres.table_facts(settings.database, snapshot)
            postgres.dump(settings.database, partial / DUMP, snapshot)
        dumped = time.monotonic()
        uploads: dict[str, Any] | None = None
        if settings.uploads_dir is not None:
            if not settings.uploads_dir.is_dir():
                raise BackupError(
                    f"the uploads directory {settings.uploads_dir} does not exist "
                    "(set backup_uploads_dir to '' to back up the database alone)"
                )
            known = read_manifest(settings.backup_dir, previous.name).get("uploads") if previous else None
            rsync(settings.uploads_dir, partial / UPLOADS, link_dest=previous / UPLOADS if previous else None)
            files = checksum_tree(
                partial / UPLOADS,
                previous / UPLOADS if previous else None,
                (known or {}).get("files"),
            )
            uploads = {
                "source": str(settings.uploads_dir),
                "count": len(files),
                "bytes": sum(f["bytes"] for f in files.values()),
                "files": files,
            }
        dump_path = partial / DUMP
        manifest: dict[str, Any] = {
            "format": 1,
            "name": name,
            "host": socket.gethostname(),
            "database": settings.database,
            "started": now.isoformat(timespec="seconds"),
            "consistency": "row counts and checksums taken in the transaction of the snapshot pg_dump used",
            "tables": facts.counts,
            "checksums": facts.checksums,
            "dump": {"file": DUMP, "bytes": dump_path.stat().st_size, "sha256": sha256_of(dump_path)},
            "uploads": uploads,
            "dump_seconds": round(dumped - started, 3),
        }
        manifest["new_bytes"] = new_bytes(partial)
        manifest["duration_seconds"] = round(time.monotonic() - started, 3)
        manifest["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        # The dump is synced; the copied uploads too, before the manifest marks the set complete.
        os.sync()
        write_json(partial / MANIFEST, manifest)
        partial.rename(settings.backup_dir / name)
        fsync_path(settings.backup_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def command_run(settings: Settings) -> int:
    postgres = Postgres(settings.postgres_user, settings.lock_timeout_seconds)
    with locked(settings.lock_file):
        _valid, damaged = sorted_sets(settings.backup_dir)
        for name, reason in damaged.items():
            say(f"warning: skipping damaged set {name}: {reason}")
        try:
            manifest = take_backup(settings, postgres)
        finally:
            # Retention frees space even when this run failed (a full disk is a reason to fail).
            prune(settings)
        uploads = manifest["uploads"]
        total = manifest["dump"]["bytes"] + (uploads["bytes"] if uploads else 0)
        say(
            f"backup {manifest['name']} of {settings.database} done in {manifest['duration_seconds']:.1f} s: "
            f"{human(total)} ({len(manifest['tables'])} tables, dump {human(manifest['dump']['bytes'])}, "
            + (f"{uploads['count']} upload files {human(uploads['bytes'])}, " if uploads else "no uploads, ")
            + f"{human(manifest['new_bytes'])} new on disk) in {settings.backup_dir / manifest['name']}"
        )
        state = {
            "name": manifest["name"],
            "finished": manifest["finished"],
            "duration_seconds": manifest["duration_seconds"],
            "bytes": total,
            "new_bytes": manifest["new_bytes"],
            "offsite": "disabled",
        }
        write_json(settings.state_dir / "last-backup.json", state)
        if settings.restic.enabled:
            restic = Restic(settings.restic)
            state["offsite"] = "failed"
            try:
                summary = restic.backup(settings.backup_dir / manifest["name"])
                restic.forget()
                state["offsite"] = "done"
            finally:
                write_json(settings.state_dir / "last-backup.json", state)
            say(f"offsite copy done (restic): {summary}")
    if damaged:
        print(
            f"toolkit-backup run: set {manifest['name']} was taken, but {len(damaged)} older set(s) are "
            f"damaged and were skipped: {', '.join(damaged)}. Look at them, then delete them "
            f"(rm -r {settings.backup_dir}/<set>) or let retention drop them.",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_DAMAGED
    return 0


def choose_set(settings: Settings, name: str | None) -> str:
    names, damaged = sorted_sets(settings.backup_dir)
    if name in damaged:
        raise BackupError(f"set {name} is damaged: {damaged[name]}")
    if not names:
        raise BackupError(f"no backup set in {settings.backup_dir}")
    if name in (None, "", "latest"):
        return names[-1]
    if name not in names:
        raise BackupError(f"no backup set named {name} in {settings.backup_dir} (have: {', '.join(names)})")
    return name


def check_dump(settings: Settings, name: str, manifest: dict[str, Any]) -> Path:
    dump = settings.backup_dir / name / DUMP
    if sha256_of(dump) != manifest["dump"]["sha256"]:
        raise BackupError(f"set {name}: {DUMP} does not match the sha256 in its manifest (damaged set)")
    return dump


def command_drill(settings: Settings, name: str | None, *, keep: bool) -> int:
    postgres = Postgres(settings.postgres_user, settings.lock_timeout_seconds)
    with locked(settings.lock_file):
        name = choose_set(settings, name)
        manifest = read_manifest(settings.backup_dir, name)
        scratch_db = settings.drill_database
        scratch_dir = settings.backup_dir / ".restore-drill"
        say(f"restore drill of set {name} into database {scratch_db} and {scratch_dir}")
        started = time.monotonic()
        try:
            dump = check_dump(settings, name, manifest)
            postgres.drop(scratch_db)
            postgres.create(scratch_db)
            postgres.restore(dump, scratch_db)
            database_seconds = time.monotonic() - started
            shutil.rmtree(scratch_dir, ignore_errors=True)
            if manifest.get("uploads"):
                rsync(settings.backup_dir / name / UPLOADS, scratch_dir)
            else:
                scratch_dir.mkdir(mode=0o700)
            rto = time.monotonic() - started
            restored = postgres.table_facts(scratch_db)
            differences = compare(manifest, restored.counts, checksum_tree(scratch_dir), restored.checksums)
            total = time.monotonic() - started
        except BackupError as error:
            failed = {"set": name, "ok": False, "differences": [str(error)]}
            write_json(settings.state_dir / "last-drill.json", {**failed, "finished": now_text()})
            raise
        finally:
            if not keep:
                postgres.drop(scratch_db)
                shutil.rmtree(scratch_dir, ignore_errors=True)
        uploads = manifest.get("uploads") or {"count": 0, "bytes": 0}
        report = {
            "set": name,
            "ok": not differences,
            "differences": differences,
            "tables": len(manifest["tables"]),
            "rows": sum(manifest["tables"].values()),
            "files": uploads["count"],
            "rto_seconds": round(rto, 3),
            "database_seconds": round(database_seconds, 3),
            "verify_seconds": round(total - rto, 3),
            "finished": now_text(),
        }
        write_json(settings.state_dir / "last-drill.json", report)
    for line in differences:
        say(f"DIFFERENT: {line}")
    verdict = "PASSED" if not differences else f"FAILED ({len(differences)} differences)"
    say(
        f"restore drill {verdict}: set {name}, {report['tables']} tables / {report['rows']} rows, "
        f"{report['files']} files ({human(uploads['bytes'])}); RTO {rto:.2f} s "
        f"(database {database_seconds:.2f} s), verified in {total - rto:.2f} s"
        + (f"; kept {scratch_db} and {scratch_dir}" if keep else "")
    )
    return 0 if not differences else EXIT_DIFFERENT


@dataclass
class StoppedClients:
    """What a live restore stopped, to start again afterwards."""

    units: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)


def stop_clients(settings: Settings) -> StoppedClients:
    """Stop the database's clients that run: backup_restore_stop_units, and the containers of
    backup_restore_stop_compose_projects (the app's API and worker)."""
    stopped = StoppedClients()
    for unit in settings.restore_stop_units:
        if subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode != 0:
            continue  # not running: nothing to stop, nothing to start afterwards
        say(f"stopping {unit}")
        run(["systemctl", "stop", unit])
        stopped.units.append(unit)
    for project in settings.restore_stop_compose_projects:
        if shutil.which("docker") is None:
            break  # no engine on this host: no container of any project runs
        listed = run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"])
        containers = listed.stdout.split()
        if containers:
            say(f"stopping the {len(containers)} running containers of compose project {project}")
            run(["docker", "stop", *containers])
            stopped.containers += containers
    return stopped


def start_clients(stopped: StoppedClients) -> None:
    """Start again what stop_clients stopped (each attempted, whatever the others do)."""
    if stopped.containers:
        say(f"starting {len(stopped.containers)} containers again")
        subprocess.run(["docker", "start", *stopped.containers], check=False, capture_output=True)
    for unit in stopped.units:
        say(f"starting {unit}")
        subprocess.run(["systemctl", "start", unit], check=False)


def previous_name(database: str, stamp: str) -> str:
    """The name the live database keeps after a live restore replaced it."""
    return f"{database}_before_{stamp.lower()}"


def confirm(settings: Settings, name: str) -> bool:
    if not sys.stdin.isatty():
        say("refusing a live restore without --yes (stdin is not a terminal)")
        return False
    answer = input(
        f"Replace database {settings.database} and {settings.uploads_dir} with set {name}? "
        f"Type the database name to go on: "
    )
    return answer.strip() == settings.database


def refuse_connected(postgres: Postgres, database: str, stopped: StoppedClients) -> None:
    """Refuse (before anything changes) while sessions other than ours are connected to ``database``:
    they could write during the restore. The stopped clients' connections get a moment to close."""
    connected = postgres.wait_for_no_sessions(database, 15 if stopped.units or stopped.containers else 0)
    if connected:
        raise BackupError(
            f"refusing: {len(connected)} other session(s) are connected to {database} and could write "
            f"while it is replaced: {'; '.join(connected)}. Stop those clients (backup_restore_stop_units, "
            "backup_restore_stop_compose_projects) or end the sessions, then run again; nothing was changed"
        )


def command_restore_live(settings: Settings, name: str, *, yes: bool) -> int:
    """Restore a set beside the live database, check it, then swap it in; the live database is kept
    under <database>_before_<time> (undo: restore --undo)."""
    postgres = Postgres(settings.postgres_user, settings.lock_timeout_seconds)
    database = settings.database
    with locked(settings.lock_file):
        name = choose_set(settings, name)
        manifest = read_manifest(settings.backup_dir, name)
        dump = check_dump(settings, name, manifest)
        if not yes and not confirm(settings, name):
            return EXIT_ERROR
        started = time.monotonic()
        stamp = set_name(dt.datetime.now(dt.UTC))
        previous = previous_name(database, stamp)
        replacement = f"{database}_restoring"
        pre = settings.backup_dir / PRE_RESTORE / stamp
        stopped = stop_clients(settings)
        try:
            refuse_connected(postgres, database, stopped)
            pre.mkdir(parents=True, mode=0o700)
            if settings.uploads_dir is not None and settings.uploads_dir.is_dir():
                rsync(settings.uploads_dir, pre / UPLOADS, link_dest=settings.backup_dir / name / UPLOADS)
                say(f"pre-restore copy of {settings.uploads_dir}: {pre / UPLOADS}")
            postgres.drop(replacement)  # what a failed earlier attempt left
            postgres.create_like(replacement, database)
            say(f"restoring set {name} into {replacement}, beside the live {database}")
            try:
                postgres.restore(dump, replacement, as_dumped=True)
                restored = postgres.table_facts(replacement)
                differences = compare(manifest, restored.counts, None, restored.checksums)
                if differences:
                    raise BackupError(f"the restored copy differs from set {name}: {'; '.join(differences)}")
                postgres.swap(database, replacement, previous)
            except BackupError as error:
                postgres.drop(replacement)
                raise BackupError(f"{error}; the live database {database} was not touched") from None
            say(f"{database} is now set {name}; the database it replaced is {previous}")
            if settings.uploads_dir is not None and manifest.get("uploads"):
                rsync(settings.backup_dir / name / UPLOADS, settings.uploads_dir, delete=True)
            rto = time.monotonic() - started
            # Checked before the clients start again: what they write next is theirs.
            files = (
                checksum_tree(settings.uploads_dir)
                if settings.uploads_dir and manifest.get("uploads")
                else {}
            )
            live = postgres.table_facts(database)
            differences = compare(manifest, live.counts, files, live.checksums)
        finally:
            start_clients(stopped)
    for line in differences:
        say(f"DIFFERENT: {line}")
    say(
        f"live restore of set {name} into {database} "
        + ("matches the backup" if not differences else f"has {len(differences)} differences")
        + f" ({rto:.2f} s); before it: database {previous}, uploads {pre / UPLOADS} "
        "(toolkit-backup restore --undo goes back to them)"
    )
    return 0 if not differences else EXIT_DIFFERENT


def command_restore_undo(settings: Settings, *, yes: bool) -> int:
    """Go back to the state before the newest live restore: its database and its uploads."""
    postgres = Postgres(settings.postgres_user, settings.lock_timeout_seconds)
    database = settings.database
    with locked(settings.lock_file):
        befores = postgres.databases(f"{database}_before_")
        if not befores:
            raise BackupError(f"no live restore to undo: no database {database}_before_<time>")
        previous = befores[-1]
        stamp = previous.removeprefix(f"{database}_before_").upper()
        if not yes and not confirm(settings, f"the state before the restore of {stamp}"):
            return EXIT_ERROR
        undone = f"{database}_undone_{set_name(dt.datetime.now(dt.UTC)).lower()}"
        stopped = stop_clients(settings)
        try:
            refuse_connected(postgres, database, stopped)
            postgres.swap(database, previous, undone)
            uploads = settings.backup_dir / PRE_RESTORE / stamp / UPLOADS
            if settings.uploads_dir is not None and uploads.is_dir():
                rsync(uploads, settings.uploads_dir, delete=True)
        finally:
            start_clients(stopped)
    say(f"{database} is back to its state before the restore of {stamp}; the restored one is {undone}")
    return 0


def command_restore_drop_previous(settings: Settings) -> int:
    """Drop the databases live restores and their undoing set aside."""
    postgres = Postgres(settings.postgres_user, settings.lock_timeout_seconds)
    with locked(settings.lock_file):
        names = [
            *postgres.databases(f"{settings.database}_before_"),
            *postgres.databases(f"{settings.database}_undone_"),
        ]
        for name in names:
            postgres.drop(name)
    say(f"dropped {len(names)} set-aside databases{': ' + ', '.join(names) if names else ''}")
    return 0


def command_list(settings: Settings) -> int:
    now = dt.datetime.now(dt.UTC)
    for name in complete_sets(settings.backup_dir):
        moment = set_time(name)
        future = "  DATED IN THE FUTURE (clock?)" if moment and moment > now + FUTURE_TOLERANCE else ""
        try:
            manifest = read_manifest(settings.backup_dir, name)
        except BackupError as error:
            say(f"{name}  DAMAGED: {error}{future}")
            continue
        uploads = manifest.get("uploads") or {"count": 0, "bytes": 0}
        say(
            f"{name}  dump {human(manifest['dump']['bytes'])}  "
            f"{uploads['count']} files {human(uploads['bytes'])}  {manifest['duration_seconds']:.1f} s"
            + future
        )
    return 0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="toolkit-backup", description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="settings file (JSON)")
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="take a backup set, apply retention, copy offsite")
    commands.add_parser("list", help="list the sets")
    prune_cli = commands.add_parser("prune", help="apply retention only")
    prune_cli.add_argument("--dry-run", action="store_true")
    drill = commands.add_parser("drill", help="restore a set into scratch and compare with its manifest")
    drill.add_argument("set", nargs="?", default="latest", help="set name (default: the newest)")
    drill.add_argument("--keep", action="store_true", help="keep the scratch database and directory")
    restore = commands.add_parser("restore", help="restore a set into the live database and uploads")
    what = restore.add_mutually_exclusive_group(required=True)
    what.add_argument("--live", metavar="SET", help="set name, or latest")
    what.add_argument(
        "--undo", action="store_true", help="go back to the state before the newest live restore"
    )
    what.add_argument(
        "--drop-previous", action="store_true", help="drop the databases live restores (and --undo) set aside"
    )
    restore.add_argument("--yes", action="store_true", help="do not ask")
    commands.add_parser("restic-init", help="create the restic repository unless it exists")
    commands.add_parser("restic-check", help="restic check the offsite repository")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.load(args.config)
        if args.command == "run":
            return command_run(settings)
        if args.command == "list":
            return command_list(settings)
        if args.command == "prune":
            with locked(settings.lock_file):
                prune(settings, dry_run=args.dry_run)
            return 0
        if args.command == "drill":
            return command_drill(settings, args.set, keep=args.keep)
        if args.command == "restore" and args.undo:
            return command_restore_undo(settings, yes=args.yes)
        if args.command == "restore" and args.drop_previous:
            return command_restore_drop_previous(settings)
        if args.command == "restore":
            return command_restore_live(settings, args.live, yes=args.yes)
        if args.command == "restic-init":
            say("restic repository created" if Restic(settings.restic).init() else "restic repository exists")
            return 0
        if not settings.restic.enabled:
            raise BackupError("restic is not enabled (backup_restic_enabled is false)")
        # The backup's lock: a check never runs beside a run's backup and forget --prune.
        with locked(settings.lock_file, wait=True):
            say(Restic(settings.restic).check().strip())
        return 0
    except BackupLocked as error:
        print(f"toolkit-backup: {error}", file=sys.stderr, flush=True)
        return EXIT_LOCKED
    except BackupError as error:
        print(f"toolkit-backup {args.command} failed: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
