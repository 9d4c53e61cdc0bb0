"""The Telegram channel end to end: the real python-telegram-bot 22.8 (long polling and webhook)
against the fake Bot API of `tests.fakes.telegram` on 127.0.0.1, with the real conversation, codes
and database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set). No mocked Update objects:
every update is Telegram's JSON, read by PTB's own parser, filters and handlers. Codes go by SMS,
as a Telegram bot requires, through the real twilio client to the fake Twilio of `tests.fakes.twilio`.

Every test ends (fixture teardown) by checking that PTB's error handlers saw nothing, that nothing
was logged at ERROR, and that the fake refused no call (bad HTML, unknown chat, bad keyboard).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select
from telegram.error import BadRequest

from bot.app import Services, build_telegram, build_web_app
from bot.intake.demo import SHARED_MOBILE, TRY_NUMBERS
from bot.platform.phones import national, normalise_mobile
from bot.platform.security import pseudonym
from bot.relatives.replies import Reply, Span
from handlers.telegram import TelegramChannel, send_replies
from models.chat import Chat, OtpChallenge
from tests.conftest import make_settings
from tests.fakes.telegram import FakeTelegram, FakeUser, SentMessage
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio, Message

TOKEN = "123:ABC"
WEBHOOK_URL = "https://example.org/webhooks/telegram"
WEBHOOK_PATH = "/webhooks/telegram"
WEBHOOK_SECRET = "wh_Secret-2020-kolkata"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
UNREGISTERED = normalise_mobile(TRY_NUMBERS[-1][0], "IN")  # +91 90000 00099
CODE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")
BENGALI_DIGIT = re.compile(r"[০-৯]")

# Message ids of the conversation, to find what each language makes of them.
WELCOME = (
    "Welcome to Ward Watch. I can tell you how your relative in hospital is doing, "
    "and message you whenever the hospital records a change."
)
ASK_NUMBER = "Please send the mobile number that was written down at admission, for example 98300 12345."
SHARE = "Share my number"
CHOSEN = "I will write to you in English."
HOSPITALS = ("M.R. Bangur Hospital", "Medical College Kolkata")
PATIENTS = ("সুমিত্রা পাল", "বিমল পাল")  # the two patients under +91 90000 00001


@dataclass
class Bot:
    """Services and the Telegram channel of one process, as `python -m bot` wires them."""

    services: Services
    channel: TelegramChannel
    twilio: FakeTwilio  # the codes' SMS gateway, shared by every process of a test as Twilio is
    errors: list[BaseException] = field(default_factory=list)
    stopped: bool = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            try:
                await self.channel.stop()
            finally:
                await self.services.close()

    async def load_demo(self) -> list[str]:
        async with self.services.database.session() as session:
            return await self.services.load_demo(session)

    @property
    def sms(self) -> list[Message]:
        """Every SMS Twilio accepted, from any process."""
        return self.twilio.messages

    async def texts_to(self, mobile: str) -> list[str]:
        """The bodies of every SMS sent to `mobile` (waits for this process's background sends)."""
        await self.services.background.drain()
        return [message.body for message in self.twilio.messages_to(mobile)]

    async def code_for(self, mobile: str) -> str:
        texts = await self.texts_to(mobile)
        assert texts, f"no SMS to {mobile}"
        return CODE.search(texts[-1]).group(0)

    async def chat(self, user: FakeUser) -> Chat | None:
        async with self.services.database.session() as session:
            found = await session.exec(select(Chat).where(Chat.channel == "telegram", Chat.chat_key == str(user.id)))
            return found.first()

    async def challenges(self, user: FakeUser) -> int:
        async with self.services.database.session() as session:
            chat = pseudonym(self.services.secret_key, f"telegram:{user.id}")
            query = select(func.count()).where(OtpChallenge.chat_pseudonym == chat)
            return (await session.exec(query.select_from(OtpChallenge))).one()


class Relative:
    """One person writing to the bot in a private chat. Each `send` waits for exactly `expect`
    replies and checks, at the next send, that no further reply came."""

    def __init__(
        self, fake: FakeTelegram, user: FakeUser, deliver: Callable[[dict], Awaitable[None]] | None = None
    ) -> None:
        self.fake = fake
        self.user = user
        self.deliver = deliver or fake.push
        self.seen = 0
        self.last_update: dict = {}

    async def send(self, update: dict, expect: int = 1) -> list[SentMessage]:
        already = self.fake.messages_to(self.user.id)
        assert len(already) == self.seen, f"unexpected replies: {[m.plain for m in already[self.seen :]]}"
        self.last_update = update
        await self.deliver(update)
        replies = await self.fake.wait_messages(self.user.id, self.seen + expect)
        self.seen += expect
        return replies[self.seen - expect : self.seen]

    async def text(self, text: str, expect: int = 1) -> list[SentMessage]:
        return await self.send(self.fake.updates.text(self.user, text), expect)

    async def command(self, text: str, expect: int = 1) -> list[SentMessage]:
        return await self.send(self.fake.updates.command(self.user, text), expect)

    async def press(self, data: str, message: SentMessage, expect: int = 1, expired: bool = False):
        assert data in [payload for _, payload in message.inline_buttons], f"no {data!r} on {message.plain!r}"
        return await self.send(self.fake.updates.callback(self.user, data, message, expired=expired), expect)

    async def contact(self, phone: str, user_id: int | None, expect: int = 1) -> list[SentMessage]:
        return await self.send(self.fake.updates.contact(self.user, phone, user_id), expect)

    async def settle(self) -> None:
        """Updates are handled in order: once /help is answered, every earlier reply is in."""
        [reply] = await self.command("/help")
        assert "/status" in reply.plain


def card_names(cards: list[SentMessage]) -> list[str]:
    return [next(name for name in PATIENTS if any(name in bold for bold in card.bold)) for card in cards]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def start_bot(services, fake, twilio, caplog) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    """Starts Services and the Telegram channel on the test database (emptied by `services`),
    like `python -m bot` does; stops and closes everything at the end, then checks that nothing
    went wrong unseen."""
    running: list[Bot] = []
    url = services.settings.database_url

    async def start(**environ: str) -> Bot:
        settings = make_settings(
            url, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=f"{fake.url}/bot", TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM, TWILIO_API_BASE_URL=twilio.url, **environ,
        )  # fmt: skip
        built = Services.build(settings)
        channel = build_telegram(built)
        assert channel is not None
        bot = Bot(built, channel, twilio)

        async def record(update, context) -> None:
            bot.errors.append(context.error)

        channel.application.add_error_handler(record)
        running.append(bot)
        await channel.start()
        return bot

    yield start
    for bot in reversed(running):
        await bot.stop()
    assert [error for bot in running for error in bot.errors] == []
    assert fake.rejected == []
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []


@pytest.fixture
async def bot(start_bot) -> Bot:
    """The bot polling the fake Bot API, with the demo hospitals and patients loaded."""
    started = await start_bot()
    await started.load_demo()
    return started


async def verified(bot: Bot, relative: Relative, mobile: str = SHARED_MOBILE) -> list[SentMessage]:
    """/start, the number, the code: returns the status cards."""
    await relative.command("/start")
    await relative.text(national(mobile))
    confirmation, *cards = await relative.text(await bot.code_for(mobile), expect=3)
    assert "confirmed" in confirmation.plain
    return cards


# --- polling: the whole conversation ------------------------------------------------------------


@pytest.mark.parametrize("typed", ["+91-90000-00001", "০৯০০০০ ০০০০১", "(090000) 00001"])
async def test_number_code_and_status_cards_over_polling(bot, fake, typed):
    ananya = Relative(fake, fake.user("en"))

    [ask] = await ananya.command("/start")
    assert "Welcome to Ward Watch" in ask.plain and "mobile number" in ask.plain
    assert ask.parse_mode == "HTML"
    assert ask.keyboard_buttons == [{"text": SHARE, "request_contact": True}]
    assert (await bot.chat(ananya.user)).state == "awaiting_number"

    [sent] = await ananya.text(typed)
    assert "If 090000 00001 is the number given at admission, a 6-digit code is on its way" in sent.plain
    assert [data for _, data in sent.inline_buttons] == ["resend", "change_number"]
    chat = await bot.chat(ananya.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_code", SHARED_MOBILE)
    [sms] = await bot.texts_to(SHARED_MOBILE)
    assert "Ward Watch code" in sms
    code = CODE.search(sms).group(0)

    confirmation, *cards = await ananya.text(f" {code[:3]} {code[3:]} ", expect=3)
    assert "your number is confirmed" in confirmation.plain
    assert sorted(card_names(cards)) == sorted(PATIENTS)
    for card in cards:
        assert card.parse_mode == "HTML" and card.text.startswith("<b>")
    assert sorted(h for card in cards for h in HOSPITALS if h in card.plain) == sorted(HOSPITALS)
    sumitra = next(card for card in cards if PATIENTS[0] in card.plain)
    assert "Critical" in sumitra.bold[0]
    assert "ICU (intensive care unit)" in sumitra.plain and "BiPAP, mask ventilation (NIV)" in sumitra.plain
    assert "SpO2 90%" in sumitra.plain  # M.R. Bangur shows vitals
    assert (await bot.chat(ananya.user)).state == "verified"

    fresh = await ananya.command("/status", expect=2)
    assert sorted(card_names(fresh)) == sorted(PATIENTS)
    assert [c.plain.splitlines()[:3] for c in fresh] == [c.plain.splitlines()[:3] for c in cards]
    assert len(await bot.texts_to(SHARED_MOBILE)) == 1  # no new SMS for /status

    again = await ananya.command("/start", expect=2)  # a verified chat sees its patients again
    assert sorted(card_names(again)) == sorted(PATIENTS)
    await ananya.settle()
    assert len(await bot.texts_to(SHARED_MOBILE)) == 1


async def test_commands_addressed_to_the_bot_by_name(bot, fake):
    relative = Relative(fake, fake.user("en"))
    [ask] = await relative.command(f"/start@{fake.username}")
    assert "mobile number" in ask.plain
    [reply] = await relative.command(f"/HELP@{fake.username}")
    assert "/forget" in reply.plain


async def test_a_command_carries_what_follows_it(bot, fake):
    relative = Relative(fake, fake.user("en"))
    [reply] = await relative.command("/quiet 22-7")
    assert "Quiet hours set: from 22:00 to 07:00" in reply.plain
    chat = await bot.chat(relative.user)
    assert (chat.quiet_from, chat.quiet_until) == (22, 7)
    [reply] = await relative.command(f"/quiet@{fake.username} off")
    assert reply.plain.startswith("Quiet hours are off")
    assert (await bot.chat(relative.user)).quiet_from is None


# --- languages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language_code", "language", "typed", "shown_number"),
    [
        ("bn", "bn", "০৯০০০০ ০০০০১", "০৯০০০০ ০০০০১"),  # Bengali replies write digits in Bengali
        ("hi-IN", "hi", "+91 90000 00001", "090000 00001"),
    ],
)
async def test_language_comes_from_telegram_language_code(bot, fake, language_code, language, typed, shown_number):
    words = bot.services.catalogues.get(language)
    english = Relative(fake, fake.user("en"))
    relative = Relative(fake, fake.user(language_code, first_name="Mita"))

    [english_ask] = await english.command("/start")
    [ask] = await relative.command("/start")
    assert (await bot.chat(relative.user)).language == language
    assert words.gettext(WELCOME) in ask.plain and words.gettext(ASK_NUMBER) in ask.plain
    assert ask.keyboard_buttons == [{"text": words.gettext(SHARE), "request_contact": True}]
    if words.gettext(WELCOME) != WELCOME:  # once the catalogue has it, the words differ
        assert ask.plain != english_ask.plain

    [sent] = await relative.text(typed)
    assert shown_number in sent.plain
    if language == "bn":
        assert "090000" not in sent.plain
    code = await bot.code_for(SHARED_MOBILE)
    confirmation, *cards = await relative.text(code, expect=3)
    assert sorted(card_names(cards)) == sorted(PATIENTS)
    assert sorted(h for card in cards for h in HOSPITALS if h in card.plain) == sorted(HOSPITALS)
    for card in cards:
        assert bool(BENGALI_DIGIT.search(card.plain)) == (language == "bn")
    assert (await bot.chat(relative.user)).language == language


async def test_a_message_that_cannot_be_answered_asks_to_send_it_again(start_bot, fake, caplog, monkeypatch):
    """A fault while answering (here the database not answering) is logged, and the relative,
    instead of hearing nothing, is asked in their app's language to send the message again."""
    bot = await start_bot()

    async def database_down(inbound):
        raise ConnectionRefusedError("the database is not answering")

    monkeypatch.setattr(bot.services.conversation, "handle", database_down)
    relative = Relative(fake, FakeUser(7301, "Rupa", "bn"))
    [reply] = await relative.command("/start")
    assert reply.plain == "দুঃখিত, আমাদের দিকে একটা সমস্যা হয়েছে। এক মিনিট পরে আপনার মেসেজটি আবার পাঠান।"
    logged = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in logged] == [
        f"Telegram update {relative.last_update['update_id']} not answered"
    ]
    assert isinstance(logged[0].exc_info[1], ConnectionRefusedError)

    monkeypatch.undo()
    [reply] = await relative.command("/start")
    assert "স্বাগত" in reply.plain, "the next message is answered as ever"
    # Seen and expected: the fixture's check that nothing went wrong unseen is for the rest.
    assert [type(error) for error in bot.errors] == [ConnectionRefusedError]
    bot.errors.clear()
    caplog.clear()


