"""Dispatch benchmark: how fast alerts leave, how soon after a change, and in how much memory.

    .venv/bin/python -m bench --only dispatch [--no-postgresql] [--paced-window N] [--latency-updates N]

The backlog, built once per database: 5 hospitals, 5,000 admissions with a first condition each,
and 10,000 verified Telegram chats, two per admission (written directly, in bulk). Then the
10,000 condition updates go in as production records them: two rounds of CSV imports
(`bot.intake.csv_import`, one file per hospital and round), which add 20,000 outbox rows in the same
transactions. Each chat hears once: its two pending changes become one alert with the latest state
(the dispatcher merges the rows of one chat and admission), so the backlog is 10,000 messages.

The dispatcher runs in a child process (`python -m bench.worker dispatch`): the real
`Services.dispatcher` with the Telegram sender of `build_telegram` (python-telegram-bot with its
AIORateLimiter), logging as `python -m bot worker` logs, `notifications.grace_seconds` 0. It sends
to the fake Bot API of `tests.fakes.telegram`, served by this process on 127.0.0.1, which timestamps
each message as it arrives (to a few milliseconds: it is polled).

  paced     config.yaml's pacing (Telegram: 30 messages/s overall, 1/s per chat) on a copy of the
            backlog, until the first `--paced-window` messages (1,500: about 50 s) have arrived; the
            fake Bot API answers 429 beyond 30 messages in any second or 1 to a chat, as Telegram
            does. Target: at least 95 % of 30/s, and not one 429.
  lifted    `pacing.telegram` set to 1,000,000/s, the whole backlog (at most `--lifted-seconds`,
            60: past that, the rate so far). Target: at most 1 ms of the dispatcher's CPU per
            alert sent, that is 1,000 alerts/s per core. Not the rate itself: on a 2-core machine
            the fake Bot API, on the other core, answers at most about 1,150 requests a second.
  latency   config.yaml's pacing, on a copy of the database taken before the updates (nothing
            queued): `--latency-updates` single updates (200), each recorded in the dispatcher's
            process as the hospital API of `python -m bot run` records it, 50-150 ms apart; from
            its commit to the fake Bot API receiving each of its two messages. Target: p95 < 2 s.
Each row gives the dispatcher process's CPU time per message and its peak RSS.

PostgreSQL: as the ingestion benchmark (BENCH_DATABASE_URL), in `wardwatch_bench_dispatch` and
two copies of it (`..._idle` before the updates, `..._paced` after them), all dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import func, insert
from sqlalchemy.engine import make_url
from sqlmodel import select
from starlette.requests import ClientDisconnect

from bench.admissions import Seeded
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
from bot.platform.phones import normalise_mobile
from bot.platform.settings import load_settings
from models.chat import Chat, Notification, Subscription, Verification
from models.enums import NotificationStatus
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM

TOKEN = "7000001:bench-dispatch"
# A Telegram bot needs an SMS provider for its codes (bot/platform/settings.py). The dispatcher
# sends none: an address where nothing answers keeps any code from leaving the machine.
CODES_BY_SMS = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_SMS_FROM": SMS_FROM,
    "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
}  # fmt: skip
DATABASE = "wardwatch_bench_dispatch"
HOSPITALS = 5
ADMISSIONS = 5_000
CHATS_PER_ADMISSION = 2
ROUNDS = 2  # condition updates per admission: ADMISSIONS * ROUNDS = 10,000
FIRST_CHAT = 500_000_001  # Telegram ids of the relatives' chats
LIFTED = 1_000_000.0  # messages per second, overall and per chat, when limits are lifted

PACED_SHARE = 0.95  # of config.yaml's overall Telegram rate
LIFTED_CPU_MS = 1.0  # the dispatcher's CPU per alert sent, at most
LATENCY_TARGET = 2.0  # seconds, p95

CONDITIONS = ("stable", "moderate", "critical")
CARE_AREAS = ("ward", "hdu", "icu", "ccu")
SUPPORTS = ("none", "oxygen", "hfnc", "niv", "ventilator")
LANGUAGES = ("en", "bn", "hi")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--paced-window", type=int, default=1_500, help="messages measured at the real pace")
    group.add_argument("--lifted-seconds", type=float, default=60, help="at most this long with limits lifted")
    group.add_argument("--latency-updates", type=int, default=200, help="single updates timed on an idle system")


@dataclass
class Row:
    database: str
    measure: str
    work: str
    seconds: float
    result: str
    cpu_ms: float | None  # the dispatcher process's CPU time per message
    peak_rss_kb: int
    target: str
    problems: list[str] = field(default_factory=list)


# --- the backlog ---------------------------------------------------------------------------------


def hospital_code(h: int) -> str:
    return f"BD{h + 1}"


def registration_no(i: int) -> str:
    return f"D{i:05d}"


def contact_mobile(i: int) -> str:
    return normalise_mobile(f"+91 90001 {i:05d}", "IN")


def chat_ids(i: int) -> list[int]:
    """The Telegram chats that follow admission `i`."""
    return [FIRST_CHAT + i * CHATS_PER_ADMISSION + k for k in range(CHATS_PER_ADMISSION)]


def state(i: int, round_: int) -> tuple[str, str, str]:
    """Condition, care area and support of admission `i` after round `round_` (0: the first one);
    each round changes all three."""
    return CONDITIONS[(i + round_) % 3], CARE_AREAS[(i + round_) % 4], SUPPORTS[(i + round_) % 5]


@dataclass
class Backlog:
    outbox_rows: int
    messages: int  # what the chats should receive: one alert per chat and admission


def backlog_services(url: str) -> Services:
    return Services.build(load_settings(child_env(url)))


async def seed_people(url: str) -> None:
    """Hospitals, admissions with a first condition, chats, verifications and subscriptions, in
    bulk: no outbox rows."""
    await db.upgrade_async(url)
    services = backlog_services(url)
    now = datetime.now(UTC)
    try:
        async with services.database.session() as session:
            hospitals = [(hospital_code(h), f"Dispatch Bench Hospital {h + 1}") for h in range(HOSPITALS)]
            admissions = [
                Seeded(
                    registration_no(i),
                    f"Bench Patient {i}",
                    contact_mobile(i),
                    i % HOSPITALS,
                    f"Ward {i % 12 + 1}",
                    str(i % 40 + 1),
                    *state(i, 0),
                    spo2=90 + i % 10,
                    pulse=60 + i % 60,
                    age=20 + i % 70,
                    sex="MF"[i % 2],
                )
                for i in range(ADMISSIONS)
            ]
            admission_id = await seed_admissions(session, services.settings, hospitals, admissions, now)
            await session.exec(
                insert(Chat.__table__),
                params=[
                    {
                        "channel": "telegram",
                        "chat_key": str(key),
                        "language": LANGUAGES[key % 3],
                        "state": "verified",
                        "created_at": now,
                        "updated_at": now,
                    }  # fmt: skip
                    for i in range(ADMISSIONS)
                    for key in chat_ids(i)
                ],
            )
            chat_id = {int(key): id_ for key, id_ in (await session.exec(select(Chat.chat_key, Chat.id))).all()}
            await session.exec(
                insert(Verification.__table__),
                params=[
                    {
                        "chat_id": chat_id[key],
                        "mobile": contact_mobile(i),
                        "verified_at": now - timedelta(hours=1),
                        "expires_at": now + timedelta(days=29),
                    }
                    for i in range(ADMISSIONS)
                    for key in chat_ids(i)
                ],
            )
            verification_id = dict((await session.exec(select(Verification.chat_id, Verification.id))).all())
            await session.exec(
                insert(Subscription.__table__),
                params=[
                    {
                        "chat_id": chat_id[key],
                        "admission_id": admission_id[registration_no(i)],
                        "verification_id": verification_id[chat_id[key]],
                        "created_at": now,
                        "alerts": True,
                    }
                    for i in range(ADMISSIONS)
                    for key in chat_ids(i)
                ],
            )
            await session.commit()
    finally:
        await services.close()


async def seed_updates(url: str, folder: Path) -> Backlog:
    """The condition updates, through the CSV import, which writes the outbox rows."""
    services = backlog_services(url)
    now = datetime.now(UTC)
    try:
        zone = ZoneInfo(services.settings.config.hospital_time_zone)
        for round_ in range(1, ROUNDS + 1):
            recorded = (now - timedelta(hours=3 - round_)).astimezone(zone).replace(tzinfo=None)
            for h in range(HOSPITALS):
                path = folder / f"round{round_}-{hospital_code(h)}.csv"
                write_round(path, round_, h, recorded)
                async with services.database.session() as session:
                    report = await services.import_csv(session, path, hospital_code(h))
                if not report.ok:
                    raise RuntimeError(f"import of {path.name} failed: {report.summary()}")

        async with services.database.session() as session:
            rows = (await session.exec(select(func.count()).select_from(Notification))).one()
    finally:
        await services.close()
    expected = ADMISSIONS * ROUNDS * CHATS_PER_ADMISSION
    if rows != expected:
        raise RuntimeError(f"the imports wrote {rows:,} outbox rows, expected {expected:,}")
    return Backlog(outbox_rows=rows, messages=ADMISSIONS * CHATS_PER_ADMISSION)


def write_round(path: Path, round_: int, h: int, recorded: datetime) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        out = csv.writer(file)
        out.writerow([
            "registration_no", "patient_name", "contact_mobile", "condition", "care_area",
            "respiratory_support", "spo2", "pulse", "recorded_at",
        ])  # fmt: skip
        for i in range(h, ADMISSIONS, HOSPITALS):
            condition, area, support = state(i, round_)
            out.writerow([
                registration_no(i), f"Bench Patient {i}", contact_mobile(i), condition, area, support,
                88 + (i + round_) % 12, 60 + (i + round_) % 60, recorded.isoformat(timespec="minutes"),
            ])  # fmt: skip


@contextlib.asynccontextmanager
async def database_copy(backend: str, url: str, folder: Path, name: str) -> AsyncIterator[str]:
    """A copy of the database as it is now (nobody may be connected to it), dropped afterwards."""
    if backend == "SQLite":
        source = make_url(url).database
        target = folder / f"dispatch-{name}.sqlite3"
        with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        try:
            yield f"sqlite+aiosqlite:///{target}"
        finally:
            target.unlink(missing_ok=True)
    else:
        async with postgresql_database(server_url(), f"{DATABASE}_{name}", template=DATABASE) as copy:
            yield copy


async def pending_rows(url: str) -> int:
    database = db.Database(url)
    try:
        async with database.session() as session:
            pending = Notification.status == NotificationStatus.PENDING
            return (await session.exec(select(func.count()).select_from(Notification).where(pending))).one()
    finally:
        await database.dispose()


# --- the fake Bot API, and what arrives there --------------------------------------------------


def enforces_limits() -> bool:
    """Whether this version of the fake Bot API can answer 429 beyond Telegram's limits."""
    return "limits" in getattr(FakeTelegram, "__dataclass_fields__", {})


