"""The WhatsApp channel end to end: Twilio's webhook signed with twilio's own `RequestValidator`,
posted to the real web app, the real conversation and database (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set), and the replies and SMS codes sent by the real twilio client to the
local fake Twilio API of tests/fakes/twilio.py."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select
from twilio.base.exceptions import TwilioRestException

from bot.app import Services, build_web_app
from bot.platform import db
from bot.platform.i18n import language_of_script
from bot.relatives import housekeeping
from bot.relatives.replies import Button, Reply, RichText
from handlers.twilio_api import twilio_client
from handlers.whatsapp import EMPTY_TWIML, MAX_LENGTH, WEBHOOK_PATH, render
from models.chat import Chat, InboundMessage, Subscription
from tests.conftest import PROJECT_ROOT, SECRET, make_settings, now_utc
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS_FROM,
    WHATSAPP_FROM,
    FakeTwilio,
    post_whatsapp,
    sign,
    whatsapp_form,
)
from tests.support import config_with_templates, free_port, service_environment

PUBLIC_BASE_URL = "https://example.org"
# What the app sees behind a TLS proxy: plain http, another host and port.
SEEN_BASE_URL = "http://127.0.0.1:8080"
# The relative writes from their own WhatsApp number, not the admission number.
RELATIVE = "+447700900123"
OTHER_RELATIVE = "+919830000111"
# Ratan Das, ICU at M.R. Bangur Hospital (bot/intake/demo.py), typed the way relatives write it.
MOBILE, TYPED, PATIENT = "+919000000002", "090000 00002", "Ratan Das"
MASKED_RELATIVE = "+44******0123"
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")

WHATSAPP = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_SMS_FROM": SMS_FROM,
    "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
}
# Message ids, to find what each language makes of them.
WELCOME = (
    "Welcome to Ward Watch. I can tell you how your relative in hospital is doing, "
    "and message you whenever the hospital records a change."
)
NEW_CODE, CHANGE_NUMBER = "Send a new code", "Change number"
ASK_NUMBER = "Please send the mobile number that was written down at admission, for example 98300 12345."
CHOSEN = "I will write to you in English."
STOPPED = "You will get no more alerts. You can still send /status to see the patient. Send /start to get alerts again."
ONLY_TEXT = "Sorry, I can only read text messages."


@dataclass
class WhatsApp:
    """One web instance of the service with WhatsApp configured, and the fake Twilio behind it."""

    services: Services
    http: httpx.AsyncClient
    fake: FakeTwilio

    async def post(self, text: str, sender: str = RELATIVE, **more) -> httpx.Response:
        return await post_whatsapp(self.http, text, sender, PUBLIC_BASE_URL, **more)

    async def send(self, text: str, sender: str = RELATIVE, **more) -> list[str]:
        """Write as the relative; the WhatsApp messages that came back."""
        before = len(self.fake.messages_to(f"whatsapp:{sender}"))
        response = await self.post(text, sender, **more)
        assert response.status_code == 200, response.text
        assert response.text == EMPTY_TWIML and response.headers["content-type"].startswith("text/xml")
        await self.services.background.drain()  # the SMS code goes after the reply
        sent = self.fake.messages_to(f"whatsapp:{sender}")[before:]
        assert all(message.from_ == WHATSAPP_FROM for message in sent)
        return [message.body for message in sent]

    def code_for(self, mobile: str = MOBILE) -> str:
        texts = [message.body for message in self.fake.messages_to(mobile)]
        assert texts, f"no SMS to {mobile}"
        return CODE.search(texts[-1]).group(0)

    async def chat(self, sender: str = RELATIVE) -> Chat | None:
        async with self.services.database.session() as session:
            query = select(Chat).where(Chat.channel == "whatsapp", Chat.chat_key == sender)
            return (await session.exec(query)).first()

    async def count(self, table) -> int:
        async with self.services.database.session() as session:
            return (await session.exec(select(func.count()).select_from(table))).one()

    async def alerts(self, sender: str = RELATIVE) -> list[bool]:
        chat = await self.chat(sender)
        async with self.services.database.session() as session:
            rows = await session.exec(select(Subscription.alerts).where(Subscription.chat_id == chat.id))
            return list(rows.all())

    def _(self, message: str, language: str) -> str:
        return self.services.catalogues.get(language).gettext(message)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def start(services, fake, migrated_url, tmp_path):
    """Starts web instances with WhatsApp configured on the emptied test database (the demo
    patients loaded once); closes them all at the end."""
    opened: list[tuple[Services, httpx.AsyncClient]] = []
    config = config_with_templates(tmp_path)

    async def make() -> WhatsApp:
        built = Services.build(
            make_settings(migrated_url, TWILIO_API_BASE_URL=fake.url, BOT_CONFIG=str(config), **WHATSAPP)
        )
        if not opened:
            async with built.database.session() as session:
                await built.load_demo(session)
        transport = httpx.ASGITransport(app=build_web_app(built))
        http = httpx.AsyncClient(transport=transport, base_url=SEEN_BASE_URL)
        opened.append((built, http))
        return WhatsApp(built, http, fake)

    yield make
    for built, http in opened:
        await http.aclose()
        await built.close()


@pytest.fixture
async def wa(start) -> WhatsApp:
    return await start()


async def verified(wa: WhatsApp, sender: str = RELATIVE) -> list[str]:
    """First message, the admission number, the code: the confirmation and the card."""
    await wa.send("Hello", sender)
    await wa.send(TYPED, sender)
    return await wa.send(wa.code_for(), sender)


# --- the whole conversation ----------------------------------------------------------------------


@pytest.mark.parametrize("language, hello", [("en", "Hello"), ("bn", "নমস্কার"), ("hi", "नमस्ते")])
async def test_number_code_and_status_in_each_language(wa, fake, language, hello):
    [welcome] = await wa.send(hello)
    assert wa._(WELCOME, language) in welcome and wa._(ASK_NUMBER, language) in welcome
    chat = await wa.chat()
    assert (chat.language, chat.state) == (language, "awaiting_number")

    [sent] = await wa.send(TYPED)
    lines = sent.splitlines()
    assert lines[-2:] == [f"1. {wa._(NEW_CODE, language)}", f"2. {wa._(CHANGE_NUMBER, language)}"]
    chat = await wa.chat()
    assert (chat.state, chat.pending_mobile) == ("awaiting_code", MOBILE)
    assert chat.choices == ["resend", "change_number"]
    # The code goes by SMS to the admission number, never to the WhatsApp number it was asked from.
    [sms] = fake.messages_to(MOBILE)
    assert sms.from_ == SMS_FROM
    assert fake.messages_to(RELATIVE) == []

    confirmation, card = await wa.send(wa.code_for())
    assert confirmation != welcome and "/stop" in confirmation
    assert PATIENT in card and "M.R. Bangur Hospital" in card
    assert re.search(r"^\*[^*\n]+\*", card), "the condition line is bold"
    assert (await wa.chat()).state == "verified"
    assert await wa.alerts() == [True]

    [fresh] = await wa.send("/status")
    assert fresh.splitlines()[:3] == card.splitlines()[:3]
    assert len(fake.messages_to(MOBILE)) == 1  # no new SMS for /status


async def test_a_digit_picks_a_numbered_choice_kept_in_the_database(start):
    first = await start()
    [choose] = await first.send("/language")
    assert choose.splitlines()[-3:] == ["1. English", "2. বাংলা", "3. हिन्दी"]
    assert (await first.chat()).choices == ["lang:en", "lang:bn", "lang:hi"]

    # Another web instance (or this one after a restart) continues the conversation.
    second = await start()
    [chosen, hint] = await second.send("2")
    assert chosen == second._(CHOSEN, "bn")
    assert (await second.chat()).language == "bn"

    await second.send("/language")
    [chosen, _hint] = await second.send("৩")  # a digit in Bengali script
    assert chosen == second._(CHOSEN, "hi")
    assert (await second.chat()).language == "hi"


async def test_a_digit_that_picks_nothing_is_read_as_an_answer(wa):
    await wa.send("Hello")
    [answer] = await wa.send("4")  # no choices offered: not a number
    assert "mobile number" in answer
    await wa.send("/language")
    [answer] = await wa.send("7")  # three choices
    assert (await wa.chat()).language == "en" and "1. English" not in answer
    await wa.send("/language")
    [answer] = await wa.send("²")  # a digit, but no decimal one
    assert (await wa.chat()).language == "en" and "mobile number" in answer


async def test_the_numbered_choices_of_the_code_step(wa, fake):
    await wa.send("Hello")
    await wa.send(TYPED)
    [ask] = await wa.send("2")  # Change number
    assert ASK_NUMBER in ask
    chat = await wa.chat()
    assert (chat.state, chat.pending_mobile, chat.choices) == ("awaiting_number", None, None)


async def test_a_quick_reply_button_payload_is_a_choice(wa):
    await wa.send("/language")
    [chosen, _hint] = await wa.send("हिन्दी", ButtonPayload="lang:hi")
    assert chosen == wa._(CHOSEN, "hi")


# --- keywords ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop, resume, help_",
    [("STOP", "Start", "help"), ("বন্ধ", "শুরু", "সাহায্য"), ("रोकें", "शुरू।", "मदद"), ("बंद", "START", "HELP.")],
    ids=["en", "bn", "hi", "hi-band"],
)
async def test_stop_start_and_help_keywords(wa, stop, resume, help_):
    await verified(wa)

    [stopped] = await wa.send(stop)
    assert stopped == STOPPED
    assert await wa.alerts() == [False]

    [help_text] = await wa.send(help_)
    assert "/status" in help_text and "/stop" in help_text

    [back_on, card] = await wa.send(resume)  # verified: alerts again, said, and the card
    assert back_on.startswith("Alerts are on again:")
    assert PATIENT in card
    assert await wa.alerts() == [True]


async def test_keywords_and_slash_commands_begin_a_new_chat(wa):
    [nothing] = await wa.send("stop")
    assert nothing == "You have no alerts to stop."
    [welcome] = await wa.send("START", sender=OTHER_RELATIVE)
    assert WELCOME in welcome
    [help_text] = await wa.send("/help", sender="+919830000222")
    assert "/status" in help_text


@pytest.mark.parametrize("first, language", [("সাহায্য", "bn"), ("मदद", "hi"), ("help", "en")])
async def test_the_script_of_the_first_message_chooses_the_language(wa, first, language):
    [help_text] = await wa.send(first)
    assert (await wa.chat()).language == language
    assert "/status" in help_text and language_of_script(help_text) == (None if language == "en" else language)


# --- signatures ----------------------------------------------------------------------------------


async def _nothing_happened(wa: WhatsApp, fake: FakeTwilio) -> None:
    assert await wa.count(Chat) == 0
    assert await wa.count(InboundMessage) == 0
    assert fake.attempts == []


@pytest.mark.parametrize("signature", ["bm90IHRoZSBzaWduYXR1cmU=", ""], ids=["wrong", "missing"])
async def test_a_bad_or_missing_signature_is_refused_and_changes_nothing(wa, fake, signature):
    response = await wa.post("Hello", signature=signature)
    assert response.status_code == 403
    await _nothing_happened(wa, fake)


async def test_a_signature_for_other_parameters_is_refused(wa, fake):
    signed = sign(PUBLIC_BASE_URL + WEBHOOK_PATH, whatsapp_form("Hello", RELATIVE))
    response = await wa.post("Hello, changed", signature=signed)
    assert response.status_code == 403
    await _nothing_happened(wa, fake)


async def test_the_signature_holds_for_public_base_url_behind_a_proxy(wa, fake):
    """Twilio signs the URL it was given (https://example.org/...); the request reaches the app as
    http://127.0.0.1:8080/...: only PUBLIC_BASE_URL makes it valid."""
    form = whatsapp_form("Hello", RELATIVE)
    as_seen = sign(SEEN_BASE_URL + WEBHOOK_PATH, form)
    response = await wa.http.post(WEBHOOK_PATH, data=form, headers={"X-Twilio-Signature": as_seen})
    assert response.status_code == 403
    await _nothing_happened(wa, fake)

    assert await wa.send("Hello")  # signed for https://example.org/webhooks/twilio/whatsapp


async def test_another_auth_token_is_refused(wa, fake):
    signed = sign(PUBLIC_BASE_URL + WEBHOOK_PATH, whatsapp_form("Hello", RELATIVE, "SM" + "1" * 32), "other-token")
    response = await wa.post("Hello", message_sid="SM" + "1" * 32, signature=signed)
    assert response.status_code == 403
    await _nothing_happened(wa, fake)


@pytest.mark.parametrize(
    "more, reason",
    [
        ({"From": "+447700900123"}, "From"),
        ({"From": "whatsapp:447700900123"}, "From"),
        ({"From": WHATSAPP_FROM}, "From"),  # a status callback sent to the wrong URL
        ({"MessageSid": ""}, "MessageSid"),
        ({"MessageSid": "not-a-sid"}, "MessageSid"),
        ({"ButtonPayload": "resend\x00"}, "ButtonPayload"),
    ],
)
async def test_a_signed_request_that_is_no_message_is_refused(wa, fake, more, reason):
    response = await wa.post("Hello", **more)
    assert response.status_code == 400 and response.text.startswith(reason)
    await _nothing_happened(wa, fake)


async def test_no_webhook_without_whatsapp(client):
    response = await client.post(WEBHOOK_PATH, data=whatsapp_form("Hello", RELATIVE))
    assert response.status_code == 404


# --- Twilio's retries ------------------------------------------------------------------------------


async def test_a_message_twilio_delivers_twice_is_answered_once(start, fake):
    first, second = await start(), await start()
    sid = "SM" + "a" * 32
    assert len(await first.send("Hello", message_sid=sid)) == 1
    assert await first.send("Hello", message_sid=sid) == []
    assert await second.send("Hello", message_sid=sid) == []  # also at another web instance
    assert await first.count(InboundMessage) == 1
    assert len(await first.send("Hello")) == 1  # a new message is answered


async def test_two_deliveries_at_the_same_time_are_answered_once(start, fake):
    first, second = await start(), await start()
    sid = "SM" + "b" * 32
    responses = await asyncio.gather(first.post("Hello", message_sid=sid), second.post("Hello", message_sid=sid))
    assert [response.status_code for response in responses] == [200, 200]
    assert len(fake.messages_to(f"whatsapp:{RELATIVE}")) == 1
    assert await first.count(Chat) == 1


async def test_old_message_ids_are_purged(wa):
    await wa.send("Hello")
    await wa.send("Hi")
    now = now_utc()
    assert await housekeeping.purge_inbound_messages(wa.services.database, now) == 0
    assert await housekeeping.purge_inbound_messages(wa.services.database, now + timedelta(days=1, minutes=1)) == 2
    assert await wa.count(InboundMessage) == 0


# --- refusals and other input ----------------------------------------------------------------------


async def test_a_number_that_opted_out_at_twilio_ends_its_alerts(wa, fake, caplog):
    await verified(wa)
    fake.fail(f"whatsapp:{RELATIVE}", 21610, 400)

    assert await wa.send("/status") == []  # still 200 with empty TwiML
    chat = await wa.chat()
    assert chat.unreachable_at is not None
    assert await wa.alerts() == [False]
    assert MASKED_RELATIVE in caplog.text and RELATIVE not in caplog.text
    assert "21610" in caplog.text

    fake.clear_failures()  # the relative sent START to Twilio's number, then writes to us
    [back_on, card] = await wa.send("START")
    assert back_on.startswith("Alerts are on again:")
    assert PATIENT in card
    assert (await wa.chat()).unreachable_at is None
    assert await wa.alerts() == [True]


@pytest.mark.parametrize("code, status", [(20500, 500), (20429, 429)])
async def test_another_send_error_is_logged_and_marks_nothing(wa, fake, caplog, code, status):
    await verified(wa)
    fake.fail(f"whatsapp:{RELATIVE}", code, status)

    with caplog.at_level(logging.WARNING):
        assert await wa.send("/status") == []
    assert (await wa.chat()).unreachable_at is None
    assert await wa.alerts() == [True]
    assert f"reply to WhatsApp {MASKED_RELATIVE} not sent" in caplog.text and RELATIVE not in caplog.text


async def test_a_message_that_cannot_be_answered_asks_to_send_it_again(wa, caplog, monkeypatch):
    """A fault while answering (here the database not answering) is logged, masked, and the
    relative is asked, in the language of their message's script, to send it again: Twilio would
    not deliver it again after an error answer."""

    async def database_down(inbound):
        raise ConnectionRefusedError("the database is not answering")

    monkeypatch.setattr(wa.services.conversation, "handle", database_down)
    with caplog.at_level(logging.ERROR):
        assert await wa.send("নমস্কার") == ["দুঃখিত, আমাদের দিকে একটা সমস্যা হয়েছে। এক মিনিট পরে আপনার মেসেজটি আবার পাঠান।"]
    assert f"WhatsApp message from {MASKED_RELATIVE} not answered" in caplog.text and RELATIVE not in caplog.text
    monkeypatch.undo()
    assert "স্বাগত" in (await wa.send("নমস্কার"))[0], "the next message is answered as ever"


async def test_a_media_message_without_text_is_unsupported(wa):
    await wa.send("Hello")
    [sorry, hint] = await wa.send("", NumMedia="1", MediaContentType0="image/jpeg")
    assert sorry == ONLY_TEXT and ASK_NUMBER in hint


async def test_a_message_with_characters_that_are_not_text_is_unsupported(wa, fake):
    await wa.send("Hello")

    for text in (f"{TYPED}\x00", "\x1b[2J"):
        [sorry, hint] = await wa.send(text)
        assert sorry == ONLY_TEXT and ASK_NUMBER in hint

    assert (await wa.chat()).pending_mobile is None
    assert fake.messages_to(MOBILE) == []


# --- rendering -------------------------------------------------------------------------------------


def test_bold_spans_buttons_and_line_breaks():
    reply = RichText().line("🔴 Critical ", bold=True).line("Ratan Das, ICU").line("Two\nlines", bold=True)
    [text] = render(reply.reply((Button("Send a new code", "resend"), Button("Change number", "change_number"))))
    assert text == "*🔴 Critical* \nRatan Das, ICU\n*Two*\n*lines*\n\n1. Send a new code\n2. Change number"


def test_a_long_reply_is_split_between_lines():
    lines = [f"{index:04d} " + "x" * 95 for index in range(40)]  # 100 characters each
    messages = render(Reply.text("\n".join(lines), (Button("Change number", "change_number"),)))
    assert len(messages) == 3 and all(len(message) <= MAX_LENGTH for message in messages)
    assert "\n".join(messages).splitlines()[:40] == lines
    assert messages[-1].endswith("1. Change number")


def test_a_single_enormous_line_is_cut():
    messages = render(Reply.text("y" * (MAX_LENGTH * 2 + 10)))
    assert [len(message) for message in messages] == [MAX_LENGTH, MAX_LENGTH, 10]


# --- the fake Twilio's WhatsApp side, through the real client ------------------------------------


@pytest.fixture
async def client_of(fake):
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, fake.url)
    yield client.messages
    await client.http_client.close()


