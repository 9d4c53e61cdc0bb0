"""Replies at scale, in one process: the real python-telegram-bot against the fake Bot API with the
real conversation and database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set).

Updates of different chats are handled at the same time, those of one chat in the order sent;
every message is answered once; a reply that meets Telegram's 429 waits its retry_after and goes;
replies and this process's alerts share one pace, replies first. Order and counts are asserted,
never durations."""

from __future__ import annotations

import asyncio

import pytest

from bot.alerts.pacing import Pacer
from bot.platform.phones import national
from tests.conftest import auth
from tests.fakes.telegram import FakeTelegram, FakeUser, SentMessage
from tests.test_pacing import Went, exactly, message, run, times
from tests.test_telegram import CODE, Bot, fake, start_bot, twilio  # noqa: F401 - fixtures used below

CHATS = 12
WELCOME = "Welcome to Ward Watch"
CODE_SENT = "a 6-digit code is on its way"
CONFIRMED = "your number is confirmed"
HELP = "/status"


def mobile(number: int) -> str:
    return f"+9198300{10000 + number:05d}"


@pytest.fixture
async def admitted(client, keys) -> list[str]:
    """`CHATS` patients at M.R. Bangur, each under a mobile number of their own."""
    mobiles = [mobile(number) for number in range(CHATS)]
    for number, contact in enumerate(mobiles):
        body = {"patient_name": f"Patient {number}", "contact_mobile": national(contact), "ward": "Medicine 2"}
        response = await client.put(f"/api/v1/admissions/R-{number}", json=body, headers=auth(keys["MRB"]))
        assert response.status_code == 201, response.text
    return mobiles


async def push_at_once(fake: FakeTelegram, updates: list[dict]) -> None:
    """Every update queued before the bot's next poll takes them: they reach PTB together."""
    for update in updates:
        await fake.push(update)


def plain(messages: list[SentMessage]) -> list[str]:
    return [message.plain for message in messages]


async def code_for(bot: Bot, contact: str) -> str:
    for _ in range(200):  # the SMS goes after the turn's commit, in the background
        texts = await bot.texts_to(contact)
        if texts:
            found = CODE.search(texts[-1])
            assert found is not None, texts
            return found.group()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no SMS to {contact}")


async def test_many_chats_at_once_each_answered_once_and_in_order(start_bot, fake, admitted):
    """Every chat sends /start, its number and /help at once, all chats together; then its code,
    /status and /help. Each chat reads its replies in the order it wrote, once, and ends verified."""
    bot = await start_bot()
    users = [fake.user("en") for _ in admitted]

    await push_at_once(
        fake,
        [
            update
            for user, contact in zip(users, admitted, strict=True)
            for update in (
                fake.updates.command(user, "/start"),
                fake.updates.text(user, national(contact)),
                fake.updates.command(user, "/help"),
            )
        ],
    )
    for user in users:
        welcome, code_sent, help_ = plain(await fake.wait_messages(user.id, 3))
        assert WELCOME in welcome and CODE_SENT in code_sent and HELP in help_

    codes = [await code_for(bot, contact) for contact in admitted]
    await push_at_once(
        fake,
        [
            update
            for user, code in zip(users, codes, strict=True)
            for update in (
                fake.updates.text(user, code),
                fake.updates.command(user, "/status"),
                fake.updates.command(user, "/help"),
            )
        ],
    )
    for number, user in enumerate(users):
        replies = plain((await fake.wait_messages(user.id, 7))[3:])
        assert CONFIRMED in replies[0].lower()
        assert f"Patient {number}" in replies[1] and f"Patient {number}" in replies[2]
        assert HELP in replies[3]

    for user in users:  # nothing more came: each message was answered once
        await settle(fake, user, already=7)
        chat = await bot.chat(user)
        assert chat is not None and chat.state == "verified"
    assert len(fake.sent) == CHATS * 8
    assert [len(await bot.texts_to(contact)) for contact in admitted] == [1] * CHATS


