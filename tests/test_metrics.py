"""`/metrics`, what the operator's Prometheus reads: after a relative's WhatsApp conversation
through the real twilio client to the fake Twilio, hospital API calls, staff logins and a
dispatcher's pass, the counts and gauges say what happened, and no line holds a number, a name
or a registration number. Readable with METRICS_TOKEN as a bearer token, or from loopback while
it is unset; the worker process serves its own. SQLite, and PostgreSQL when TEST_DATABASE_URL is
set."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import Services, build_telegram, build_web_app, build_worker_app
from bot.intake.hospitals import rotate_key
from bot.platform import health
from bot.platform.settings import SettingsError
from handlers.console import ConsoleChat
from tests.conftest import SECRET, make_settings
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM
from tests.staff_support import StaffBrowser, add_staff, cheap_argon2  # noqa: F401 (fixture)
from tests.support import PROJECT_ROOT, Clock, free_port, service_environment, start_service
from tests.test_alerts import MOBILE_TYPED, followed, world  # noqa: F401 (fixture)
from tests.test_telegram import TOKEN as BOT_TOKEN
from tests.test_telegram import Relative
from tests.test_whatsapp import (  # noqa: F401 (fixtures)
    OTHER_RELATIVE,
    PUBLIC_BASE_URL,
    RELATIVE,
    TYPED,
    WhatsApp,
    fake,
    start,
)

RATAN = "MRB-20-0413"  # Ratan Das at M.R. Bangur Hospital (bot/intake/demo.py), under TYPED
UNREACHABLE = "+919000000001"  # another demo number: its SMS fails at Twilio
# Every number of the test in national digits, every name and registration number: none may
# appear in any line of /metrics, in any format.
NUMBERS = ("7700900123", "9830000111", "9000000002", "9000000001")
WORDS = ("Ratan", "Das", RATAN, "20-0413", "whatsapp:+", "sister.roy")
TOKEN = "metrics-token-of-a-good-length"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """The exposition's samples by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient, **headers: str) -> str:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def assert_nothing_personal(text: str, *secrets: str) -> None:
    for line in text.splitlines():
        digits = re.sub(r"\D", "", line)
        assert not any(number in digits for number in NUMBERS), line
        assert not any(word.lower() in line.lower() for word in (*WORDS, *secrets)), line


async def on_the_test_clock_with_a_key(wa: WhatsApp) -> tuple[Clock, str]:
    """Put `wa` on a test clock and issue MRB a key it knows: the clock and the key."""
    clock = wa.services.clock = Clock(datetime.now(UTC).replace(microsecond=0))
    async with wa.services.database.session() as session:
        key = (await rotate_key(session, wa.services.secret_key, "MRB")).api_key
        await session.commit()
    return clock, key


async def verify(wa: WhatsApp, sender: str) -> None:
    await wa.send("Hello", sender)
    await wa.send(TYPED, sender)
    await wa.send(wa.code_for(), sender)


