"""Replies benchmark: how soon relatives are answered, at 20, 60 and 120 incoming messages a second.

    .venv/bin/python -m bench --only replies [--no-postgresql] [--rates 20 60 120] [--seconds 20]
                                             [--surge-relatives 2000] [--surge-seconds 60]

The bots run in child processes and talk to the fake Bot API of tests/fakes/telegram.py and the
fake Twilio of tests/fakes/twilio.py, both served by this process on 127.0.0.1:
  ours      `python -m bot run` (long polling), on a database seeded with 5 hospitals and 3,000
            admissions with a first condition each (bench/admissions.py), `pacing.telegram` and
            `otp.max_sends_per_hour` lifted, the codes by SMS through the fake Twilio.
  minimal   `python -m bench.minimal_bot`: python-telegram-bot's ConversationHandler, its state
            in memory, no database, answering as ours does (bench/minimal_bot.py).
New relatives arrive at a steady rate (a third of the message rate), each sending /start, then a
registered number (each its own admission), then the code read from the fake Twilio's SMS, each
message once the previous one is answered; `--seconds` (20) of arrivals per rate, for both bots.
A reply's latency runs from the update being handed to the bot (the fake's getUpdates answer, or
the start of the webhook POST) to the reply's sendMessage reaching the fake; a message without
its reply 10 s after it was sent is never answered (and its relative goes no further).
Targets, for ours at each rate: p95 at most 2x the minimal bot's p95 at that rate, none
unanswered, peak RSS under 300 MB. Each row also gives the bot processes' CPU time while the load
ran, per message answered: it varies far less with what else runs on the machine than latency.

  two web   on PostgreSQL: two `python -m bot web` processes in webhook mode, each chat's updates
            POSTed to one of them by its id (as a load balancer hashing on it would), at 120/s
            (`--web-rate`): the same targets, and no message answered twice.
  surge     `--surge-relatives` (2,000) verified chats (seeded directly) each send /status within
            `--surge-seconds` (60), to `python -m bot run` with config.yaml's pacing, against the
            fake enforcing Telegram's limits (30/s overall, 1/s per chat, 429 with retry_after):
            every /status answered, at >= 95 % of 30/s, not one 429.

PostgreSQL: as the other benchmarks (BENCH_DATABASE_URL), in `wardwatch_bench_replies`, dropped
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from sqlalchemy import insert
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.admissions import HOSPITALS, hospital_code, hospital_name, patient
from bench.common import (
    PROJECT_ROOT,
    child_env,
    log_tail,
    postgresql_database,
    print_rows,
    progress,
    seed_admissions,
    server_url,
    sqlite_database,
)
from bot.app import Services
from bot.platform import db
from bot.platform.settings import load_settings
from models.chat import Chat, Subscription, Verification
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio

TOKEN = "7000002:bench-replies"
DATABASE = "wardwatch_bench_replies"
WEBHOOK_PATH = "/webhooks/telegram"
WEBHOOK_SECRET = "bench_replies_webhook_secret"
ADMISSIONS = 3_000
LIFTED = 1_000_000.0  # Telegram messages per second, overall and per chat, when limits are lifted
ANSWERED_WITHIN = 10.0  # seconds
FIRST_RELATIVE = 800_000_001  # Telegram ids of the new relatives
FIRST_SURGE_CHAT = 900_000_001  # Telegram ids of the verified chats of the surge
REPLIES_PER_FLOW = 4  # /start: 1, the number: 1, the code: the confirmation and one card

P95_FACTOR = 2.0  # ours at most this times the minimal bot's p95
PEAK_RSS_MB = 300
SURGE_SHARE = 0.95  # of config.yaml's overall Telegram rate
CODE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")
# Update ids across every fake of a run: the bots handle an update id once (a redelivery), and the
# runs on one database must not look like redeliveries of the runs before.
UPDATE_IDS = itertools.count(1)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--rates", type=int, nargs="+", default=[20, 60, 120], help="incoming messages per second")
    group.add_argument("--seconds", type=float, default=20, help="of new relatives arriving, per rate")
    group.add_argument("--web-rate", type=int, default=120, help="messages per second to two web processes")
    group.add_argument("--surge-relatives", type=int, default=2_000, help="verified chats sending /status")
    group.add_argument("--surge-seconds", type=float, default=60, help="within which they send it")


@dataclass
class Row:
    bot: str
    database: str
    load: str
    messages: int
    latencies: list[float]
    unanswered: int
    replies_per_second: float
    twice: int  # replies beyond those expected
    throttled: int  # 429s given by the fake Bot API
    peak_rss_kb: int
    cpu_seconds: float  # the bot processes' CPU time while the load ran
    target: str = "-"
    problems: list[str] = field(default_factory=list)

    def p(self, share: float) -> float | None:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else None

    @property
    def cpu_ms_per_message(self) -> float | None:
        """The bots' CPU per message answered: steadier than latency on a shared machine."""
        return self.cpu_seconds * 1000 / len(self.latencies) if self.latencies else None


