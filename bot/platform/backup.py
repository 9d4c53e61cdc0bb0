"""Backups of a SQLite database (`python -m bot backup FILE`, `python -m bot restore FILE`).

A backup is taken with SQLite's online backup API while the service runs: readers and the writer
go on, and the copy is the database as the last transaction committed before it began left it. A
restore writes into the database through the same API, so that its write-ahead log is kept
consistent; it is refused while a process uses the database. Every process of the service, and
every one-off command that opens the database (an import, a new key, a migration), holds a shared
lock on a file beside the database (`ServiceLock`) for as long as it runs; a restore needs it
exclusively.
PostgreSQL has its own tools (pg_dump, pg_restore): the README tells how.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """Why a backup or a restore was not made, in one line for the operator."""


def database_file(database_url: str) -> Path:
    """The SQLite file of `database_url`; a BackupError for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(
            f"the database is {url.get_backend_name()}, not SQLite: use pg_dump and pg_restore (see the README's Backups)"
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("the database lives in memory only: there is nothing to back up or restore")
    return Path(url.database)


def _lock_file(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class ServiceLock:
    """Held by each process of the service and each one-off command while it runs (shared: web,
    worker and an import together), so that a restore can tell that the database is in use.
    Nothing for a database other than a SQLite file."""

    def __init__(self, database_url: str) -> None:
        try:
            self._path: Path | None = _lock_file(database_file(database_url))
        except BackupError:
            self._path = None
        self._descriptor: int | None = None

    def __enter__(self) -> ServiceLock:
        if self._path is not None:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._descriptor, fcntl.LOCK_SH)  # waits for a restore under way to end
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # and the lock with it
            self._descriptor = None


def backup(database_url: str, target: Path) -> int:
    """Copy the database, in use or not, to `target` (replaced whole, never left half-written);
    the copy's size in bytes."""
    source = database_file(database_url)
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    target = target.resolve()
    if not target.parent.is_dir():
        raise BackupError(f"there is no folder {target.parent}")
    if target == source.resolve():
        raise BackupError("the backup cannot be the database itself")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # The copy holds what the database holds (patients' names and numbers): its owner's alone.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with _connect(source) as reading, _connect(partial) as writing:
            # In one step: a read transaction, which the service's writer does not wait for
            # (write-ahead log). In steps, each write in between would start the copy over.
            reading.backup(writing)
            # A single file, readable without the write-ahead log beside it.
            writing.execute("PRAGMA journal_mode=DELETE")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def restore(backup_file: Path, database_url: str) -> None:
    """Put `backup_file` back as the database, replacing everything in it; refused while a
    process of the service runs."""
    database = database_file(database_url)
    if not backup_file.is_file():
        raise BackupError(f"there is no backup at {backup_file}")
    _check(backup_file)
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(_lock_file(database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                "the database is in use: stop the service's processes (web, worker, run, chat) "
                "and wait for any import or other command to end"
            ) from None
        try:
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        with _connect(backup_file) as reading, _connect(database) as writing:
            reading.backup(writing)
            writing.execute("PRAGMA journal_mode=WAL")  # as the service runs it
    finally:
        os.close(lock)


def _check(backup_file: Path) -> None:
    try:
        with _connect(backup_file) as connection:
            (verdict,) = connection.execute("PRAGMA integrity_check").fetchone()
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{backup_file} is not a SQLite database ({exc})") from None
    if verdict != "ok":
        raise BackupError(f"{backup_file} is damaged: {verdict}")
    if "alembic_version" not in tables:
        raise BackupError(f"{backup_file} is not a Ward Watch database")


def _connect(path: Path) -> closing[sqlite3.Connection]:
    # closed on leaving: sqlite3's own context manager only commits
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA busy_timeout=5000")  # the service's writer may hold the database a moment
    return closing(connection)