async def test_unknown_telegram_language_falls_back_to_english(bot, fake):
    relative = Relative(fake, fake.user("fr"))
    [ask] = await relative.command("/start")
    assert WELCOME in ask.plain
    assert (await bot.chat(relative.user)).language == "en"


async def test_language_buttons_switch_the_language(bot, fake):
    relative = Relative(fake, fake.user("en"))
    await relative.command("/start")
    [menu] = await relative.command("/language")
    assert menu.inline_buttons == [("English", "lang:en"), ("বাংলা", "lang:bn"), ("हिन्दी", "lang:hi")]

    done, hint = await relative.press("lang:bn", menu, expect=2)
    bengali = bot.services.catalogues.get("bn")
    assert done.plain == bengali.gettext(CHOSEN)
    assert hint.keyboard_buttons == [{"text": bengali.gettext(SHARE), "request_contact": True}]
    [answered] = fake.callback_answers  # the button stops spinning
    assert answered["callback_query_id"] == relative.last_update["callback_query"]["id"]
    assert (await bot.chat(relative.user)).language == "bn"

    [sent] = await relative.text("+91 90000 00001")
    assert "০৯০০০০ ০০০০১" in sent.plain  # now in Bengali digits

    done, _ = await relative.press("lang:hi", menu, expect=2)  # the old menu still works
    assert done.plain == bot.services.catalogues.get("hi").gettext(CHOSEN)
    assert (await bot.chat(relative.user)).language == "hi"
    assert len(fake.callback_answers) == 2


