"""Nothing that names a relative or a patient reaches the logs. The real service, `python -m bot web`
in a child process with WhatsApp configured, is driven into failures: the database refuses writes
in the middle of requests (500s, whose tracebacks uvicorn logs through handlers of its own), and
Twilio refuses a reply with an error that quotes the number. Everything the process writes, on
stdout and stderr, is searched for the phone numbers (in any form), the code and the patients'
names. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from bot.platform.logs import MaskPhoneNumbers, mask_phones
from tests.conftest import SECRET, auth
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, WHATSAPP_FROM, FakeTwilio, post_whatsapp
from tests.support import (
    code_sent_to,
    config_with_templates,
    free_port,
    service_environment,
    start_service,
    until_healthy,
)

PUBLIC_BASE_URL = "https://wardwatch.example.org"
RATAN = {"patient_name": "Ratan Das", "contact_mobile": "098300 54321", "alternate_mobiles": ["98300 67890"]}
MOUSUMI = {"patient_name": "Mousumi Sarkar", "contact_mobile": "+91 98311 22334"}
RELATIVE = "+919830054321"  # Ratan's admission number, writing from its own WhatsApp
NEWCOMER = "+919874455667"  # a first message, from a number the service does not know yet
SECRETS = ("9830054321", "9830067890", "9831122334", "9874455667")  # every number, in its 10 digits
NAMES = ("Ratan Das", "Mousumi Sarkar")

# Writes the database refuses from the moment they are installed, as a full disk would.
REFUSALS = {
    "sqlite": [
        f"CREATE TRIGGER refuse_{table}_{event} BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        for table, event in (("admission", "INSERT"), ("admission", "UPDATE"), ("chat", "INSERT"))
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'disk full'; END $$",
        *(
            f"CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_writes()"
            for table in ("admission", "chat")
        ),
    ],
}
WITHDRAWALS = {
    "sqlite": [
        f"DROP TRIGGER IF EXISTS refuse_{table}_{event}"
        for table, event in (("admission", "INSERT"), ("admission", "UPDATE"), ("chat", "INSERT"))
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS refuse_writes ON admission",
        "DROP TRIGGER IF EXISTS refuse_writes ON chat",
        "DROP FUNCTION IF EXISTS refuse_writes()",
    ],
}


def anywhere(digits: str) -> re.Pattern[str]:
    """The national number `digits` however it is written: +91..., 0..., with spaces or dashes."""
    return re.compile(r"[ -]?".join(digits))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def refusing(services):
    """Installs the database's refusals when called; withdraws them at the end, whatever happened."""
    dialect = services.database.engine.dialect.name

    async def run(statements: list[str]) -> None:
        async with services.database.engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))

    yield lambda: run(REFUSALS[dialect])
    await run(WITHDRAWALS[dialect])


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_failures_leave_no_number_code_or_name_in_the_logs(services, keys, fake, refusing, tmp_path, log_format):
    port, output = free_port(), tmp_path / "output.log"
    environ = service_environment(
        BOT_CONFIG=str(config_with_templates(tmp_path)), DATABASE_URL=services.settings.database_url,
        SECRET_KEY=SECRET, HOST="127.0.0.1", PORT=str(port), TWILIO_API_BASE_URL=fake.url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
        TWILIO_WHATSAPP_FROM=WHATSAPP_FROM, PUBLIC_BASE_URL=PUBLIC_BASE_URL, LOG_FORMAT=log_format,
    )  # fmt: skip
    process = await start_service("web", environ, output)
    try:
        # No connection kept alive: uvicorn closes one after a 500.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) as http:
            await asyncio.wait_for(until_healthy(http, process, output), 120)  # only against a hang
            hospital = auth(keys["MRB"])

            async def whatsapp(message: str, sender: str = RELATIVE) -> int:
                return (await post_whatsapp(http, message, sender, PUBLIC_BASE_URL)).status_code

            assert (await http.put("/api/v1/admissions/R-1", json=RATAN, headers=hospital)).status_code == 201
            assert await whatsapp("Hello") == 200
            assert await whatsapp("98300 54321") == 200
            code = await asyncio.wait_for(code_sent_to(fake, RELATIVE), 30)
            assert await whatsapp(code) == 200
            assert any("Ratan Das" in message.body for message in fake.messages_to(f"whatsapp:{RELATIVE}"))

            # Numbers in the request line, which uvicorn's access log writes through its own handler.
            refused = await http.get(f"/api/v1/admissions/{RELATIVE}", headers=hospital)
            assert refused.status_code == 422
            assert (await http.get("/healthz", params={"from": NEWCOMER})).status_code == 200
            # Twilio refuses the replies, quoting the number.
            fake.fail(f"whatsapp:{RELATIVE}", 21211)
            assert await whatsapp("/status") == 200
            # The database refuses writes: a new admission, a change of one, a newcomer's chat.
            await refusing()
            broken = await http.put("/api/v1/admissions/R-2", json=MOUSUMI, headers=hospital)
            assert broken.status_code == 500
            changed = {**RATAN, "patient_name": "Ratan Kumar Das"}
            assert (await http.put("/api/v1/admissions/R-1", json=changed, headers=hospital)).status_code == 500
            # A message not answered is answered still: asked to send it again (Twilio would not).
            assert await whatsapp("Hello", NEWCOMER) == 200
            [sorry] = fake.messages_to(f"whatsapp:{NEWCOMER}")
            assert sorry.body.startswith("Sorry, something went wrong on our side.")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    logged = output.read_text()

    # The failures were logged, with their tracebacks: the search below had something to search.
    assert logged.count("Exception in ASGI application") == 2, logged
    assert logged.count("WhatsApp message from +91******5667 not answered") == 1, logged
    if log_format == "json":
        lines = [json.loads(line) for line in logged.splitlines()]
        failures = [line for line in lines if line["message"].startswith("Exception in ASGI application")]
        failures += [line for line in lines if line["message"].endswith("not answered")]
        assert len(failures) == 3 and all("Traceback" in line["exception"] for line in failures), failures
        assert failures[0]["request_id"] == broken.headers["X-Request-ID"], failures
        assert failures[0]["hospital"] == "MRB", failures
        refused_line = [line for line in lines if line["request_id"] == refused.headers["X-Request-ID"]]
        assert [line["logger"] for line in refused_line] == ["uvicorn.access"], refused_line
    assert "+91******4321 not sent" in logged, logged
    for line in logged.splitlines():
        for digits in SECRETS:
            assert not anywhere(digits).search(line), line
        assert code not in line, line
        for name in (*NAMES, "Ratan Kumar Das"):
            assert name not in line, line


# --- the filter itself -------------------------------------------------------------------------


def test_a_record_whose_formatter_reads_its_arguments_keeps_them_masked():
    """uvicorn's access log formats each line from the record's arguments, not its message."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/?from=%2B919830054321", "1.1", 404), None,
    )  # fmt: skip

    assert MaskPhoneNumbers().filter(record)

    assert record.args == ("127.0.0.1:5000", "GET", "/?from=%2B91******4321", "1.1", 404)
    assert record.getMessage() == mask_phones('127.0.0.1:5000 - "GET /?from=%2B919830054321 HTTP/1.1" 404')


def test_a_number_inside_an_argument_of_another_type_is_masked_in_the_message():
    record = logging.LogRecord(
        "twilio", logging.WARNING, __file__, 1, "send failed: %s", (ValueError("+919830054321 is invalid"),), None
    )

    assert MaskPhoneNumbers().filter(record)

    assert record.getMessage() == "send failed: +91******4321 is invalid"
