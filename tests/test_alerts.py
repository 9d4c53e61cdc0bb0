"""Alerts as a relative meets them: the hospital records a change through the API (or a CSV
import), the outbox holds it for the correction window, one dispatcher pass sends it to the
verified console chats. The clock is the test's: `World.dispatch` moves it on and runs one pass.
Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.alerts import dispatcher as dispatcher_module
from bot.alerts.channels import Alert
from bot.alerts.dispatcher import Dispatcher
from bot.app import Services
from bot.intake import rules
from bot.intake.hospitals import get_hospital
from bot.intake.schemas import ConditionUpdateIn, IntakeContext
from bot.relatives.access import chat_actor
from handlers.console import CHANNEL, ConsoleSender
from models import Admission, AuditEvent, Chat, ConditionUpdate, Subscription
from models.chat import Notification
from tests.conftest import auth
from tests.support import Clock, ConsoleRelative, HospitalDesk

# 12:00 in Kolkata.
START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)
GRACE = 120  # config.yaml: notifications.grace_seconds
MOBILE, MOBILE_TYPED = "+919830012345", "98300 12345"
MRB_HELPLINE, MCK_HELPLINE = "033 2473 2222", "033 2241 4901"
SMS = re.compile(r"^\[SMS to (\+\d+)\] (\d{6}) is your Ward Watch code")

MODERATE_WARD = {"condition": "moderate", "care_area": "ward", "respiratory_support": "none", "spo2": 95}
CRITICAL_ICU = {"condition": "critical", "care_area": "icu", "respiratory_support": "oxygen", "spo2": 89, "pulse": 112}
STABLE = {"condition": "stable", "care_area": "ward", "respiratory_support": "none", "spo2": 98}


class RecordingSender(ConsoleSender):
    """The console sender (alerts shown through `Services.show`), also noting which chat got what."""

    def __init__(self, write) -> None:
        super().__init__(write)
        self.sent: list[tuple[str, str]] = []
        self.while_sending: Callable[[], Awaitable[None]] | None = None  # runs once, during the next send

    async def send(self, alert: Alert) -> None:
        if self.while_sending is not None:
            hook, self.while_sending = self.while_sending, None
            await hook()
        await super().send(alert)
        self.sent.append((alert.chat_key, alert.reply.plain))


class Relative(ConsoleRelative):
    async def verify(self, typed: str = MOBILE_TYPED, mobile: str = MOBILE) -> None:
        await self.say(typed)
        answer = await self.say(self.world.code_for(mobile))
        assert answer.startswith("Thank you, your number is confirmed."), answer

    async def chat(self) -> Chat:
        chat = await super().chat()
        assert chat is not None
        return chat


@dataclass
class World(HospitalDesk):
    bot: Services
    api: httpx.AsyncClient
    keys: dict[str, str]
    clock: Clock
    shown: list[str]
    sender: RecordingSender
    relatives: list[Relative] = field(default_factory=list)

    def code_for(self, mobile: str = MOBILE) -> str:
        found = [SMS.match(line) for line in self.shown]
        codes = [match.group(2) for match in found if match and match.group(1) == mobile]
        assert codes, f"no SMS to {mobile}"
        return codes[-1]

    async def relative(self, key: str = "local", language: str | None = None) -> Relative:
        """A console chat verified on MOBILE, then set to `language` with /language."""
        relative = Relative(self, key)
        await relative.verify()
        if language is not None:
            await relative.say("/language")
            await relative.say({"en": "1", "bn": "2", "hi": "3"}[language])
        self.relatives.append(relative)
        return relative

    def grace(self, seconds: float) -> None:
        """Run the dispatcher with another correction window."""
        config = self.bot.settings.config
        config = config.model_copy(
            update={"notifications": config.notifications.model_copy(update={"grace_seconds": seconds})}
        )
        self.bot.dispatcher = Dispatcher(
            self.bot.database, config, self.bot.catalogues, self.bot.senders, self.bot.now, self.bot.secret_key
        )

    async def dispatch(self, after: float = GRACE + 1, key: str | None = None) -> list[str]:
        """Move the clock on by `after` seconds, run one dispatcher pass; the alerts it sent (to
        the chat `key` only, if given)."""
        self.clock.advance(seconds=after)
        start = len(self.sender.sent)
        await self.bot.dispatcher.dispatch_once()
        return [text for chat_key, text in self.sender.sent[start:] if key is None or chat_key == key]

    # --- the hospital's side, through the API ---

    async def update(self, reg: str = "R-1", hospital: str = "MRB", minutes_ago: float = 0, **fields: Any) -> dict:
        return await self.record(reg, hospital, self.clock.now - timedelta(minutes=minutes_ago), **fields)

    async def retract(self, update_id: int, reg: str = "R-1", hospital: str = "MRB") -> httpx.Response:
        return await self.api.delete(f"/api/v1/admissions/{reg}/updates/{update_id}", headers=auth(self.keys[hospital]))

    async def rows(self, model, *where) -> list:
        async with self.bot.database.session() as session:
            return list((await session.exec(select(model).where(*where).order_by(model.id))).all())


@pytest.fixture
async def world(services, client, keys):
    """The hospital API (`client`, on `services`) and the console bot with its dispatcher share
    one database and one clock; the console's "SMS" and alerts are kept in `shown`."""
    clock = Clock(START)
    services.clock = clock
    shown: list[str] = []
    bot = Services.build(services.settings, show=shown.append)
    bot.clock = clock
    sender = RecordingSender(shown.append)
    bot.senders[CHANNEL] = sender
    world = World(bot, client, keys, clock, shown, sender)
    yield world
    await world.bot.close()


