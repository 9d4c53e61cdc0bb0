"""The database: an async engine, sessions, and migrations through Alembic."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from aiosqlite import context as aiosqlite_context
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

# The flag bot.outbox sets on a session that added outbox rows.
OUTBOX_FLAG = "outbox_added"
# Where a session keeps its database's clock (see `Database.clock`).
CLOCK = "clock"

# How long a statement waits for another process's write to end before "database is locked".
BUSY_WAIT_SECONDS = 5.0
# How long SQLite's calls may run one after another before the event loop gets a turn.
HOLD_THE_LOOP_SECONDS = 0.02

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _prepare_sqlite(url: str) -> None:
    """Create the folder of a SQLite file, which SQLite will not do itself, and the file, so that
    both are their owner's alone from the start: SQLite would create the file readable by all
    (0644), and gives its write-ahead log and shared-memory files the database file's mode."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # An empty file is an empty SQLite database.
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass


def _tune_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers go on while one writer writes; the busy timeout makes a second writer wait
    # instead of failing at once; SQLite enforces foreign keys only when asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=0")  # waited for without blocking (`_InlineConnection._execute`)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _run_statement(connection: sqlite3.Connection, sql: str, parameters: Any) -> tuple[sqlite3.Cursor, list[Any]]:
    """The statement and all its rows, the cursor closed (its description, rowcount and lastrowid
    stay readable)."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql, parameters)
        return cursor, cursor.fetchall()
    finally:
        cursor.close()


class _InlineCursor(aiosqlite.Cursor):
    """A statement in one call instead of four (cursor, execute, fetch, close, as SQLAlchemy drives
    aiosqlite), each of which would go through `_InlineConnection._execute` and its await.
    SQLAlchemy reads every row of a result at once anyway."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.iter_chunk_size = connection._iter_chunk_size
        self._conn = connection
        self._rows: list[Any] = []

    async def execute(self, sql: str, parameters: Any = None) -> _InlineCursor:
        self._cursor, self._rows = await self._execute(_run_statement, self._conn._conn, sql, parameters or ())
        return self

    async def executemany(self, sql: str, parameters: Any) -> _InlineCursor:
        self._cursor = await self._execute(self._conn._conn.executemany, sql, parameters)
        self._rows = []
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        taken = len(self._rows) if size is None else size
        rows, self._rows = self._rows[:taken], self._rows[taken:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        """Closed with its statement (`_run_statement`)."""


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, its calls run on the event loop's thread (`_execute`), its cursors
    `_InlineCursor`s."""

    _loop_had_a_turn = 0.0  # when `_execute` last let the event loop run other tasks

    @aiosqlite_context.contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return _InlineCursor(self)

    async def _execute(self, fn, *args, **kwargs):
        """Runs the call here, not in aiosqlite's thread. The service's statements take tens of
        microseconds, found by index; each hand-off to the thread and back waited for the event
        loop and the thread to take turns at the interpreter, and under load that wait was most of
        a dialogue turn's time (py-spy at 120 messages a second), all of it while the turn held
        this process's write turn (`Database.writing`).

        A call refused because another process holds SQLite's write lock waits for it here without
        holding up the event loop (the busy timeout is 0: SQLite's own wait would sleep in this
        thread), for at most `BUSY_WAIT_SECONDS`. Retrying is safe: SQLite refuses a write at its
        first statement, before it changes anything, and a refused COMMIT leaves the transaction
        whole."""
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        pause = 0.001
        while True:
            try:
                result = fn(*args, **kwargs)
                break
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        # A call that does not wait gives the event loop no turn: a long run of them (a CSV import
        # of thousands of rows) would hold up every other request meanwhile, /healthz too.
        if time.monotonic() - self._loop_had_a_turn > HOLD_THE_LOOP_SECONDS:
            await asyncio.sleep(0)
            self._loop_had_a_turn = time.monotonic()
        return result


def _inline_connection(database: str, **options: Any) -> _InlineConnection:
    """As `aiosqlite.connect(database, **options)`, with its calls run on the event loop's thread
    (`_InlineConnection`): aiosqlite's thread only opens and closes it."""
    connection = _InlineConnection(
        lambda: sqlite3.connect(database, **options | {"check_same_thread": False}), iter_chunk_size=64
    )
    connection._thread.daemon = True  # as SQLAlchemy makes aiosqlite's: no wait at exit
    return connection


def _connect_sqlite(dialect, _record, arguments, options):
    """The connection SQLAlchemy would make, from the same arguments, run on the event loop's
    thread (`_InlineConnection`)."""
    return dialect.dbapi.connect(*arguments, async_creator_fn=_inline_connection, **options)


def create_engine(url: str) -> AsyncEngine:
    # A failed statement's error names its SQL; its parameters (patients' names, phone numbers)
    # would reach the logs with the traceback.
    if url.startswith("sqlite"):
        _prepare_sqlite(url)
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "do_connect", _connect_sqlite)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)


class Database:
    """Owns the engine; hands out sessions whose objects stay readable after commit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

        # Called after a commit that added outbox rows, so this process's dispatcher wakes at once.
        self.outbox_listeners: list[Callable[[], None]] = []
        # SQLite lets one writer in at a time and has the others poll for the lock, unfairly: under
        # a burst of writes some wait past the busy timeout and fail ("database is locked"). The
        # writers of this process that ask (`writing`) queue here instead, first come first served.
        self._write_turn = None if self.is_postgresql else asyncio.Lock()
        # The time outbox rows are stamped with, so that the dispatcher, which holds each row back
        # for the grace period by the same clock, measures it consistently (Services sets its own).
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            event.listen(session.sync_session, "after_commit", self._after_commit)
            session.info[CLOCK] = self.clock
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Around a session that writes: on SQLite, one such session of this process at a time."""
        if self._write_turn is None:
            yield
            return
        async with self._write_turn:
            yield

    @asynccontextmanager
    async def request_session(self, writes: bool) -> AsyncIterator[AsyncSession]:
        """The session of one web request: a request that writes waits for its turn (`writing`)."""
        if not writes:
            async with self.session() as session:
                yield session
            return
        async with self.writing(), self.session() as session:
            yield session

    def _after_commit(self, sync_session) -> None:
        if sync_session.info.pop(OUTBOX_FLAG, False):
            for listener in self.outbox_listeners:
                listener()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def pending_migrations(self) -> bool:
        """True when the database is behind the code's migrations (or was never migrated)."""
        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()
        async with self.engine.connect() as connection:
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        return current != head


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    # ConfigParser would read "%" in a password as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision`. Blocking: call it outside a running event loop,
    or through `upgrade_async`."""
    if url.startswith("sqlite"):
        _prepare_sqlite(url)
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    # Alembic's env.py runs its own event loop for the async engine, so give it a thread.
    await asyncio.to_thread(upgrade, url, revision)
