"""The relative's conversation as a relative meets it, through the console adapter: the number,
the code "sent by SMS", the status card, the commands. Admissions and updates come in through the
hospital API, as a hospital's do. The clock is the test's. Runs on SQLite, and on PostgreSQL
when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import select

from bot.app import Services
from bot.intake.hospitals import get_hospital
from bot.platform.background import Background
from bot.platform.phones import ascii_digits
from bot.relatives import otp as otp_module
from bot.relatives.access import chat_actor
from bot.relatives.conversation import Conversation
from bot.relatives.otp import OtpService
from bot.relatives.replies import Inbound
from handlers.console import ConsoleChat
from models import Admission, AuditEvent, OtpChallenge, Subscription, Verification
from tests.support import Clock, ConsoleRelative, HospitalDesk

# 12:00 in Kolkata.
START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)
MOBILE, MOBILE_TYPED, MOBILE_SHOWN = "+919830012345", "98300 12345", "098300 12345"
OTHER_MOBILE = "+919433055555"
MRB_HELPLINE = "033 2473 2222"

ASK_NUMBER = "Please send the mobile number that was written down at admission, for example 98300 12345."
WELCOME = "Welcome to Ward Watch."
WELCOME_MESSAGE = (
    "Welcome to Ward Watch. I can tell you how your relative in hospital is doing, and message you "
    "whenever the hospital records a change."
)
CODE_ON_ITS_WAY = (
    "If {number} is the number given at admission, a 6-digit code is on its way to it by SMS. "
    "Please type the code here. It is valid for 10 minutes."
)
CODE_BUTTONS = "[1] Send a new code  [2] Change number"
CODE_HINT = "Please type the 6-digit code from the SMS."
VERIFIED_HINT = "Send /status to see the latest condition, or /help for everything I can do."
EXAMPLE = "Please type it like this: 98300 12345."
CONFIRMED_ONE = "Thank you, your number is confirmed."
ENDED = "To protect the patient's privacy, please confirm your number again to keep seeing updates."
MEANWHILE = (
    "Meanwhile: if the number given at admission is not your own, ask the ward staff to add your mobile "
    "number to the patient's record as an alternate number, then confirm it here. Or call the hospital."
)
# Five wrong codes for the code asked at START (12:00 in Kolkata): locked for 24 hours.
LOCKED = (
    "Too many wrong codes were typed for this number. No new code can be asked for it in this chat "
    f"until 3 Jul, 12:00 PM (hospital time).\n\n{MEANWHILE}\n[1] Change number"
)
NUMBER_HINT = "Please send the mobile number that was written down at admission, for example 98300 12345."
TOO_LONG = "That message is too long for me. Please send only the number or the code."
UNKNOWN_COMMAND = (
    "I do not know that command. These are the commands I know:\n"
    "/start: begin, or see your patients again\n"
    "/status: the latest condition\n"
    "/stop: no more alerts\n"
    "/quiet: quiet hours at night, for example /quiet 22-7\n"
    "/language: change the language\n"
    "/help: this message\n"
    "/forget: delete everything about this chat\n"
    "/cancel: stop what you are doing"
)
FORGET_QUESTION = (
    "Delete everything about this chat: the number you confirmed, the patients you follow and their "
    "alerts? To see a patient again you would need a new code."
)
SMS = re.compile(r"^\[SMS to (\+\d+)\] (\d{6}) is your Ward Watch code")


class Relative(ConsoleRelative):
    async def verify(self, typed: str = MOBILE_TYPED, mobile: str = MOBILE) -> str:
        """Give the number, read the SMS, type the code; the answer to the code."""
        answer = await self.say(typed)
        assert CODE_ON_ITS_WAY.format(number=_national(mobile)) in answer, answer
        return await self.say(self.world.code_for(mobile))

    async def state(self) -> tuple[str, str | None]:
        chat = await self.chat()
        assert chat is not None
        return chat.state, chat.pending_mobile


def _national(mobile: str) -> str:
    return {MOBILE: MOBILE_SHOWN, OTHER_MOBILE: "094330 55555"}.get(mobile, mobile)


@dataclass
class World(HospitalDesk):
    """The bot as the console runs it, the hospital API, and the SMS the console "sent"."""

    bot: Services
    api: httpx.AsyncClient
    keys: dict[str, str]
    clock: Clock
    sms: list[str]

    def relative(self, key: str = "local") -> Relative:
        return Relative(self, key)

    def codes_sent(self, mobile: str) -> list[str]:
        found = [SMS.match(line) for line in self.sms]
        return [match.group(2) for match in found if match and match.group(1) == mobile]

    def code_for(self, mobile: str = MOBILE) -> str:
        codes = self.codes_sent(mobile)
        assert codes, f"no SMS to {mobile}"
        return codes[-1]

    async def update(self, reg: str = "R-1", hospital: str = "MRB", hours_ago: float = 4, **fields: Any) -> None:
        await self.record(reg, hospital, self.clock.now - timedelta(hours=hours_ago), **fields)

    async def disclosure(self, hospital: str = "MRB", **policy: bool) -> None:
        async with self.bot.database.session() as session:
            row = await get_hospital(session, hospital)
            for name, value in policy.items():
                setattr(row, name, value)
            session.add(row)
            await session.commit()

    async def rows(self, model, *where) -> list:
        async with self.bot.database.session() as session:
            return list((await session.exec(select(model).where(*where))).all())


@pytest.fixture
async def world(services, client, keys):
    """The hospital API (`client`, on `services`) and the console bot share one database and one
    clock; the console's "SMS" are kept in `sms`."""
    clock = Clock(START)
    services.clock = clock
    sms: list[str] = []
    bot = Services.build(services.settings, show=sms.append)
    bot.clock = clock
    world = World(bot, client, keys, clock, sms)
    yield world
    await world.bot.close()


CRITICAL_ICU = {
    "condition": "critical",
    "care_area": "icu",
    "respiratory_support": "oxygen",
    "spo2": 91,
    "pulse": 104,
    "bp_systolic": 130,
    "bp_diastolic": 85,
    "temperature_c": 38.2,
    "resp_rate": 24,
    "blood_sugar": 160,
    "remarks": "On 6 L/min oxygen by face mask",
}
VITALS = "SpO2 91% · pulse 104/min · BP 130/85 · temperature 38.2 °C (100.8 °F) · breathing rate 24/min · blood sugar 160 mg/dL"