class _HalfReadRequests(logging.Filter):
    """A dispatcher stopped in the middle of sending (at `--lifted-seconds`) leaves requests the
    fake had begun to read: uvicorn logs each as an error, which is no news here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))


@contextlib.asynccontextmanager
async def fake_bot_api(limits: bool = False) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API; with `limits`, it answers 429 beyond 30 messages in any second overall or
    1 to a chat (config.yaml's pacing must then be Telegram's)."""
    quiet = _HalfReadRequests()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        async with FakeTelegram(TOKEN, **({"limits": True} if limits else {})) as fake:
            for i in range(ADMISSIONS):
                fake.known_chats.update(chat_ids(i))  # the relatives have talked to the bot
            yield fake
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)


class Arrivals:
    """When each message reached the fake Bot API (time.monotonic(), the clock of every process on
    the machine): the time the fake gives it, else the time the list of sent messages, polled
    every 2 ms, showed it."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.times: list[float] = []
        self.by_chat: dict[int, list[float]] = defaultdict(list)
        self._task: asyncio.Task | None = None

    def __enter__(self) -> Arrivals:
        self._task = asyncio.create_task(self._poll())
        return self

    def __exit__(self, *exc_info) -> None:
        self._task.cancel()
        self._look()

    def _look(self) -> None:
        sent = self.fake.sent
        if len(sent) > len(self.times):
            now = time.monotonic()
            for message in sent[len(self.times) :]:
                at = getattr(message, "at", None) or now
                self.times.append(at)
                self.by_chat[message.chat_id].append(at)

    async def _poll(self) -> None:
        while True:
            self._look()
            await asyncio.sleep(0.002)

    async def until(self, done: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(step)
        return True

    def too_many_requests(self) -> int:
        return sum(1 for _method, _params, description in self.fake.rejected if "Too Many Requests" in description)

    def other_refusals(self) -> list[str]:
        return [d for _m, _p, d in self.fake.rejected if "Too Many Requests" not in d]

    def busiest_second(self, count: int | None = None) -> int:
        """The most messages that arrived within any one second."""
        times = sorted(self.times[:count] if count else self.times)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    def duplicates(self) -> int:
        """Messages beyond one per chat."""
        return sum(len(times) - 1 for times in self.by_chat.values() if len(times) > 1)


# --- the dispatcher process --------------------------------------------------------------------


def write_config(folder: Path, name: str, lifted: bool) -> Path:
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    config["notifications"]["grace_seconds"] = 0
    if lifted:
        config["pacing"]["telegram"] = {"messages_per_second": LIFTED, "per_chat_messages_per_second": LIFTED}
    path = folder / f"config-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class DispatcherProcess:
    """`python -m bench.worker dispatch`, spoken to in JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.ready: dict = {}

    @classmethod
    async def start(cls, url: str, config: Path, fake: FakeTelegram, log: Path) -> DispatcherProcess:
        telegram = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"{fake.url}/bot"}
        env = child_env(url, BOT_CONFIG=str(config), **telegram, **CODES_BY_SMS)
        with log.open("wb") as stderr:  # a file: a pipe nobody reads would stall a chatty child
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker", "dispatch", cwd=PROJECT_ROOT, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        dispatcher = cls(process, log)
        dispatcher.ready = (await dispatcher._answer())["ready"]
        return dispatcher

    async def _answer(self) -> dict:
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            await self.process.wait()
            raise RuntimeError(f"bench.worker dispatch exited with {self.process.returncode}:\n{log_tail(self.log)}")
        return json.loads(line)

    async def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        return await self._answer()

    async def stop(self) -> dict:
        """Its CPU time and peak RSS at the end."""
        self.process.stdin.close()
        try:
            final = await self._answer()
        finally:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(self.process.wait(), 30)
        return final

    def logged_errors(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if " ERROR " in line]


