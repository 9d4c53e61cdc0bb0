"""The dispatcher end to end, reliability first: the hospital API records changes, the outbox
rows commit with them, the real dispatcher loop sends the alerts through the real
python-telegram-bot to the fake Bot API of `tests.fakes.telegram`, here strict like Telegram
(429 beyond 1 message/s per chat or 30/s in all, 403 for a blocked chat, 400 for a chat gone,
500 at random). The correction window is 0 (a temporary config.yaml) so that alerts go at once;
the clock is real, but where a test holds it (`tests.support.Clock`) to read what the dispatcher
decided. No test sleeps to see that nothing happened: it waits for the dispatcher's loop to have
looked (`Passes`). Chats are mostly set up directly (a chat row and `access.verify`), one test
goes through the real conversation on Telegram.

What "exactly once" means here: each outbox row ends `sent` and every alert the dispatcher
recorded (one per chat, admission and `sent_at`) is one message in the fake's records, no more,
no fewer. Several pending changes of one chat and admission may go out as one alert.

Duplicate window (`bot.alerts.dispatcher`): a dispatcher that dies after sending and before marking
the chunk it was sending repeats at most that chunk, `CHUNK` alerts, once its claim lapses
(`notifications.claim_seconds`); nothing is lost. A dispatcher that lives but is held up (a long
429 pause) sends nothing after half its claim: another process may have claimed it by then.

Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set (two dispatchers racing for the
same rows only there; two processes taking turns on both).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from bot import cli
from bot.alerts import dispatcher as dispatcher_module
from bot.alerts.channels import Alert, PermanentFailure, RetryLater, TemporaryFailure
from bot.alerts.dispatcher import CHUNK, Dispatcher
from bot.app import Services, build_telegram, build_web_app
from bot.intake import rules
from bot.intake.hospitals import get_hospital
from bot.intake.schemas import ConditionUpdateIn, IntakeContext
from bot.relatives import access
from bot.relatives.conversation import State
from bot.relatives.replies import Reply, Span
from handlers.console import ConsoleSender
from handlers.telegram import TelegramChannel, TelegramSender
from models import Admission, Chat, Subscription
from models.chat import Notification
from tests.conftest import PROJECT_ROOT, SECRET, auth, make_settings
from tests.fakes.telegram import FakeTelegram, SentMessage
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support import SETTINGS_ENVIRONMENT, Clock

TOKEN = "123:ABC"
MODERATE = {"condition": "moderate", "care_area": "ward", "respiratory_support": "none"}
CRITICAL = {"condition": "critical", "care_area": "icu", "respiratory_support": "oxygen"}
STABLE = {"condition": "stable", "care_area": "ward", "respiratory_support": "none"}
PATIENT = re.compile(r"Patient [A-Z]-\d+")
CODE = re.compile(r"(?<!\d)(\d{6}) is your Ward Watch code")


def mobile(n: int) -> str:
    return f"+9198300{n:05d}"


def patient(reg: str) -> str:
    return f"Patient {reg}"


def now_utc() -> datetime:
    return datetime.now(UTC)


async def until(check: Callable[[], Any], what: str, timeout: float = 30) -> None:
    """Until `check()` (a bool, or an awaitable of one) holds."""
    deadline = time.monotonic() + timeout
    while not await _value(check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def _value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Passes:
    """What a dispatcher's loop (`Dispatcher.run`) did, in order: ("pass", alerts handled) for each
    pass that ended, and ("idle", seconds) for each wait it chose after a pass that found nothing
    to do. Tests wait for these rather than sleep."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.log: list[tuple[str, float]] = []
        self.begun = 0
        self._dispatcher = dispatcher
        self._changed = asyncio.Condition()
        dispatch_once, idle_seconds = dispatcher.dispatch_once, dispatcher._idle_seconds

        async def logged_pass() -> int:
            self.begun += 1
            handled = await dispatch_once()
            await self._note("pass", handled)
            return handled

        async def logged_idle() -> float:
            seconds = await idle_seconds()
            await self._note("idle", seconds)
            return seconds

        dispatcher.dispatch_once = logged_pass
        dispatcher._idle_seconds = logged_idle

    async def _note(self, what: str, value: float) -> None:
        async with self._changed:
            self.log.append((what, value))
            self._changed.notify_all()

    def ended(self) -> int:
        return sum(1 for what, _ in self.log if what == "pass")

    async def until(self, check: Callable[[], bool], what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(check), 30)
            except TimeoutError:
                raise AssertionError(f"timed out after 30 s waiting for {what}: {self.log}") from None

    async def looked(self) -> None:
        """Until a whole pass that began after this call has ended (the loop is woken for it)."""
        begun = self.begun
        self._dispatcher.wake()
        await self.until(lambda: self.ended() > begun, "a pass of the dispatcher")


