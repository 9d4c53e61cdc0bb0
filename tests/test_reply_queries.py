"""What one message costs the database: the statements each step of the dialogue runs, counted
exactly (a count, never a duration). Every statement is a round trip on the reply path (a thread
hand-off on SQLite, the network on PostgreSQL) taken while the chat's row is held, so a new one
should be a decision, not an accident. A registered and an unregistered number cost the same:
nothing, not even the time taken, tells them apart. Runs on SQLite, and on PostgreSQL when
TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import event, text

from bot.app import Services
from bot.relatives.replies import Inbound
from tests.support import Clock, HospitalDesk

START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)
SMS = re.compile(r"^\[SMS to (\+\d+)\] (\d{6}) ")


@contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """The SQL statements the database is sent meanwhile (transaction control aside)."""
    seen: list[str] = []

    def note(_connection, _cursor, statement, _parameters, _context, _executemany) -> None:
        seen.append(statement)

    engine = services.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


@dataclass
class Telegram(HospitalDesk):
    """Relatives writing to the bot as Telegram delivers their messages (each with its update id),
    one second apart."""

    bot: Services
    api: object
    keys: dict[str, str]
    clock: Clock
    sms: list[str]

    def __post_init__(self) -> None:
        self._update_ids = count(1)

    async def costs(self, chat: int, **message: object) -> int:
        """How many statements answering this message took."""
        self.clock.advance(seconds=1)
        inbound = Inbound("telegram", str(chat), message_id=f"update:{next(self._update_ids)}", **message)
        with statements(self.bot) as seen:
            replies = await self.bot.conversation.handle(inbound)
        assert replies
        await self.bot.background.drain()
        return len(seen)

    def code_for(self, mobile: str) -> str:
        codes = [found.group(2) for found in map(SMS.match, self.sms) if found and found.group(1) == mobile]
        assert codes, self.sms
        return codes[-1]


@pytest.fixture
async def telegram(services, client, keys) -> AsyncIterator[Telegram]:
    clock = Clock(START)
    services.clock = clock
    sms: list[str] = []
    bot = Services.build(services.settings, show=sms.append)
    bot.clock = clock
    world = Telegram(bot, client, keys, clock, sms)
    await world.admit()
    await world.record("R-1", "MRB", clock.now - timedelta(hours=4), condition="stable")
    yield world
    await bot.close()


def number_costs(telegram: Telegram) -> int:
    """Claim, chat, registered?, the codes held, the last code, the limits, void, chat, new code:
    PostgreSQL holds the codes with two locks, all codes' and the chat's for the number."""
    return 10 if telegram.bot.database.is_postgresql else 9


async def test_statements_per_message(telegram):
    assert await telegram.costs(1, command="start") == 6  # the chat's first message creates it
    assert await telegram.costs(1, command="help") == 3
    assert await telegram.costs(1, text="98300 12345") == number_costs(telegram)
    assert await telegram.costs(1, text=telegram.code_for("+919830012345")) == 14
    assert await telegram.costs(1, command="status") == 6


async def test_an_unregistered_number_costs_what_a_registered_one_does(telegram):
    await telegram.costs(1, command="start")
    await telegram.costs(2, command="start")
    registered = await telegram.costs(1, text="98300 12345")
    unregistered = await telegram.costs(2, text="94330 55555")
    assert (registered, unregistered) == (number_costs(telegram),) * 2


async def test_a_chat_made_by_another_turn_meanwhile_is_taken_not_made_twice(services):
    """A chat's first message makes its row and reads it back in one statement; when another
    process's turn is making the same chat at that moment (PostgreSQL: its insert not yet
    committed, so not seen), this turn waits for it, then locks and answers from that row."""
    if not services.database.is_postgresql:
        pytest.skip("on SQLite a turn that writes waits for the other process's whole transaction first")
    async with services.database.engine.connect() as other:
        await other.execute(
            text(
                "INSERT INTO chat (channel, chat_key, language, state, alerts_stopped, created_at, updated_at) "
                "VALUES ('telegram', '42', 'bn', 'new', false, now(), now())"
            )
        )
        answer = asyncio.ensure_future(services.conversation.handle(Inbound("telegram", "42", command="start")))
        await asyncio.sleep(0.3)
        assert not answer.done(), "waits for the other turn's chat"
        await other.commit()
        replies = await asyncio.wait_for(answer, timeout=5)
    assert "স্বাগত" in replies[0].plain, "the other turn's chat, in its language"
    async with services.database.session() as session:
        assert (await session.exec(text("SELECT count(*) FROM chat"))).scalar_one() == 1
