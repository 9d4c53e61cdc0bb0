"""Alerts on WhatsApp: the hospital records a change through its API, the dispatcher sends it
through the real twilio client to the fake Twilio API; within 24 hours of the relative's last
message as free text, later as the approved template of its kind and language; Twilio's delivery
reports come back to `POST /webhooks/twilio/status`, signed with twilio's `RequestValidator`.
The clock is the test's. SQLite, and PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import select

from bot.app import Services, build_web_app
from bot.intake.hospitals import rotate_key
from models import Admission
from models.chat import Chat, Notification, Subscription, Verification
from tests.conftest import SECRET, auth, make_settings
from tests.fakes.twilio import Message, post_status
from tests.support import WHATSAPP_TEMPLATES, Clock, HospitalDesk, config_with_templates
from tests.test_cli import keep_logging, operator, run  # noqa: F401 (fixtures)
from tests.test_whatsapp import (  # noqa: F401 (fixtures)
    PUBLIC_BASE_URL,
    RELATIVE,
    SEEN_BASE_URL,
    WHATSAPP,
    WhatsApp,
    fake,
    start,
)

RATAN = "MRB-20-0413"  # Ratan Das, ICU at M.R. Bangur Hospital (bot/intake/demo.py), under the number TYPED
TYPED, MRB_HELPLINE = "090000 00002", "033 2400 1000"
TO = f"whatsapp:{RELATIVE}"
STATUS_CALLBACK = f"{PUBLIC_BASE_URL}/webhooks/twilio/status"
GENERAL_WARD = {"condition": "stable", "care_area": "ward", "respiratory_support": "none"}
HELLO = {"en": "Hello", "bn": "নমস্কার", "hi": "नमस्ते"}
JUST_UNDER, JUST_OVER = timedelta(hours=23, minutes=59), timedelta(hours=24, minutes=1)
KOLKATA = ZoneInfo("Asia/Kolkata")


class Hospital(HospitalDesk):
    """M.R. Bangur Hospital's system, calling the API of the same web instance with its key,
    about Ratan Das."""

    def __init__(self, wa: WhatsApp, clock: Clock, key: str) -> None:
        self.api, self.keys, self.clock = wa.http, {"MRB": key}, clock

    async def update(self, **fields) -> None:
        await self.record(RATAN, "MRB", self.clock.now, **fields)

    async def status(self, status: str) -> None:
        await self.set_status(status, RATAN)


@pytest.fixture
async def ward(start):
    """A WhatsApp web instance on the test's clock, and the hospital's system."""
    wa = await start()
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    wa.services.clock = clock
    async with wa.services.database.session() as session:
        issued = await rotate_key(session, wa.services.secret_key, "MRB")
        await session.commit()
    return wa, clock, Hospital(wa, clock, issued.api_key)


async def follow(wa: WhatsApp, language: str = "en") -> None:
    """The relative writes in `language`, gives Ratan's number and the code: verified, following."""
    await wa.send(HELLO[language])
    await wa.send(TYPED)
    await wa.send(wa.code_for())
    assert (await wa.chat()).language == language and await wa.alerts() == [True]


async def after(wa: WhatsApp, clock: Clock, since_last_message: timedelta, change) -> list[Message]:
    """Let `since_last_message` pass since the relative wrote, the change being recorded one
    correction window before its end; one dispatcher pass; the WhatsApp messages it sent."""
    grace = wa.services.settings.config.notifications.grace_seconds
    clock.advance(seconds=since_last_message.total_seconds() - grace - 1)
    await change()
    clock.advance(seconds=grace + 1)
    return await dispatched(wa)


async def dispatched(wa: WhatsApp) -> list[Message]:
    before = len(wa.fake.messages_to(TO))
    await wa.services.dispatcher.dispatch_once()
    return wa.fake.messages_to(TO)[before:]


async def rows(wa: WhatsApp) -> list[Notification]:
    async with wa.services.database.session() as session:
        return list((await session.exec(select(Notification).order_by(Notification.id))).all())


# --- the 24-hour window ------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "bn", "hi"])
async def test_within_24_hours_of_the_relatives_message_the_alert_is_free_text(ward, language):
    wa, clock, hospital = ward
    await follow(wa, language)

    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))
    assert alert.content_sid is None and alert.from_ == wa.services.settings.env.twilio_whatsapp_from
    first = alert.body.splitlines()[0]
    assert first.startswith("*🔔") and "Ratan Das" in first
    assert wa._("moved to the general ward", language) in first
    assert alert.status_callback == STATUS_CALLBACK
    [row] = await rows(wa)
    assert (row.status, row.message_id) == ("sent", alert.sid)