async def test_a_days_traffic_is_counted_without_anything_personal(start, fake):
    wa = await start()
    clock, key = await on_the_test_clock_with_a_key(wa)
    hospital = {"Authorization": f"Bearer {key}"}
    before = samples(await scrape(wa.http))

    # Two relatives verify on WhatsApp (3 messages each); a third's code fails at Twilio.
    await verify(wa, RELATIVE)
    clock.advance(seconds=61)  # a new code for the same number may be asked after a minute
    await verify(wa, OTHER_RELATIVE)
    fake.fail(UNREACHABLE)
    await wa.send("Hello", "+919830000222")
    await wa.send("090000 00001", "+919830000222")

    # The hospital: a change of Ratan's condition, an unknown admission, a call without its key.
    body = {"recorded_at": clock.now.isoformat(), "condition": "stable", "care_area": "ward"}
    response = await wa.http.post(f"/api/v1/admissions/{RATAN}/updates", json=body, headers=hospital)
    assert response.status_code == 201, response.text
    assert (await wa.http.get("/api/v1/admissions/MRB-99-0001", headers=hospital)).status_code == 404
    assert (await wa.http.get(f"/api/v1/admissions/{RATAN}")).status_code == 401
    assert (await wa.http.get("/nowhere/9000000002")).status_code == 404

    # The alert goes to the first relative; the second's number has left WhatsApp: dead.
    fake.fail(f"whatsapp:{OTHER_RELATIVE}", 63003)
    clock.advance(seconds=wa.services.settings.config.notifications.grace_seconds + 1)
    assert await wa.services.dispatcher.dispatch_once() == 2

    # A staff member mistypes the password, then logs in.
    password = await add_staff(wa.services, "sister.roy")
    # Over https, as PUBLIC_BASE_URL says the page is served: its cookies are Secure.
    transport = httpx.ASGITransport(app=build_web_app(wa.services))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_BASE_URL) as browser:
        staff = StaffBrowser(browser)
        assert (await staff.log_in("sister.roy", "not the password")).status_code == 401
        assert (await staff.log_in("sister.roy", password)).status_code == 303

    text = await scrape(wa.http)
    found = samples(text)

    def counted(name: str, **labels: str) -> float:
        return value(found, name, **labels) - value(before, name, **labels)

    assert counted("wardwatch_messages_received_total", channel="whatsapp") == 8
    assert counted("wardwatch_replies_sent_total", channel="whatsapp") >= 8  # a card may follow a confirmation
    assert counted("wardwatch_reply_seconds_count", channel="whatsapp") == 8
    assert counted("wardwatch_codes_total", provider="twilio_sms", outcome="sent") == 2
    assert counted("wardwatch_codes_total", provider="twilio_sms", outcome="failed") == 1
    assert counted("wardwatch_alerts_total", channel="whatsapp", kind="update", outcome="sent") == 1
    assert counted("wardwatch_alerts_total", channel="whatsapp", kind="update", outcome="dead") == 1
    assert value(found, "wardwatch_outbox_rows", state="sent") == 1
    assert value(found, "wardwatch_outbox_rows", state="dead") == 1
    assert value(found, "wardwatch_outbox_rows", state="pending") == 0
    assert value(found, "wardwatch_outbox_oldest_due_seconds") == 0
    route = "/api/v1/admissions/{registration_no}"
    assert counted("wardwatch_api_requests_total", route=f"{route}/updates", method="POST", status="201") == 1
    assert counted("wardwatch_api_requests_total", route=route, method="GET", status="404") == 1
    assert counted("wardwatch_api_requests_total", route=route, method="GET", status="401") == 1
    assert counted("wardwatch_api_requests_total", route="unmatched", method="GET", status="404") == 1
    assert counted("wardwatch_api_request_seconds_count", route=route, method="GET") == 2
    assert counted("wardwatch_staff_logins_total", outcome="failure") == 1
    assert counted("wardwatch_staff_logins_total", outcome="success") == 1
    # The dispatcher's pass beat at the test clock's now, and nothing waits: ready.
    assert value(found, "wardwatch_dispatcher_heartbeat_age_seconds") == 0
    assert value(found, "wardwatch_ready") == 1
    assert_nothing_personal(text, key, password)


async def test_the_heartbeat_and_readiness_follow_the_database(services):
    clock = services.clock = Clock(datetime.now(UTC).replace(microsecond=0))
    async with services.database.session() as session:
        await health.beat(session, health.DISPATCHER, clock.now - timedelta(seconds=5))
        await session.commit()
    async with client_of(services) as http:
        found = samples(await scrape(http))
        assert value(found, "wardwatch_dispatcher_heartbeat_age_seconds") == 5
        assert value(found, "wardwatch_ready") == 1

        clock.advance(seconds=2 * health.HEARTBEAT_SECONDS)
        found = samples(await scrape(http))
    assert value(found, "wardwatch_dispatcher_heartbeat_age_seconds") == 5 + 2 * health.HEARTBEAT_SECONDS
    assert value(found, "wardwatch_ready") == 0