# --- the fakes, taking note of times ------------------------------------------------------------


class BotApi(FakeTelegram):
    """The fake Bot API, noting when each update was handed to a bot and when each reply arrived,
    chat by chat (time.monotonic(), the clock of every process on the machine)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.handed: dict[int, float] = {}
        self.replies: dict[int, list[float]] = defaultdict(list)
        self._waiting: dict[int, asyncio.Event] = {}

    async def _api_getupdates(self, params: dict) -> list[dict]:
        updates = await super()._api_getupdates(params)
        now = time.monotonic()
        for update in updates:
            self.handed.setdefault(update["update_id"], now)
        return updates

    def _accept(self, chat_id: int, params: dict, now: float):
        sent = super()._accept(chat_id, params, now)
        self.replies[chat_id].append(sent.at)
        if event := self._waiting.pop(chat_id, None):
            event.set()
        return sent

    async def wait_replies(self, chat_id: int, count: int, timeout: float) -> bool:
        """Whether the chat has `count` replies within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.replies[chat_id]) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self._waiting.setdefault(chat_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return True


class SmsGateway(FakeTwilio):
    """The fake Twilio, keeping the last code sent to each number."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, str] = {}
        self._read = 0
        self._waiting: dict[str, asyncio.Event] = {}

    async def _messages(self, request: Request) -> JSONResponse:
        response = await super()._messages(request)
        for message in self.messages[self._read :]:
            if found := CODE.search(message.body):
                self.codes[message.to] = found.group(0)
                if event := self._waiting.pop(message.to, None):
                    event.set()
        self._read = len(self.messages)
        return response

    async def wait_code(self, mobile: str, timeout: float) -> str | None:
        if mobile not in self.codes:
            event = self._waiting.setdefault(mobile, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.codes.pop(mobile, None)


@contextlib.asynccontextmanager
async def fakes(limits: bool = False) -> AsyncIterator[tuple[BotApi, SmsGateway]]:
    async with BotApi(TOKEN, limits=limits) as telegram, SmsGateway() as twilio:
        yield telegram, twilio


# --- the database --------------------------------------------------------------------------------


async def seed(url: str, surge_chats: int) -> None:
    """Hospitals and admissions with a first condition; `surge_chats` verified chats, one per
    admission from the last one down, for the surge."""
    await db.upgrade_async(url)
    services = Services.build(load_settings(child_env(url)))
    now = datetime.now(UTC)
    try:
        async with services.database.session() as session:
            hospitals = [(hospital_code(h), hospital_name(h)) for h in range(HOSPITALS)]
            admissions = [patient(i) for i in range(ADMISSIONS)]
            admission_id = await seed_admissions(session, services.settings, hospitals, admissions, now)
            await seed_verified_chats(session, now, surge_chats, admission_id)
            await session.commit()
    finally:
        await services.close()


async def seed_verified_chats(session, now: datetime, count: int, admission_id: dict[str, int]) -> None:
    """Chat FIRST_SURGE_CHAT + k follows admission ADMISSIONS - 1 - k, verified an hour ago."""
    followed = {FIRST_SURGE_CHAT + k: patient(ADMISSIONS - 1 - k % ADMISSIONS) for k in range(count)}
    if not followed:
        return
    await session.exec(
        insert(Chat.__table__),
        params=[
            {
                "channel": "telegram",
                "chat_key": str(key),
                "language": "en",
                "state": "verified",
                "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            for key in followed
        ],
    )
    chat_id = {int(key): id_ for key, id_ in (await session.exec(select(Chat.chat_key, Chat.id))).all()}
    await session.exec(
        insert(Verification.__table__),
        params=[
            {
                "chat_id": chat_id[key],
                "mobile": p.contact_mobile,
                "verified_at": now - timedelta(hours=1),
                "expires_at": now + timedelta(days=29),
            }  # fmt: skip
            for key, p in followed.items()
        ],
    )
    verification_id = dict((await session.exec(select(Verification.chat_id, Verification.id))).all())
    await session.exec(
        insert(Subscription.__table__),
        params=[
            {
                "chat_id": chat_id[key],
                "admission_id": admission_id[p.registration_no],
                "verification_id": verification_id[chat_id[key]],
                "created_at": now,
                "alerts": True,
            }  # fmt: skip
            for key, p in followed.items()
        ],
    )


def write_config(folder: Path, lifted: bool) -> Path:
    """config.yaml with the hourly cap on codes lifted (thousands of new relatives within minutes)
    and, if `lifted`, Telegram's pacing too."""
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    config["otp"]["max_sends_per_hour"] = 1_000_000
    if lifted:
        config["pacing"]["telegram"] = {"messages_per_second": LIFTED, "per_chat_messages_per_second": LIFTED}
    path = folder / f"config-replies-{'lifted' if lifted else 'paced'}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- the bots' processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_env(telegram: BotApi, twilio: SmsGateway) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"{telegram.url}/bot",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_API_BASE_URL": twilio.url,
    }  # fmt: skip