@pytest.mark.parametrize("language", ["en", "bn", "hi"])
async def test_after_24_hours_the_alert_is_the_template_of_its_language(ward, language):
    wa, clock, hospital = ward
    await follow(wa, language)

    [alert] = await after(wa, clock, JUST_OVER, lambda: hospital.update(**GENERAL_WARD))
    template = WHATSAPP_TEMPLATES["update"][language]
    assert alert.content_sid == template["content_sid"] and alert.body == ""
    variables = alert.content_variables
    assert sorted(variables) == ["1", "2", "3", "4"]  # patient, changes, condition, updated_at
    assert variables["1"] == "Ratan Das"
    assert wa._("moved to the general ward", language) in variables["2"]
    assert variables["3"] == wa._("Stable", language)
    assert variables["4"]  # the time the hospital recorded it, as the relative reads times
    assert alert.status_callback == STATUS_CALLBACK


async def test_a_death_outside_the_window_names_only_whom_to_call(ward):
    wa, clock, hospital = ward
    await follow(wa, "bn")  # no Bengali death template configured: the English one

    [alert] = await after(wa, clock, JUST_OVER, lambda: hospital.status("deceased"))
    assert alert.content_sid == WHATSAPP_TEMPLATES["death"]["en"]["content_sid"]
    assert alert.content_variables == {"1": "Ratan Das", "2": "M.R. Bangur Hospital", "3": MRB_HELPLINE}
    assert await wa.alerts() == [False]  # the last alert about him


# --- delivery reports ------------------------------------------------------------------------------


async def report(wa: WhatsApp, message: Message, status: str, error_code=None, **more):
    return await post_status(wa.http, message, status, PUBLIC_BASE_URL, error_code, **more)


async def test_delivered_and_read_are_recorded(ward):
    wa, clock, hospital = ward
    await follow(wa)
    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))
    for status in ("sent", "delivered", "read"):
        assert (await report(wa, alert, status)).status_code == 200
    [row] = await rows(wa)
    assert (row.status, row.delivery) == ("sent", "read")


async def test_a_text_refused_as_outside_the_window_is_sent_again_as_its_template(ward):
    """WhatsApp's 24 hours run from the relative's last message as WhatsApp saw it: a text we
    thought inside may still come back 63016, some time after Twilio accepted it."""
    wa, clock, hospital = ward
    await follow(wa, "hi")
    [text] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    assert (await report(wa, text, "undelivered", 63016)).status_code == 200
    [row] = await rows(wa)
    assert (row.status, row.template_only, row.delivery) == ("pending", True, "undelivered 63016")
    [again] = await dispatched(wa)
    assert again.content_sid == WHATSAPP_TEMPLATES["update"]["hi"]["content_sid"]
    assert wa._("moved to the general ward", "hi") in again.content_variables["2"]
    [row] = await rows(wa)
    assert (row.status, row.message_id) == ("sent", again.sid)
    # A late copy of the first report changes nothing.
    assert (await report(wa, text, "undelivered", 63016)).status_code == 200
    assert await dispatched(wa) == []


@pytest.mark.parametrize("code", [63003, 63024, 63014, 21610])
async def test_a_permanent_failure_ends_the_chats_alerts(ward, code):
    wa, clock, hospital = ward
    await follow(wa)
    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    assert (await report(wa, alert, "failed", code)).status_code == 200
    assert await wa.alerts() == [False]
    assert (await wa.chat()).unreachable_at is not None
    [row] = await rows(wa)
    assert (row.status, row.error) == ("dead", f"Twilio {code}")
    # Nothing more is sent to that number.
    assert await after(wa, clock, timedelta(minutes=10), lambda: hospital.update(condition="critical")) == []


async def test_a_temporary_failure_is_retried_with_backoff(ward):
    wa, clock, hospital = ward
    await follow(wa)
    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    assert (await report(wa, alert, "failed", 63018)).status_code == 200
    [row] = await rows(wa)
    assert (row.status, row.attempts, row.error) == ("pending", 1, "Twilio 63018")
    assert row.not_before > clock.now
    assert await dispatched(wa) == []  # not before its backoff
    clock.now = row.not_before + timedelta(seconds=1)
    [again] = await dispatched(wa)
    assert again.content_sid is None and "Ratan Das" in again.body  # still inside the 24 hours


async def test_a_number_that_opted_out_is_refused_at_send_and_its_alerts_end(ward):
    wa, clock, hospital = ward
    await follow(wa)
    wa.fake.fail(TO, 21610, 400)

    assert await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD)) == []
    assert await wa.alerts() == [False]
    [row] = await rows(wa)
    assert row.status == "dead" and "21610" in row.error


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU="])
async def test_a_delivery_report_without_twilios_signature_changes_nothing(ward, signature):
    wa, clock, hospital = ward
    await follow(wa)
    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    assert (await report(wa, alert, "failed", 63024, signature=signature)).status_code == 403
    assert await wa.alerts() == [True]
    [row] = await rows(wa)
    assert (row.status, row.delivery) == ("sent", None)