async def followed(world: World, **first_update: Any) -> Relative:
    """Ratan Das admitted at MRB with a first update an hour ago, followed by one console chat;
    nothing pending afterwards."""
    await world.admit()
    await world.update(minutes_ago=60, **(first_update or MODERATE_WARD))
    relative = await world.relative()
    assert await world.dispatch() == []
    return relative


async def pending(world: World) -> list[Notification]:
    return await world.rows(Notification, Notification.status == "pending")


# --- what an alert says ----------------------------------------------------------------------------


async def test_one_alert_says_what_changed_with_the_card_and_the_time(world):
    relative = await followed(world)
    await world.update(**CRITICAL_ICU)

    # Held back for the correction window.
    assert await world.dispatch(after=GRACE - 1) == []
    assert len(await pending(world)) == 1
    (alert,) = await world.dispatch(after=2)
    assert alert.strip().splitlines() == [
        "🔔 Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit), now on oxygen",
        "",
        "🔴 Ratan Das: Critical",
        "M.R. Bangur Hospital, Covid Ward 2, bed B-14",
        "Being treated in: ICU (intensive care unit)",
        "Breathing support: Oxygen",
        "SpO2 89% · pulse 112/min",
        "Last updated 2 Jul, 12:02 PM (2 minutes ago)",
    ]
    assert world.sender.sent == [(relative.key, alert)]
    assert "\n" + alert in world.shown  # the console showed it
    assert await pending(world) == []
    assert [row.status for row in await world.rows(Notification)] == ["sent"]
    # Sent once.
    assert await world.dispatch(after=3600) == []


async def test_every_alert_sent_is_audited(world):
    relative = await followed(world)
    chat = await relative.chat()
    (admission,) = await world.rows(Admission)
    before = len(await world.rows(AuditEvent, AuditEvent.action == "alert.sent"))
    assert before == 0
    await world.update(**CRITICAL_ICU)
    (alert,) = await world.dispatch()

    (row,) = await world.rows(AuditEvent, AuditEvent.action == "alert.sent")
    assert row.actor == chat_actor(world.bot.secret_key, "console", relative.key) and row.channel == "console"
    assert row.admission_id == admission.id and row.hospital_id == admission.hospital_id
    assert row.at == world.clock.now
    (notification,) = await world.rows(Notification)
    assert notification.chat_id == chat.id
    # Nothing sent, nothing audited.
    assert await world.dispatch(after=3600) == []
    assert len(await world.rows(AuditEvent, AuditEvent.action == "alert.sent")) == 1


async def test_several_pending_changes_go_out_as_one_message_with_the_latest_state(world):
    relative = await followed(world)
    await world.update(condition="critical")
    world.clock.advance(seconds=30)
    await world.update(condition="critical", care_area="icu")
    world.clock.advance(seconds=30)
    await world.update(condition="critical", care_area="icu", respiratory_support="ventilator", spo2=88)
    assert len(await pending(world)) == 3

    (alert,) = await world.dispatch(key=relative.key)
    assert alert.strip().splitlines()[0] == (
        "🔔 Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit), now on a ventilator"
    )
    assert "Breathing support: Ventilator" in alert and "SpO2 88%" in alert
    assert len(world.sender.sent) == 1
    assert [row.status for row in await world.rows(Notification)] == ["sent"] * 3
    assert await world.dispatch(after=3600) == []