class BotProcess:
    """A bot in a child process, its stderr in a log file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path, port: int | None = None) -> None:
        self.process = process
        self.log = log
        self.port = port
        self.peak_kb = 0  # its peak RSS, once stopped
        self.cpu_at_ready = 0.0  # its CPU time when it was ready for the load (`ready`)
        self.cpu_used = 0.0  # its CPU time from then until it was stopped

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> BotProcess:
        with log.open("wb") as stderr:  # a file: a pipe nobody reads would stall a chatty child
            process = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=PROJECT_ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )  # fmt: skip
        return cls(process, log, port)

    def alive(self) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(f"the bot exited with {self.process.returncode}:\n{log_tail(self.log)}")

    def cpu_seconds(self) -> float:
        """Its user and system CPU time so far (/proc/PID/stat, fields 14 and 15)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def ready(self) -> None:
        """Started and ready: its CPU time from now on is the load's."""
        self.cpu_at_ready = self.cpu_seconds()

    def peak_rss_kb(self) -> int:
        """Its peak RSS so far (VmHWM: the most it held at once)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    async def stop(self) -> None:
        """Stops it as a service manager would (SIGTERM), noting its peak RSS first."""
        self.alive()
        self.peak_kb = self.peak_rss_kb()
        self.cpu_used = self.cpu_seconds() - self.cpu_at_ready
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def kill(self) -> Awaitable:
        """After a failure: at once."""
        if self.process.returncode is None:
            self.process.kill()
        return self.process.wait()

    def logged_errors(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if " ERROR " in line]


async def until(ready: Callable[[], Awaitable[bool]], processes: list[BotProcess], what: str) -> None:
    deadline = time.monotonic() + 60
    while not await ready():
        for process in processes:
            process.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within 60 s:\n{log_tail(processes[0].log)}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def polling_bot(args: list[str], env: dict[str, str], telegram: BotApi, log: Path) -> AsyncIterator[BotProcess]:
    """A bot polling the fake, stopped at the end."""
    bot = await BotProcess.start(args, env, log)
    try:

        async def polls() -> bool:
            return bool(telegram.called("getUpdates"))

        await until(polls, [bot], " ".join(args))
        bot.ready()
        yield bot
        await bot.stop()
    finally:
        await bot.kill()


@contextlib.asynccontextmanager
async def web_bots(count: int, env: dict[str, str], telegram: BotApi, folder: Path) -> AsyncIterator[list[BotProcess]]:
    """`count` `python -m bot web` processes in webhook mode."""
    webhook = {
        "TELEGRAM_WEBHOOK_URL": f"https://bench.invalid{WEBHOOK_PATH}",
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    bots: list[BotProcess] = []
    try:
        for n in range(count):
            port = free_port()
            process_env = {**env, **webhook, "HOST": "127.0.0.1", "PORT": str(port)}
            bots.append(await BotProcess.start(["-m", "bot", "web"], process_env, folder / f"web-{n}.log", port))
        async with httpx.AsyncClient(timeout=5) as client:

            async def serving() -> bool:
                if len(telegram.called("setWebhook")) < count:
                    return False
                for bot in bots:
                    try:
                        if (await client.get(f"http://127.0.0.1:{bot.port}/healthz")).status_code != 200:
                            return False
                    except httpx.TransportError:
                        return False
                return True

            await until(serving, bots, "python -m bot web")
        for bot in bots:
            bot.ready()
        yield bots
    finally:
        for bot in bots:
            await bot.kill()


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Message:
    chat: int
    update_id: int
    reply: int  # the index of its (first) reply among the chat's replies
    at: float  # when the benchmark sent it


Deliver = Callable[[dict], Awaitable[None]]


class Load:
    """Relatives writing to a bot through the fakes; what they sent and how many replies each
    chat should have."""

    def __init__(self, telegram: BotApi, twilio: SmsGateway, deliver: Deliver) -> None:
        self.telegram = telegram
        self.twilio = twilio
        self.deliver = deliver
        self.sent: list[Message] = []
        self.expected: dict[int, int] = {}
        self.problems: list[str] = []

    async def say(self, update: dict, chat: int, replies: int) -> bool:
        """Sends the update, and waits until its replies arrived (False: not within 10 s)."""
        before = self.expected.get(chat, 0)
        update["update_id"] = next(UPDATE_IDS)  # in the order they are delivered: no await before
        self.sent.append(Message(chat, update["update_id"], before, time.monotonic()))
        self.expected[chat] = before + replies
        await self.deliver(update)
        return await self.telegram.wait_replies(chat, before + replies, ANSWERED_WITHIN)

    async def new_relative(self, i: int) -> None:
        """/start, the number of admission `i`, the code from its SMS."""
        user, person = FakeUser(FIRST_RELATIVE + i, "Relative", "en"), patient(i)
        if not await self.say(self.telegram.updates.command(user, "/start"), user.id, 1):
            return
        if not await self.say(self.telegram.updates.text(user, person.typed_mobile), user.id, 1):
            return
        code = await self.twilio.wait_code(person.contact_mobile, ANSWERED_WITHIN)
        if code is None:
            self.problems.append(f"no SMS with a code to {person.contact_mobile} within {ANSWERED_WITHIN:g} s")
            return
        await self.say(self.telegram.updates.text(user, code), user.id, 2)

    async def verified_relative(self, k: int) -> None:
        user = FakeUser(FIRST_SURGE_CHAT + k, "Relative", "en")
        await self.say(self.telegram.updates.command(user, "/status"), user.id, 1)

    async def steady(self, relatives: range, per_second: float, one: Callable[[int], Awaitable[None]]) -> None:
        """Relatives start at `per_second`, evenly; returns when every one is done."""
        started = time.monotonic()
        flows = []
        for n, i in enumerate(relatives):
            await asyncio.sleep(max(0.0, started + n / per_second - time.monotonic()))
            flows.append(asyncio.create_task(one(i)))
        await asyncio.gather(*flows)
        await asyncio.sleep(0.5)  # a reply sent twice would arrive now

    def row(self, bot: str, database: str, load: str, *processes: BotProcess) -> Row:
        latencies, unanswered = [], 0
        first = None
        for message in self.sent:
            handed = self.telegram.handed.get(message.update_id)
            replies = self.telegram.replies[message.chat]
            answered = replies[message.reply] if len(replies) > message.reply else None
            if handed is None or answered is None or answered - message.at > ANSWERED_WITHIN:
                unanswered += 1
                continue
            latencies.append(answered - handed)
            first = handed if first is None else min(first, handed)
        chats = self.expected.keys()
        replies = sum(len(self.telegram.replies[chat]) for chat in chats)
        last = max((max(self.telegram.replies[chat], default=0.0) for chat in chats), default=0.0)
        twice = sum(max(0, len(self.telegram.replies[chat]) - self.expected[chat]) for chat in chats)
        return Row(
            bot=bot, database=database, load=load, messages=len(self.sent), latencies=latencies,
            unanswered=unanswered, replies_per_second=replies / (last - first) if first and last > first else 0.0,
            twice=twice, throttled=self.telegram.too_many_requests,
            peak_rss_kb=max(process.peak_kb for process in processes),
            cpu_seconds=sum(process.cpu_used for process in processes),
            problems=self.problems + self.refusals(*processes),
        )  # fmt: skip

    def refusals(self, *processes: BotProcess) -> list[str]:
        """The fake's refusals other than 429 (bad HTML, an unknown chat), and errors logged."""
        problems = []
        if refused := [d for _m, _p, d in self.telegram.rejected if "Too Many Requests" not in d]:
            problems.append(f"the fake Bot API refused {len(refused)} calls, first: {refused[0]}")
        if errors := [line for process in processes for line in process.logged_errors()]:
            problems.append(f"{len(errors)} errors logged, first: {errors[0][:300]}")
        return problems