@contextlib.asynccontextmanager
async def dispatcher_running(url: str, config: Path, fake: FakeTelegram, log: Path) -> AsyncIterator[DispatcherProcess]:
    dispatcher = await DispatcherProcess.start(url, config, fake, log)
    try:
        yield dispatcher
    finally:
        if dispatcher.process.returncode is None:
            dispatcher.process.kill()
            await dispatcher.process.wait()


# --- the three measurements --------------------------------------------------------------------


def cpu_ms_per_message(before: dict, after: dict, messages: int) -> float | None:
    return (after["cpu_seconds"] - before["cpu_seconds"]) * 1000 / messages if messages else None


async def paced(backend: str, url: str, folder: Path, backlog: Backlog, window: int) -> Row:
    config = write_config(folder, "paced", lifted=False)
    pacing = load_settings(child_env(url, BOT_CONFIG=str(config))).config.pacing.telegram
    rate_limit = pacing.messages_per_second
    window = min(window, backlog.messages)
    log = folder / f"dispatch-paced-{backend}.log"
    limits = enforces_limits()
    async with fake_bot_api(limits) as fake, dispatcher_running(url, config, fake, log) as dispatcher:
        with Arrivals(fake) as arrivals:
            arrived = await arrivals.until(lambda: len(arrivals.times) >= window, window / rate_limit * 1.5 + 30)
            usage = await dispatcher.ask({"usage": True})
            final = await dispatcher.stop()
    problems = check(arrivals, dispatcher)
    if not limits:
        problems.append("this fake Bot API does not answer 429 beyond the limits: no 429 can be seen")
    if not arrived:
        problems.append(f"only {len(arrivals.times):,} of {window:,} messages arrived in time")
    count = min(window, len(arrivals.times))
    end = sorted(arrivals.times)[window - 1] if arrived else usage["at"]
    seconds = end - dispatcher.ready["at"]
    rate = count / seconds
    refused = arrivals.too_many_requests()
    busiest = arrivals.busiest_second(count)
    floor = PACED_SHARE * rate_limit
    verdict = "PASS" if rate >= floor and refused == 0 and not problems else "MISS"
    return Row(
        database=backend,
        measure=f"paced: {rate_limit:g}/s overall, {pacing.per_chat_messages_per_second:g}/s per chat",
        work=f"first {count:,} of {backlog.messages:,} messages",
        seconds=seconds,
        result=f"{rate:.1f} msg/s; {refused} × 429; busiest second: {busiest}",
        cpu_ms=cpu_ms_per_message(dispatcher.ready, usage, count),
        peak_rss_kb=final["peak_rss_kb"],
        target=f"{verdict} (>= {floor:g}/s, no 429)",
        problems=problems,
    )