async def test_a_button_press_telegram_no_longer_waits_for_still_works(bot, fake):
    """After downtime, old button presses arrive when answerCallbackQuery is refused as "too old";
    the press must still do what it says."""
    relative = Relative(fake, fake.user("en"))
    [menu] = await relative.command("/language")
    done, _ = await relative.press("lang:hi", menu, expect=2, expired=True)
    assert done.plain == bot.services.catalogues.get("hi").gettext(CHOSEN)
    assert (await bot.chat(relative.user)).language == "hi"
    [(method, _, reason)] = fake.rejected
    assert method == "answercallbackquery" and "query is too old" in reason
    fake.rejected.clear()


# --- what must not leak ---------------------------------------------------------------------------


async def test_unregistered_number_gets_the_same_reply_and_no_sms(bot, fake):
    registered = Relative(fake, fake.user("en"))
    stranger = Relative(fake, fake.user("en"))
    for relative in (registered, stranger):
        await relative.command("/start")

    [to_registered] = await registered.text("+91 90000 00001")
    [to_stranger] = await stranger.text("+91 90000 00099")
    assert to_registered.text.replace("090000 00001", "N") == to_stranger.text.replace("090000 00099", "N")
    assert "090000 00099" in to_stranger.text
    assert to_registered.reply_markup == to_stranger.reply_markup
    assert to_registered.parse_mode == to_stranger.parse_mode
    for relative in (registered, stranger):
        assert (await bot.chat(relative.user)).state == "awaiting_code"

    assert len(await bot.texts_to(SHARED_MOBILE)) == 1
    assert await bot.texts_to(UNREGISTERED) == []
    assert len(bot.sms) == 1

    # A guess is "not right" in the same words for both.
    [wrong_registered] = await registered.text("000000")
    [wrong_stranger] = await stranger.text("000000")
    assert wrong_registered.text == wrong_stranger.text
    assert "not right" in wrong_stranger.plain and wrong_registered.reply_markup == wrong_stranger.reply_markup