def relatives_for(rate: float, seconds: float, first: int) -> range:
    return range(first, first + round(rate * seconds / 3))


# --- the runs ---------------------------------------------------------------------------------


async def minimal_at(rate: float, seconds: float, folder: Path) -> Row:
    async with fakes() as (telegram, twilio):
        env = {**os.environ, **fake_env(telegram, twilio), "BENCH_ADMISSIONS": str(ADMISSIONS)}
        load = Load(telegram, twilio, telegram.push)
        async with polling_bot(["-m", "bench.minimal_bot"], env, telegram, folder / f"minimal-{rate}.log") as bot:
            await load.steady(relatives_for(rate, seconds, 0), rate / 3, load.new_relative)
    return load.row("minimal", "(memory)", f"{rate:g}/s for {seconds:g} s", bot)


async def ours_at(url: str, database: str, rate: float, seconds: float, first: int, folder: Path) -> Row:
    async with fakes() as (telegram, twilio):
        env = child_env(url, BOT_CONFIG=str(write_config(folder, lifted=True)), **fake_env(telegram, twilio))
        env.update(HOST="127.0.0.1", PORT=str(free_port()))
        load = Load(telegram, twilio, telegram.push)
        log = folder / f"ours-{database}-{rate}.log"
        async with polling_bot(["-m", "bot", "run"], env, telegram, log) as bot:
            await load.steady(relatives_for(rate, seconds, first), rate / 3, load.new_relative)
    return load.row("ours, polling", database, f"{rate:g}/s for {seconds:g} s", bot)


