"""What the admin reads (`bot.staff.reports`) and changes (`bot.staff.admin`), tested on the core
directly: the hospital records through the API, relatives verify in the console chat, the real
dispatcher sends their alerts, all on the test's clock. Runs on SQLite, and on PostgreSQL when
TEST_DATABASE_URL is set."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from bot.alerts.channels import Alert, PermanentFailure, TemporaryFailure
from bot.alerts.delivery import DeliveryOutcome, DeliveryReport, record_delivery
from bot.app import Services, build_scheduler
from bot.intake.hospitals import get_hospital, hospital_for_key
from bot.platform.settings import OverdueConfig
from bot.staff import admin, reports
from bot.staff.accounts import StaffError, find_account
from bot.staff.reports import AlertState
from handlers.console import CHANNEL, ConsoleSender
from models import Admission, AuditEvent, Hospital, StaffUpload
from tests.staff_support import add_staff, cheap_argon2  # noqa: F401
from tests.support import Clock, ConsoleRelative, HospitalDesk

# 12:00 in Kolkata.
START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)
GRACE = timedelta(seconds=120)  # config.yaml: notifications.grace_seconds
MOBILE, ALTERNATE = "+919830012345", "+919830054321"
SMS = re.compile(r"^\[SMS to (\+\d+)\] (\d{6}) is your Ward Watch code")
MODERATE = {"condition": "moderate", "care_area": "ward", "respiratory_support": "none"}
CRITICAL_ICU = {"condition": "critical", "care_area": "icu", "respiratory_support": "oxygen"}
STABLE = {"condition": "stable", "care_area": "ward", "respiratory_support": "none"}
LIMITS = OverdueConfig(intensive_care=6, critical=12, other=24)
BY = "staff:anita@MRB"


class ScriptedSender(ConsoleSender):
    """The console's sender, answering with a message id as WhatsApp's does, or failing as told."""

    def __init__(self, write) -> None:
        super().__init__(write)
        self.failures: dict[str, Exception] = {}  # by chat key: the next send to it fails so
        self.sent = 0

    async def send(self, alert: Alert) -> str:
        if alert.chat_key in self.failures:
            raise self.failures.pop(alert.chat_key)
        await super().send(alert)
        self.sent += 1
        return f"SM{self.sent:032d}"


@dataclass
class World(HospitalDesk):
    bot: Services
    api: httpx.AsyncClient
    keys: dict[str, str]
    clock: Clock
    shown: list[str]
    sender: ScriptedSender

    async def relative(self, key: str, typed: str, mobile: str) -> ConsoleRelative:
        relative = ConsoleRelative(self, key)
        await relative.say(typed)
        codes = [m.group(2) for m in map(SMS.match, self.shown) if m and m.group(1) == mobile]
        answer = await relative.say(codes[-1])
        assert answer.startswith("Thank you, your number is confirmed."), answer
        return relative

    async def dispatch(self, after: timedelta = GRACE + timedelta(seconds=1)) -> None:
        self.clock.now += after
        await self.bot.dispatcher.dispatch_once()

    async def hospital(self, code: str = "MRB") -> Hospital:
        async with self.bot.database.session() as session:
            hospital = await get_hospital(session, code)
            assert hospital is not None
            return hospital

    async def delivery(self, reg: str = "R-1") -> reports.PatientDelivery:
        async with self.bot.database.session() as session:
            hospital = await get_hospital(session, "MRB")
            admission = (await session.exec(select(Admission).where(Admission.registration_no == reg))).one()
            assert hospital is not None
            return await reports.patient_delivery(session, admission, self.clock.now, GRACE)

    async def today(self) -> reports.Today:
        async with self.bot.database.session() as session:
            return await reports.today(session, await self.hospital(), self.clock.now)

    async def compliance(self) -> list[reports.WardCompliance]:
        async with self.bot.database.session() as session:
            return await reports.compliance(session, await self.hospital(), self.clock.now, LIMITS)


@pytest.fixture
async def world(services, client, keys):
    clock = Clock(START)
    services.clock = clock
    shown: list[str] = []
    bot = Services.build(services.settings, show=shown.append)
    bot.clock = clock
    sender = ScriptedSender(shown.append)
    bot.senders[CHANNEL] = sender
    yield World(bot, client, keys, clock, shown, sender)
    await bot.close()


async def followed(world: World) -> tuple[ConsoleRelative, ConsoleRelative]:
    """Ratan Das at MRB, moderate an hour ago, followed by two chats: one on the admission's number,
    one on an alternate; nothing waiting afterwards."""
    await world.admit(alternate_mobiles=["98300 54321"])
    await world.record("R-1", "MRB", world.clock.now - timedelta(hours=1), **MODERATE)
    first = await world.relative("son", "98300 12345", MOBILE)
    second = await world.relative("daughter", "98300 54321", ALTERNATE)
    return first, second


# --- who follows a patient, and what became of each alert ------------------------------------------


async def test_followers_are_shown_by_masked_number_and_channel_with_whether_they_are_told(world):
    _son, daughter = await followed(world)
    await daughter.say("/stop")

    followers = (await world.delivery()).followers

    assert [(f.channel, f.number, f.alerts, f.told) for f in followers] == [
        ("console", "+91******2345", True, True),
        ("console", "+91******4321", False, False),
    ]
    # A corrected number takes the patient away from the chat that verified the old one.
    await world.admit(alternate_mobiles=[])
    followers = (await world.delivery()).followers
    assert [(f.number, f.current, f.told) for f in followers] == [
        ("+91******2345", True, True),
        ("+91******4321", False, False),
    ]


async def test_an_alert_waits_in_the_correction_window_then_is_sent_and_its_reading_reported(world):
    await followed(world)
    recorded_at = world.clock.now
    await world.record("R-1", "MRB", recorded_at, **CRITICAL_ICU)

    waiting = (await world.delivery()).alerts
    assert sorted((a.number, a.state, a.at, a.kinds) for a in waiting) == [
        ("+91******2345", AlertState.CORRECTION_WINDOW, recorded_at + GRACE, ("condition",)),
        ("+91******4321", AlertState.CORRECTION_WINDOW, recorded_at + GRACE, ("condition",)),
    ]

    await world.dispatch()
    sent = (await world.delivery()).alerts
    assert [(a.state, a.at, a.delivery) for a in sent] == [(AlertState.SENT, world.clock.now, None)] * 2

    report = DeliveryReport(f"SM{1:032d}", DeliveryOutcome.RECORDED, "read")
    await record_delivery(world.bot.database, world.bot.settings.config.notifications, report, world.clock.now)
    assert sorted(a.delivery or "" for a in (await world.delivery()).alerts) == ["", "read"]


async def test_changes_sent_together_are_one_alert_and_an_undone_change_is_not_sent(world):
    await followed(world)
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)
    world.clock.advance(seconds=30)
    await world.record("R-1", "MRB", world.clock.now, **STABLE)
    await world.dispatch()
    alerts = (await world.delivery()).alerts
    assert sorted((a.number, a.state) for a in alerts) == [
        ("+91******2345", AlertState.SENT),
        ("+91******4321", AlertState.SENT),
    ]
    assert world.sender.sent == 2

    wrong = await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)
    undone = await world.api.delete(f"/api/v1/admissions/R-1/updates/{wrong['id']}", headers=world._headers("MRB"))
    assert undone.status_code == 200
    await world.dispatch()
    alerts = (await world.delivery()).alerts
    assert sorted((a.number, a.state) for a in alerts[:2]) == [
        ("+91******2345", AlertState.CANCELLED),
        ("+91******4321", AlertState.CANCELLED),
    ]
    assert world.sender.sent == 2


async def test_a_failed_alert_shows_its_reason_and_next_try_and_a_refused_one_is_dead(world):
    await followed(world)
    world.sender.failures = {"son": TemporaryFailure("Twilio 30008"), "daughter": PermanentFailure("Twilio 63024")}
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)
    await world.dispatch()

    alerts = {alert.number: alert for alert in (await world.delivery()).alerts}
    retrying, dead = alerts["+91******2345"], alerts["+91******4321"]
    assert (retrying.state, retrying.error) == (AlertState.RETRYING, "Twilio 30008")
    assert retrying.at is not None and retrying.at > world.clock.now
    assert (dead.state, dead.error) == (AlertState.DEAD, "Twilio 63024")
    followers = {f.number: f for f in (await world.delivery()).followers}
    assert not followers["+91******4321"].reachable

    figures = await world.today()
    assert (figures.alerts_sent, figures.alerts_failed, figures.alerts_dead) == (0, 1, 1)


async def test_an_alert_in_quiet_hours_is_held_until_they_end(world):
    son, _daughter = await followed(world)
    await son.say("/quiet 11-15")  # hospital time; it is 12:00
    await world.record("R-1", "MRB", world.clock.now, **STABLE)
    await world.dispatch()

    alerts = {alert.number: alert for alert in (await world.delivery()).alerts}
    held = alerts["+91******2345"]
    assert held.state == AlertState.HELD
    assert held.at == datetime(2024, 7, 2, 9, 30, tzinfo=UTC)  # 15:00 in Kolkata
    assert alerts["+91******4321"].state == AlertState.SENT


async def test_another_patients_alerts_are_not_shown(world):
    await followed(world)
    await world.admit("R-2", patient_name="Mina Das", contact_mobile="94330 55555")  # under another number
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)

    assert (await world.delivery("R-2")) == reports.PatientDelivery([], [])


# --- the hospital's day ------------------------------------------------------------------------------


async def test_todays_figures_count_only_today_in_hospital_time(world):
    await world.admit()
    await world.admit("R-2", hospital="MCK", patient_name="Mina Das", contact_mobile="98300 77777")
    # 00:10 and 23:50 yesterday, Kolkata time.
    midnight = datetime(2024, 7, 1, 18, 30, tzinfo=UTC)
    await world.record("R-1", "MRB", midnight - timedelta(minutes=10), **MODERATE)
    await world.record("R-1", "MRB", midnight + timedelta(minutes=10), **STABLE)
    wrong = await world.record("R-1", "MRB", world.clock.now - timedelta(minutes=5), **CRITICAL_ICU)
    await world.api.delete(f"/api/v1/admissions/R-1/updates/{wrong['id']}", headers=world._headers("MRB"))
    await world.record("R-2", "MCK", world.clock.now, **STABLE)  # another hospital's
    await world.relative("son", "98300 12345", MOBILE)
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)
    await world.dispatch()

    assert await world.today() == reports.Today(
        updates_recorded=2, alerts_sent=1, alerts_failed=0, alerts_dead=0, relatives_verified=1
    )
    world.clock.now = midnight + timedelta(days=1, minutes=1)
    assert await world.today() == reports.Today(0, 0, 0, 0, 0)


# --- compliance ------------------------------------------------------------------------------------


async def test_compliance_counts_per_ward_the_patients_never_overdue_in_the_last_seven_days(world):
    now = world.clock.now

    def hours_ago(hours: float) -> datetime:
        return now - timedelta(hours=hours)

    async def admit(reg: str, ward: str | None, hours: float) -> None:
        await world.admit(reg, ward=ward, admitted_at=hours_ago(hours).isoformat(), contact_mobile="98300 00001")

    # Medicine: a stable patient (24 h) updated each day at the same hour, since before the week.
    await admit("M-1", "Medicine", 20 * 24)
    for day in range(8, -1, -1):
        await world.record("M-1", "MRB", hours_ago(day * 24 + 2), **STABLE)
    # Medicine: 30 hours between two updates, three days ago.
    await admit("M-2", "Medicine", 10 * 24)
    for hours in (172, 152, 132, 112, 92, 72, 42, 22, 2):
        await world.record("M-2", "MRB", hours_ago(hours), **STABLE)
    # ICU (6 h): every 5 hours since the admission two days ago, then discharged.
    await admit("I-1", "ICU", 48)
    for hours in range(47, 0, -5):
        await world.record("I-1", "MRB", hours_ago(hours), **CRITICAL_ICU)
    await world.set_status("discharged", "I-1")
    # ICU: on time until the last update, 7 hours ago: overdue now.
    await admit("I-2", "ICU", 24)
    for hours in (23, 18, 13, 7):
        await world.record("I-2", "MRB", hours_ago(hours), **CRITICAL_ICU)
    # No ward: admitted two days ago, never updated.
    await admit("N-1", None, 48)
    # Discharged nine days ago: not in the week.
    await admit("D-1", "ICU", 12 * 24)
    world.clock.now = hours_ago(9 * 24)
    await world.set_status("discharged", "D-1")
    world.clock.now = now

    assert [(w.ward, w.patients, w.on_schedule) for w in await world.compliance()] == [
        ("ICU", 2, 1),
        ("Medicine", 2, 1),
        (None, 1, 0),
    ]


async def test_a_new_patient_is_due_a_first_update_within_the_others_schedule(world):
    await world.admit("N-1", ward="Medicine", admitted_at=(world.clock.now - timedelta(hours=23)).isoformat())
    assert [(w.patients, w.on_schedule) for w in await world.compliance()] == [(1, 1)]
    world.clock.advance(hours=2)
    assert [(w.patients, w.on_schedule) for w in await world.compliance()] == [(1, 0)]


async def test_a_withdrawn_update_does_not_count_as_one_on_time(world):
    await world.admit("M-1", ward="Medicine", admitted_at=(world.clock.now - timedelta(hours=40)).isoformat())
    await world.record("M-1", "MRB", world.clock.now - timedelta(hours=30), **STABLE)
    wrong = await world.record("M-1", "MRB", world.clock.now - timedelta(hours=10), **STABLE)
    assert [w.on_schedule for w in await world.compliance()] == [1]
    await world.api.delete(f"/api/v1/admissions/M-1/updates/{wrong['id']}", headers=world._headers("MRB"))
    assert [w.on_schedule for w in await world.compliance()] == [0]


# --- what the admin changes ---------------------------------------------------------------------------


async def test_disclosure_and_helpline_changes_are_audited_with_the_admin_and_repeats_change_nothing(world):
    async with world.bot.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        assert hospital is not None and (hospital.show_vitals, hospital.show_remarks) == (True, False)
        assert await admin.set_disclosure(session, hospital, False, True, BY)
        assert not await admin.set_disclosure(session, hospital, False, True, BY)
        assert await admin.set_helpline(session, hospital, "033 2473 1111", "IN", BY)
        assert not await admin.set_helpline(session, hospital, "+91 33 2473 1111", "IN", BY)
        with pytest.raises(StaffError):
            await admin.set_helpline(session, hospital, "call the office", "IN", BY)
        await session.commit()
        events = (await session.exec(select(AuditEvent).where(AuditEvent.actor == BY))).all()

    hospital = await world.hospital()
    assert (hospital.show_vitals, hospital.show_remarks, hospital.helpline) == (False, True, "+913324731111")
    assert [(event.action, event.detail) for event in events] == [
        ("hospital.disclosure_changed", {"show_vitals": False, "show_remarks": True}),
        ("hospital.helpline_changed", {"previous": "+913324732222", "helpline": "+913324731111"}),
    ]


async def test_a_new_api_key_works_at_once_and_the_old_one_stops(world):
    async with world.bot.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        assert hospital is not None
        key = await admin.new_api_key(session, world.bot.secret_key, hospital, BY)
        await session.commit()
        secret = world.bot.secret_key
        assert await hospital_for_key(session, secret, world.keys["MRB"]) is None
        assert (await hospital_for_key(session, secret, key)) == hospital
        (event,) = (await session.exec(select(AuditEvent).where(AuditEvent.action == "hospital.key_rotated"))).all()
        assert event.actor == BY


async def test_an_upload_nobody_applies_is_deleted_after_a_day(world):
    await add_staff(world.bot, "anita", role="admin")
    async with world.bot.database.session() as session:
        anita = await find_account(session, "anita")
        assert anita is not None
        kept = (await admin.keep_upload(session, anita, "today.csv", b"registration_no\n", world.clock.now)).id
        await session.commit()

    world.clock.advance(hours=23)
    assert await admin.delete_old_uploads(world.bot.database, world.clock.now) == 0
    world.clock.advance(hours=2)
    assert await admin.delete_old_uploads(world.bot.database, world.clock.now) == 1
    async with world.bot.database.session() as session:
        assert await session.get(StaffUpload, kept) is None
        assert await admin.take_upload(session, anita, kept, world.clock.now) is None
    job = build_scheduler(world.bot).get_job("delete_old_uploads")
    assert job is not None and job.trigger.interval == timedelta(hours=1)
