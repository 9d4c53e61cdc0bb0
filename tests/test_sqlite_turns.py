"""SQLite's statements run on the event loop's thread (bot/platform/db.py): no hand-off to
aiosqlite's thread and back for each one. What a relative would notice: a reply does not wait
for the interpreter to switch threads, and while another process (an import, a second worker)
holds SQLite's one write lock, the bot goes on answering everything else and answers the
waiting message as soon as that lock is free; only a lock held for longer than
`BUSY_WAIT_SECONDS` gets "database is locked"."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.platform import db
from bot.relatives.replies import Inbound


@pytest.fixture
def sqlite_file(services) -> str:
    if services.database.is_postgresql:
        pytest.skip("PostgreSQL has no single write lock, and asyncpg no thread")
    database = make_url(services.settings.database_url).database
    assert database
    return database


@contextmanager
def another_process_writing(database: str) -> Iterator[sqlite3.Connection]:
    """SQLite's write lock, held by a connection of its own as another process's would be, until
    the block ends or the caller commits."""
    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    try:
        yield writer
    finally:
        if writer.in_transaction:
            writer.execute("COMMIT")
        writer.close()


async def ticks_while(work: asyncio.Future, every: float = 0.005) -> int:
    """How often the event loop got round to another task while `work` ran."""
    count = 0
    while not work.done():
        await asyncio.sleep(every)
        count += 1
    return count


def start(chat: str) -> Inbound:
    return Inbound("console", chat, command="start")


async def test_statements_run_on_the_event_loops_thread(services, sqlite_file):
    threads: set[int] = set()
    async with services.database.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        sqlite_connection = raw.driver_connection._conn  # the sqlite3 connection under aiosqlite's
        sqlite_connection.set_trace_callback(lambda _statement: threads.add(threading.get_ident()))
        await connection.execute(text("SELECT 1"))
        sqlite_connection.set_trace_callback(None)
    await services.conversation.handle(start("1"))
    assert threads == {threading.get_ident()}


async def test_a_message_waits_for_another_writer_without_holding_up_the_bot(services, sqlite_file):
    with another_process_writing(sqlite_file) as writer:
        answer = asyncio.ensure_future(services.conversation.handle(start("1")))
        await asyncio.sleep(0.3)  # the other process's write goes on; the message waits
        assert not answer.done()
        loop_turns = asyncio.ensure_future(ticks_while(answer))
        await asyncio.sleep(0.2)
        writer.execute("COMMIT")
        replies = await asyncio.wait_for(answer, timeout=2)
    assert replies, "answered once the lock was free"
    assert await loop_turns >= 10, "the event loop kept running other tasks while the message waited"
    async with services.database.session() as session:
        assert (await session.exec(text("SELECT count(*) FROM chat"))).scalar_one() == 1


async def test_a_lock_held_past_the_busy_wait_is_database_is_locked(services, sqlite_file, monkeypatch):
    monkeypatch.setattr(db, "BUSY_WAIT_SECONDS", 0.2)
    with another_process_writing(sqlite_file), pytest.raises(Exception, match="database is locked"):
        await services.conversation.handle(start("1"))
    async with services.database.session() as session:
        assert (await session.exec(text("SELECT count(*) FROM chat"))).scalar_one() == 0


async def test_a_long_run_of_statements_lets_the_rest_of_the_service_in(services, sqlite_file, monkeypatch):
    """Thousands of statements one after another (a CSV import of a big file) give the event loop
    a turn every `HOLD_THE_LOOP_SECONDS`, so /healthz, the ward's pages and the replies go on
    meanwhile. With that at 0, the loop gets a turn after every statement."""
    monkeypatch.setattr(db, "HOLD_THE_LOOP_SECONDS", 0)

    async def many_statements() -> None:
        async with services.database.engine.connect() as connection:
            for _ in range(3000):
                await connection.execute(text("SELECT 1"))

    work = asyncio.ensure_future(many_statements())
    others_ran = 0
    while not work.done():
        await asyncio.sleep(0)
        others_ran += 1
    await work
    assert others_ran >= 3000