async def two_web_at(url: str, rate: float, seconds: float, first: int, folder: Path) -> Row:
    async with fakes() as (telegram, twilio):
        env = child_env(url, BOT_CONFIG=str(write_config(folder, lifted=True)), **fake_env(telegram, twilio))
        async with web_bots(2, env, telegram, folder) as bots, httpx.AsyncClient(timeout=30) as client:

            async def post(update: dict) -> None:
                chat = (update.get("message") or {}).get("chat", {}).get("id", 0)
                bot = bots[chat % len(bots)]
                telegram.handed.setdefault(update["update_id"], time.monotonic())
                response = await client.post(
                    f"http://127.0.0.1:{bot.port}{WEBHOOK_PATH}", json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
                )  # fmt: skip
                if response.status_code != 200:
                    load.problems.append(f"webhook answered {response.status_code}")

            load = Load(telegram, twilio, post)
            await load.steady(relatives_for(rate, seconds, first), rate / 3, load.new_relative)
            for bot in bots:
                await bot.stop()
    return load.row("ours, 2 web processes", "PostgreSQL", f"{rate:g}/s for {seconds:g} s, webhooks", *bots)


async def surge(url: str, database: str, relatives: int, seconds: float, folder: Path) -> Row:
    async with fakes(limits=True) as (telegram, twilio):
        env = child_env(url, BOT_CONFIG=str(write_config(folder, lifted=False)), **fake_env(telegram, twilio))
        env.update(HOST="127.0.0.1", PORT=str(free_port()))
        load = Load(telegram, twilio, telegram.push)
        log = folder / f"surge-{database}.log"
        async with polling_bot(["-m", "bot", "run"], env, telegram, log) as bot:
            await load.steady(range(relatives), relatives / seconds, load.verified_relative)
    row = load.row("ours, surge", database, f"{relatives:,} × /status in {seconds:g} s, Telegram's limits", bot)
    pacing = load_settings(child_env(url, BOT_CONFIG=str(write_config(folder, lifted=False)))).config.pacing.telegram
    floor = SURGE_SHARE * pacing.messages_per_second
    met = row.unanswered == 0 and row.twice == 0 and row.throttled == 0 and row.replies_per_second >= floor
    row.target = f"{'PASS' if met and not row.problems else 'MISS'} (all answered, >= {floor:g}/s, no 429)"
    return row