async def test_a_rate_limited_alert_is_held_and_counted(start, fake):
    wa = await start()
    clock, key = await on_the_test_clock_with_a_key(wa)
    await verify(wa, RELATIVE)
    body = {"recorded_at": clock.now.isoformat(), "condition": "stable", "care_area": "ward"}
    headers = {"Authorization": f"Bearer {key}"}
    assert (await wa.http.post(f"/api/v1/admissions/{RATAN}/updates", json=body, headers=headers)).status_code == 201
    fake.fail(f"whatsapp:{RELATIVE}", 20429, status=429, message="Too Many Requests")
    clock.advance(seconds=wa.services.settings.config.notifications.grace_seconds + 1)
    await wa.services.dispatcher.dispatch_once()

    found = samples(await scrape(wa.http))
    assert value(found, "wardwatch_alerts_total", channel="whatsapp", kind="update", outcome="held") == 1
    assert value(found, "wardwatch_rate_limited_total", channel="whatsapp") == 1
    assert value(found, "wardwatch_send_retries_total", channel="whatsapp") == 1
    assert value(found, "wardwatch_outbox_rows", state="pending") == 1


async def test_telegrams_429_to_a_reply_is_counted_and_the_reply_still_goes(services, fake):
    async with FakeTelegram(BOT_TOKEN) as telegram:
        settings = make_settings(
            services.settings.database_url, TELEGRAM_BOT_TOKEN=BOT_TOKEN, TELEGRAM_API_BASE_URL=f"{telegram.url}/bot",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
            TWILIO_API_BASE_URL=fake.url,
        )  # fmt: skip
        bot = Services.build(settings)
        channel = build_telegram(bot)
        assert channel is not None
        await channel.start()
        try:
            relative = Relative(telegram, telegram.user("en"))
            telegram.fail_next(relative.user.id, 429, retry_after=1)
            [welcome] = await relative.command("/start")
            assert "Welcome to Ward Watch" in welcome.plain
            async with client_of(bot) as http:
                text = await scrape(http)
        finally:
            await channel.stop()
            await bot.close()
    found = samples(text)
    assert value(found, "wardwatch_rate_limited_total", channel="telegram") == telegram.too_many_requests >= 1
    assert value(found, "wardwatch_messages_received_total", channel="telegram") == 1
    assert value(found, "wardwatch_replies_sent_total", channel="telegram") == 1
    assert value(found, "wardwatch_reply_seconds_count", channel="telegram") == 1
    assert str(relative.user.id) not in text


async def test_a_new_admission_notice_moot_before_it_goes_is_counted_as_cancelled_on_its_channel(world):
    relative = await followed(world)
    await world.admit("R-2", patient_name="Mina Das", alternate_mobiles=["+91 98300 12345"])
    await relative.say(MOBILE_TYPED)  # the relative confirms the number again: the new card is readable
    await relative.say(world.code_for())
    assert await world.dispatch() == []

    async with client_of(world.bot) as http:
        found = samples(await scrape(http))
    assert value(found, "wardwatch_alerts_total", channel="console", kind="new_admission", outcome="cancelled") == 1


async def test_the_console_chat_is_counted(services):
    lines: list[str] = []

    async def nothing() -> None:
        return None

    chat = ConsoleChat(services.conversation, nothing, lines.append, metrics=services.metrics)
    await chat.say("/start")
    await chat.say("/help")
    transport = httpx.ASGITransport(app=build_web_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        found = samples(await scrape(http))
    assert value(found, "wardwatch_messages_received_total", channel="console") == 2
    assert value(found, "wardwatch_replies_sent_total", channel="console") >= 2
    assert value(found, "wardwatch_reply_seconds_count", channel="console") == 2
    # No dispatcher has ever beaten here: not ready.
    assert value(found, "wardwatch_dispatcher_heartbeat_age_seconds") == float("inf")
    assert value(found, "wardwatch_ready") == 0


# --- who may read it ----------------------------------------------------------------------------


def client_of(services: Services, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_web_app(services), client=(address, 50123))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_with_a_token_only_its_bearer_reads_the_metrics(migrated_url):
    services = Services.build(make_settings(migrated_url, METRICS_TOKEN=TOKEN))
    try:
        async with client_of(services, "203.0.113.7") as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
            assert (await http.get("/metrics", headers={"Authorization": TOKEN})).status_code == 401
            text = await scrape(http, Authorization=f"Bearer {TOKEN}")
        async with client_of(services) as http:  # loopback too needs it once it is set
            assert (await http.get("/metrics")).status_code == 401
    finally:
        await services.close()
    assert "wardwatch_ready" in text and TOKEN not in text


async def test_without_a_token_only_this_machine_reads_the_metrics(services):
    async with client_of(services, "203.0.113.7") as http:
        assert (await http.get("/metrics")).status_code == 403
    async with client_of(services, "::1") as http:
        assert "wardwatch_outbox_rows" in await scrape(http)
    async with client_of(services) as http:
        # Through a proxy on this machine, the client is loopback but the request is not from here.
        assert (await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})).status_code == 403
        assert (await http.get("/metrics", headers={"Forwarded": "for=203.0.113.7"})).status_code == 403
        assert "wardwatch_ready" in await scrape(http)