async def test_a_merged_alert_starts_from_the_oldest_change_not_yet_told(world):
    """In a queue, critical news is claimed ahead of an older routine change of the same patient;
    the alert still tells what changed since the relative last heard, the routine change included."""
    await followed(world)
    await world.update(condition="moderate", care_area="hdu")  # routine
    world.clock.advance(seconds=10)
    await world.update(condition="critical", care_area="hdu")  # critical: claimed first
    config = world.bot.settings.config
    one_at_a_time = config.model_copy(
        update={"notifications": config.notifications.model_copy(update={"batch_size": 1})}
    )
    world.bot.dispatcher = Dispatcher(
        world.bot.database, one_at_a_time, world.bot.catalogues, world.bot.senders, world.bot.now, world.bot.secret_key
    )
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines()[0] == (
        "🔔 Update on Ratan Das: Moderate → Critical, moved to HDU (high dependency unit)"
    )
    assert await pending(world) == []  # the routine change was told with it
    assert await world.dispatch(after=3600) == []


async def test_a_change_still_in_its_window_is_covered_by_the_alert_that_shows_it(world):
    await followed(world)
    await world.update(condition="critical")
    world.clock.advance(seconds=100)
    await world.update(condition="critical", care_area="icu")
    # The first is due, the second is not: one alert, with the state as it is now.
    (alert,) = await world.dispatch(after=21)
    assert alert.strip().splitlines()[0] == (
        "🔔 Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit)"
    )
    assert await pending(world) == []
    assert await world.dispatch(after=3600) == []


async def test_an_update_recorded_before_the_latest_sends_nothing(world):
    await followed(world)  # the latest was recorded an hour ago
    answer = await world.update(minutes_ago=90, **CRITICAL_ICU)
    assert answer["is_latest"] is False
    assert await world.rows(Notification) == []
    assert await world.dispatch() == []


async def test_an_update_that_changes_only_vitals_sends_nothing(world):
    await followed(world)
    await world.update(**{**MODERATE_WARD, "spo2": 93})
    assert await world.dispatch() == []
    assert [row.status for row in await world.rows(Notification)] == ["cancelled"]


# --- the correction window -----------------------------------------------------------------------


async def test_a_newer_update_within_the_window_sends_only_the_corrected_state(world):
    await followed(world, **STABLE)
    await world.update(**CRITICAL_ICU)  # the wrong patient's chart
    world.clock.advance(seconds=60)
    await world.update(condition="moderate", care_area="ward", respiratory_support="none")
    world.clock.advance(seconds=60)

    (alert,) = await world.dispatch(after=GRACE)
    assert alert.strip().splitlines()[0] == "🔔 Update on Ratan Das: Stable → Moderate"
    assert "Critical" not in alert and "ICU" not in alert and "Oxygen" not in alert
    assert await world.dispatch(after=3600) == []


async def test_a_correction_back_to_what_was_known_within_the_window_sends_nothing(world):
    await followed(world, **STABLE)
    await world.update(**CRITICAL_ICU)
    world.clock.advance(seconds=60)
    await world.update(**STABLE)
    assert await world.dispatch() == []
    assert await world.dispatch(after=3600) == []
    assert {row.status for row in await world.rows(Notification)} == {"cancelled"}


async def test_a_retraction_within_the_window_sends_nothing_at_all(world):
    await followed(world, **STABLE)
    wrong = await world.update(**CRITICAL_ICU)
    assert await world.dispatch(after=60) == []

    response = await world.retract(wrong["id"])
    assert response.status_code == 200, response.text
    assert response.json()["latest_update"]["condition"] == "stable"

    assert await world.dispatch() == []
    assert await world.dispatch(after=3600) == []
    rows = await world.rows(Notification)
    assert len(rows) == 2 and {row.status for row in rows} == {"cancelled"}
    assert world.sender.sent == []