@dataclass
class Ward:
    """One process as `python -m bot worker` wires it, plus the hospital API on the same
    Services (so that a change it commits wakes this process's dispatcher), and the fake."""

    bot: Services
    channel: TelegramChannel
    api: httpx.AsyncClient
    fake: FakeTelegram
    keys: dict[str, str]
    twilio: FakeTwilio  # where the codes go by SMS
    tasks: list[asyncio.Task] = field(default_factory=list)
    expected_errors: list[str] = field(default_factory=list)  # ERROR logs the test causes on purpose

    @property
    def sender(self) -> TelegramSender:
        return self.bot.senders["telegram"]

    def dispatcher(self, **notifications: Any) -> Dispatcher:
        """Another dispatcher on the same database and senders (another process, restarted)."""
        config = self.bot.settings.config
        config = config.model_copy(update={"notifications": config.notifications.model_copy(update=notifications)})
        return Dispatcher(
            self.bot.database, config, self.bot.catalogues, self.bot.senders, self.bot.now, self.bot.secret_key
        )

    def run(self, dispatcher: Dispatcher | None = None) -> asyncio.Task:
        task = asyncio.create_task((dispatcher or self.bot.dispatcher).run())
        self.tasks.append(task)
        return task

    # --- the hospital's side, through the API

    async def admit(self, reg: str, number: str, hospital: str = "MRB") -> None:
        body = {
            "patient_name": patient(reg), "contact_mobile": number, "ward": "Covid Ward 2",
            "admitted_at": (now_utc() - timedelta(days=1)).isoformat(),
        }  # fmt: skip
        response = await self.api.put(f"/api/v1/admissions/{reg}", json=body, headers=auth(self.keys[hospital]))
        assert response.status_code in (200, 201), response.text

    async def update(self, reg: str, hospital: str = "MRB", **fields: Any) -> None:
        body = {"recorded_at": now_utc().isoformat(), **fields}
        response = await self.api.post(
            f"/api/v1/admissions/{reg}/updates", json=body, headers=auth(self.keys[hospital])
        )
        assert response.status_code == 201, response.text

    async def set_status(self, reg: str, status: str, hospital: str = "MRB", **fields: Any) -> None:
        body = {"status": status, "at": now_utc().isoformat(), **fields}
        response = await self.api.post(f"/api/v1/admissions/{reg}/status", json=body, headers=auth(self.keys[hospital]))
        assert response.status_code == 200, response.text

    # --- relatives, set up directly

    async def follow(self, number: str, alerts: bool = True) -> int:
        """A Telegram chat that verified `number` (as the conversation would leave it); its id."""
        user = self.fake.user()
        self.fake.known_chats.add(user.id)
        async with self.bot.database.session() as session:
            chat = Chat(channel="telegram", chat_key=str(user.id), language="en", state=State.VERIFIED)
            session.add(chat)
            await session.flush()
            followed = await access.verify(session, chat, number, self.bot.now(), self.bot.settings.config.verification)
            assert followed, f"nothing admitted under {number}"
            if not alerts:
                await access.stop_alerts(session, chat)
            await session.commit()
        return user.id

    # --- what happened

    async def rows(self, *where) -> list[Notification]:
        async with self.bot.database.session() as session:
            return list((await session.exec(select(Notification).where(*where).order_by(col(Notification.id)))).all())

    async def chat(self, chat_id: int) -> Chat:
        async with self.bot.database.session() as session:
            found = await session.exec(select(Chat).where(Chat.channel == "telegram", Chat.chat_key == str(chat_id)))
            return found.one()

    async def settled(self, timeout: float = 30) -> None:
        """Until no row is pending (every alert sent, given up or cancelled, and recorded)."""

        async def nothing_pending() -> bool:
            return not await self.rows(Notification.status == "pending")

        await until(nothing_pending, "the outbox to drain", timeout)

    async def alerts_recorded(self) -> Counter:
        """(chat id, patient) of every alert the outbox says was sent, one per alert."""
        async with self.bot.database.session() as session:
            result = await session.exec(
                select(Notification.sent_at, Chat.chat_key, Admission.registration_no)
                .join(Chat, col(Chat.id) == col(Notification.chat_id))
                .join(Admission, col(Admission.id) == col(Notification.admission_id))
                .where(Notification.status == "sent")
            )
            alerts = {(int(key), patient(reg), sent_at) for sent_at, key, reg in result.all()}
        return Counter((chat_id, name) for chat_id, name, _ in alerts)

    def alerts_received(self, replies: list[SentMessage] = ()) -> Counter:
        """(chat id, patient) of every message the fake accepted, but the conversation's `replies`."""
        skip = {message.message_id for message in replies}
        return Counter((m.chat_id, about(m)) for m in self.fake.sent if m.message_id not in skip)

    async def assert_each_alert_once(self, replies: list[SentMessage] = ()) -> None:
        assert [row for row in await self.rows() if row.status != "sent"] == []
        assert self.alerts_received(replies) == await self.alerts_recorded()


def about(message: SentMessage) -> str:
    """The patient an alert is about."""
    found = PATIENT.search(message.plain)
    assert found, message.plain
    return found.group(0)


def shown_condition(message: SentMessage) -> str:
    """The condition the alert's card shows ("🟡 Patient R-1: Moderate" under the header)."""
    return message.plain.splitlines()[2].rsplit(": ", 1)[1]


_configs = itertools.count()