# --- the whole flow ----------------------------------------------------------------------------


async def test_number_code_status_card(world):
    await world.admit()
    await world.update(**CRITICAL_ICU)
    relative = world.relative()

    answer = await relative.say("/start")
    assert answer.startswith(WELCOME) and answer.endswith(ASK_NUMBER)
    assert await relative.state() == ("awaiting_number", None)

    answer = await relative.say(MOBILE_TYPED)
    assert answer == CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN) + "\n" + CODE_BUTTONS
    assert await relative.state() == ("awaiting_code", MOBILE)
    (sms,) = world.sms
    assert sms.startswith(f"[SMS to {MOBILE}] ") and "valid for 10 minutes" in sms

    answer = await relative.say(world.code_for())
    assert answer.startswith(CONFIRMED_ONE + " I will message you here whenever the hospital records a change")
    assert answer.splitlines()[2:] == [
        "🔴 Ratan Das: Critical",
        "M.R. Bangur Hospital, Covid Ward 2, bed B-14",
        "Being treated in: ICU (intensive care unit)",
        "Breathing support: Oxygen",
        VITALS,
        "Last updated 2 Jul, 8:00 AM (4 hours ago)",
    ]
    assert await relative.state() == ("verified", None)
    (subscription,) = await world.rows(Subscription)
    assert subscription.alerts
    (verification,) = await world.rows(Verification)
    assert verification.mobile == MOBILE and verification.verified_at == START

    # /status: the same card, without a new code.
    answer = await relative.say("/status")
    assert answer.splitlines()[0] == "🔴 Ratan Das: Critical"
    assert len(world.sms) == 1


@pytest.mark.parametrize(
    "typed",
    ["98300 12345", "098300 12345", "+91-98300-12345", "+91 98300 12345", "0091 98300 12345",
     "9830012345", "৯৮৩০০ ১২৩৪৫", "०९८३००१२३४५", "(0) 98300-12345"],
)  # fmt: skip
async def test_numbers_in_every_common_format(world, typed):
    await world.admit()
    relative = world.relative()
    await relative.say("/start")  # in English: a first message in Bengali digits would choose Bengali
    answer = await relative.say(typed)
    assert answer.startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))
    assert await relative.state() == ("awaiting_code", MOBILE)
    assert len(world.codes_sent(MOBILE)) == 1


async def test_codes_typed_with_spaces_or_in_bengali_and_devanagari_digits(world):
    await world.admit()
    bengali = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")
    devanagari = str.maketrans("0123456789", "०१२३४५६७८९")
    for key, form in (
        ("spaces", lambda code: f"{code[:3]} {code[3:]}"),
        ("bengali", lambda code: code.translate(bengali)),
        ("devanagari", lambda code: f"{code[:3]}-{code[3:]}".translate(devanagari)),
    ):
        relative = world.relative(key)
        await relative.say(MOBILE_TYPED)
        answer = await relative.say(form(world.code_for()))
        assert answer.startswith(CONFIRMED_ONE), key
        world.clock.advance(minutes=20)


async def test_a_registered_and_an_unregistered_number_get_the_same_reply(world):
    first = world.relative("first")
    unregistered = await first.say(MOBILE_TYPED)
    assert world.sms == []

    await world.admit()
    second = world.relative("second")
    registered = await second.say(MOBILE_TYPED)
    assert len(world.codes_sent(MOBILE)) == 1

    assert registered == unregistered
    assert await first.state() == await second.state() == ("awaiting_code", MOBILE)

    # The replies themselves, as every channel gets them: text, buttons and share button alike.
    async def replies(chat_key: str, mobile_text: str):
        return await world.bot.conversation.handle(Inbound("console", chat_key, text=mobile_text))

    world.clock.advance(minutes=1)
    await world.admit("R-2", contact_mobile="94330 55555")
    to_registered = await replies("third", "94330 55555")
    to_unregistered = await replies("fourth", "94330 66666")
    assert len(to_registered) == len(to_unregistered) == 1
    a, b = to_registered[0], to_unregistered[0]
    assert a.plain.replace("094330 55555", "N") == b.plain.replace("094330 66666", "N")
    assert (a.buttons, a.share_contact) == (b.buttons, b.share_contact)
    await world.bot.background.drain()
    assert world.codes_sent(OTHER_MOBILE) and not world.codes_sent("+919433066666")


async def test_the_reply_does_not_wait_for_the_sms(world):
    """The SMS goes out after the reply, in the background: a slow SMS provider cannot make a
    registered number's answer slower than an unregistered one's."""
    await world.admit()
    release, delivered = asyncio.Event(), []

    class SlowSms:
        async def send(self, mobile: str, body: str) -> None:
            await release.wait()
            delivered.append(mobile)

    bot, background = world.bot, Background()
    otp = OtpService(bot.settings.config.otp, bot.secret_key, bot.now, sender=SlowSms())
    conversation = Conversation(
        bot.database, bot.settings.config, otp, bot.catalogues, background, bot.now, bot.secret_key
    )
    # The SMS waits for `release`: an answer that waited for it would never come (60 s: only against a hang).
    replies = await asyncio.wait_for(conversation.handle(Inbound("console", "slow", text=MOBILE_TYPED)), 60)
    assert replies[0].plain.startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))
    assert delivered == []
    release.set()
    await background.drain()
    assert delivered == [MOBILE]


@pytest.mark.parametrize(
    "typed, reason",
    [
        ("033 2473 2222", "That is a landline number; please send a mobile number."),
        ("+44 7911 123456", "That is not an Indian mobile number."),
        ("+1 415 555 2671", "That is not an Indian mobile number."),
        ("98300", "That does not look like a mobile number."),
        ("98300 1234", "That does not look like a mobile number."),
        ("98300 123456", "That does not look like a mobile number."),
        ("my number is nine eight three", "That does not look like a mobile number."),
        ("abcdefghij", "That does not look like a mobile number."),
    ],
)
async def test_a_bad_number_gets_a_reason_and_an_example(world, typed, reason):
    await world.admit()
    relative = world.relative()
    await relative.say("/start")
    answer = await relative.say(typed)
    assert answer == f"{reason} {EXAMPLE}"
    assert await relative.state() == ("awaiting_number", None)
    assert await world.rows(OtpChallenge) == [] and world.sms == []
    # The right number still works after it.
    assert (await relative.say(MOBILE_TYPED)).startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))