async def test_a_retraction_after_the_alert_says_that_message_was_wrong(world):
    await followed(world, **STABLE)
    wrong = await world.update(**CRITICAL_ICU)
    (first,) = await world.dispatch()  # at 12:04
    assert first.strip().splitlines()[0].startswith("🔔 Update on Ratan Das: Stable → Critical")

    world.clock.advance(minutes=30)
    assert (await world.retract(wrong["id"])).status_code == 200
    assert await world.dispatch(after=GRACE - 1) == []  # a retraction has its window too
    (second,) = await world.dispatch(after=2)
    assert second.strip().splitlines()[:3] == [
        "⚠️ Correction: the message at 2 Jul, 12:04 PM about Ratan Das was entered in error. "
        "The current condition is Stable.",
        "",
        "🟢 Ratan Das: Stable",
    ]
    assert "SpO2 98%" in second and "Update on" not in second and "→" not in second
    assert "\n" + second in world.shown  # the console chat shows it
    assert len(await world.rows(AuditEvent, AuditEvent.action == "alert.sent")) == 2


async def test_retracting_an_update_that_is_not_the_latest_sends_nothing(world):
    await followed(world, **STABLE)
    older = await world.update(minutes_ago=90, **CRITICAL_ICU)
    assert older["is_latest"] is False
    assert (await world.retract(older["id"])).status_code == 200
    assert await world.rows(Notification) == []
    (audit,) = await world.rows(AuditEvent, AuditEvent.action == "update.retracted")
    assert audit.detail == {"update_id": older["id"], "was_latest": False}


async def test_grace_zero_sends_at_the_first_pass(world):
    world.grace(0)
    relative = await followed(world)
    await world.update(**CRITICAL_ICU)
    (alert,) = await world.dispatch(after=0)
    assert alert.strip().splitlines()[0].startswith("🔔 Update on Ratan Das: Moderate → Critical")
    assert "(1 second ago)" in alert
    assert world.sender.sent == [(relative.key, alert)]


# --- DELETE /api/v1/admissions/{registration_no}/updates/{id} ------------------------------------------


async def test_delete_withdraws_an_update_from_view_but_keeps_it_in_the_history(world):
    await world.admit()
    first = await world.update(minutes_ago=60, **STABLE)
    wrong = await world.update(**CRITICAL_ICU)
    key = auth(world.keys["MRB"])

    response = await world.retract(wrong["id"])
    assert response.status_code == 200
    got = await world.api.get("/api/v1/admissions/R-1", headers=key)
    assert response.json() == got.json()
    assert got.json()["latest_update"]["id"] == first["id"]

    (kept,) = await world.rows(ConditionUpdate, ConditionUpdate.id == wrong["id"])
    assert kept.retracted_at == world.clock.now and kept.condition == "critical"
    (audit,) = await world.rows(AuditEvent, AuditEvent.action == "update.retracted")
    assert audit.actor == "api:MRB" and audit.detail == {"update_id": wrong["id"], "was_latest": True}
    (admission,) = await world.rows(Admission)
    assert audit.admission_id == admission.id and audit.hospital_id == admission.hospital_id

    # Idempotent: again, the same answer, and nothing more happens.
    again = await world.retract(wrong["id"])
    assert again.status_code == 200 and again.json() == response.json()
    assert len(await world.rows(AuditEvent, AuditEvent.action == "update.retracted")) == 1
    (kept_again,) = await world.rows(ConditionUpdate, ConditionUpdate.id == wrong["id"])
    assert kept_again.retracted_at == kept.retracted_at

    # A new update is compared with what remains: recorded after the first, it is the latest.
    later = await world.update(minutes_ago=30, condition="moderate")
    assert later["is_latest"] is True
    assert later["care_area"] == "ward" and later["respiratory_support"] == "none"  # carried from the first


async def test_retracting_the_only_update_leaves_none(world):
    await world.admit()
    only = await world.update(**STABLE)
    response = await world.retract(only["id"])
    assert response.status_code == 200 and response.json()["latest_update"] is None


async def test_delete_of_an_unknown_or_another_hospitals_update_is_404(world):
    await world.admit()
    await world.admit(reg="K-1", hospital="MCK", patient_name="Mina Roy")
    ours = await world.update(**STABLE)
    theirs = await world.update(reg="K-1", hospital="MCK", **STABLE)

    assert (await world.retract(ours["id"] + theirs["id"] + 100)).status_code == 404
    assert (await world.retract(ours["id"], reg="R-2")).status_code == 404
    # Another hospital's admission, or its update under one of ours: as unknown.
    assert (await world.retract(ours["id"], hospital="MCK")).status_code == 404
    assert (await world.retract(theirs["id"], reg="R-1")).status_code == 404
    assert (await world.retract(ours["id"], reg="K-1", hospital="MCK")).status_code == 404
    assert await world.rows(AuditEvent, AuditEvent.action == "update.retracted") == []
    assert all(row.retracted_at is None for row in await world.rows(ConditionUpdate))