# "²" and "６３０１６" (full-width digits) pass str.isdigit(), and int() refuses 5,000 digits: Twilio's
# error codes are a few ASCII digits.
@pytest.mark.parametrize(
    "status, code",
    [("exploded", None), ("failed", "sixty"), ("failed", "²"), ("failed", "６３０１６"), ("failed", "6" * 5000)],
    ids=["status", "letters", "superscript", "full-width", "5000-digits"],
)
async def test_a_malformed_delivery_report_is_refused(ward, status, code):
    wa, clock, hospital = ward
    await follow(wa)
    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    response = await report(wa, alert, status, code)
    assert response.status_code == 400 and "malformed" in response.text
    [row] = await rows(wa)
    assert (row.status, row.delivery) == ("sent", None)


async def test_a_report_of_a_message_that_is_no_alert_is_ignored(ward):
    wa, clock, hospital = ward
    await follow(wa)
    reply = wa.fake.messages_to(TO)[-1]  # the card that answered the code
    assert (await report(wa, reply, "failed", 63024)).status_code == 200
    assert await wa.alerts() == [True]


async def test_alerts_leave_at_the_configured_whatsapp_pace(ward):
    """pacing.whatsapp.messages_per_second (here 5) holds when many chats follow one patient."""
    wa, clock, hospital = ward
    chats = 12
    async with wa.services.database.session() as session:
        admission = (await session.exec(select(Admission).where(Admission.registration_no == RATAN))).one()
        for n in range(chats):
            chat = Chat(channel="whatsapp", chat_key=f"+4477009{n:05d}", language="en", state="verified",
                        last_inbound_at=clock.now)  # fmt: skip
            session.add(chat)
            await session.flush()
            verification = Verification(chat_id=chat.id, mobile=admission.contact_mobile, verified_at=clock.now,
                                        expires_at=clock.now + timedelta(days=1))  # fmt: skip
            session.add(verification)
            await session.flush()
            session.add(Subscription(chat_id=chat.id, admission_id=admission.id, verification_id=verification.id))
        await session.commit()
    config = wa.services.settings.config
    slow = config.model_copy(update={"pacing": config.pacing.model_copy(
        update={"whatsapp": config.pacing.whatsapp.model_copy(update={"messages_per_second": 5})})})  # fmt: skip
    paced = Services.build(wa.services.settings.model_copy(update={"config": slow}))
    paced.clock = clock
    try:
        await hospital.update(**GENERAL_WARD)
        clock.advance(seconds=config.notifications.grace_seconds + 1)
        await paced.dispatcher.dispatch_once()
    finally:
        await paced.close()

    times = sorted(message.at for message in wa.fake.messages if message.to.startswith("whatsapp:+4477009"))
    assert len(times) == chats
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 5
    assert times[-1] - times[0] >= (chats - 5) / 5 - 0.1


# --- WhatsApp without templates (a first trial on Twilio's sandbox) ---------------------------------


@pytest.fixture
async def untemplated(services, fake, migrated_url):
    """A WhatsApp web instance with the repo's config.yaml, which names no template, on the test's
    clock; the demo patients; the hospital's system."""
    built = Services.build(make_settings(migrated_url, TWILIO_API_BASE_URL=fake.url, **WHATSAPP))
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    built.clock = clock
    async with built.database.session() as session:
        await built.load_demo(session)
        issued = await rotate_key(session, built.secret_key, "MRB")
        await session.commit()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_web_app(built)), base_url=SEEN_BASE_URL)
    wa = WhatsApp(built, http, fake)
    yield wa, clock, Hospital(wa, clock, issued.api_key)
    await http.aclose()
    await built.close()


async def test_without_templates_a_relative_inside_the_window_gets_replies_and_alerts(untemplated):
    wa, clock, hospital = untemplated
    assert wa.services.settings.config.whatsapp_templates.missing()

    [welcome] = await wa.send("Hello")
    assert "Welcome to Ward Watch" in welcome
    await wa.send(TYPED)
    [*_, card] = await wa.send(wa.code_for())
    assert "Ratan Das" in card and "M.R. Bangur Hospital" in card

    [alert] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))
    assert alert.content_sid is None and "moved to the general ward" in alert.body
    [row] = await rows(wa)
    assert row.status == "sent"