async def lifted(backend: str, url: str, folder: Path, backlog: Backlog, cap: float) -> Row:
    """The whole backlog, or as much of it as `cap` seconds allow."""
    config = write_config(folder, "lifted", lifted=True)
    log = folder / f"dispatch-lifted-{backend}.log"
    async with fake_bot_api() as fake, dispatcher_running(url, config, fake, log) as dispatcher:
        with Arrivals(fake) as arrivals:
            arrived = await arrivals.until(lambda: len(arrivals.times) >= backlog.messages, cap)
            usage = await dispatcher.ask({"usage": True})
            if arrived:
                await asyncio.sleep(0.5)  # anything sent twice would arrive now
            final = await dispatcher.stop()
    problems = check(arrivals, dispatcher)
    count = len(arrivals.times)
    if arrived:
        if left := await pending_rows(url):
            problems.append(f"{left:,} outbox rows still pending after every message arrived")
        work = f"all {count:,} ({backlog.outbox_rows:,} outbox rows)"
        seconds = max(arrivals.times) - dispatcher.ready["at"]
    else:  # stopped at the cap: the rate so far
        work = f"{count:,} of {backlog.messages:,} (stopped at {cap:g} s)"
        seconds = usage["at"] - dispatcher.ready["at"]
    rate = count / seconds if seconds > 0 else 0.0
    cpu_ms = cpu_ms_per_message(dispatcher.ready, usage, count)
    verdict = "PASS" if cpu_ms is not None and cpu_ms <= LIFTED_CPU_MS and not problems else "MISS"
    per_core = f"; one CPU core: at most {1000 / cpu_ms:,.0f}/s" if cpu_ms else ""
    return Row(
        database=backend,
        measure="limits lifted (pacing 1,000,000/s)",
        work=work,
        seconds=seconds,
        result=f"{rate:,.0f} msg/s{per_core}",
        cpu_ms=cpu_ms,
        peak_rss_kb=final["peak_rss_kb"],
        target=f"{verdict} (CPU <= {LIFTED_CPU_MS:g} ms/alert)",
        problems=problems,
    )