async def test_a_bad_number_while_a_code_is_awaited_keeps_the_code(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    answer = await relative.say("033 2473 2222")
    assert answer == f"That is a landline number; please send a mobile number. {EXAMPLE}"
    assert await relative.state() == ("awaiting_code", MOBILE)
    assert (await relative.say(world.code_for())).startswith(CONFIRMED_ONE)


# --- codes in the conversation -------------------------------------------------------------------


async def test_wrong_codes_then_locked(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    right = world.code_for()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in ("4 more times", "3 more times", "2 more times", "1 more time"):
        assert await relative.say(wrong) == f"That code is not right. You can try {left}.\n{CODE_BUTTONS}"
    assert await relative.say(wrong) == LOCKED
    assert await relative.say(right) == LOCKED
    # A new code is refused too (not "wait 60 seconds"): the wrong tries carry over.
    assert await relative.say(MOBILE_TYPED) == LOCKED
    world.clock.advance(minutes=5)
    assert await relative.say(MOBILE_TYPED) == LOCKED
    assert len(world.sms) == 1
    assert await world.rows(Verification) == []
    # "Change number" asks for a number.
    assert (await relative.say("1")).endswith(ASK_NUMBER)
    assert await relative.state() == ("awaiting_number", None)


async def test_an_unregistered_number_is_refused_every_code_in_the_same_words(world):
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    answers = [await relative.say(f"{guess:06d}") for guess in (123456, 654321, 111111, 222222, 333333)]
    assert answers[0] == "That code is not right. You can try 4 more times.\n" + CODE_BUTTONS
    assert answers[-1] == LOCKED
    assert world.sms == [] and await world.rows(Verification) == []


async def test_resend_waits_a_minute_and_only_the_new_code_works(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    first = world.code_for()
    world.clock.advance(seconds=20)
    assert await relative.say("1") == "Please wait 40 seconds before asking for a new code.\n" + CODE_BUTTONS
    world.clock.advance(seconds=40)
    assert (await relative.say("1")).startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))
    second = world.code_for()
    assert len(world.codes_sent(MOBILE)) == 2
    if first != second:
        assert (await relative.say(first)).startswith("That code is not right. You can try 4 more times.")
    assert (await relative.say(second)).startswith(CONFIRMED_ONE)


async def test_an_expired_code(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    world.clock.advance(minutes=10)
    answer = await relative.say(world.code_for())
    assert answer == "That code has expired. Please ask for a new one.\n" + CODE_BUTTONS
    assert (await relative.say("1")).startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))
    assert (await relative.say(world.code_for())).startswith(CONFIRMED_ONE)


async def test_too_many_codes_for_one_number(world):
    await world.admit()
    for index in range(3):
        relative = world.relative(f"chat{index}")
        assert (await relative.say(MOBILE_TYPED)).startswith(CODE_ON_ITS_WAY.format(number=MOBILE_SHOWN))
    answer = await world.relative("chat3").say(MOBILE_TYPED)
    assert answer == (
        "Too many codes have been asked for this number in the last hour. You can ask for a code for "
        f"this number from 2 Jul, 1:00 PM (hospital time).\n\n{MEANWHILE}"
    )
    assert len(world.sms) == 3


async def test_a_code_belongs_to_the_chat_that_asked(world):
    await world.admit()
    asker, other = world.relative("asker"), world.relative("other")
    await asker.say(MOBILE_TYPED)
    await other.say("/start")
    await other.say(MOBILE_TYPED)
    # Each chat got its own code; the asker's code does not confirm the other chat.
    asker_code, other_code = world.codes_sent(MOBILE)
    if asker_code != other_code:
        assert (await other.say(asker_code)).startswith("That code is not right.")
    assert (await asker.say(asker_code)).startswith(CONFIRMED_ONE)


async def test_no_patient_admitted_any_more(world):
    await world.admit()
    await world.set_status("discharged")
    world.clock.advance(days=8)
    relative = world.relative()
    answer = await relative.verify()
    assert answer == "Your number is confirmed, but no patient is admitted under it now."


# --- the status card -------------------------------------------------------------------------------


async def verified(world, **update: Any) -> Relative:
    await world.admit()
    if update:
        await world.update(**update)
    relative = world.relative()
    await relative.verify()
    return relative


async def card(relative: Relative) -> list[str]:
    return (await relative.say("/status")).splitlines()


@pytest.mark.parametrize(
    "condition, first_line",
    [
        ("stable", "🟢 Ratan Das: Stable"),
        ("moderate", "🟡 Ratan Das: Moderate"),
        ("critical", "🔴 Ratan Das: Critical"),
    ],
)
async def test_condition_words_and_marker(world, condition, first_line):
    relative = await verified(world, condition=condition)
    lines = await card(relative)
    assert lines[0] == first_line
    assert lines[1] == "M.R. Bangur Hospital, Covid Ward 2, bed B-14"


@pytest.mark.parametrize(
    "area, shown",
    [
        ("ward", "General ward"),
        ("hdu", "HDU (high dependency unit)"),
        ("icu", "ICU (intensive care unit)"),
        ("ccu", "CCU (coronary care unit)"),
    ],
)
async def test_care_area(world, area, shown):
    relative = await verified(world, condition="moderate", care_area=area)
    assert f"Being treated in: {shown}" in await card(relative)


@pytest.mark.parametrize(
    "support, shown",
    [
        ("none", "None, breathing without help"),
        ("oxygen", "Oxygen"),
        ("hfnc", "High-flow oxygen (HFNC)"),
        ("niv", "BiPAP, mask ventilation (NIV)"),
        ("ventilator", "Ventilator"),
    ],
)
async def test_breathing_support(world, support, shown):
    relative = await verified(world, condition="moderate", respiratory_support=support)
    assert f"Breathing support: {shown}" in await card(relative)