def write_config(directory: Path, notifications: dict | None = None, pacing: dict | None = None) -> str:
    data = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["notifications"].update({"grace_seconds": 0, **(notifications or {})})
    data["pacing"]["telegram"].update(pacing or {})
    path = directory / f"config-{next(_configs)}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def open_ward(services, keys, fake, twilio, tmp_path, caplog) -> AsyncIterator[Callable[..., Awaitable[Ward]]]:
    """`await open_ward(notifications=..., pacing=..., polling=False)`: a Ward on the test
    database (emptied by `services`) with grace 0 and those config.yaml values. Stops it all at
    the end and checks that the test logged nothing at ERROR (but `ward.expected_errors`)."""
    opened: list[Ward] = []

    async def open_(notifications: dict | None = None, pacing: dict | None = None, polling: bool = False) -> Ward:
        settings = make_settings(
            services.settings.database_url,
            BOT_CONFIG=write_config(tmp_path, notifications, pacing),
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=f"{fake.url}/bot",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_SMS_FROM=SMS_FROM,
            TWILIO_API_BASE_URL=twilio.url,
        )
        bot = Services.build(settings)
        channel = build_telegram(bot)
        assert channel is not None
        if polling:  # the bot answers relatives too, as `python -m bot run` does
            await channel.start()
        else:  # what `python -m bot worker` does: alerts only, no polling
            await channel.application.initialize()
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_web_app(bot)), base_url="http://testserver")
        ward = Ward(bot, channel, api, fake, keys, twilio)
        opened.append(ward)
        return ward

    caplog.set_level(logging.WARNING)
    yield open_
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    for ward in reversed(opened):
        for task in ward.tasks:
            task.cancel()
        await asyncio.gather(*ward.tasks, return_exceptions=True)
        await ward.api.aclose()
        await ward.channel.stop()
        await ward.bot.close()
    expected = tuple(message for ward in opened for message in ward.expected_errors)
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert [message for message in errors if not message.startswith(expected or ("\0",))] == []


# --- a write that fails -----------------------------------------------------------------------------


async def test_a_rolled_back_write_sends_nothing(open_ward):
    ward = await open_ward()
    await ward.admit("R-1", mobile(1))
    relative = await ward.follow(mobile(1))
    passes = Passes(ward.bot.dispatcher)
    ward.run()

    async with ward.bot.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        context = IntakeContext(region="IN", tz=UTC, now=ward.bot.now())
        data = ConditionUpdateIn(recorded_at=now_utc(), **CRITICAL).resolve(context)
        await rules.apply_one(session, hospital, "R-1", data, actor="test", source="api")
        assert len((await session.exec(select(Notification))).all()) == 1  # added, not committed
        await session.rollback()

    await passes.looked()
    assert await ward.rows() == []
    assert ward.fake.sent == []

    await ward.update("R-1", **MODERATE)  # the next write that commits is told, alone
    [alert] = await ward.fake.wait_messages(relative, 1)
    assert "Moderate" in alert.plain and "Critical" not in alert.plain
    await ward.settled()
    await ward.assert_each_alert_once()


# --- exactly once ------------------------------------------------------------------------------------


async def test_every_change_reaches_every_subscribed_chat_exactly_once(open_ward, fake):
    ward = await open_ward()
    regs = [f"R-{n}" for n in range(12)]
    numbers = {reg: mobile(max(n, 1)) for n, reg in enumerate(regs)}  # one number
    for reg in regs:
        await ward.admit(reg, numbers[reg])
    both = await ward.follow(mobile(1))  # follows
    followers = {n: await ward.follow(mobile(n)) for n in range(2, 10)}  # nobody
    family = await ward.follow(mobile(2))  # a second relative of R-2
    stopped = await ward.follow(mobile(3), alerts=False)  # /stop: reads the card, hears nothing
    stranger = fake.user().id  # talked to the bot, never verified
    fake.known_chats.add(stranger)
    expected = {(both, "Patient R-0"), (both, "Patient R-1"), (family, "Patient R-2")}
    expected |= {(chat, f"Patient R-{n}") for n, chat in followers.items()}
    ward.run()

    # 1. One change for every admission: one alert for every chat that follows it.
    for reg in regs:
        await ward.update(reg, **MODERATE)
    await ward.settled()
    assert ward.alerts_received() == Counter(expected)
    assert {shown_condition(message) for message in fake.sent} == {"Moderate"}

    # 2. Two quick changes each for: told once or twice, the last alert shows the last.
    seen = len(fake.sent)
    for reg in regs[:6]:
        await ward.update(reg, **CRITICAL)
        await ward.update(reg, **STABLE)
    await ward.settled()
    later = fake.sent[seen:]
    changed = {patient(reg) for reg in regs[:6]}
    assert {(m.chat_id, about(m)) for m in later} == {pair for pair in expected if pair[1] in changed}
    for chat_id, name in {(m.chat_id, about(m)) for m in later}:
        last = [m for m in later if m.chat_id == chat_id and about(m) == name][-1]
        assert shown_condition(last) == "Stable"

    # 3. A discharge: the last alert, after which that chat's alerts for R-4 end.
    await ward.set_status("R-4", "discharged")
    await ward.settled()
    [farewell] = [m for m in fake.sent[seen + len(later) :]]
    assert farewell.chat_id == followers[4] and "last message about this patient" in farewell.plain
    async with ward.bot.database.session() as session:
        alerts = await session.exec(
            select(Subscription.alerts).join(Admission).where(Admission.registration_no == "R-4")
        )
        assert alerts.all() == [False]

    assert not fake.messages_to(stopped) and not fake.messages_to(stranger)
    await ward.assert_each_alert_once()
    assert fake.rejected == []


# --- pace --------------------------------------------------------------------------------------------