@pytest.mark.parametrize("update_id", ["0", "-1", "abc", "2147483648", "1.5"])
async def test_delete_with_a_malformed_update_id_is_422(world, update_id):
    await world.admit()
    response = await world.api.delete(f"/api/v1/admissions/R-1/updates/{update_id}", headers=auth(world.keys["MRB"]))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "update_id"]


async def test_delete_needs_the_hospitals_key(world):
    await world.admit()
    update = await world.update(**STABLE)
    response = await world.api.delete(f"/api/v1/admissions/R-1/updates/{update['id']}")
    assert response.status_code == 401
    response = await world.api.delete(f"/api/v1/admissions/R-1/updates/{update['id']}", headers=auth("nope"))
    assert response.status_code == 401
    assert all(row.retracted_at is None for row in await world.rows(ConditionUpdate))


async def test_delete_is_documented(world):
    spec = (await world.api.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/admissions/{registration_no}/updates/{update_id}"]["delete"]
    assert {"200", "404", "422"} <= set(operation["responses"])
    assert "Withdraw" in operation["description"]


# --- last messages ---------------------------------------------------------------------------------


async def test_discharge_is_the_last_message_then_alerts_end(world):
    relative = await followed(world)
    await world.set_status("discharged")
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines() == [
        "Ratan Das",
        "✅ Discharged from M.R. Bangur Hospital on 2 Jul 2024.",
        "This is the last message about this patient. We wish them well.",
    ]
    (subscription,) = await world.rows(Subscription)
    assert subscription.alerts is False

    # Reopened, with a new update: the chat is no longer told.
    world.clock.advance(hours=1)
    await world.set_status("admitted")
    await world.update(**CRITICAL_ICU)
    assert await world.dispatch() == []
    assert await world.dispatch(after=3600) == []
    assert world.sender.sent == [(relative.key, alert)]


async def test_transfer_to_a_registered_hospital_gives_its_helpline(world):
    await followed(world)
    await world.set_status("transferred", to_hospital="Medical College Kolkata")
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines() == [
        "Ratan Das",
        "➡️ Moved from M.R. Bangur Hospital to Medical College Kolkata on 2 Jul 2024.",
        f"You can call Medical College Kolkata at {MCK_HELPLINE}.",
    ]
    (row,) = await world.rows(Notification)
    assert row.priority == 0  # ahead of routine news


async def test_transfer_elsewhere_names_the_hospital_and_gives_the_sending_hospitals_helpline(world):
    await followed(world)
    await world.set_status("transferred", to_hospital="SSKM Hospital")
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines() == [
        "Ratan Das",
        "➡️ Moved from M.R. Bangur Hospital to SSKM Hospital on 2 Jul 2024.",
        f"You can call M.R. Bangur Hospital at {MRB_HELPLINE}.",
    ]


async def test_death_is_never_announced_only_contact_the_hospital(world):
    relative = await followed(world, **CRITICAL_ICU)
    await world.set_status("deceased")
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines() == [
        "Ratan Das",
        f"For news of this patient, please contact M.R. Bangur Hospital at {MRB_HELPLINE}.",
    ]
    for detail in ("Critical", "ICU", "Oxygen", "SpO2", "pulse", "Update on", "died", "death"):
        assert detail not in alert
    (row,) = await world.rows(Notification)
    assert row.priority == 0
    (subscription,) = await world.rows(Subscription)
    assert subscription.alerts is False
    assert world.sender.sent == [(relative.key, alert)]


# --- writes that fail, imports ----------------------------------------------------------------------


async def test_a_write_that_fails_adds_no_alert(world):
    await followed(world)
    key = auth(world.keys["MRB"])
    bad = await world.api.post("/api/v1/admissions/R-1/updates", json={"condition": "dying"}, headers=key)
    assert bad.status_code == 422
    bad = await world.api.post("/api/v1/admissions/R-1/status", json={"status": "transferred"}, headers=key)
    assert bad.status_code == 422  # no destination
    assert await world.rows(Notification) == []

    # A write rolled back after its outbox row was added: the row goes with it.
    async with world.bot.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        data = ConditionUpdateIn(**CRITICAL_ICU).resolve(
            IntakeContext(region="IN", tz=world.clock.now.tzinfo, now=world.clock.now)
        )
        applied = await rules.apply_one(session, hospital, "R-1", data, actor="test", source="api")
        assert applied.recorded is not None and applied.recorded.is_latest
        assert len((await session.exec(select(Notification))).all()) == 1  # in this transaction
        await session.rollback()
    assert await world.rows(Notification) == []
    assert await world.dispatch() == []


async def test_a_refused_update_for_a_closed_admission_adds_no_alert(world):
    await followed(world)
    await world.set_status("discharged")
    rows = len(await world.rows(Notification))
    response = await world.api.post(
        "/api/v1/admissions/R-1/updates", json={"condition": "critical"}, headers=auth(world.keys["MRB"])
    )
    assert response.status_code == 409
    assert len(await world.rows(Notification)) == rows


async def test_a_csv_import_of_a_changed_condition_alerts_once(world, tmp_path: Path):
    relative = await followed(world)
    path = tmp_path / "ward_round.csv"
    path.write_text(
        "registration_no,patient_name,contact_mobile,condition,care_area,respiratory_support\n"
        "R-1,Ratan Das,098300 12345,critical,hdu,hfnc\n"
        "R-9,Someone Else,094330 55555,stable,ward,none\n",
        encoding="utf-8",
    )
    async with world.bot.database.session() as session:
        report = await world.bot.import_csv(session, path, "MRB")
    assert report.ok and report.updates_recorded == 2, report.summary()
    assert len(await world.rows(Notification)) == 1
    (alert,) = await world.dispatch(key=relative.key)
    assert alert.strip().splitlines()[0] == (
        "🔔 Update on Ratan Das: Moderate → Critical, moved to HDU (high dependency unit), "
        "now on high-flow oxygen (HFNC)"
    )

    # The same file again changes nothing and tells nobody anything.
    async with world.bot.database.session() as session:
        report = await world.bot.import_csv(session, path, "MRB")
    assert report.ok and report.updates_recorded == 0, report.summary()
    assert len(await world.rows(Notification)) == 1
    assert await world.dispatch(after=3600) == []


# --- who is told ------------------------------------------------------------------------------------


async def test_a_chat_that_stopped_alerts_gets_nothing(world):
    relative = await followed(world)
    await relative.say("/stop")
    await world.update(**CRITICAL_ICU)
    assert await world.rows(Notification) == []
    assert await world.dispatch() == []


async def test_stop_within_the_window_holds_back_what_was_pending(world):
    relative = await followed(world)
    await world.update(**CRITICAL_ICU)
    assert await world.dispatch(after=30) == []
    answer = await relative.say("/stop")
    assert answer.startswith("You will get no more alerts.")
    assert await world.dispatch() == []
    assert await world.dispatch(after=3600) == []
    assert world.sender.sent == []
    # /status still reads the card.
    assert (await relative.say("/status")).startswith("🔴 Ratan Das: Critical")


async def test_forget_after_alerts_deletes_them_and_holds_back_what_was_pending(world):
    relative = await followed(world)
    await world.update(**CRITICAL_ICU)
    (alert,) = await world.dispatch()
    await world.update(**STABLE)  # pending when the relative forgets
    await relative.say("/forget")
    answer = await relative.say("1")  # "Yes, delete"
    assert answer.startswith("Done: this chat's number, confirmation and alerts are deleted.")
    assert await world.rows(Chat) == [] and await world.rows(Notification) == []
    assert await world.dispatch() == []
    assert world.sender.sent == [(relative.key, alert)]
    # The audit of what was told stays.
    assert len(await world.rows(AuditEvent, AuditEvent.action == "alert.sent")) == 1


async def test_chats_in_each_language_get_the_alert_in_their_language(world):
    await world.admit()
    await world.update(minutes_ago=60, **MODERATE_WARD)
    relatives = {}
    for language in ("en", "bn", "hi"):
        relatives[language] = await world.relative(f"{language}-chat", language=None if language == "en" else language)
        world.clock.advance(seconds=61)  # a new code for the same number may be asked after a minute
    assert [(await r.chat()).language for r in relatives.values()] == ["en", "bn", "hi"]
    assert await world.dispatch() == []

    await world.update(**CRITICAL_ICU)
    await world.dispatch()
    by_chat = dict(world.sender.sent)
    assert sorted(by_chat) == ["bn-chat", "en-chat", "hi-chat"] and len(world.sender.sent) == 3
    english, bengali, hindi = by_chat["en-chat"], by_chat["bn-chat"], by_chat["hi-chat"]
    assert english.strip().splitlines()[0].startswith("🔔 Update on Ratan Das: Moderate → Critical")
    assert "Ratan Das-এর নতুন খবর" in bengali and "Ratan Das की नई जानकारी" in hindi
    for text in (bengali, hindi):
        assert text != english and "Ratan Das" in text and "Update on" not in text and "Critical" not in text
    # One audit row per alert, each naming its chat.
    rows = await world.rows(AuditEvent, AuditEvent.action == "alert.sent")
    named = {chat_actor(world.bot.secret_key, "console", key): key for key in ("bn-chat", "en-chat", "hi-chat")}
    assert sorted(named[row.actor] for row in rows) == ["bn-chat", "en-chat", "hi-chat"]


# --- changes that arrive while an alert is on its way ----------------------------------------------------


async def test_a_change_recorded_while_an_alert_is_composed_is_not_lost(world, monkeypatch):
    """The alert settles the pending rows it covers; a change committed after its card was read is
    not among them, and is told at the next pass."""
    await followed(world)
    await world.update(condition="critical")
    read_cards = dispatcher_module.access.readable_by_chat

    async def then_a_new_update(*args, **kwargs):
        cards = await read_cards(*args, **kwargs)
        monkeypatch.setattr(dispatcher_module.access, "readable_by_chat", read_cards)
        await world.update(condition="critical", care_area="icu", respiratory_support="ventilator")
        return cards

    monkeypatch.setattr(dispatcher_module.access, "readable_by_chat", then_a_new_update)
    (first,) = await world.dispatch()
    assert first.strip().splitlines()[0] == "🔔 Update on Ratan Das: Moderate → Critical"
    assert len(await pending(world)) == 1
    (second,) = await world.dispatch()
    assert second.strip().splitlines()[0] == (
        "🔔 Update on Ratan Das: moved to ICU (intensive care unit), now on a ventilator"
    )


async def test_a_discharge_recorded_while_an_alert_is_sent_is_still_told(world):
    relative = await followed(world)
    await world.update(**CRITICAL_ICU)

    async def discharge() -> None:
        await world.set_status("discharged")

    world.sender.while_sending = discharge
    (first,) = await world.dispatch()
    assert first.strip().splitlines()[0].startswith("🔔 Update on Ratan Das: Moderate → Critical")
    (subscription,) = await world.rows(Subscription)
    assert subscription.alerts is True  # that alert was not the last one
    (last,) = await world.dispatch()
    assert "✅ Discharged from M.R. Bangur Hospital" in last
    (subscription,) = await world.rows(Subscription)
    assert subscription.alerts is False
    assert [key for key, _ in world.sender.sent] == [relative.key] * 2


# --- what relatives read in their own language ------------------------------------------------------


async def test_a_transfer_elsewhere_gives_the_sending_hospitals_helpline_in_bengali(world):
    await world.admit()
    await world.update(minutes_ago=60, **MODERATE_WARD)
    await world.relative(language="bn")
    assert await world.dispatch() == []
    await world.set_status("transferred", to_hospital="SSKM Hospital")
    (alert,) = await world.dispatch()
    assert alert.strip().splitlines() == [
        "Ratan Das",
        "➡️ ২ জুল ২০২৪ তারিখে M.R. Bangur Hospital থেকে SSKM Hospital-এ পাঠানো হয়েছে।",
        f"আপনি M.R. Bangur Hospital-এ {MRB_HELPLINE} নম্বরে ফোন করতে পারেন।",
    ]


async def test_times_in_bengali_and_hindi_name_the_part_of_the_day(world):
    await world.admit()
    await world.update(minutes_ago=60, **MODERATE_WARD)  # 11:00 in Kolkata
    bengali = await world.relative("bn-chat", language="bn")
    world.clock.advance(seconds=61)  # a new code for the same number may be asked after a minute
    hindi = await world.relative("hi-chat", language="hi")
    assert "শেষ আপডেট: ২ জুল, সকাল ১১:০০ (" in await bengali.say("/status")
    assert "आख़िरी अपडेट: 2 जुल॰, सुबह 11:00 (" in await hindi.say("/status")
    assert await world.dispatch() == []

    await world.update(**CRITICAL_ICU)  # 12:03 in Kolkata
    await world.dispatch()
    by_chat = dict(world.sender.sent)
    assert "শেষ আপডেট: ২ জুল, দুপুর ১২:০৩ (" in by_chat["bn-chat"]
    assert "आख़िरी अपडेट: 2 जुल॰, दोपहर 12:03 (" in by_chat["hi-chat"]
    for text in by_chat.values():
        assert "AM" not in text and "PM" not in text and " am" not in text and " pm" not in text


async def test_a_correction_names_the_message_the_relative_read_in_bengali(world):
    await world.admit()
    await world.update(minutes_ago=60, **STABLE)
    relative = await world.relative(language="bn")
    assert await world.dispatch() == []
    wrong = await world.update(**CRITICAL_ICU)
    await world.dispatch()
    world.clock.advance(hours=1)
    assert "সংকটজনক" in await relative.say("/status")  # read again at 13:04: the message it takes back

    assert (await world.retract(wrong["id"])).status_code == 200
    (correction,) = await world.dispatch()
    assert correction.strip().splitlines()[:3] == [
        "⚠️ সংশোধন: Ratan Das সম্পর্কে ২ জুল, দুপুর ১:০৪-এর বার্তাটি ভুল করে লেখা হয়েছিল। বর্তমান অবস্থা: স্থিতিশীল।",
        "",
        "🟢 Ratan Das: স্থিতিশীল",
    ]


async def test_an_update_after_a_correction_still_reads_as_an_update(world):
    await followed(world, **STABLE)
    wrong = await world.update(**CRITICAL_ICU)
    await world.dispatch()
    assert (await world.retract(wrong["id"])).status_code == 200
    (correction,) = await world.dispatch()
    assert correction.startswith("⚠️ Correction:")
    await world.update(**MODERATE_WARD)
    (update,) = await world.dispatch()
    assert update.strip().splitlines()[0] == "🔔 Update on Ratan Das: Stable → Moderate"


# --- a new admission under a confirmed number -------------------------------------------------------

NEW_ADMISSION_NOTICE = [
    "🔔 A new admission has been recorded under the mobile number you confirmed here.",
    "To see it, send me that number again and type the new code from the SMS: /status will then show it too.",
]


async def test_a_new_admission_under_a_confirmed_number_is_told_without_a_name_until_a_new_code(world):
    relative = await followed(world)
    await world.admit("R-2", hospital="MCK", patient_name="Mina Das", alternate_mobiles=["+91 98300 12345"])
    await world.admit("R-3", patient_name="Someone Else", contact_mobile="94330 55555")

    assert await world.dispatch(after=GRACE - 1) == []  # a notice waits its window like any alert
    (notice,) = await world.dispatch(after=2)
    assert notice.strip().splitlines() == NEW_ADMISSION_NOTICE
    for secret in ("Mina", "Das", "Medical College", "MCK", "R-2", "Someone"):
        assert secret not in notice
    assert world.sender.sent == [(relative.key, notice)]
    assert "Mina Das" not in await relative.say("/status")  # not readable before a new code

    await relative.say(MOBILE_TYPED)
    answer = await relative.say(world.code_for())
    assert "Mina Das" in answer and "Ratan Das" in answer
    assert "Mina Das" in await relative.say("/status")
    assert await world.dispatch(after=3600) == []  # told once


async def test_the_new_admission_notice_in_bengali(world):
    await world.admit()
    await world.relative(language="bn")
    await world.admit("R-2", patient_name="Mina Das")
    (notice,) = await world.dispatch()
    assert notice.strip().splitlines() == [
        "🔔 আপনি এখানে যে মোবাইল নম্বরটি নিশ্চিত করেছেন, সেই নম্বরে একটি নতুন ভর্তি নথিভুক্ত হয়েছে।",
        "এটি দেখতে নম্বরটি আবার আমাকে পাঠান এবং SMS-এ আসা নতুন কোডটি লিখুন: তারপর /status-এও এটি দেখা যাবে।",
    ]


async def test_no_notice_once_the_chats_confirmation_has_lapsed(world):
    await followed(world)
    world.clock.advance(days=30, seconds=1)  # verification.max_days
    await world.admit("R-2", patient_name="Mina Das")
    assert await world.dispatch() == []
    assert await world.rows(Notification, Notification.kind == "new_admission") == []