async def latency(backend: str, url: str, folder: Path, updates: int) -> Row:
    """Single updates on an idle system (a database without a backlog)."""
    config = write_config(folder, "latency", lifted=False)
    log = folder / f"dispatch-latency-{backend}.log"
    chooser = random.Random(2020)
    picked = chooser.sample(range(ADMISSIONS), min(updates, ADMISSIONS))
    latencies: list[float] = []
    problems: list[str] = []
    async with fake_bot_api() as fake, dispatcher_running(url, config, fake, log) as dispatcher:
        with Arrivals(fake) as arrivals:
            started = time.monotonic()
            for i in picked:
                condition, area, support = state(i, ROUNDS + 1)
                answer = await dispatcher.ask({
                    "hospital": hospital_code(i % HOSPITALS), "registration_no": registration_no(i),
                    "update": {"condition": condition, "care_area": area, "respiratory_support": support},
                })  # fmt: skip
                committed = answer["committed"]
                chats = chat_ids(i)
                if not await arrivals.until(
                    lambda chats=chats: all(arrivals.by_chat.get(c) for c in chats), 10, step=0.001
                ):
                    problems.append(f"no alert within 10 s for {registration_no(i)}")
                    continue
                latencies.extend(arrivals.by_chat[c][0] - committed for c in chats)
                await asyncio.sleep(chooser.uniform(0.05, 0.15))
            usage = await dispatcher.ask({"usage": True})
            seconds = time.monotonic() - started
            final = await dispatcher.stop()
    problems += check(arrivals, dispatcher)
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] if latencies else float("nan")
    verdict = "PASS" if latencies and p95 < LATENCY_TARGET and not problems else "MISS"
    return Row(
        database=backend,
        measure="latency, idle: commit to Bot API",
        work=f"{len(picked)} single updates, {len(latencies)} messages",
        seconds=seconds,
        result=f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        if latencies
        else "-",
        cpu_ms=cpu_ms_per_message(dispatcher.ready, usage, len(latencies)),
        peak_rss_kb=final["peak_rss_kb"],
        target=f"{verdict} (p95 < {LATENCY_TARGET:g} s)",
        problems=problems,
    )