async def test_the_pace_keeps_within_telegrams_limits(open_ward, fake):
    """config.yaml's pacing (30/s in all, 1/s per chat) against a fake that answers 429 beyond
    either, in any sliding second: not one 429. How close to the limit a queue goes is a speed,
    which no test on a shared machine can promise: bench/ measures it (its `paced` row)."""
    ward = await open_ward()  # pacing as in config.yaml
    assert ward.bot.settings.config.pacing.telegram.messages_per_second == 30
    assert ward.bot.settings.config.pacing.telegram.per_chat_messages_per_second == 1
    for n in range(45):
        await ward.admit(f"R-{n}", mobile(n))
    for n in range(10):  # ten relatives follow a second patient: two alerts to one chat at once
        await ward.admit(f"S-{n}", mobile(n))
    chats = [await ward.follow(mobile(n)) for n in range(45)]
    fake.limits = True

    for reg in [f"R-{n}" for n in range(45)] + [f"S-{n}" for n in range(10)]:  # a queue of 55
        await ward.update(reg, **MODERATE)
    ward.run()
    await ward.settled()
    assert len(fake.sent) == 55
    for chat in chats[:10]:
        first, second = fake.messages_to(chat)
        assert second.at - first.at >= 1.0

    for n in range(45):  # and while it runs: changes one after another, a second relative's too
        await ward.update(f"R-{n}", **CRITICAL)
        if n % 3 == 0:
            await ward.update(f"R-{n}", **STABLE)
    await ward.settled()
    assert fake.too_many_requests == 0, fake.throttled
    assert fake.rejected == []
    await ward.assert_each_alert_once()


# --- failures ----------------------------------------------------------------------------------------


async def test_a_429_is_waited_out_and_the_alert_arrives_once(open_ward, fake):
    ward = await open_ward()
    for n in (1, 2):
        await ward.admit(f"R-{n}", mobile(n))
    first, second = await ward.follow(mobile(1)), await ward.follow(mobile(2))
    fake.fail_next(first, 429, retry_after=1)
    ward.run()

    await ward.update("R-1", **CRITICAL)
    await until(lambda: bool(fake.throttled), "the 429")
    await ward.update("R-2", **CRITICAL)  # the whole channel waits, not only that chat
    await ward.settled()

    (refused_at, refused), (sent_at, sent) = fake.attempts_to(first)
    assert (refused, sent) == (429, 200) and sent_at - refused_at >= 1.0
    [(other_at, other)] = fake.attempts_to(second)
    assert other == 200 and other_at - refused_at >= 1.0
    assert fake.too_many_requests == 1
    assert [row.attempts for row in await ward.rows()] == [0, 0]  # slowing down is no failure
    await ward.assert_each_alert_once()


async def test_server_errors_are_retried_with_exponential_backoff(open_ward, fake):
    ward = await open_ward(notifications={"backoff_first_seconds": 0.2, "backoff_max_seconds": 5})
    clock = ward.bot.clock = Clock(now_utc())  # moved by the test alone
    await ward.admit("R-1", mobile(1))
    chat = await ward.follow(mobile(1))
    fake.fail_next(chat, 500, count=2)
    fake.fail_next(chat, 502)
    await ward.update("R-1", **CRITICAL)

    # Backoff 0.2 s, doubling, each drawn between half and all of it; not tried again before then.
    dispatcher = ward.bot.dispatcher
    for backoff in (0.2, 0.4, 0.8):
        assert await dispatcher.dispatch_once() == 1
        [row] = await ward.rows()
        assert backoff / 2 <= (row.not_before - clock.now).total_seconds() <= backoff
        clock.now = row.not_before - timedelta(microseconds=1)
        assert await dispatcher.dispatch_once() == 0
        clock.now = row.not_before
    assert await dispatcher.dispatch_once() == 1
    assert [status for _, status in fake.attempts_to(chat)] == [500, 500, 502, 200]
    [row] = await ward.rows()
    assert (row.status, row.attempts) == ("sent", 3)
    await ward.assert_each_alert_once()


async def test_random_server_errors_cost_retries_not_alerts(open_ward, fake):
    ward = await open_ward(
        notifications={"backoff_first_seconds": 0.05, "backoff_max_seconds": 0.5, "max_attempts": 12}
    )
    fake.error_rate = 0.3  # drawn from random.Random(fake.seed)
    for n in range(20):
        await ward.admit(f"R-{n}", mobile(n))
        await ward.follow(mobile(n))
    ward.run()
    for n in range(20):
        await ward.update(f"R-{n}", **CRITICAL)
    await ward.settled()
    failures = sum(1 for _, _, status in fake.attempts if status == 500)
    assert failures >= 3  # 30% of the calls failed...
    await ward.assert_each_alert_once()  # ...and every alert arrived once
    assert len(fake.sent) == 20


async def test_after_max_attempts_an_alert_is_dead_and_listed(open_ward, fake, monkeypatch, capsys):
    ward = await open_ward(notifications={"max_attempts": 3, "backoff_first_seconds": 0.05})
    for n in (1, 2):
        await ward.admit(f"R-{n}", mobile(n))
    unlucky, lucky = await ward.follow(mobile(1)), await ward.follow(mobile(2))
    fake.fail_next(unlucky, 500, count=3)
    ward.run()
    await ward.update("R-1", **CRITICAL)
    await ward.update("R-2", **CRITICAL)
    await ward.settled()

    assert [status for _, status in fake.attempts_to(unlucky)] == [500, 500, 500]
    assert not fake.messages_to(unlucky) and len(fake.messages_to(lucky)) == 1
    dead, sent = await ward.rows()
    assert (dead.status, dead.attempts, dead.error) == ("dead", 3, "Internal Server Error")
    assert sent.status == "sent"
    assert (await ward.chat(unlucky)).unreachable_at is None  # a server's trouble, not the chat's

    lines = await outbox_command(ward, monkeypatch, capsys)
    assert lines[:4] == ["pending\t0", "sent\t1", "cancelled\t0", "dead\t1"]
    assert lines[-2:] == [
        "id\tchannel\thospital\tregistration\tattempts\terror",
        f"{dead.id}\ttelegram\tMRB\tR-1\t3\tInternal Server Error",
    ]
    assert not any(str(unlucky) in line for line in lines)  # the chat's key is nobody's business here