async def test_own_contact_counts_as_the_typed_number_but_still_needs_the_code(bot, fake):
    relative = Relative(fake, fake.user("en"))
    await relative.command("/start")
    # Telegram often sends the shared number without "+".
    [sent] = await relative.contact("919000000001", user_id=relative.user.id)
    assert "If 090000 00001 is the number given at admission" in sent.plain
    chat = await bot.chat(relative.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_code", SHARED_MOBILE)
    code = await bot.code_for(SHARED_MOBILE)

    [hint] = await relative.command("/status")  # no cards before the code
    assert "6-digit code" in hint.plain and not any(name in hint.plain for name in PATIENTS)

    _, *cards = await relative.text(code, expect=3)
    assert sorted(card_names(cards)) == sorted(PATIENTS)


@pytest.mark.parametrize("owner", ["someone else", "not on Telegram"])
async def test_someone_elses_contact_is_refused_without_sms(bot, fake, owner):
    relative = Relative(fake, fake.user("en"))
    other = fake.user("en", first_name="Bimal")
    await relative.command("/start")
    [refused] = await relative.contact("+919000000001", user_id=other.id if owner == "someone else" else None)
    assert "share your own number" in refused.plain
    assert refused.keyboard_buttons == [{"text": SHARE, "request_contact": True}]
    chat = await bot.chat(relative.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_number", None)
    assert await bot.challenges(relative.user) == 0
    await relative.settle()
    assert bot.sms == [] and await bot.texts_to(SHARED_MOBILE) == []


# --- hospital text in HTML ------------------------------------------------------------------------


async def test_hospital_remarks_with_html_characters_arrive_intact(start_bot, fake):
    bot = await start_bot()
    # load_demo shows each hospital's new API key once: "  API key (shown once, keep it safe): MCK.…"
    keys = [line.split(": ", 1)[1] for line in await bot.load_demo() if "API key" in line]
    [mck_key] = [key for key in keys if key.startswith("MCK.")]
    relative = Relative(fake, fake.user("en"))
    await verified(bot, relative)

    remark = 'SpO2 <90 & falling; O2 > 4 L/min, "drowsy" <b>not bold</b> &amp; done'
    transport = httpx.ASGITransport(app=build_web_app(bot.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(
            "/api/v1/admissions/MCK-20-1107/updates",
            json={"condition": "moderate", "care_area": "ward", "respiratory_support": "oxygen", "remarks": remark},
            headers={"Authorization": f"Bearer {mck_key}"},
        )
    assert response.status_code == 201, response.text

    cards = await relative.command("/status", expect=2)
    bimal = next(card for card in cards if PATIENTS[1] in card.plain)
    assert f"Doctor's note: {remark}" in bimal.plain  # what the relative reads, exactly
    assert "SpO2 &lt;90 &amp; falling" in bimal.text and "&lt;b&gt;not bold&lt;/b&gt; &amp;amp; done" in bimal.text
    assert bimal.bold == (f"🟡 {PATIENTS[1]}: Moderate",)
    sumitra = next(card for card in cards if PATIENTS[0] in card.plain)
    assert "Doctor's note" not in sumitra.plain  # M.R. Bangur does not show remarks


async def test_long_replies_are_cut_into_messages_telegram_accepts(bot, fake):
    """The renderer against the fake's HTML and length checks, with escapes that make the HTML
    longer than the text."""
    user = fake.user("en")
    fake.known_chats.add(user.id)
    body = "".join(f"line {n}: SpO2 <90 & pulse >120\n" for n in range(400))  # ~12,000 characters
    reply = Reply((Span("Title <&>", bold=True), Span("\n"), Span(body), Span("end", bold=True)))
    await send_replies(bot.channel.application, user.id, [reply])
    messages = fake.messages_to(user.id)
    assert len(messages) >= 3
    assert all(len(m.plain) <= 4096 and len(m.text) <= 4096 for m in messages)
    assert "".join(m.plain for m in messages).replace("\n", "") == reply.plain.replace("\n", "")
    assert messages[0].bold[0] == "Title <&>" and messages[-1].bold[-1] == "end"


async def test_the_fake_refuses_html_telegram_would_refuse(bot, fake):
    """So that "the fake accepted it" means something: the real PTB client, the fake's checks."""
    user = fake.user("en")
    fake.known_chats.add(user.id)
    send = bot.channel.application.bot.send_message
    for text in ("SpO2 <90", "A & B", "<b>open", "<b>x</i>", "<script>x</script>", "x" * 4097, "   "):
        with pytest.raises(BadRequest):
            await send(user.id, text, parse_mode="HTML")
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await send(user.id, "SpO2 <90 & falling", parse_mode="HTML")
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await send(fake.user("en").id, "hello")
    message = await send(user.id, "<b>Bimal &lt;3 &amp; co</b> &#2453; > ok", parse_mode="HTML")
    assert message.text == "Bimal <3 & co ক > ok"
    assert fake.messages_to(user.id)[-1].bold == ("Bimal <3 & co",)
    fake.rejected.clear()


# --- awkward input --------------------------------------------------------------------------------


async def test_stickers_photos_unknown_commands_and_huge_texts_get_a_polite_reply(bot, fake):
    relative = Relative(fake, fake.user("en"))
    await relative.command("/start")

    sorry, hint = await relative.send(fake.updates.sticker(relative.user), expect=2)
    assert sorry.plain == "Sorry, I can only read text messages."
    assert "mobile number" in hint.plain and hint.keyboard_buttons[0]["request_contact"] is True
    sorry, _ = await relative.send(fake.updates.photo(relative.user, caption="+91 90000 00001"), expect=2)
    assert sorry.plain == "Sorry, I can only read text messages."
    commands, unknown = await relative.command("/frobnicate now", expect=2)
    assert commands.plain.startswith("I do not know that command. These are the commands I know:\n/start: ")
    assert "mobile number" in unknown.plain
    [too_long] = await relative.text("৯" * 5000)
    assert "too long" in too_long.plain

    await relative.settle()
    chat = await bot.chat(relative.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_number", None)
    assert bot.sms == [] and await bot.challenges(relative.user) == 0


async def test_a_message_with_characters_that_are_not_text_gets_a_polite_reply(bot, fake):
    relative = Relative(fake, fake.user("en"))
    await relative.command("/start")

    for text in ("+91 90000 00001\x00", "\x1b[2J"):
        sorry, hint = await relative.text(text, expect=2)
        assert sorry.plain == "Sorry, I can only read text messages."
        assert "mobile number" in hint.plain

    await relative.settle()
    chat = await bot.chat(relative.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_number", None)
    assert bot.sms == [] and await bot.challenges(relative.user) == 0


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("033 2241 1234", "That is a landline number; please send a mobile number."),
        ("98300 1234", "That does not look like a mobile number."),
        ("+44 7911 123456", "That is not an Indian mobile number."),
        ("call me", "That does not look like a mobile number."),
    ],
)
async def test_landlines_and_malformed_numbers_get_a_reason_and_change_nothing(bot, fake, typed, reason):
    relative = Relative(fake, fake.user("en"))
    await relative.command("/start")
    [reply] = await relative.text(typed)
    assert reply.plain == f"{reason} Please type it like this: 98300 12345."
    assert reply.keyboard_buttons == [{"text": SHARE, "request_contact": True}]
    chat = await bot.chat(relative.user)
    assert (chat.state, chat.pending_mobile) == ("awaiting_number", None)
    assert await bot.challenges(relative.user) == 0
    await relative.settle()
    assert bot.sms == []


# --- webhook mode ---------------------------------------------------------------------------------


async def test_webhook_mode_checks_the_secret(start_bot, fake):
    bot = await start_bot(TELEGRAM_WEBHOOK_URL=WEBHOOK_URL, TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET)
    await bot.load_demo()
    assert fake.webhook.url == WEBHOOK_URL and fake.webhook.secret_token == WEBHOOK_SECRET
    assert fake.called("getUpdates") == [] and fake.called("deleteWebhook") == []

    transport = httpx.ASGITransport(app=build_web_app(bot.services, bot.channel))
    async with httpx.AsyncClient(transport=transport, base_url="https://example.org") as http:

        async def post(update: dict, secret: str | None = WEBHOOK_SECRET) -> int:
            headers = {SECRET_HEADER: secret} if secret is not None else {}
            return (await http.post(WEBHOOK_PATH, json=update, headers=headers)).status_code

        async def deliver(update: dict) -> None:
            assert await post(update) == 200

        relative = Relative(fake, fake.user("en"), deliver)
        intruder = fake.user("en", first_name="Mallory")
        for secret in ("wrong-secret", WEBHOOK_SECRET[:-1], WEBHOOK_SECRET + "x", "", None):
            assert await post(fake.updates.command(intruder, "/start"), secret) == 403
        assert await post(fake.updates.text(intruder, "+91 90000 00001"), "wrong-secret") == 403
        # Right secret, but not an update: acknowledged (Telegram would only deliver it again), nothing queued.
        for broken in (b"{not json", b"[1, 2]", b"{}", b'{"update_id": 1, "message": {"message_id": 1}}'):
            response = await http.post(WEBHOOK_PATH, content=broken, headers={SECRET_HEADER: WEBHOOK_SECRET})
            assert response.status_code == 200, broken

        await verified(bot, relative)
        await relative.settle()
        assert fake.messages_to(intruder.id) == []
        assert await bot.chat(intruder) is None
        assert await bot.challenges(intruder) == 0
        assert len(await bot.texts_to(SHARED_MOBILE)) == 1
        assert fake.called("getUpdates") == []


async def start_webhook(start_bot) -> tuple[Bot, Callable[[dict | bytes], Awaitable[int]]]:
    """A process in webhook mode, and how Telegram posts an update (JSON, or any bytes) to it,
    with the secret: the status it gets back."""
    bot = await start_bot(TELEGRAM_WEBHOOK_URL=WEBHOOK_URL, TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET)
    app = build_web_app(bot.services, bot.channel)

    async def post(update: dict | bytes) -> int:
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        headers = {SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://example.org") as http:
            return (await http.post(WEBHOOK_PATH, content=body, headers=headers)).status_code

    return bot, post


def _dated(fake: FakeTelegram, user: FakeUser) -> dict:
    update = fake.updates.text(user, "+91 90000 00001")
    update["message"]["date"] = 1e20  # year 3 thousand million
    return update


def _replies_nested(fake: FakeTelegram, user: FakeUser) -> dict:
    """A message replying to a message replying to ... 900 deep: valid JSON, too deep for PTB."""
    update = fake.updates.text(user, "+91 90000 00001")
    message = update["message"]
    for _ in range(900):
        message = {**update["message"], "reply_to_message": message}
    return {**update, "message": message}


def _arrays_nested(fake: FakeTelegram, user: FakeUser) -> bytes:
    """20,000 nested arrays: too deep for Python's JSON parser."""
    update_id = fake.updates.text(user, "hello")["update_id"]
    return f'{{"update_id": {update_id}, "message": {"[" * 20_000}{"]" * 20_000}}}'.encode()


@pytest.mark.parametrize("malformed", [_dated, _replies_nested, _arrays_nested], ids=["date", "replies", "arrays"])
async def test_a_malformed_update_is_acknowledged_logged_and_dropped(start_bot, fake, caplog, malformed):
    """Telegram delivers an update again for a day until it is answered 200: a malformed one is
    acknowledged, so that it does not come back, and logged."""
    bot, post = await start_webhook(start_bot)
    await bot.load_demo()
    user = fake.user("en")

    with caplog.at_level(logging.INFO):
        assert await post(malformed(fake, user)) == 200

    [dropped] = [record for record in caplog.records if "malformed" in record.getMessage()]
    assert dropped.levelno == logging.WARNING
    relative = Relative(fake, user, lambda update: _delivered(post, update))
    await relative.settle()  # answered, and nothing before it
    assert await bot.challenges(user) == 0 and bot.sms == []


async def _delivered(post: Callable[[dict | bytes], Awaitable[int]], update: dict) -> None:
    assert await post(update) == 200


@pytest.mark.parametrize(
    "kind, content",
    [
        ("a_kind_telegram_adds_later", {"id": 7, "text": "+91 90000 00001"}),
        ("message_reaction", {"message_id": 3, "date": 1767225600, "old_reaction": [],
                              "new_reaction": [{"type": "emoji", "emoji": "🙏"}]}),
    ],
    ids=["unknown", "reaction"],
)  # fmt: skip
async def test_an_update_of_a_kind_the_bot_does_not_handle_is_acknowledged_and_logged(start_bot, fake, caplog, kind,
                                                                                     content):  # fmt: skip
    bot, post = await start_webhook(start_bot)
    user = fake.user("en")
    update_id = fake.updates.text(user, "hello")["update_id"]
    chat = {"chat": user.private_chat(), "user": user.json()} if kind == "message_reaction" else {}

    with caplog.at_level(logging.INFO):
        assert await post({"update_id": update_id, kind: {**content, **chat}}) == 200
        relative = Relative(fake, user, lambda update: _delivered(post, update))
        await relative.settle()

    assert f"Telegram update {update_id} not handled: {kind}" in caplog.messages
    assert await bot.challenges(user) == 0


async def test_an_update_delivered_twice_is_handled_once_across_processes(start_bot, fake):
    """Telegram delivers an update again when the answer is slow; behind a load balancer the
    second delivery may reach another web process."""
    first, post_first = await start_webhook(start_bot)
    second, post_second = await start_webhook(start_bot)  # another process, the same database
    await first.load_demo()
    relative = Relative(fake, fake.user("en"), lambda update: _delivered(post_first, update))
    await relative.command("/start")
    number = fake.updates.text(relative.user, "+91 90000 00001")
    await relative.send(number)

    for post in (post_second, post_first, post_second):
        assert await post(number) == 200
    relative.deliver = lambda update: _delivered(post_second, update)
    await relative.settle()  # each process handles updates in order: the repeats were dropped
    relative.deliver = lambda update: _delivered(post_first, update)
    await relative.settle()
    await second.services.background.drain()
    assert len(await first.texts_to(SHARED_MOBILE)) == 1  # sent by one process or the other, once
    assert await first.challenges(relative.user) == 1


async def test_without_webhook_url_there_is_no_webhook_route(start_bot, fake):
    bot = await start_bot()
    transport = httpx.ASGITransport(app=build_web_app(bot.services, bot.channel))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(WEBHOOK_PATH, json={}, headers={SECRET_HEADER: WEBHOOK_SECRET})
    assert response.status_code == 404
    assert fake.webhook.url == "" and fake.called("deleteWebhook")


# --- restarts -------------------------------------------------------------------------------------


async def test_a_conversation_survives_a_restart(start_bot, fake):
    first = await start_bot()
    await first.load_demo()
    relative = Relative(fake, fake.user("bn"))
    await relative.command("/start")
    await relative.text("+91 90000 00001")
    code = await first.code_for(SHARED_MOBILE)
    await first.stop()

    second = await start_bot()  # a new process on the same database
    assert (await second.chat(relative.user)).state == "awaiting_code"
    confirmation, *cards = await relative.text(code, expect=3)
    assert sorted(card_names(cards)) == sorted(PATIENTS)
    assert (await second.chat(relative.user)).language == "bn"
    await relative.settle()  # and the updates the first process handled were not handled again
    await second.services.background.drain()
    assert len(second.sms) == 1


async def test_the_command_menu_is_set_in_every_language(bot, fake):
    menus = {code: {entry["command"]: entry["description"] for entry in menu} for code, menu in fake.commands.items()}
    assert set(menus) == {"", "bn", "hi"}  # "" is the default: English
    for menu in menus.values():
        assert list(menu) == ["start", "status", "stop", "quiet", "language", "help", "forget", "cancel"]
    assert menus[""]["status"] == "The latest condition"
    assert menus["bn"]["status"] != menus[""]["status"] != menus["hi"]["status"]