async def test_vitals_only_where_the_hospital_shows_them(world):
    relative = await verified(world, **CRITICAL_ICU)
    assert VITALS in await card(relative)
    await world.disclosure(show_vitals=False)
    lines = await card(relative)
    assert not any("SpO2" in line or "pulse" in line or "BP" in line for line in lines)
    assert lines[0] == "🔴 Ratan Das: Critical" and "Being treated in: ICU (intensive care unit)" in lines


async def test_remarks_only_where_the_hospital_shows_them(world):
    relative = await verified(world, **CRITICAL_ICU)
    assert not any("6 L/min" in line for line in await card(relative))  # the default: no remarks
    await world.disclosure(show_remarks=True)
    assert "Doctor's note: On 6 L/min oxygen by face mask" in await card(relative)


async def test_the_last_update_is_shown_in_hospital_time(world):
    relative = await verified(world, condition="stable", hours_ago=0)
    # 06:30 UTC is 12:00 in Kolkata.
    assert (await card(relative))[-1].startswith("Last updated 2 Jul, 12:00 PM (")
    world.clock.advance(minutes=90)
    assert (await card(relative))[-1] == "Last updated 2 Jul, 12:00 PM (2 hours ago)"
    world.clock.advance(days=2)
    assert (await card(relative))[-2] == "Last updated 2 Jul, 12:00 PM (2 days ago)"


async def test_an_update_just_recorded_is_not_said_to_come_in_the_future(world):
    """An update recorded this very second, or a little ahead by the hospital's clock (the API
    accepts 5 minutes), is shown as just recorded, not as "in 2 minutes"."""
    relative = await verified(world, condition="stable", hours_ago=0)
    last = (await card(relative))[-1]
    assert last == "Last updated 2 Jul, 12:00 PM (1 second ago)"
    await world.update(condition="moderate", hours_ago=-2 / 60)
    last = (await card(relative))[-1]
    assert last == "Last updated 2 Jul, 12:02 PM (1 second ago)"


@pytest.mark.parametrize(
    "update, hours",
    [
        ({"condition": "stable", "care_area": "icu"}, 6),
        ({"condition": "moderate", "care_area": "hdu"}, 6),
        ({"condition": "critical", "care_area": "ccu"}, 6),
        ({"condition": "critical", "care_area": "ward"}, 12),
        ({"condition": "critical"}, 12),
        ({"condition": "moderate", "care_area": "ward"}, 24),
        ({"condition": "stable"}, 24),
    ],
)
async def test_overdue_warning(world, update, hours):
    relative = await verified(world, hours_ago=0, **update)
    warning = (
        f"⚠️ The hospital has not sent a new update for a while (they usually update every {hours} hours). "
        f"You can call M.R. Bangur Hospital at {MRB_HELPLINE}."
    )
    world.clock.advance(hours=hours, minutes=-1)
    lines = await card(relative)
    assert not any(line.startswith("⚠️") for line in lines)
    assert lines[-1].startswith("Last updated")
    world.clock.advance(minutes=2)
    lines = await card(relative)
    assert lines[-1] == warning


async def test_no_update_yet(world):
    relative = await verified(world)
    assert await card(relative) == [
        "Ratan Das",
        "M.R. Bangur Hospital, Covid Ward 2, bed B-14",
        "No condition update has been recorded yet.",
    ]


async def test_discharged_shows_the_date(world):
    relative = await verified(world, **CRITICAL_ICU)
    await world.disclosure(show_remarks=True)
    world.clock.advance(hours=14)  # 02:00 on 3 July in Kolkata, still 2 July in UTC
    await world.set_status("discharged", remarks="Home isolation for 7 days.")
    assert await card(relative) == ["Ratan Das", "✅ Discharged from M.R. Bangur Hospital on 3 Jul 2024."]


async def test_transferred_shows_where_to(world):
    relative = await verified(world, **CRITICAL_ICU)
    world.clock.advance(hours=1)
    await world.set_status("transferred", to_hospital="SSKM Hospital, Kolkata")
    assert await card(relative) == [
        "Ratan Das",
        "➡️ Moved from M.R. Bangur Hospital to SSKM Hospital, Kolkata on 2 Jul 2024.",
        f"You can call M.R. Bangur Hospital at {MRB_HELPLINE}.",
    ]


async def test_a_death_is_never_announced(world):
    relative = await verified(world, **CRITICAL_ICU)
    await world.disclosure(show_vitals=True, show_remarks=True)
    world.clock.advance(hours=1)
    await world.set_status("deceased", remarks="Cardiac arrest at 12:40.")
    expected = ["Ratan Das", f"For news of this patient, please contact M.R. Bangur Hospital at {MRB_HELPLINE}."]
    assert await card(relative) == expected
    # The same for a relative who verifies only now.
    world.clock.advance(minutes=1)
    other = world.relative("later")
    answer = await other.verify()
    assert answer.splitlines()[-2:] == expected
    hidden = ("Critical", "🔴", "SpO2", "Being treated in", "Breathing", "Last updated", "Doctor", "Cardiac")
    for text in (*hidden, "died", "deceased"):
        assert text not in answer


async def test_a_later_update_is_shown_without_a_new_code(world):
    relative = await verified(world, **CRITICAL_ICU)
    world.clock.advance(hours=3)
    await world.update(condition="moderate", care_area="hdu", respiratory_support="niv", hours_ago=1, spo2=94)
    lines = await card(relative)
    assert lines[0] == "🟡 Ratan Das: Moderate"
    assert "Being treated in: HDU (high dependency unit)" in lines
    assert "Breathing support: BiPAP, mask ventilation (NIV)" in lines
    assert "SpO2 94%" in lines
    assert lines[-1] == "Last updated 2 Jul, 2:00 PM (1 hour ago)"
    assert len(world.sms) == 1


async def test_two_patients_under_one_number(world):
    await world.admit()
    await world.update(**CRITICAL_ICU)
    await world.admit("MCK-1", "MCK", patient_name="Mina Das", ward="Green Building Ward 2", bed=None)
    await world.update("MCK-1", "MCK", condition="stable", care_area="ward")
    relative = world.relative()
    answer = await relative.verify()
    assert "records a change for these 2 patients" in answer
    assert "🔴 Ratan Das: Critical" in answer and "🟢 Mina Das: Stable" in answer
    assert "Medical College Kolkata, Green Building Ward 2" in answer