def check(arrivals: Arrivals, dispatcher: DispatcherProcess) -> list[str]:
    problems = []
    if duplicates := arrivals.duplicates():
        problems.append(f"{duplicates} messages sent twice to the same chat")
    if refused := arrivals.other_refusals():
        problems.append(f"the fake Bot API refused {len(refused)} calls, first: {refused[0]}")
    if errors := dispatcher.logged_errors():
        problems.append(f"{len(errors)} errors logged, first: {errors[0][:200]}")
    return problems


# --- the run -----------------------------------------------------------------------------------


async def bench_backend(backend: str, url: str, folder: Path, args: argparse.Namespace) -> list[Row]:
    """Three databases: the people alone (for the latency), then with the backlog twice."""
    progress(f"{backend} dispatch: the backlog")
    started = time.perf_counter()
    await seed_people(url)
    async with contextlib.AsyncExitStack() as copies:
        idle = await copies.enter_async_context(database_copy(backend, url, folder, "idle"))
        backlog = await seed_updates(url, folder)
        paced_copy = await copies.enter_async_context(database_copy(backend, url, folder, "paced"))
        took = time.perf_counter() - started
        progress(f"{backend} dispatch: backlog of {backlog.outbox_rows:,} outbox rows in {took:.1f} s; paced")
        rows = [await paced(backend, paced_copy, folder, backlog, args.paced_window)]
        progress(f"{backend} dispatch: limits lifted")
        rows.append(await lifted(backend, url, folder, backlog, args.lifted_seconds))
        progress(f"{backend} dispatch: latency")
        rows.append(await latency(backend, idle, folder, args.latency_updates))
    return rows


async def run(
    args: argparse.Namespace,
    backends_to_run: Callable[[argparse.Namespace, list[str]], Awaitable[list[str]]],
    load_note: str,
) -> bool:
    """Print the table; True when every target was met."""
    notes = [load_note]
    backends = await backends_to_run(args, notes)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-dispatch-") as folder:
        folder = Path(folder)
        for backend in backends:
            database = (
                sqlite_database(folder, "dispatch")
                if backend == "SQLite"
                else postgresql_database(server_url(), DATABASE)
            )
            try:
                async with database as url:
                    rows.extend(await bench_backend(backend, url, folder, args))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next one
                notes.append(f"{backend} dispatch failed: {type(exc).__name__}: {exc}")
    header = ("database", "measure", "messages", "seconds", "result", "CPU/msg", "peak RSS", "target")
    print_rows(
        header,
        [
            (
                r.database,
                r.measure,
                r.work,
                f"{r.seconds:.2f}",
                r.result,
                f"{r.cpu_ms:.2f} ms" if r.cpu_ms is not None else "-",
                f"{r.peak_rss_kb / 1024:.0f} MB",
                r.target,
            )  # fmt: skip
            for r in rows
        ],
    )
    notes.append(
        "CPU/msg and peak RSS are the dispatcher process's (python-telegram-bot and aiohttp included; for "
        "the latency, recording the updates too); the fake Bot API runs in the benchmark's own process"
    )
    for r in rows:
        for problem in r.problems:
            notes.append(f"{r.measure} on {r.database}: {problem}")
    for note in notes:
        print(f"note: {note}")
    return bool(rows) and all(r.target.startswith("PASS") for r in rows)