async def test_the_fake_takes_content_templates_with_their_variables(client_of, fake):
    content_sid = "HX" + "c" * 32
    await client_of.create_async(
        from_=WHATSAPP_FROM, to=f"whatsapp:{RELATIVE}", content_sid=content_sid,
        content_variables=json.dumps({"1": "Ratan Das", "2": "ICU"}),
    )  # fmt: skip
    [message] = fake.messages_to(f"whatsapp:{RELATIVE}")
    assert (message.content_sid, message.content_variables, message.body) == (
        content_sid,
        {"1": "Ratan Das", "2": "ICU"},
        "",
    )


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"content_sid": "HX" + "c" * 32, "content_variables": "[1, 2]"}, 21656),
        ({"content_sid": "HX" + "c" * 32, "content_variables": "{not json"}, 21656),
        ({"content_sid": "not-a-content-sid"}, 21655),
        ({"body": "hello", "to": RELATIVE}, 21910),  # WhatsApp sender, SMS recipient
        ({"body": "hello", "from_": SMS_FROM}, 21910),  # SMS sender, WhatsApp recipient
        ({"body": "hello", "to": "whatsapp:12345"}, 21211),
    ],
)
async def test_the_fake_refuses_what_twilio_refuses(client_of, fake, fields, code):
    with pytest.raises(TwilioRestException) as refused:
        await client_of.create_async(**{"from_": WHATSAPP_FROM, "to": f"whatsapp:{RELATIVE}", **fields})
    assert refused.value.code == code and fake.messages == []