def judge(row: Row, minimal: Row | None) -> None:
    """Ours against the minimal bot at the same rate."""
    if minimal is None or minimal.p(0.95) is None or row.p(0.95) is None:
        row.target = "MISS (nothing to compare)"
        return
    ceiling = P95_FACTOR * minimal.p(0.95)
    met = row.p(0.95) <= ceiling and row.unanswered == 0 and row.twice == 0 and row.peak_rss_kb < PEAK_RSS_MB * 1024
    verdict = "PASS" if met and not row.problems else "MISS"
    row.target = f"{verdict} (p95 <= {ceiling * 1000:.0f} ms, all answered once, < {PEAK_RSS_MB} MB)"


async def bench_backend(
    backend: str, url: str, folder: Path, args: argparse.Namespace, minimal: dict[int, Row], notes: list[str]
) -> list[Row]:
    """Each rate, then (on PostgreSQL) the two web processes, then the surge, on one database:
    each rate's relatives have admissions of their own. A failed run is noted, the next one runs."""
    progress(f"{backend} replies: seeding {ADMISSIONS:,} admissions, {args.surge_relatives:,} verified chats")
    await seed(url, args.surge_relatives)
    runs: list[tuple[str, float | None, Callable[[int], Awaitable[Row]]]] = [
        (f"ours at {rate}/s", rate, lambda first, rate=rate: ours_at(url, backend, rate, args.seconds, first, folder))
        for rate in args.rates
    ]
    if backend == "PostgreSQL":
        runs.append((
            f"two web processes at {args.web_rate}/s", args.web_rate,
            lambda first: two_web_at(url, args.web_rate, args.seconds, first, folder),
        ))  # fmt: skip
    runs.append((
        f"surge of {args.surge_relatives:,} /status", None,
        lambda _first: surge(url, backend, args.surge_relatives, args.surge_seconds, folder),
    ))  # fmt: skip
    rows, first = [], 0
    for name, rate, measure in runs:
        progress(f"{backend} replies: {name}")
        relatives = len(relatives_for(rate, args.seconds, first)) if rate else 0
        if first + relatives > ADMISSIONS:
            notes.append(f"{backend} {name} skipped: more relatives than the {ADMISSIONS:,} admissions seeded")
            continue
        try:
            row = await measure(first)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next one
            notes.append(f"{backend} {name} failed: {type(exc).__name__}: {exc}")
            continue
        finally:
            first += relatives
        if rate:
            judge(row, minimal.get(int(rate)))
        rows.append(row)
    return rows