async def settle(fake: FakeTelegram, user: FakeUser, already: int) -> None:
    """One more /help, answered right after what came before it and nothing else."""
    await fake.push(fake.updates.command(user, "/help"))
    messages = plain(await fake.wait_messages(user.id, already + 1))
    assert len(messages) == already + 1 and HELP in messages[-1], messages


async def test_a_chat_waiting_for_its_reply_does_not_hold_up_the_others(start_bot, fake):
    """Telegram is slow to take one chat's reply: other chats are answered meanwhile, and the slow
    chat's next message waits for its first to be answered."""
    await start_bot()
    slow, other = fake.user("en"), fake.user("en")
    gate = asyncio.Event()
    send_message = fake._api_sendmessage

    async def held_for_slow(params: dict) -> dict:
        if int(params["chat_id"]) == slow.id:
            await gate.wait()
        return await send_message(params)

    fake._api_sendmessage = held_for_slow  # type: ignore[method-assign]
    await push_at_once(fake, [fake.updates.command(slow, "/start"), fake.updates.command(slow, "/help")])
    await fake.push(fake.updates.command(other, "/start"))

    [welcome] = plain(await fake.wait_messages(other.id, 1))
    assert WELCOME in welcome
    assert fake.messages_to(slow.id) == []
    gate.set()
    first, second = plain(await fake.wait_messages(slow.id, 2))
    assert WELCOME in first and HELP in second


async def test_a_reply_that_meets_a_429_waits_its_retry_after_and_is_sent(start_bot, fake):
    """Telegram says "retry after 1" four times in a row: the reply still arrives, once."""
    await start_bot()
    user = fake.user("en")
    await fake.push(fake.updates.command(user, "/help"))
    await fake.wait_messages(user.id, 1)
    fake.fail_next(user.id, 429, count=4, retry_after=1)

    await fake.push(fake.updates.command(user, "/start"))

    help_, welcome = plain(await fake.wait_messages(user.id, 2))
    assert HELP in help_ and WELCOME in welcome
    assert [status for _, status in fake.attempts_to(user.id)] == [200, 429, 429, 429, 429, 200]
    assert [reason for *_, reason in fake.rejected] == ["Too Many Requests: retry after 1"] * 4
    fake.rejected.clear()  # Telegram's refusals, as asked: the fixture's check is for refusals of bad messages
    await settle(fake, user, already=2)


# --- replies first: the pacer this process's replies and alerts share ------------------------------


def test_a_reply_goes_ahead_of_the_alerts_already_waiting():
    """Two places a second; six alerts wait. A reply asked for at 0.5 s takes the place that frees
    at 1.0 s, and the alerts after it keep to the two a second they share with it."""

    async def reply(pacer: Pacer) -> Went:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)
        async with pacer.reply_slot("relative"):
            return Went(True, loop.time())

    async def scenario() -> tuple[list[Went], Went]:
        pacer = Pacer(per_second=2, per_chat_per_second=1)
        *alerts, answered = await asyncio.gather(*(message(pacer, f"chat {n}") for n in range(6)), reply(pacer))
        return alerts, answered

    alerts, answered = run(scenario())
    assert times([answered]) == exactly([1.0])
    assert times(alerts) == exactly([0.0, 0.0, 1.0, 2.0, 2.0, 3.0])


def test_a_reply_waits_out_a_pause_as_the_alerts_do():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30)
        pacer.pause(2.0)
        loop = asyncio.get_running_loop()
        async with pacer.reply_slot("relative"):
            return [Went(True, loop.time())]

    assert times(run(scenario())) == exactly([2.0])


def test_an_alert_to_a_chat_just_answered_waits_the_chats_interval():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30, per_chat_per_second=1)
        loop = asyncio.get_running_loop()
        async with pacer.reply_slot("a"):
            replied = Went(True, loop.time())
        return [replied, *await asyncio.gather(message(pacer, "a"), message(pacer, "b"))]

    assert times(run(scenario())) == exactly([0.0, 1.0, 0.0])
