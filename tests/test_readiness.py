"""`/readyz`, what an operator's load balancer and alerting read: 503 with the reasons while the
database does not answer, the dispatcher has stopped beating, an alert has waited too long, or
Telegram or Twilio have failed for over a minute; 200 again once each is over. `/healthz` stays a
liveness check. Every answer carries a request id. Runs on SQLite, and on PostgreSQL when
TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from aiohttp import web
from sqlmodel import select

from bot.alerts.dispatcher import Dispatcher
from bot.app import Services, build_web_app
from bot.platform import health
from bot.platform.logs import JsonLines, MaskPhoneNumbers, log_context
from handlers.telegram_request import AiohttpRequest
from handlers.twilio_api import _AsyncHttpClient
from models import Admission, Chat, Heartbeat, Notification
from models.enums import NotificationStatus
from tests.conftest import auth, make_settings, now_utc
from tests.support import Clock

RATAN = {"patient_name": "Ratan Das", "contact_mobile": "098300 12345"}


class Monotonic:
    """The outside services' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outside() -> Iterator[health.OutsideServices]:
    """This process's record of the outside services, on a clock the test moves."""
    services, real_clock = health.OUTSIDE_SERVICES, health.OUTSIDE_SERVICES.clock
    services.clear()
    services.clock = Monotonic()
    yield services
    services.clear()
    services.clock = real_clock


@pytest.fixture
def clock(services) -> Clock:
    services.clock = Clock(now_utc())
    return services.clock


@pytest.fixture
async def http(services, outside, clock) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_web_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def readiness(http: httpx.AsyncClient) -> tuple[int, list[str]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()["reasons"]


class Worker:
    """A dispatcher's loop, as the worker process runs it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.dispatcher = Dispatcher(
            services.database, services.settings.config, services.catalogues, services.senders, services.now,
            services.secret_key,
        )  # fmt: skip
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Worker:
        """Started, once it has written its first heartbeat."""
        self.task = asyncio.create_task(self.dispatcher.run())
        while await beats(self.services) != [self.services.now()]:  # noqa: ASYNC110 - written by another loop
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def beats(services: Services) -> list:
    async with services.database.session() as session:
        return [row.beat_at for row in (await session.exec(select(Heartbeat))).all()]


async def test_ready_when_the_dispatcher_beats_and_nothing_waits(services, http):
    assert await readiness(http) == (503, ["dispatcher: no heartbeat yet"])

    async with Worker(services):
        assert await readiness(http) == (200, [])
        assert (await http.get("/healthz")).status_code == 200


async def test_a_dispatcher_silent_for_twice_its_interval_is_not_ready_until_one_beats_again(services, http, clock):
    async with Worker(services):
        pass

    clock.advance(seconds=2 * health.HEARTBEAT_SECONDS)
    assert await readiness(http) == (200, [])
    clock.advance(seconds=1)
    assert await readiness(http) == (503, [f"dispatcher: last heartbeat {2 * health.HEARTBEAT_SECONDS + 1:.0f} s ago"])

    async with Worker(services):  # the worker restarted
        assert await readiness(http) == (200, [])


async def test_the_heartbeat_is_written_at_most_once_an_interval(services, clock):
    async with Worker(services) as worker:
        first = clock.now
        for _ in range(5):  # passes of the loop, each at a later time
            clock.advance(seconds=1)
            worker.dispatcher.wake()
            await asyncio.sleep(0.05)
        assert await beats(services) == [first]


async def waiting_alert(services: Services, http: httpx.AsyncClient, keys: dict, created_ago: float, **row) -> int:
    """A pending alert for a relative's chat about Ratan, created `created_ago` seconds ago."""
    assert (await http.put("/api/v1/admissions/R-1", json=RATAN, headers=auth(keys["MRB"]))).status_code == 201
    async with services.database.session() as session:
        (admission,) = (await session.exec(select(Admission))).all()
        chat = Chat(channel="nowhere", chat_key="relative")  # a channel no dispatcher sends on: it waits
        session.add(chat)
        await session.flush()
        alert = Notification(
            chat_id=chat.id, admission_id=admission.id, kind="condition", before={},
            created_at=services.now() - timedelta(seconds=created_ago), **row,
        )  # fmt: skip
        session.add(alert)
        await session.commit()
        return alert.id


async def settle(services: Services, alert_id: int) -> None:
    async with services.database.session() as session:
        alert = await session.get(Notification, alert_id)
        assert alert is not None
        alert.status = NotificationStatus.SENT
        await session.commit()


async def test_an_alert_waiting_longer_than_the_limit_is_not_ready_until_it_goes(services, http, keys, clock):
    limit = services.settings.config.operations.max_alert_delay_seconds
    grace = services.settings.config.notifications.grace_seconds
    async with Worker(services):
        # Due once its correction window ended: it has waited `limit` seconds, not more.
        alert = await waiting_alert(services, http, keys, created_ago=grace + limit)
        assert await readiness(http) == (200, [])
        clock.advance(seconds=2)
        assert await readiness(http) == (503, ["outbox: the oldest due alert has waited 302 s"])

        await settle(services, alert)
        assert await readiness(http) == (200, [])


async def test_an_alert_held_back_waits_from_the_end_of_its_hold(services, http, keys, clock):
    limit = services.settings.config.operations.max_alert_delay_seconds
    async with Worker(services):
        # Created long ago, held (a retry's backoff, quiet hours) until a minute ago: not late.
        alert = await waiting_alert(
            services, http, keys, created_ago=10 * limit, not_before=clock.now - timedelta(minutes=1)
        )
        assert await readiness(http) == (200, [])
        async with services.database.session() as session:
            held = await session.get(Notification, alert)
            assert held is not None
            held.not_before = clock.now - timedelta(seconds=limit + 1)
            await session.commit()
        assert await readiness(http) == (503, [f"outbox: the oldest due alert has waited {limit + 1:.0f} s"])


async def test_a_database_that_does_not_answer_is_not_ready_while_the_process_lives(outside):
    # Nothing listens on the discard port: every connection is refused at once.
    services = Services.build(make_settings("postgresql://wardwatch@127.0.0.1:9/wardwatch"))
    transport = httpx.ASGITransport(app=build_web_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert await readiness(http) == (503, ["database: not answering"])
    finally:
        await services.database.dispose()


@pytest.fixture
async def answering() -> AsyncIterator[tuple[str, list[int]]]:
    """A local HTTP server standing for Telegram's or Twilio's API; it answers each call with the
    next status of its list (200 once the list is empty)."""
    statuses: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "result": True}, status=statuses.pop(0) if statuses else 200)

    server = web.Application()
    server.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", statuses
    finally:
        await runner.cleanup()