def print_table(rows: list[Row], notes: list[str]) -> None:
    def ms(value: float | None) -> str:
        return f"{value * 1000:,.0f}" if value is not None else "-"

    header = ("bot", "database", "load", "messages", "p50 ms", "p95 ms", "max ms", "replies/s", "unanswered",
              "twice", "429", "peak RSS", "CPU ms/msg", "target")  # fmt: skip
    print_rows(
        header,
        [
            (
                r.bot,
                r.database,
                r.load,
                f"{r.messages:,}",
                ms(statistics.median(r.latencies) if r.latencies else None),
                ms(r.p(0.95)),
                ms(max(r.latencies, default=None)),
                f"{r.replies_per_second:,.1f}",
                f"{r.unanswered:,}",
                f"{r.twice:,}",
                f"{r.throttled:,}",
                f"{r.peak_rss_kb / 1024:.0f} MB",
                f"{r.cpu_ms_per_message:.2f}" if r.cpu_ms_per_message is not None else "-",
                r.target,
            )  # fmt: skip
            for r in rows
        ],
    )
    notes.append(
        "latency: from the update handed to the bot (getUpdates answer, webhook POST) to its first reply "
        f"at the fake Bot API; unanswered: no reply within {ANSWERED_WITHIN:g} s; peak RSS: the bot's process "
        "(of two, the larger); CPU ms/msg: the bot processes' CPU time while the load ran, per message answered; "
        "the fakes run in the benchmark's own process"
    )
    for r in rows:
        for problem in r.problems:
            notes.append(f"{r.bot} on {r.database}, {r.load}: {problem}")
    for note in notes:
        print(f"note: {note}")


async def run(
    args: argparse.Namespace,
    backends_to_run: Callable[[argparse.Namespace, list[str]], Awaitable[list[str]]],
    load_note: str,
) -> bool:
    """Print the table; True when every target was met."""
    notes = [load_note]
    backends = await backends_to_run(args, notes)
    rows: list[Row] = []
    minimal: dict[int, Row] = {}
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-replies-") as folder:
        folder = Path(folder)
        for rate in sorted({*args.rates, args.web_rate} if "PostgreSQL" in backends else set(args.rates)):
            progress(f"replies: the minimal bot at {rate}/s")
            try:
                minimal[rate] = await minimal_at(rate, args.seconds, folder)
                rows.append(minimal[rate])
            except Exception as exc:  # noqa: BLE001 - report and go on with the next one
                notes.append(f"the minimal bot at {rate}/s failed: {type(exc).__name__}: {exc}")
        for backend in backends:
            database = (
                sqlite_database(folder, "replies")
                if backend == "SQLite"
                else postgresql_database(server_url(), DATABASE)
            )
            try:
                async with database as url:
                    rows.extend(await bench_backend(backend, url, folder, args, minimal, notes))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next one
                notes.append(f"{backend} replies failed: {type(exc).__name__}: {exc}")
    print_table(rows, notes)
    ours = [r for r in rows if r.bot != "minimal"]
    return bool(ours) and all(r.target.startswith("PASS") for r in ours)