@pytest.mark.parametrize("kind, change", [("discharge", "discharged"), ("death", "deceased")])
async def test_without_its_template_an_alert_outside_the_window_is_kept_dead_with_the_reason(untemplated, kind, change):
    wa, clock, hospital = untemplated
    await follow(wa)

    assert await after(wa, clock, JUST_OVER, lambda: hospital.status(change)) == []
    [row] = await rows(wa)
    assert (row.status, row.error) == ("dead", f"template {kind} not configured")
    assert (await wa.chat()).unreachable_at is None  # the relative is not at fault: their chat stays


async def test_a_text_refused_later_as_outside_the_window_without_a_template_is_kept_dead(untemplated):
    wa, clock, hospital = untemplated
    await follow(wa)
    [text] = await after(wa, clock, JUST_UNDER, lambda: hospital.update(**GENERAL_WARD))

    assert (await report(wa, text, "undelivered", 63016)).status_code == 200
    assert await dispatched(wa) == []
    [row] = await rows(wa)
    assert (row.status, row.error) == ("dead", "template update not configured")


async def test_a_dead_alert_for_a_missing_template_is_listed_and_sent_once_the_template_is_configured(
    untemplated, operator, capsys, migrated_url, fake, tmp_path
):
    wa, clock, hospital = untemplated
    await follow(wa)
    assert await after(wa, clock, JUST_OVER, lambda: hospital.update(**GENERAL_WARD)) == []
    operator.setenv("DATABASE_URL", migrated_url)
    operator.setenv("SECRET_KEY", SECRET)

    shown = await run(capsys, "outbox")

    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert "MRB\twhatsapp\tdead\t1\ttemplate update not configured" in lines
    [row] = await rows(wa)
    assert f"{row.id}\twhatsapp\tMRB\t{RATAN}\t0\ttemplate update not configured" in lines

    # The operator adds the approved templates to config.yaml, restarts, and puts the alert back.
    config = config_with_templates(tmp_path)
    operator.setenv("BOT_CONFIG", str(config))
    retried = await run(capsys, "outbox", "--retry")
    assert (retried.code, retried.out) == (0, "1 dead alert put back in the queue\n")
    configured = Services.build(
        make_settings(migrated_url, TWILIO_API_BASE_URL=fake.url, BOT_CONFIG=str(config), **WHATSAPP)
    )
    configured.clock = clock
    try:
        await configured.dispatcher.dispatch_once()
    finally:
        await configured.close()

    [alert] = fake.messages_to(TO)[-1:]
    assert alert.content_sid == WHATSAPP_TEMPLATES["update"]["en"]["content_sid"]
    assert alert.content_variables["1"] == "Ratan Das" and "moved to the general ward" in alert.content_variables["2"]
    [row] = await rows(wa)
    assert (row.status, row.message_id) == ("sent", alert.sid)


# --- corrections --------------------------------------------------------------------------------


async def test_a_correction_outside_the_window_is_the_correction_template_naming_the_message(ward):
    wa, clock, hospital = ward
    await follow(wa, "bn")
    clock.advance(hours=1)
    wrong = await hospital.record(RATAN, "MRB", clock.now, **GENERAL_WARD)
    clock.advance(seconds=wa.services.settings.config.notifications.grace_seconds + 1)
    [first] = await dispatched(wa)
    assert first.content_sid is None  # free text, within the 24 hours
    told_at = clock.now

    clock.advance(hours=24)
    withdrawn = await hospital.api.delete(
        f"/api/v1/admissions/{RATAN}/updates/{wrong['id']}", headers=auth(hospital.keys["MRB"])
    )
    assert withdrawn.status_code == 200, withdrawn.text
    clock.advance(seconds=wa.services.settings.config.notifications.grace_seconds + 1)
    [alert] = await dispatched(wa)
    assert alert.content_sid == WHATSAPP_TEMPLATES["correction"]["bn"]["content_sid"]
    bengali = wa.services.catalogues.get("bn")
    variables = alert.content_variables
    assert variables["1"] == "Ratan Das"
    assert variables["2"] == bengali.time(told_at, KOLKATA)  # "২৭ নভে, সকাল ১০:৩৪": the message it takes back
    assert variables["3"] == wa._("Critical", "bn")


async def test_a_new_admission_notice_outside_the_window_is_its_template_with_no_variables(ward):
    wa, clock, hospital = ward
    await follow(wa, "hi")  # no Hindi template: the English one

    async def admit_another_under_the_same_number() -> None:
        await hospital.admit("MRB-26-0001", "MRB", contact_mobile=TYPED, patient_name="Mina Das")

    [alert] = await after(wa, clock, JUST_OVER, admit_another_under_the_same_number)
    assert alert.content_sid == WHATSAPP_TEMPLATES["new_admission"]["en"]["content_sid"]
    assert not alert.content_variables and "Mina" not in alert.body