# --- python -m bot run ----------------------------------------------------------------------------


async def _until_serving(process: asyncio.subprocess.Process, port: int, lines: list[str]) -> None:
    """Until the process says its web server listens on `port`, keeping what it wrote in `lines`."""
    while not lines or f"Uvicorn running on http://127.0.0.1:{port}" not in lines[-1]:
        line = (await process.stdout.readline()).decode()
        assert line, "the process ended before it served:\n" + "".join(lines)
        lines.append(line)


async def test_python_m_bot_run_serves_the_webhook(fake, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'ward.sqlite3'}"
    await db.upgrade_async(url)
    port = free_port()
    environ = service_environment(
        BOT_CONFIG=str(config_with_templates(tmp_path)), DATABASE_URL=url, SECRET_KEY=SECRET,
        HOST="127.0.0.1", PORT=str(port), TWILIO_API_BASE_URL=fake.url, **WHATSAPP,
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=PROJECT_ROOT, env=environ,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started: list[str] = []
    try:
        await asyncio.wait_for(_until_serving(process, port, started), 120)  # only against a hang
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await post_whatsapp(http, "Hello", RELATIVE, PUBLIC_BASE_URL)
        assert response.status_code == 200
        [welcome] = fake.messages_to(f"whatsapp:{RELATIVE}")
        assert WELCOME in welcome.body
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output = "".join(started) + (await asyncio.wait_for(process.stdout.read(), 30)).decode()
        await process.wait()
    assert process.returncode == 0, output
    assert "WhatsApp webhook at https://example.org/webhooks/twilio/whatsapp" in output
    assert "console" not in output.lower() and RELATIVE not in output