async def test_each_process_has_a_registry_of_its_own(services):
    other = Services.build(services.settings)
    try:
        other.metrics.message_received("console")
        transport = httpx.ASGITransport(app=build_worker_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            found = samples(await scrape(http))
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).json()["reasons"] == ["dispatcher: no heartbeat yet"]
            assert (await http.get("/api/v1/admissions/R-1")).status_code == 404  # no hospital API here
    finally:
        await other.close()
    assert value(found, "wardwatch_messages_received_total", channel="console") == 0


def test_the_worker_port_must_differ_from_the_web_servers(migrated_url):
    with pytest.raises(SettingsError, match="operations.worker_metrics_port: 9464 is the web server's port"):
        make_settings(migrated_url, PORT="9464")


# --- the worker process -------------------------------------------------------------------------


async def start_worker(services: Services, tmp_path: Path, port: int) -> tuple[asyncio.subprocess.Process, Path]:
    """`python -m bot worker` on the test database, its pages on `port`; and where it writes."""
    config = tmp_path / "config.yaml"
    config.write_text(
        (PROJECT_ROOT / "config.yaml")
        .read_text(encoding="utf-8")
        .replace("worker_metrics_port: 9464", f"worker_metrics_port: {port}"),
        encoding="utf-8",
    )
    environ = service_environment(
        BOT_CONFIG=str(config), DATABASE_URL=services.settings.database_url, SECRET_KEY=SECRET, HOST="127.0.0.1"
    )
    output = tmp_path / "worker.log"
    return await start_service("worker", environ, output), output


async def test_python_m_bot_worker_serves_its_metrics(services, tmp_path: Path):
    port = free_port()
    process, output = await start_worker(services, tmp_path, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            text = await asyncio.wait_for(_ready_metrics(http, process, output), 120)  # only against a hang
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    found = samples(text)
    assert value(found, "wardwatch_ready") == 1  # its own dispatcher beats
    assert 0 <= value(found, "wardwatch_dispatcher_heartbeat_age_seconds") < 2 * health.HEARTBEAT_SECONDS
    assert process.returncode == 0, output.read_text()


async def test_a_worker_whose_port_is_taken_says_so_and_stops(services, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, output = await start_worker(services, tmp_path, port)
        assert await asyncio.wait_for(process.wait(), 60) == 1
    written = await asyncio.to_thread(output.read_text)
    assert f"error: could not serve on http://127.0.0.1:{port} (the reason is logged above)" in written
    assert "Traceback" not in written and "never awaited" not in written, written


async def _ready_metrics(http: httpx.AsyncClient, process: asyncio.subprocess.Process, output: Path) -> str:
    """The worker's metrics once its dispatcher has beaten."""
    while True:
        if process.returncode is not None:
            raise AssertionError("the worker ended before it served:\n" + await asyncio.to_thread(output.read_text))
        try:
            response = await http.get("/metrics")
            if response.status_code == 200 and "wardwatch_ready 1.0" in response.text:
                return response.text
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