# --- how long a verification lasts ---------------------------------------------------------------


async def test_verification_lasts_until_seven_days_after_discharge(world):
    relative = await verified(world, condition="stable")
    world.clock.advance(days=2)
    await world.set_status("discharged")
    world.clock.advance(days=7, minutes=-1)
    assert (await card(relative))[1].startswith("✅ Discharged")
    world.clock.advance(minutes=1)
    answer = await relative.say("/status")
    assert answer.startswith(ENDED) and answer.endswith(ASK_NUMBER)
    assert "Ratan Das" not in answer
    assert await relative.state() == ("awaiting_number", None)


async def test_verification_lasts_thirty_days_at_most(world):
    relative = await verified(world, condition="stable")
    world.clock.advance(days=30, minutes=-1)
    assert (await card(relative))[0] == "🟢 Ratan Das: Stable"
    world.clock.advance(minutes=1)
    answer = await relative.say("/status")
    assert answer.startswith(ENDED) and "Ratan Das" not in answer
    # /start asks for the number too; a new code gives 30 more days.
    assert (await relative.say("/start")).startswith(WELCOME)
    answer = await relative.verify()
    assert answer.startswith(CONFIRMED_ONE) and "🟢 Ratan Das: Stable" in answer


async def test_an_admission_added_later_needs_a_new_code(world):
    relative = await verified(world, **CRITICAL_ICU)
    world.clock.advance(hours=1)
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    await world.update("MCK-1", "MCK", condition="stable")
    answer = await relative.say("/status")
    assert "Ratan Das" in answer and "Mina Das" not in answer
    answer = await relative.verify()
    assert "Ratan Das" in answer and "Mina Das" in answer
    assert len(world.sms) == 2


async def test_an_admission_under_an_alternate_number(world):
    await world.admit(alternate_mobiles=["94330 55555"])
    relative = world.relative()
    answer = await relative.verify("094330 55555", OTHER_MOBILE)
    assert "Ratan Das" in answer


# --- the audit trail -----------------------------------------------------------------------------