async def telegram_call(base_url: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        await request.do_request(f"{base_url}/botTOKEN/sendMessage", "POST")
    finally:
        await request.shutdown()


async def twilio_call(base_url: str) -> None:
    client = _AsyncHttpClient()
    try:
        await client.request("POST", f"{base_url}/2010-04-01/Accounts/AC1/Messages.json")
    finally:
        await client.close()


@pytest.mark.parametrize("service, call", [("telegram", telegram_call), ("twilio", twilio_call)])
async def test_calls_failing_for_over_a_minute_are_not_ready_until_one_is_answered(
    services, http, outside, answering, service, call
):
    base_url, statuses = answering
    async with Worker(services):
        statuses.extend([502, 503])
        await call(base_url)
        outside.clock.now += 30
        await call(base_url)
        outside.clock.now += 30
        assert await readiness(http) == (200, [])  # failing for a minute, not longer
        outside.clock.now += 1
        assert await readiness(http) == (503, [f"{service}: calls failing for over 60 s"])

        await call(base_url)  # answered
        assert await readiness(http) == (200, [])


async def test_calls_that_get_no_answer_count_as_failing(services, http, outside):
    async with Worker(services):
        for call in (telegram_call, twilio_call):
            with pytest.raises(Exception):  # noqa: B017, PT011 - each client's own error for a refused connection
                await call("http://127.0.0.1:9")
        outside.clock.now += 61
        assert await readiness(http) == (
            503, ["telegram: calls failing for over 60 s", "twilio: calls failing for over 60 s"]
        )  # fmt: skip


async def test_a_refusal_is_an_answer(services, http, outside, answering):
    base_url, statuses = answering
    async with Worker(services):
        statuses.extend([400, 403, 429])
        for _ in range(3):
            await telegram_call(base_url)
        outside.clock.now += 61
        assert await readiness(http) == (200, [])


# --- request ids and JSON lines -------------------------------------------------------------------------


async def test_every_answer_carries_a_request_id_and_a_sane_one_given_is_kept(http):
    made = [(await http.get("/healthz")).headers["X-Request-ID"] for _ in range(2)]
    kept = await http.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"})
    replaced = await http.get("/healthz", headers={"X-Request-ID": "+919830012345"})
    too_long = await http.get("/api/v1/admissions/R-1", headers={"X-Request-ID": "a" * 65})

    assert len(set(made)) == 2 and all(len(request_id) == 32 for request_id in made)
    assert kept.headers["X-Request-ID"] == "lb-7f3a.1"
    assert replaced.headers["X-Request-ID"] not in ("+919830012345", "919830012345")
    assert too_long.status_code == 401 and len(too_long.headers["X-Request-ID"]) == 32


def json_line(record: logging.LogRecord) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskPhoneNumbers())
    handler.setFormatter(JsonLines())
    handler.handle(record)
    (line,) = stream.getvalue().splitlines()
    return json.loads(line)


def test_a_json_line_carries_the_context_that_is_known_and_masks_numbers():
    record = logging.LogRecord(
        "bot.test", logging.WARNING, __file__, 1, "code to %s not sent", ("+919830012345",), None
    )
    with log_context(request_id="r-1", channel="whatsapp", chat="whatsapp:ps_abc"), log_context(admission_id=7):
        inside = json_line(record)
    outside_any = json_line(logging.LogRecord("bot.test", logging.INFO, __file__, 1, "plain", (), None))

    assert inside == {
        "time": inside["time"], "level": "WARNING", "logger": "bot.test", "message": "code to +91******2345 not sent",
        "request_id": "r-1", "channel": "whatsapp", "chat": "whatsapp:ps_abc", "admission_id": 7,
    }  # fmt: skip
    assert inside["time"].endswith("+00:00")
    assert outside_any == {"time": outside_any["time"], "level": "INFO", "logger": "bot.test", "message": "plain",
                           "request_id": None}  # fmt: skip
