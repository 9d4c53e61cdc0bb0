"""Codes by SMS through Twilio: the real twilio client, on its async HTTP client, against the local
fake Twilio API of tests/fakes/twilio.py; the relative's side through the real conversation.

Also the logging rules of docs/ARCHITECTURE.md: phone numbers masked, no code, Twilio's HTTP logs quiet."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import re
import subprocess
import sys
import textwrap
import warnings

import pytest
from aiohttp import ClientSession

from bot import cli
from bot.app import Services
from bot.platform.logs import MaskPhoneNumbers, mask_phones
from bot.platform.phones import national
from bot.relatives.replies import Inbound
from tests.conftest import PROJECT_ROOT, make_settings
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGING_SERVICE_SID,
    SMS_FROM,
    VERIFY_SERVICE_SID,
    FakeTwilio,
)
from tests.support import free_port

# Ratan Das, ICU at M.R. Bangur Hospital (bot/intake/demo.py); typed the way relatives write it.
MOBILE = "+919000000002"
TYPED = "090000 00002"
PATIENT, HOSPITAL, REGISTRATION = "Ratan Das", "M.R. Bangur Hospital", "MRB-20-0413"
UNREGISTERED = "+919000000099"
MASKED = "+91******0002"

TWILIO_SMS = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_SMS_FROM": SMS_FROM}
TWILIO_VERIFY = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "OTP_PROVIDER": "twilio_verify",
    "TWILIO_VERIFY_SERVICE_SID": VERIFY_SERVICE_SID,
}
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")
# A regression that makes the reply wait for the SMS would hang on a held fake: fail instead.
NEVER = 30


@pytest.fixture
async def fake():
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def build(services, fake, migrated_url):
    """Services configured for Twilio at the fake, on the emptied database (the `services`
    fixture empties it), with the demo patients; each one closed at the end."""
    built: list[Services] = []
    loaded = False

    async def make(environ: dict[str, str] = TWILIO_SMS, **more: str) -> Services:
        nonlocal loaded
        made = Services.build(make_settings(migrated_url, **{"TWILIO_API_BASE_URL": fake.url, **environ, **more}))
        built.append(made)
        if not loaded:
            async with made.database.session() as session:
                await made.load_demo(session)
            loaded = True
        return made

    yield make
    for made in built:
        await made.close()


async def say(services: Services, text: str | None = None, chat: str = "t", **inbound) -> list[str]:
    replies = await asyncio.wait_for(
        services.conversation.handle(Inbound(channel="console", chat_key=chat, text=text, **inbound)), NEVER
    )
    return [reply.plain for reply in replies]


async def ask_code(services: Services, typed: str = TYPED, chat: str = "t", language: str | None = None) -> list[str]:
    """/start, then the number; the SMS goes out once the background work is drained."""
    await say(services, command="start", chat=chat, language_hint=language)
    replies = await say(services, typed, chat=chat)
    await services.background.drain()
    return replies


# --- Twilio SMS ----------------------------------------------------------------------------------


async def test_sms_code_reaches_twilio_and_the_code_verifies(build, fake):
    services = await build()
    replies = await ask_code(services)
    assert "code is on its way" in replies[0]

    assert len(fake.messages) == 1
    message = fake.messages[0]
    assert message.to == MOBILE  # E.164, whatever the relative typed
    assert message.from_ == SMS_FROM and message.messaging_service_sid is None
    assert message.sid.startswith("SM") and message.status == "queued"
    assert set(fake.attempts[0].form) == {"To", "From", "Body"}
    body = message.body
    codes = CODE.findall(body)
    assert len(codes) == 1
    assert "Ward Watch" in body
    assert "never share" in body.lower()
    # No patient data: neither the patient, nor the hospital, nor the admission.
    for private in (*PATIENT.split(), "Bangur", "M.R.", "MRB", REGISTRATION, "ICU", "ventilator"):
        assert private not in body

    replies = await say(services, codes[0])
    assert "your number is confirmed" in replies[0]
    assert any(PATIENT in reply for reply in replies[1:])
    assert fake.unauthorized == 0


async def test_the_reply_does_not_wait_for_the_sms(build, fake):
    services = await build()
    await say(services, command="start")
    fake.hold()

    replies = await say(services, TYPED)  # returns while the fake holds every answer

    assert "code is on its way" in replies[0]
    assert not fake.answered.is_set() and fake.messages == []
    # The send is under way in the background: Twilio has the request, not yet answered.
    await asyncio.wait_for(fake.arrived.wait(), NEVER)
    assert not fake.answered.is_set()
    fake.release()
    await services.background.drain()
    assert fake.answered.is_set()
    assert [message.to for message in fake.messages] == [MOBILE]


async def test_messaging_service_sends_without_from(build, fake):
    services = await build(
        {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
        TWILIO_MESSAGING_SERVICE_SID=MESSAGING_SERVICE_SID,
    )
    await ask_code(services)
    [message] = fake.messages
    assert message.messaging_service_sid == MESSAGING_SERVICE_SID
    assert message.from_ is None and message.status == "accepted"
    assert set(fake.attempts[0].form) == {"To", "MessagingServiceSid", "Body"}
    [code] = CODE.findall(message.body)
    replies = await say(services, code)
    assert any(PATIENT in reply for reply in replies)


def _assert_log_is_clean(text: str, code: str | None) -> None:
    assert MOBILE not in text and MOBILE[1:] not in text and national(MOBILE) not in text
    assert MOBILE[3:] not in text  # not even the national digits
    if code is not None:
        assert code not in text


@pytest.mark.parametrize(
    ("error", "status"),
    [(21211, 400), (21610, 400), (20500, 500)],
    ids=["invalid-number", "opted-out", "server-error"],
)
async def test_a_twilio_error_is_logged_masked_and_the_conversation_goes_on(build, fake, caplog, error, status):
    # Everything said at INFO, the level we run at, by any logger: Twilio's HTTP logs included.
    caplog.set_level(logging.INFO)
    services = await build()
    fake.fail(MOBILE, error, status)

    replies = await ask_code(services)  # drained: the send has failed by now, and did not raise

    assert "code is on its way" in replies[0]  # the same answer: nothing tells the failure
    assert fake.messages == [] and fake.attempts[-1].error_code == error
    [code] = CODE.findall(fake.attempts[-1].form["Body"])
    failures = [r for r in caplog.records if r.name == "handlers.twilio_api" and r.levelno == logging.WARNING]
    assert len(failures) == 1
    assert MASKED in failures[0].getMessage() and str(error) in failures[0].getMessage()
    _assert_log_is_clean(caplog.text, code)
    # The chat still waits for a code; a wrong one is just wrong.
    assert "not right" in (await say(services, "000000" if code != "000000" else "111111"))[0]


async def test_wrong_credentials_are_logged(build, fake, caplog):
    caplog.set_level(logging.INFO)
    services = await build(TWILIO_SMS, TWILIO_AUTH_TOKEN="not-the-token")
    await ask_code(services)
    assert fake.unauthorized == 1 and fake.messages == []
    [failure] = [r for r in caplog.records if r.name == "handlers.twilio_api"]
    assert failure.levelno == logging.WARNING and "20003" in failure.getMessage()
    _assert_log_is_clean(caplog.text, None)


async def test_twilio_out_of_reach_is_logged(build, caplog):
    caplog.set_level(logging.INFO)
    services = await build(TWILIO_SMS, TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    replies = await ask_code(services)
    assert "code is on its way" in replies[0]
    [failure] = [r for r in caplog.records if r.name == "handlers.twilio_api" and r.levelno == logging.WARNING]
    assert MASKED in failure.getMessage()
    _assert_log_is_clean(caplog.text, None)


async def test_a_send_that_twilio_never_answers_times_out(build, fake, caplog):
    """Twilio's client passes no timeout to aiohttp unless told: a hung send would hold the
    background work (and shutdown, which drains it) for good."""
    services = await build()
    services.twilio.http_client.timeout = 0.2  # instead of TWILIO_TIMEOUT_SECONDS
    fake.hold()  # never released during the test
    await say(services, command="start")
    await say(services, TYPED)
    await asyncio.wait_for(services.background.drain(), NEVER)
    assert fake.arrived.is_set() and fake.messages == []
    [failure] = [r for r in caplog.records if r.name == "handlers.twilio_api"]
    assert failure.levelno == logging.WARNING and "Timeout" in failure.getMessage()
    assert MASKED in failure.getMessage()


# --- Twilio Verify -------------------------------------------------------------------------------


async def test_verify_sends_and_checks_the_code(build, fake):
    services = await build(TWILIO_VERIFY)
    replies = await ask_code(services)
    assert "code is on its way" in replies[0]
    assert fake.messages == []  # Verify sends its own SMS, not the Messages API

    [verification] = fake.verifications
    assert verification.to == MOBILE and verification.channel == "sms" and verification.locale == "en"
    assert verification.service_sid == VERIFY_SERVICE_SID

    replies = await say(services, verification.code)
    assert "your number is confirmed" in replies[0]
    assert any(PATIENT in reply for reply in replies[1:])
    assert [(check.to, check.code, check.status) for check in fake.checks] == [(MOBILE, verification.code, "approved")]


async def test_verify_locale_follows_the_chat_language(build, fake):
    services = await build(TWILIO_VERIFY)
    await ask_code(services, language="hi")
    [verification] = fake.verifications
    assert verification.locale == "hi"
    assert [attempt.form.get("Locale") for attempt in fake.attempts] == ["hi"]


async def test_verify_without_a_translation_sends_without_locale(build, fake, caplog):
    """Verify answers 404 to a locale it cannot write (its documented advice: ask again without
    it); the relative still gets a code."""
    caplog.set_level(logging.INFO)
    services = await build(TWILIO_VERIFY)
    assert "bn" not in fake.verify_locales
    await ask_code(services, language="bn")
    assert [(a.form.get("Locale"), a.status) for a in fake.attempts] == [("bn", 404), (None, 201)]
    [verification] = fake.verifications
    assert verification.to == MOBILE and verification.locale is None
    replies = await say(services, verification.code)
    assert any(PATIENT in reply for reply in replies)
    _assert_log_is_clean(caplog.text, verification.code)


async def test_verify_wrong_code_counts_as_a_wrong_try(build, fake):
    services = await build(TWILIO_VERIFY)
    await ask_code(services)
    [verification] = fake.verifications
    wrong = "000000" if verification.code != "000000" else "111111"

    replies = await say(services, wrong)
    assert replies[0] == "That code is not right. You can try 4 more times."
    assert [(check.code, check.status) for check in fake.checks] == [(wrong, "pending")]
    for _ in range(4):
        replies = await say(services, wrong)
    assert "Too many wrong codes" in replies[0]
    # Locked here: even the right code is not sent to Twilio any more.
    replies = await say(services, verification.code)
    assert "Too many wrong codes" in replies[0]
    assert len(fake.checks) == 5 and verification.status == "pending"


async def test_verify_check_after_twilio_ended_the_verification_is_a_wrong_try(build, fake):
    services = await build(TWILIO_VERIFY)
    await ask_code(services)
    [verification] = fake.verifications
    fake.expire(MOBILE)  # Twilio's own ten minutes ran out: VerificationCheck answers 404
    replies = await say(services, verification.code)
    assert replies[0] == "That code is not right. You can try 4 more times."
    assert fake.attempts[-1].status == 404


async def test_verify_start_error_is_logged_masked(build, fake, caplog):
    caplog.set_level(logging.INFO)
    services = await build(TWILIO_VERIFY)
    fake.fail(MOBILE, 60410, 403)
    replies = await ask_code(services)
    assert "code is on its way" in replies[0]
    assert fake.verifications == [] and fake.attempts[-1].error_code == 60410
    [failure] = [r for r in caplog.records if r.name == "handlers.twilio_api" and r.levelno == logging.WARNING]
    assert MASKED in failure.getMessage() and "60410" in failure.getMessage()
    _assert_log_is_clean(caplog.text, None)


@pytest.mark.parametrize("environ", [TWILIO_SMS, TWILIO_VERIFY], ids=["twilio_sms", "twilio_verify"])
async def test_an_unregistered_number_never_reaches_twilio(build, fake, environ):
    services = await build(environ)
    registered = await ask_code(services, chat="registered")
    unregistered = await ask_code(services, national(UNREGISTERED), chat="unregistered")

    # The same words for both, but for the number itself.
    assert unregistered[0].replace(national(UNREGISTERED), "N") == registered[0].replace(national(MOBILE), "N")
    to_twilio = [attempt.form["To"] for attempt in fake.attempts]
    assert UNREGISTERED not in to_twilio and to_twilio == [MOBILE]
    replies = await say(services, "123456", chat="unregistered")
    assert replies[0] == "That code is not right. You can try 4 more times."
    assert [attempt.form["To"] for attempt in fake.attempts] == [MOBILE]


# --- the HTTP client's life ----------------------------------------------------------------------


def _unclosed_session_reports(caplog, held: list) -> list[str]:
    """Drop the sessions in `held` and collect them; return what aiohttp says about any of them
    that was left unclosed: a ResourceWarning, and a report to the event loop's exception handler
    (logged on `asyncio`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held.clear()
        gc.collect()
    reported = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    return reported + [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_close_closes_the_twilio_http_client(build, fake, caplog):
    services = await build()
    await ask_code(services)
    held = [services.twilio.http_client.session]
    assert isinstance(held[0], ClientSession) and not held[0].closed

    await services.close()

    assert held[0].closed
    assert _unclosed_session_reports(caplog, held) == []
    # The check above does see a session left unclosed.
    assert _unclosed_session_reports(caplog, [ClientSession()])


def test_services_with_twilio_build_before_the_event_loop_starts(migrated_url):
    """`python -m bot` builds Services, then starts the loop: the HTTP client must not need one
    yet (aiohttp makes a session only inside a running loop)."""
    services = Services.build(make_settings(migrated_url, **TWILIO_SMS, TWILIO_API_BASE_URL="http://127.0.0.1:9"))
    assert services.twilio.http_client.session is None
    asyncio.run(services.close())


# --- logging -------------------------------------------------------------------------------------


def test_mask_phones():
    assert mask_phones("to +919830012345.") == "to +91******2345."
    assert mask_phones("from whatsapp:+919830012345") == "from whatsapp:+91******2345"
    assert mask_phones("?To=%2B919830012345&x=1") == "?To=%2B91******2345&x=1"
    assert mask_phones("+91 98300 12345 and +91-98300-12346") == "+91******2345 and +91******2346"
    # Not phone numbers: too short, or a long run of digits, or no plus.
    for text in ("+12345", "SM" + "1" * 32, "98300 12345", "order 919830012345"):
        assert mask_phones(text) == text


def test_the_filter_masks_messages_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskPhoneNumbers())
    logger = logging.getLogger("tests.sms.masking")
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        logger.info("code to %s", "+919830012345")
        logger.info("%(who)s wrote", {"who": "whatsapp:+919830012345"})
        try:
            raise ValueError("The 'To' number +919830012345 is not a valid phone number.")
        except ValueError:
            logger.exception("send failed")
        logger.info("where", stack_info=True)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "9830012345" not in text
    assert "code to +91******2345" in text and "whatsapp:+91******2345 wrote" in text
    assert "ValueError: The 'To' number +91******2345 is not a valid phone number." in text


def test_configure_logging_masks_numbers_and_quiets_twilio():
    program = textwrap.dedent(
        """
        import logging
        from bot.platform.logs import configure_logging
        configure_logging(logging.INFO)
        logging.getLogger("handlers.twilio_api").info("SMS code to %s accepted", "+919830012345")
        logging.getLogger("twilio.http_client").info("POST Request: https://api.twilio.com/sync")
        logging.getLogger("twilio.async_http_client").info("Headers: async")
        logging.getLogger("twilio.async_http_client").warning("twilio says careful")
        try:
            raise RuntimeError("The 'To' number +919830012345 is not a valid phone number.")
        except RuntimeError:
            logging.getLogger("bot.platform.background").exception("background task failed")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    log = result.stderr
    assert "INFO handlers.twilio_api: SMS code to +91******2345 accepted" in log
    assert "RuntimeError: The 'To' number +91******2345 is not a valid phone number." in log
    assert "9830012345" not in log
    assert "api.twilio.com" not in log and "Headers" not in log
    assert "WARNING twilio.async_http_client: twilio says careful" in log


def test_cli_configures_logging(monkeypatch, tmp_path):
    levels = []
    monkeypatch.setattr(cli, "configure_logging", levels.append)
    monkeypatch.setenv("BOT_CONFIG", str(tmp_path / "missing.yaml"))
    assert cli.main(["run"]) == 2  # stops at the configuration, after logging is set up
    assert levels == [logging.INFO]


async def test_verify_down_at_check_time_asks_to_retry_and_counts_no_try(build, fake, caplog):
    caplog.set_level(logging.INFO)
    services = await build(TWILIO_VERIFY)
    await ask_code(services)
    [verification] = fake.verifications
    fake.fail(MOBILE, 20500, 500)  # Twilio answers 500 to the check

    replies = await say(services, verification.code)
    assert replies[0] == "Sorry, the code could not be checked just now. Please type it again in a minute."
    assert MOBILE not in caplog.text

    fake.clear_failures()
    replies = await say(services, "000000" if verification.code != "000000" else "111111")
    assert replies[0] == "That code is not right. You can try 4 more times."  # the outage cost no try