async def test_every_card_shown_is_audited(world):
    await world.admit()
    await world.update(**CRITICAL_ICU)
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    relative = world.relative("anita")
    await relative.verify()
    world.clock.advance(minutes=5)
    await relative.say("/status")
    await relative.say("/start")
    rows = await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")
    assert len(rows) == 6
    admissions = {a.registration_no: a for a in await world.rows(Admission)}
    assert sorted(row.admission_id for row in rows) == sorted([admissions["R-1"].id, admissions["MCK-1"].id] * 3)
    for row in rows:
        assert (row.actor, row.channel) == (chat_actor(world.bot.secret_key, "console", "anita"), "console")
        assert row.hospital_id is not None
    assert sorted(row.at for row in rows) == [START] * 2 + [START + timedelta(minutes=5)] * 4
    ratan = [row for row in rows if row.admission_id == admissions["R-1"].id]
    assert all(row.detail.get("update_id") for row in ratan)
    # Nothing shown, nothing audited: a wrong code, a /status after the end.
    world.clock.advance(days=31)
    await relative.say("/status")
    assert len(await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")) == 6


# --- commands --------------------------------------------------------------------------------------


async def test_stop_ends_alerts_but_not_status_and_start_resumes(world):
    relative = await verified(world, condition="stable")
    answer = await relative.say("/stop")
    assert answer.startswith("You will get no more alerts. You can still send /status")
    assert [s.alerts for s in await world.rows(Subscription)] == [False]
    assert (await card(relative))[0] == "🟢 Ratan Das: Stable"
    assert await relative.say("/stop") == "You have no alerts to stop."
    answer = await relative.say("/start")
    assert answer.startswith("Alerts are on again: ") and "\n🟢 Ratan Das: Stable" in answer
    assert [s.alerts for s in await world.rows(Subscription)] == [True]


async def test_forget(world):
    relative = await verified(world, condition="stable")
    chat = await relative.chat()
    assert len(await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")) == 1
    answer = await relative.say("/forget")
    assert answer == FORGET_QUESTION + "\n[1] Yes, delete  [2] No, keep"
    assert len(await world.rows(Verification)) == 1
    answer = await relative.say("1")
    assert answer == "Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."
    assert await relative.chat() is None
    assert await world.rows(Verification, Verification.chat_id == chat.id) == []
    assert await world.rows(Subscription, Subscription.chat_id == chat.id) == []
    assert await world.rows(Verification) == [] and await world.rows(Subscription) == []
    # The audit stays, and so do the codes asked for (they hold the limits).
    assert len(await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")) == 1
    assert len(await world.rows(OtpChallenge)) == 1
    # The next message starts over, with the welcome, once.
    answer = await relative.say("/status")
    assert "Ratan Das" not in answer
    assert answer.startswith(WELCOME) and answer.endswith(ASK_NUMBER)
    assert await relative.state() == ("awaiting_number", None)
    assert (await relative.say("hello")).endswith(EXAMPLE)


async def test_forget_while_a_code_is_awaited(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    await relative.say("/forget")
    await relative.say("1")
    assert await relative.chat() is None
    # The old code no longer confirms anything: the conversation starts over.
    answer = await relative.say(world.code_for())
    assert answer.startswith(WELCOME)
    assert await world.rows(Verification) == []


async def test_forget_does_not_undo_a_lockout(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    wrong = f"{(int(world.code_for()) + 1) % 1_000_000:06d}"
    for _ in range(5):
        await relative.say(wrong)
    await relative.say("/forget")
    await relative.say("1")
    world.clock.advance(minutes=2)
    await relative.say("/start")
    answer = await relative.say(MOBILE_TYPED)
    assert answer.startswith("Too many wrong codes were typed for this number.")
    assert len(world.sms) == 1


async def test_cancel(world):
    await world.admit()
    relative = world.relative()
    await relative.say(MOBILE_TYPED)
    assert await relative.say("/cancel") == "Cancelled. Send /start to begin again."
    assert await relative.state() == ("new", None)
    assert (await relative.say(world.code_for())).startswith(WELCOME)
    assert await world.rows(Verification) == []

    # Cancelling a change of number keeps the patients already confirmed.
    world.clock.advance(hours=1)
    await relative.verify()
    await relative.say("/cancel")
    assert (await relative.state())[0] == "verified"
    assert (await card(relative))[0] == "Ratan Das"


async def test_help(world):
    answer = await world.relative().say("/help")
    for command in ("/start", "/status", "/stop", "/language", "/forget", "/cancel", "/help"):
        assert f"\n{command}: " in answer


async def test_language(world):
    relative = world.relative()
    answer = await relative.say("/language")
    assert answer == "Choose your language:\n[1] English  [2] বাংলা  [3] हिन्दी"
    await relative.say("2")
    assert (await relative.chat()).language == "bn"
    await relative.say("/language")
    answer = await relative.say("1")
    assert answer.startswith("I will write to you in English.")
    assert (await relative.chat()).language == "en"
    # Out of range: not a choice, but text.
    await relative.say("/language")
    await relative.say("4")
    assert (await relative.chat()).language == "en"


async def test_unknown_text_gets_the_hint_of_the_step(world):
    await world.admit()
    relative = world.relative()
    # new: any first message starts the conversation
    answer = await relative.say("hello?")
    assert answer.startswith(WELCOME) and answer.endswith(ASK_NUMBER)
    # awaiting the number
    assert await relative.say("/whatever") == f"{UNKNOWN_COMMAND}\n\n{NUMBER_HINT}"
    assert (await relative.say("what is this")).endswith(EXAMPLE)
    assert await relative.state() == ("awaiting_number", None)
    # awaiting the code
    await relative.say(MOBILE_TYPED)
    for text in ("what?", "12345", "1234567"):
        assert await relative.say(text) == f"{CODE_HINT}\n{CODE_BUTTONS}", text
        assert await relative.state() == ("awaiting_code", MOBILE)
    assert await relative.say("/whatever") == f"{UNKNOWN_COMMAND}\n\n{CODE_HINT}\n{CODE_BUTTONS}"
    assert await world.rows(OtpChallenge, OtpChallenge.wrong_tries > 0) == []
    # verified
    await relative.say(world.code_for())
    for text in ("thank you", "123456"):
        assert await relative.say(text) == VERIFIED_HINT, text
        assert (await relative.state())[0] == "verified"
    assert await relative.say("/whatever") == UNKNOWN_COMMAND


async def test_a_message_too_long(world):
    await world.admit()
    relative = world.relative()
    long = "please help " * 42
    assert len(long) > 500 - 10
    assert await relative.say(long[:500]) == TOO_LONG
    await relative.say("/start")
    assert await relative.say(long[:500]) == TOO_LONG
    assert await relative.state() == ("awaiting_number", None)
    await relative.say(MOBILE_TYPED)
    assert await relative.say("1" * 500) == TOO_LONG
    assert await relative.state() == ("awaiting_code", MOBILE)
    assert await world.rows(OtpChallenge, OtpChallenge.wrong_tries > 0) == []


async def test_a_message_with_characters_that_are_not_text_gets_a_polite_reply(world):
    """NUL, terminal escapes and lone surrogates are refused where the message comes in: nothing of
    it reaches the dialogue, so no number is read from it and no code is sent."""
    await world.admit()
    relative = world.relative()
    await relative.say("/start")

    for typed in (f"{MOBILE_TYPED}\x00", f"{MOBILE_TYPED}\ud800", "\x1b[2J"):
        answer = await relative.say(typed)
        assert answer.startswith("Sorry, I can only read text messages."), answer

    assert await relative.state() == ("awaiting_number", None)
    assert world.sms == []


async def test_the_conversation_survives_a_restart(world, services):
    await world.admit()
    await world.update(condition="stable")
    relative = world.relative("restart")
    await relative.say(MOBILE_TYPED)
    code = world.code_for()
    await world.bot.close()

    # A new process on the same database: the code is still awaited.
    world.bot = Services.build(services.settings, show=world.sms.append)
    world.bot.clock = world.clock
    relative = world.relative("restart")
    answer = await relative.say(code)
    assert answer.startswith(CONFIRMED_ONE) and "🟢 Ratan Das: Stable" in answer
    await relative.say("/stop")
    await world.bot.close()

    world.bot = Services.build(services.settings, show=world.sms.append)
    world.bot.clock = world.clock
    relative = world.relative("restart")
    assert (await relative.say("/status")).startswith("🟢 Ratan Das: Stable")
    assert [s.alerts for s in await world.rows(Subscription)] == [False]
    assert len(world.sms) == 1


async def test_a_number_taken_off_the_admission_no_longer_reads_it(world):
    """A hospital corrects a mistyped admission number: whoever confirmed the wrong number (a
    stranger holding it) stops reading the patient at once, without waiting 30 days."""
    relative = await verified(world, condition="stable")
    world.clock.advance(hours=1)
    await world.admit(contact_mobile="94330 55555")
    answer = await relative.say("/status")
    assert "Ratan Das" not in answer and answer.startswith(ENDED)
    assert len(await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")) == 1
    # The right number confirms and reads as usual; a number moved to the alternates still reads.
    right = world.relative("right")
    assert "Ratan Das" in await right.verify("94330 55555", OTHER_MOBILE)
    world.clock.advance(hours=1)
    await world.admit(contact_mobile="94330 55555", alternate_mobiles=["98300 12345"])
    assert "Ratan Das" in await right.say("/status")
    assert (await relative.verify()).count("Ratan Das") == 1


async def test_a_code_with_leading_zeros_is_a_code_not_a_choice(world, monkeypatch):
    digits = iter("000001")
    monkeypatch.setattr(otp_module.secrets, "choice", lambda alphabet: next(digits))
    await world.admit()
    relative = world.relative()
    assert (await relative.say(MOBILE_TYPED)).endswith(CODE_BUTTONS)
    assert world.code_for() == "000001"
    assert (await relative.say("000001")).startswith(CONFIRMED_ONE)


# --- lockouts: which limit, until when, what to do meanwhile ---------------------------------------

KOLKATA = ZoneInfo("Asia/Kolkata")


def hospital_time(world, language: str, moment: datetime) -> str:
    return world.bot.catalogues.get(language).time(moment, KOLKATA)


@pytest.mark.parametrize("language, choice", [("en", None), ("bn", "2")])
async def test_a_lockout_says_until_when_and_what_to_do_in_the_same_words_for_any_number(world, language, choice):
    await world.admit()
    answers = {}
    for key, typed in (("registered", MOBILE_TYPED), ("unregistered", "94330 66666")):
        relative = world.relative(key)
        if choice:
            await relative.say("/language")
            await relative.say(choice)
        await relative.say(typed)
        # The SMS is in the chat's language: the code is its first six digits, in any script.
        code = re.search(r"\d{6}", world.sms[-1].partition("] ")[2])
        wrong = f"{(int(ascii_digits(code.group())) + 1) % 1_000_000:06d}"
        for _ in range(5):
            locked = await relative.say(wrong)
        answers[key] = (locked, await relative.say(typed))
    assert answers["registered"] == answers["unregistered"]
    locked, asked_again = answers["registered"]
    assert locked == asked_again
    if language == "en":
        assert locked == LOCKED
    else:
        until = hospital_time(world, "bn", START + timedelta(days=1))
        assert locked.startswith(
            "এই নম্বরের জন্য অনেকবার ভুল কোড লেখা হয়েছে। "
            f"{until} (হাসপাতালের সময়) পর্যন্ত এই চ্যাটে এই নম্বরের জন্য নতুন কোড চাওয়া যাবে না।\n\n"
            "এর মধ্যে: ভর্তির সময় দেওয়া নম্বরটি যদি আপনার নিজের না হয়, ওয়ার্ডের কর্মীদের বলুন"
        )
        assert "অথবা হাসপাতালে ফোন করুন।" in locked and "MRB" not in locked and MRB_HELPLINE not in locked
    assert "Bangur" not in locked and "Ratan" not in locked


async def test_the_limits_on_codes_say_which_limit_and_until_when(world):
    await world.admit()
    relative = world.relative()
    # Three numbers, the most one chat may try in 24 hours, and codes asked again for two of them.
    for typed in (MOBILE_TYPED, "94330 66666", "94330 77777", MOBILE_TYPED, "94330 66666"):
        assert (await relative.say(typed)).startswith("If ")
        world.clock.advance(seconds=61)
    assert await relative.say("94330 77777") == (
        "Too many codes have been asked for in this chat in the last hour. You can ask for a code for "
        f"this number from 2 Jul, 1:00 PM (hospital time).\n\n{MEANWHILE}"
    )
    world.clock.advance(hours=1)
    assert await relative.say("94330 88888") == (
        "This chat has tried as many different numbers as it may in 24 hours. You can ask for a code "
        f"for this number from 3 Jul, 12:03 PM (hospital time).\n\n{MEANWHILE}"
    )


async def test_the_limits_on_codes_in_hindi(world):
    relative = world.relative()
    await relative.say("/language")
    await relative.say("3")
    for typed in (MOBILE_TYPED, "94330 66666", "94330 77777"):
        await relative.say(typed)
    world.clock.advance(minutes=5, seconds=30)
    until = hospital_time(world, "hi", START + timedelta(days=1))
    assert (await relative.say("94330 88888")).startswith(
        "इस चैट से 24 घंटे में जितने अलग-अलग नंबर आज़माए जा सकते हैं, उतने आज़माए जा चुके हैं। "
        f"{until} (अस्पताल के समय) से इस नंबर के लिए फिर से कोड माँग सकते हैं।\n\n"
        "तब तक: अगर भर्ती के समय दिया गया नंबर आपका अपना नहीं है"
    )


# --- confirmations that promise only what will happen ----------------------------------------------

PROMISE = "I will message you here whenever the hospital records a change"


@pytest.mark.parametrize("status", ["discharged", "deceased", "transferred"])
async def test_the_confirmation_for_a_patient_no_longer_in_hospital_promises_no_updates(world, status):
    await world.admit()
    await world.update(**CRITICAL_ICU)
    await world.set_status(status, **({"to_hospital": "SSKM Hospital, Kolkata"} if status == "transferred" else {}))
    answer = await world.relative().verify()
    assert answer.startswith(
        "Thank you, your number is confirmed. This is what the hospital recorded last:\n\nRatan Das"
    )
    assert PROMISE not in answer and "/stop" not in answer
    # In Bengali too.
    bengali = world.relative("bengali")
    await bengali.say("/language")
    await bengali.say("2")
    world.clock.advance(minutes=1)
    await bengali.say(MOBILE_TYPED)
    code = re.search(r"\d{6}", world.sms[-1].partition("] ")[2]).group()
    answer = await bengali.say(code)
    assert answer.startswith("ধন্যবাদ, আপনার নম্বর যাচাই হয়ে গেছে। হাসপাতাল শেষবার যা লিখেছে:\n\nRatan Das")
    assert "জানাব" not in answer


async def test_the_confirmation_promises_updates_only_for_the_patients_still_in_hospital(world):
    await world.admit()
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    await world.admit("MCK-2", "MCK", patient_name="Anil Das")
    await world.set_status("discharged", "MCK-2", "MCK")
    answer = await world.relative().verify()
    assert answer.startswith(
        "Thank you, your number is confirmed. I will message you here whenever the hospital records a "
        "change for the 2 patients still in hospital. Send /stop to stop these messages."
    )
    await world.set_status("discharged", "MCK-1", "MCK")
    world.clock.advance(hours=1)
    answer = await world.relative("later").verify()
    assert answer.startswith(
        "Thank you, your number is confirmed. I will message you here whenever the hospital records a "
        "change for the patient still in hospital. Send /stop to stop these messages."
    )


async def test_start_after_stop_says_the_alerts_are_back_on(world):
    relative = await verified(world, condition="stable")
    # /start while the alerts are on: the cards, nothing about alerts.
    assert (await relative.say("/start")).startswith("🟢 Ratan Das: Stable")
    await relative.say("/stop")
    answer = await relative.say("/start")
    assert answer.startswith(
        "Alerts are on again: I will message you here whenever the hospital records a change. "
        "Send /stop to stop them.\n\n🟢 Ratan Das: Stable"
    )
    await relative.say("/language")
    await relative.say("3")
    await relative.say("/stop")
    answer = await relative.say("/start")
    assert answer.startswith(
        "सूचनाएँ फिर से चालू हो गई हैं: अस्पताल जब भी कोई बदलाव दर्ज करेगा, आपको यहाँ संदेश भेजा जाएगा। बंद करने के लिए /stop भेजें।"
    )


async def test_start_after_stop_promises_nothing_for_a_discharged_patient(world):
    relative = await verified(world, condition="stable")
    await relative.say("/stop")
    world.clock.advance(hours=1)
    await world.set_status("discharged")
    answer = await relative.say("/start")
    assert answer.startswith("Ratan Das\n✅ Discharged") and "Alerts are on again" not in answer


# --- replies that fit where the chat is -------------------------------------------------------------

LONG = "Please tell me how my father is doing, the doctor said yesterday " * 5


async def test_a_long_message_from_a_verified_relative_gets_the_commands(world):
    relative = await verified(world, condition="stable")
    assert await relative.say(LONG) == (
        "I cannot read long messages: I only answer commands. Send /status to see the latest condition, "
        "or /help for everything I can do. For anything else, please call the hospital."
    )
    await relative.say("/language")
    await relative.say("2")
    answer = await relative.say(LONG)
    assert answer.startswith("আমি লম্বা মেসেজ পড়তে পারি না: আমি শুধু কমান্ডের উত্তর দিই।") and "/status" in answer
    assert (await relative.state())[0] == "verified"


async def test_cancel_with_nothing_in_progress_says_so(world):
    relative = world.relative()
    answer = await relative.say("/cancel")
    assert answer.startswith("There is nothing to cancel.\n\n" + WELCOME) and answer.endswith(ASK_NUMBER)

    verified_relative = await verified(world, condition="stable")
    assert await verified_relative.say("/cancel") == f"There is nothing to cancel.\n\n{VERIFIED_HINT}"
    # A change of number given up: the patients stay, and the words say what is left to do.
    world.clock.advance(minutes=2)
    await verified_relative.say("94330 55555")
    assert await verified_relative.say("/cancel") == f"Cancelled.\n\n{VERIFIED_HINT}"
    assert (await verified_relative.state())[0] == "verified"

    await verified_relative.say("/language")
    await verified_relative.say("3")
    answer = await verified_relative.say("/cancel")
    assert answer.startswith("रद्द करने के लिए कुछ नहीं चल रहा है।\n\n")


async def test_an_unknown_command_gets_the_commands_in_the_chat_language(world):
    relative = world.relative()
    await relative.say("/language")
    await relative.say("2")
    answer = await relative.say("/foo")
    assert answer.startswith("এই কমান্ডটি আমি চিনি না। আমি এই কমান্ডগুলি বুঝি:\n/start: ")
    assert "\n/forget: " in answer and "\n/cancel: " in answer


async def test_choosing_the_language_first_welcomes_once_in_it(world):
    relative = world.relative()
    await relative.say("/language")
    answer = await relative.say("2")
    bengali = world.bot.catalogues.get("bn")
    assert answer.startswith("এখন থেকে আমি আপনাকে বাংলায় লিখব।\n\n" + bengali.gettext(WELCOME_MESSAGE))
    assert answer.endswith(bengali.gettext(ASK_NUMBER))
    assert await relative.state() == ("awaiting_number", None)
    # The next message is read as the answer: no second welcome.
    answer = await relative.say("hello")
    assert answer.endswith(bengali.gettext(EXAMPLE)) and bengali.gettext(WELCOME_MESSAGE) not in answer


async def test_a_landline_first_then_the_next_message_is_read_as_the_answer(world):
    relative = world.relative()
    assert await relative.say("033 2473 2222") == f"That is a landline number; please send a mobile number. {EXAMPLE}"
    assert await relative.say("hello") == f"That does not look like a mobile number. {EXAMPLE}"
    assert await relative.state() == ("awaiting_number", None)


async def test_forget_no_keep_keeps_everything(world):
    relative = await verified(world, condition="stable")
    await relative.say("/forget")
    assert await relative.say("2") == f"Nothing was deleted.\n\n{VERIFIED_HINT}"
    assert (await card(relative))[0] == "🟢 Ratan Das: Stable"
    assert len(await world.rows(Verification)) == 1


async def test_after_forget_the_console_chat_keeps_its_language(world):
    relative = await verified(world, condition="stable")
    await relative.say("/language")
    await relative.say("3")
    await relative.say("/forget")
    answer = await relative.say("1")
    hindi = world.bot.catalogues.get("hi")
    assert answer == hindi.gettext(
        "Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."
    )
    assert (await relative.say("/start")).startswith(hindi.gettext(WELCOME_MESSAGE))
    assert (await relative.chat()).language == "hi"


@pytest.mark.parametrize(
    "first, language",
    [("নমস্কার", "bn"), ("नमस्ते", "hi"), ("৯৮৩০০ ১২৩৪৫", "bn"), ("hello", "en"), ("/start", "en")],
)
async def test_the_console_takes_the_language_from_the_script_of_the_first_message(world, first, language):
    lines: list[str] = []
    typed = iter([first, "/quit"])

    async def read_line() -> str | None:
        return next(typed)

    await ConsoleChat(world.bot.conversation, read_line, lines.append, chat_key="script").run()
    words = world.bot.catalogues.get(language)
    assert lines[0] == "Ward Watch local chat. Type /quit to leave.\nWrite anything to begin: in English, বাংলা or हिन्दी."
    reply = lines[1].strip()
    if first.startswith("৯"):  # a number: the code is on its way, in Bengali
        assert reply.startswith("০৯৮৩০০ ১২৩৪৫ যদি ভর্তির সময় দেওয়া নম্বর হয়")
    else:
        assert reply == f"{words.gettext(WELCOME_MESSAGE)}\n\n{words.gettext(ASK_NUMBER)}"
    assert (await world.relative("script").chat()).language == language