async def outbox_command(ward: Ward, monkeypatch, capsys, *options: str) -> list[str]:
    """`python -m bot outbox ...` as an operator runs it on the ward's database: what it prints."""
    for name in SETTINGS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOT_CONFIG", str(PROJECT_ROOT / "config.yaml"))
    monkeypatch.setenv("DATABASE_URL", ward.bot.settings.database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        code = await asyncio.to_thread(cli.main, ["outbox", *options])
    finally:
        root.handlers[:], root.level = saved
    assert code == 0
    return capsys.readouterr().out.splitlines()


async def test_dead_alerts_are_listed_with_reasons_and_put_back_once_by_retry(open_ward, fake, monkeypatch, capsys):
    ward = await open_ward(notifications={"max_attempts": 2, "backoff_first_seconds": 0.05})
    await ward.admit("R-1", mobile(1), hospital="MCK")
    await ward.admit("R-2", mobile(2))
    await ward.admit("R-3", mobile(2))
    unlucky, blocking = await ward.follow(mobile(1)), await ward.follow(mobile(2))
    fake.fail_next(unlucky, 500, count=2)  # an outage longer than the retries
    fake.blocked.add(blocking)
    await ward.update("R-1", hospital="MCK", **CRITICAL)
    await ward.update("R-2", **CRITICAL)
    await ward.update("R-3", **CRITICAL)
    ward.run()  # the blocking chat's second alert is cancelled once its first is refused
    await ward.settled()

    lines = await outbox_command(ward, monkeypatch, capsys)
    assert lines[:4] == ["pending\t0", "sent\t0", "cancelled\t1", "dead\t2"]
    assert lines[5:10] == [
        "dead and cancelled alerts by hospital and channel:",
        "hospital\tchannel\tstatus\talerts\treason",
        "MCK\ttelegram\tdead\t1\tInternal Server Error",
        "MRB\ttelegram\tcancelled\t1\tthe chat cannot be reached (blocked the bot, gone, opted out)",
        "MRB\ttelegram\tdead\t1\tForbidden: bot was blocked by the user",
    ]

    # The outage is over. The blocked chat's alerts stay dead: it cannot be reached.
    assert await outbox_command(ward, monkeypatch, capsys, "--retry", "--hospital", "mrb") == [
        "0 dead alerts put back in the queue"
    ]
    assert await outbox_command(ward, monkeypatch, capsys, "--retry") == ["1 dead alert put back in the queue"]
    await ward.settled()
    assert [status for _, status in fake.attempts_to(unlucky)] == [500, 500, 200]
    assert len(fake.messages_to(unlucky)) == 1
    assert len(fake.attempts_to(blocking)) == 1
    assert await outbox_command(ward, monkeypatch, capsys, "--retry") == ["0 dead alerts put back in the queue"]
    assert (await outbox_command(ward, monkeypatch, capsys))[:4] == ["pending\t0", "sent\t1", "cancelled\t1", "dead\t1"]


async def test_an_alert_waiting_for_its_retry_does_not_keep_the_dispatcher_busy(open_ward, fake):
    ward = await open_ward(notifications={"backoff_first_seconds": 4, "backoff_max_seconds": 4})
    clock = ward.bot.clock = Clock(now_utc())  # held: the retry stays 2 to 4 s away
    await ward.admit("R-1", mobile(1))
    chat = await ward.follow(mobile(1))
    fake.fail_next(chat, 500)
    passes = Passes(ward.bot.dispatcher)
    ward.run()
    await ward.update("R-1", **CRITICAL)
    await passes.until(lambda: ("pass", 1) in passes.log, "the first try")
    tried = passes.log.index(("pass", 1))
    await passes.until(lambda: len(passes.log) >= tried + 5, "two more passes")
    [row] = await ward.rows()
    assert 2 <= (row.not_before - clock.now).total_seconds() <= 4
    # Each pass while the alert waits finds nothing to do and then waits a whole look: no spin.
    idle = dispatcher_module.IDLE_LOOK_SECONDS
    assert passes.log[tried + 1 : tried + 5] == [("pass", 0), ("idle", idle), ("pass", 0), ("idle", idle)]

    clock.now = row.not_before
    await ward.settled()
    assert [status for _, status in fake.attempts_to(chat)] == [500, 200]


async def test_a_process_without_the_chats_channel_leaves_its_alerts_to_one_with_it(open_ward, fake):
    ward = await open_ward(notifications={"claim_seconds": 1})
    await ward.admit("R-1", mobile(1))
    chat = await ward.follow(mobile(1))
    await ward.update("R-1", **CRITICAL)
    console_only = Dispatcher(  # e.g. `python -m bot chat`: the console chat's dispatcher only
        ward.bot.database, ward.bot.settings.config, ward.bot.catalogues,
        {"console": ConsoleSender(lambda text: None)}, ward.bot.now, ward.bot.secret_key,
    )  # fmt: skip
    passes = Passes(console_only)
    ward.run(console_only)
    await passes.until(lambda: len(passes.log) >= 4, "two passes")
    # It looks now and then, finds nothing of its own, and waits a whole look in between: no spin.
    idle = dispatcher_module.IDLE_LOOK_SECONDS
    assert passes.log[:4] == [("pass", 0), ("idle", idle), ("pass", 0), ("idle", idle)]
    assert fake.sent == []

    ward.run()  # a process with Telegram
    [alert] = await fake.wait_messages(chat, 1)
    await ward.settled()
    await ward.assert_each_alert_once()


async def test_an_unforeseen_error_costs_its_own_alert_retries_and_nothing_else(open_ward, fake):
    ward = await open_ward(notifications={"max_attempts": 2, "backoff_first_seconds": 0.05, "claim_seconds": 2})
    ward.expected_errors.append("alert send failed on telegram")
    telegram = ward.sender
    chats = []
    for n in range(5):
        await ward.admit(f"R-{n}", mobile(n))
        chats.append(await ward.follow(mobile(n)))

    class Faulty:  # a sender with a bug for one chat
        channel, pacer, uses_templates = telegram.channel, telegram.pacer, telegram.uses_templates

        async def send(self, alert: Alert) -> None:
            if alert.chat_key == str(chats[2]):
                raise RuntimeError("boom")
            await telegram.send(alert)

    ward.bot.senders["telegram"] = Faulty()
    for n in range(5):
        await ward.update(f"R-{n}", **CRITICAL)
    ward.run()
    await ward.settled()
    # Once every claim has lapsed a lost chunk would be claimed and sent again: nothing is.
    ward.bot.clock = Clock(now_utc() + timedelta(seconds=3))
    assert await ward.dispatcher().dispatch_once() == 0

    rows = await ward.rows()
    assert [(row.status, row.attempts, row.error) for row in rows if row.status != "sent"] == [
        ("dead", 2, "RuntimeError: boom")
    ]
    assert Counter(m.chat_id for m in fake.sent) == Counter(chats[:2] + chats[3:])


@pytest.mark.parametrize("refusal", ["blocked", "gone"])
async def test_a_blocked_or_vanished_chat_is_never_retried_and_its_alerts_end(open_ward, fake, refusal):
    ward = await open_ward()
    await ward.admit("R-1", mobile(1))
    await ward.admit("R-2", mobile(1))
    refusing, other = await ward.follow(mobile(1)), await ward.follow(mobile(1))
    getattr(fake, refusal).add(refusing)
    await ward.update("R-1", **CRITICAL)
    await ward.update("R-2", **CRITICAL)
    ward.run()  # both alerts to the refusing chat in one batch: the second is not even tried
    await ward.settled()

    [(_, status)] = fake.attempts_to(refusing)  # one try, never again
    assert status == {"blocked": 403, "gone": 400}[refusal]
    assert len(fake.messages_to(other)) == 2
    chat = await ward.chat(refusing)
    assert chat.unreachable_at is not None
    async with ward.bot.database.session() as session:
        alerts = (await session.exec(select(Subscription.alerts).where(Subscription.chat_id == chat.id))).all()
    assert alerts == [False, False]
    rows = [row for row in await ward.rows() if row.chat_id == chat.id]
    assert sorted(row.status for row in rows) == ["cancelled", "dead"]
    [dead] = [row for row in rows if row.status == "dead"]
    assert dead.error == {"blocked": "Forbidden: bot was blocked by the user", "gone": "Chat not found"}[refusal]

    await ward.update("R-1", **STABLE)  # later news: the refusing chat is no longer in the outbox
    await ward.settled()
    assert len(fake.attempts_to(refusing)) == 1
    assert len(fake.messages_to(other)) == 3


# --- priority ----------------------------------------------------------------------------------------


async def test_critical_news_goes_ahead_of_routine_news_in_a_queue(open_ward, fake):
    ward = await open_ward(pacing={"messages_per_second": 2})  # a queue forms at once
    for n in range(6):
        await ward.admit(f"R-{n}", mobile(n))
        await ward.follow(mobile(n))
    for n in range(4):  # routine news first...
        await ward.update(f"R-{n}", **MODERATE)
    for n in (4, 5):  # ...then critical news, behind it in the outbox
        await ward.update(f"R-{n}", **CRITICAL)

    # Within one claimed batch: the pacer lets critical news go first (2 places a second).
    await ward.dispatcher(batch_size=10).dispatch_once()
    assert sorted(about(m) for m in fake.sent[:2]) == ["Patient R-4", "Patient R-5"]
    assert sorted(about(m) for m in fake.sent[2:]) == [f"Patient R-{n}" for n in range(4)]

    # Across batches: critical news committed after routine news is claimed before it.
    seen = len(fake.sent)
    for n in range(4):
        await ward.update(f"R-{n}", **STABLE)
    small = ward.dispatcher(batch_size=1)
    await small.dispatch_once()
    await ward.update("R-5", **STABLE)  # critical → stable is routine
    await ward.update("R-4", **{**CRITICAL, "care_area": "hdu"})
    await small.dispatch_once()
    assert [about(m) for m in fake.sent[seen:]] == ["Patient R-0", "Patient R-4"]
    await ward.dispatcher().dispatch_once()
    await ward.assert_each_alert_once()


# --- crashes and a second process ------------------------------------------------------------------


async def test_a_dispatcher_killed_mid_batch_loses_nothing_and_repeats_at_most_one_chunk(open_ward, fake):
    """Duplicate window: the alerts of the one chunk that was being sent when the process died,
    at most CHUNK (25), sent again after the claim lapses. Nothing is lost."""
    ward = await open_ward(notifications={"claim_seconds": 3})
    chats = []
    for n in range(70):
        await ward.admit(f"R-{n}", mobile(n))
        chats.append(await ward.follow(mobile(n)))
    for n in range(70):
        await ward.update(f"R-{n}", **CRITICAL)

    crashed = ward.run()
    await until(lambda: len(fake.sent) >= CHUNK + 5, "the second chunk to start")
    crashed.cancel()  # killed mid-chunk: some of it sent, none of it marked
    await asyncio.gather(crashed, return_exceptions=True)
    received_before = Counter(m.chat_id for m in fake.sent)
    marked_before = {row.chat_id for row in await ward.rows(Notification.status == "sent")}
    assert CHUNK <= len(marked_before) < len(received_before)

    ward.run(ward.dispatcher(claim_seconds=3))  # the restarted process
    await ward.settled(timeout=30)

    rows = await ward.rows()
    assert {row.status for row in rows} == {"sent"}  # nothing lost
    received = Counter(m.chat_id for m in fake.sent)
    assert set(received) == set(chats) and len(rows) == 70
    repeated = {chat for chat, count in received.items() if count > 1}
    assert all(received[chat] == 2 for chat in repeated)
    async with ward.bot.database.session() as session:
        keys = dict((await session.exec(select(Chat.id, Chat.chat_key))).all())
    in_flight = {int(keys[chat_id]) for chat_id in set(keys) - marked_before} & set(received_before)
    assert repeated <= in_flight  # only what was sent and not yet marked when it died
    assert 1 <= len(repeated) <= CHUNK


async def test_a_pause_longer_than_the_claim_does_not_let_another_process_send_twice(open_ward, fake):
    """A 429 pauses this process longer than its claim on the alerts queued behind it: it gives
    them up rather than send them after another process claimed them."""
    settings = {"notifications": {"claim_seconds": 3}, "pacing": {"messages_per_second": 2}}
    first, second = await open_ward(**settings), await open_ward(**settings)  # two processes
    chats = []
    for n in range(6):
        await first.admit(f"R-{n}", mobile(n))
        chats.append(await first.follow(mobile(n)))
    for n in range(6):
        await first.update(f"R-{n}", **CRITICAL)
    fake.fail_next(chats[0], 429, retry_after=4)
    first.run()
    await until(lambda: bool(fake.throttled), "the 429")
    second.run()
    await first.settled(timeout=30)

    assert Counter(m.chat_id for m in fake.sent) == Counter(chats)  # each once
    assert fake.too_many_requests == 1
    await first.assert_each_alert_once()


@pytest.mark.skipif(not __import__("os").environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
async def test_two_dispatchers_on_one_postgresql_never_send_a_row_twice(open_ward, fake, services):
    if not services.database.is_postgresql:
        pytest.skip("two processes share the outbox only on PostgreSQL")
    ward = await open_ward(notifications={"batch_size": 3})
    for n in range(60):
        await ward.admit(f"R-{n}", mobile(n))
        await ward.follow(mobile(n))
    for n in range(60):
        await ward.update(f"R-{n}", **MODERATE)
    first, second = ward.bot.dispatcher, ward.dispatcher(batch_size=3)
    sent_by: dict[str, int] = Counter()
    for dispatcher in (first, second):
        original = dispatcher._send

        async def counted(result, send_before, original=original, name=dispatcher.name):
            outcome = await original(result, send_before)
            sent_by[name] += outcome.outcome == "sent"
            return outcome

        dispatcher._send = counted
    ward.run(first)
    ward.run(second)
    for n in range(0, 60, 2):  # and more while both run
        await ward.update(f"R-{n}", **CRITICAL)
    await ward.settled()
    assert sent_by[first.name] > 0 and sent_by[second.name] > 0  # both took part
    await ward.assert_each_alert_once()
    assert sum(sent_by.values()) == len(fake.sent)


# --- waking up ---------------------------------------------------------------------------------------


async def test_a_change_committed_here_is_sent_at_once_not_at_the_next_look(open_ward, fake, monkeypatch):
    """With grace 0, the commit wakes the dispatcher: the alert is out although the dispatcher
    would look by itself only every hour here (also when the commit lands while a pass that
    found nothing is ending)."""
    monkeypatch.setattr(dispatcher_module, "IDLE_LOOK_SECONDS", 3600.0)
    ward = await open_ward()
    await ward.admit("R-1", mobile(1))
    chat = await ward.follow(mobile(1))
    passes = Passes(ward.bot.dispatcher)
    ward.run()
    await passes.until(lambda: ("idle", 3600.0) in passes.log, "the dispatcher to go to sleep for an hour")

    await ward.update("R-1", **CRITICAL)
    [alert] = await fake.wait_messages(chat, 1)
    assert shown_condition(alert) == "Critical"

    # A commit between a pass's empty claim and its going to sleep still wakes it.
    claim = ward.bot.dispatcher._claim
    committed_during_pass: list[bool] = []

    async def claim_then_commit():
        groups = await claim()
        if not groups and not committed_during_pass:
            committed_during_pass.append(True)
            await ward.update("R-1", **STABLE)
        return groups

    ward.bot.dispatcher._claim = claim_then_commit
    ward.bot.dispatcher.wake()
    [_, alert] = await fake.wait_messages(chat, 2)
    assert committed_during_pass and shown_condition(alert) == "Stable"
    await ward.settled()
    await ward.assert_each_alert_once()


async def test_a_database_hiccup_does_not_stop_the_dispatcher(open_ward, fake):
    ward = await open_ward()
    ward.expected_errors.append("dispatcher pass failed")
    await ward.admit("R-1", mobile(1))
    chat = await ward.follow(mobile(1))
    idle = ward.bot.dispatcher._idle_seconds
    hiccups: list[float] = []

    async def flaky() -> float:
        if not hiccups:
            hiccups.append(time.monotonic())
            raise OperationalError("SELECT min(created_at) ...", {}, ConnectionError("the database is restarting"))
        return await idle()

    ward.bot.dispatcher._idle_seconds = flaky
    running = ward.run()
    await until(lambda: bool(hiccups), "the hiccup")
    await ward.update("R-1", **CRITICAL)
    await fake.wait_messages(chat, 1)
    assert not running.done()
    await ward.settled()
    await ward.assert_each_alert_once()


# --- the whole way, through the conversation -----------------------------------------------------------


async def test_a_relative_verified_on_telegram_hears_of_a_change_by_itself(open_ward, fake):
    ward = await open_ward(polling=True)
    await ward.admit("R-1", mobile(1))
    user = fake.user()
    ward.run()

    await fake.push(fake.updates.command(user, "/start"))
    await fake.wait_messages(user.id, 1)
    await fake.push(fake.updates.text(user, "98300 00001"))
    await fake.wait_messages(user.id, 2)
    await ward.bot.background.drain()
    [sms] = ward.twilio.messages_to(mobile(1))
    code = CODE.search(sms.body).group(1)
    await fake.push(fake.updates.text(user, code))
    replies = await fake.wait_messages(user.id, 4)
    confirmation, card = replies[2:]
    assert "confirmed" in confirmation.plain and "Patient R-1" in card.plain

    await ward.update("R-1", **CRITICAL)  # the hospital's change; the relative asks nothing
    alert = (await fake.wait_messages(user.id, 5))[4]
    assert alert.plain.startswith(
        "🔔 Update on Patient R-1: Critical, moved to ICU (intensive care unit), now on oxygen"
    )
    assert shown_condition(alert) == "Critical"
    await ward.settled()
    await ward.assert_each_alert_once(replies)
    assert fake.rejected == []


# --- the sender and the fake ------------------------------------------------------------------------


async def test_the_telegram_sender_tells_the_dispatcher_what_telegram_said(open_ward, fake):
    ward = await open_ward()
    sender = ward.sender
    user = fake.user()
    fake.known_chats.add(user.id)
    reply = Reply((Span("Update", bold=True), Span(" on R-1")))

    def alert(chat_id: int) -> Alert:
        return Alert(str(chat_id), reply, "update", "en", {})

    fake.fail_next(user.id, 429, retry_after=7)
    with pytest.raises(RetryLater) as slow_down:
        await sender.send(alert(user.id))
    assert slow_down.value.seconds == 7
    assert [status for _, status in fake.attempts_to(user.id)] == [429]  # told at once, not retried inside PTB
    for code, failure in (
        (500, TemporaryFailure),
        (502, TemporaryFailure),
        (403, PermanentFailure),
        (400, PermanentFailure),
    ):
        fake.fail_next(user.id, code)
        with pytest.raises(failure):
            await sender.send(alert(user.id))
    with pytest.raises(PermanentFailure):
        await sender.send(alert(fake.user().id))  # never wrote to the bot: "chat not found"
    await sender.send(alert(user.id))
    [message] = fake.sent
    assert (message.chat_id, message.plain, message.bold) == (user.id, "Update on R-1", ("Update",))


async def test_the_fake_refuses_like_telegram(fake):
    async with httpx.AsyncClient(base_url=f"{fake.url}/bot{TOKEN}") as http:

        async def send(chat_id: int) -> httpx.Response:
            return await http.post("/sendMessage", data={"chat_id": str(chat_id), "text": "hello"})

        users = [fake.user().id for _ in range(32)]
        fake.known_chats.update(users)
        moment = 1000.0
        fake.clock = lambda: moment  # the fake's windows move only when this test says
        fake.limits = True
        assert (await send(users[0])).status_code == 200
        refused = await send(users[0])  # a second message to one chat within a second
        assert refused.status_code == 429
        assert refused.json() == {
            "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }  # fmt: skip
        accepted = await asyncio.gather(*(send(user) for user in users[1:30]))
        assert {response.status_code for response in accepted} == {200}
        assert (await send(users[30])).status_code == 429  # the 31st within a second
        assert [why for _, _, why in fake.throttled] == ["chat", "overall"]
        moment += 1.0  # a second later: room again
        assert (await send(users[30])).status_code == 200

        fake.limits = False
        fake.blocked.add(users[1])
        fake.gone.add(users[2])
        blocked, gone = await send(users[1]), await send(users[2])
        assert (blocked.status_code, blocked.json()["description"]) == (403, "Forbidden: bot was blocked by the user")
        assert (gone.status_code, gone.json()["description"]) == (400, "Bad Request: chat not found")

        fake.error_rate = 0.5
        statuses = [(await send(users[3])).status_code for _ in range(40)]
        assert set(statuses) == {200, 500} and 8 <= statuses.count(500) <= 32
        assert fake.too_many_requests == 2
        assert len(fake.sent) == 31 + statuses.count(200)
