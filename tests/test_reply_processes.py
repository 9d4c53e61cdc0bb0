"""Two real `python -m bot web` processes in Telegram webhook mode on one PostgreSQL database, as
behind a load balancer: every update of a chat goes to the other process than the one before it,
and some are delivered twice, once to each. Every message is answered once, each chat's replies in
the order written, and every dialogue ends verified. PostgreSQL only: SQLite serves one process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from bot.platform.phones import national
from models.chat import Chat
from tests.conftest import PROJECT_ROOT, SECRET, auth
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support import (
    code_sent_to,
    free_port,
    service_environment,
    start_service,
    until_healthy,
)
from tests.test_telegram import (  # noqa: F401 (fake, twilio: fixtures)
    TOKEN,
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    fake,
    twilio,
)

CHATS = 8
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
Post = Callable[[dict], Awaitable[None]]


@pytest.fixture
def postgresql(services) -> None:
    if not services.database.is_postgresql:
        pytest.skip("two web processes share a PostgreSQL database (set TEST_DATABASE_URL); SQLite serves one")


@asynccontextmanager
async def web_process(url: str, fake: FakeTelegram, twilio: FakeTwilio, output: Path) -> AsyncIterator[Post]:
    """`python -m bot web` on its own port; how Telegram posts an update to it (answered 200)."""
    port = free_port()
    environ = service_environment(
        BOT_CONFIG=str(PROJECT_ROOT / "config.yaml"), DATABASE_URL=url, SECRET_KEY=SECRET,
        HOST="127.0.0.1", PORT=str(port), TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=f"{fake.url}/bot", TELEGRAM_WEBHOOK_URL=WEBHOOK_URL,
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET, TWILIO_API_BASE_URL=twilio.url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
    )  # fmt: skip
    process = await start_service("web", environ, output)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await asyncio.wait_for(until_healthy(http, process, output), 120)  # only against a hang

            async def post(update: dict) -> None:
                response = await http.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: WEBHOOK_SECRET})
                assert response.status_code == 200, response.text

            yield post
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def converse(fake: FakeTelegram, twilio: FakeTwilio, user: FakeUser, contact: str, posts: list[Post]) -> None:
    """One relative's whole dialogue, each update to the next process in turn, each posted once the
    previous one was acknowledged (as Telegram does); the number and /status delivered twice."""
    turn = 0

    async def send(update: dict, twice: bool = False) -> None:
        nonlocal turn
        await posts[turn % 2](update)
        if twice:  # Telegram's redelivery after a slow answer, to the other process
            await posts[(turn + 1) % 2](update)
        turn += 1

    await send(fake.updates.command(user, "/start"))
    await send(fake.updates.text(user, national(contact)), twice=True)
    code = await asyncio.wait_for(code_sent_to(twilio, contact), 30)
    await send(fake.updates.text(user, code))
    await send(fake.updates.command(user, "/status"), twice=True)
    await send(fake.updates.command(user, "/help"))


async def test_two_web_processes_answer_each_message_once_in_order(
    postgresql, services, client, keys, fake, twilio, tmp_path
):
    mobiles = [f"+9198300{20000 + number:05d}" for number in range(CHATS)]
    for number, contact in enumerate(mobiles):
        body = {"patient_name": f"Patient {number}", "contact_mobile": national(contact), "ward": "Medicine 2"}
        response = await client.put(f"/api/v1/admissions/R-{number}", json=body, headers=auth(keys["MRB"]))
        assert response.status_code == 201, response.text
    users = [fake.user("en") for _ in mobiles]
    url = services.settings.database_url

    async with (
        web_process(url, fake, twilio, tmp_path / "first.log") as first,
        web_process(url, fake, twilio, tmp_path / "second.log") as second,
    ):
        await asyncio.gather(
            *(
                converse(fake, twilio, user, contact, [first, second] if n % 2 else [second, first])
                for n, (user, contact) in enumerate(zip(users, mobiles, strict=True))
            )
        )

    for number, (user, contact) in enumerate(zip(users, mobiles, strict=True)):
        replies = [message.plain for message in fake.messages_to(user.id)]
        assert len(replies) == 6, replies
        welcome, code_sent, confirmed, card, status_card, help_ = replies
        assert "Welcome to Ward Watch" in welcome and "a 6-digit code is on its way" in code_sent
        assert "your number is confirmed" in confirmed.lower()
        assert f"Patient {number}" in card and f"Patient {number}" in status_card
        assert "/status" in help_
        assert len(twilio.messages_to(contact)) == 1
    async with services.database.session() as session:
        states = (await session.exec(select(Chat.state).where(Chat.channel == "telegram"))).all()
    assert sorted(states) == ["verified"] * CHATS
    assert fake.rejected == []
