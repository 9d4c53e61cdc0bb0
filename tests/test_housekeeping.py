"""The worker's periodic jobs: codes purged, alerts ended when a verification lapses, chats and
subscriptions deleted after the retention period, patients' data erased after theirs. The audit
always stays."""

from datetime import timedelta

from sqlmodel import select

from bot.app import Services, build_scheduler
from bot.relatives import housekeeping
from models import Admission, AuditEvent, Chat, ConditionUpdate, Notification, Subscription, Verification
from models.chat import OtpChallenge
from tests.conftest import auth, now_utc
from tests.test_conversation import MOBILE, OTHER_MOBILE, START, WELCOME_MESSAGE, World, verified, world  # noqa: F401 (world: a fixture)
from tests.test_privacy import forms, where_found

ALTERNATE, SUNIL_MOBILE = "+919433012121", "+919830077777"


async def test_code_requests_older_than_every_limit_are_purged(services):
    now = now_utc()
    window = timedelta(hours=services.settings.config.otp.wrong_tries_window_hours)
    ages = {"fresh": timedelta(minutes=5), "inside": window - timedelta(minutes=1), "old": window + timedelta(hours=1)}
    async with services.database.session() as session:
        for name, age in ages.items():
            session.add(
                OtpChallenge(chat_pseudonym=name, mobile_pseudonym="ps_1", created_at=now - age, expires_at=now - age)
            )
        await session.commit()

    purged = await housekeeping.purge_code_requests(services.database, services.settings.config.otp, now)

    async with services.database.session() as session:
        left = {row.chat_pseudonym for row in (await session.exec(select(OtpChallenge))).all()}
    assert (purged, left) == (1, {"fresh", "inside"})


async def test_the_worker_schedules_the_purge_hourly(services):
    scheduler = build_scheduler(services)
    job = scheduler.get_job("purge_code_requests")
    assert job is not None and job.trigger.interval == timedelta(hours=1)


# --- verifications that lapse ------------------------------------------------------------------


async def pending_row(world: World, chat_key: str, registration_no: str = "R-1") -> None:
    """A routine alert waiting in the outbox for this chat and admission."""
    (chat,) = await world.rows(Chat, Chat.chat_key == chat_key)
    (admission,) = await world.rows(Admission, Admission.registration_no == registration_no)
    async with world.bot.database.session() as session:
        session.add(Notification(chat_id=chat.id, admission_id=admission.id, kind="condition", before={},
                                 created_at=world.clock.now))  # fmt: skip
        await session.commit()


async def disclosures(world: World) -> int:
    return len(await world.rows(AuditEvent, AuditEvent.action == "status.disclosed"))


async def end_lapsed(world: World) -> int:
    bot: Services = world.bot
    return await housekeeping.end_lapsed_verifications(bot.database, bot.settings.config.verification, world.clock.now)


async def delete_old(world: World) -> housekeeping.Deleted:
    bot: Services = world.bot
    return await housekeeping.delete_after_retention(bot.database, bot.settings.config.notifications, world.clock.now)


async def alerts_by_chat(world: World) -> dict[str, bool]:
    chats = {chat.id: chat.chat_key for chat in await world.rows(Chat)}
    return {chats[s.chat_id]: s.alerts for s in await world.rows(Subscription)}


async def test_a_lapsed_verification_ends_its_alerts_and_cancels_what_waits(world):
    await verified(world, condition="stable")  # chat "local", verified at START for 30 days
    world.clock.advance(days=10)
    await world.relative("later").verify()
    for key in ("local", "later"):
        await pending_row(world, key)
    audited = await disclosures(world)

    world.clock.now = START + timedelta(days=30, minutes=-1)
    assert await end_lapsed(world) == 0
    world.clock.now = START + timedelta(days=30)
    assert await end_lapsed(world) == 1
    assert await alerts_by_chat(world) == {"local": False, "later": True}
    chats = {chat.id: chat.chat_key for chat in await world.rows(Chat)}
    assert sorted((chats[row.chat_id], row.status) for row in await world.rows(Notification)) == [
        ("later", "pending"), ("local", "cancelled"),
    ]  # fmt: skip
    assert await end_lapsed(world) == 0  # done once
    assert await disclosures(world) == audited
    assert len(await world.rows(Verification)) == 2  # ended, not deleted: retention deletes


async def test_alerts_end_days_after_discharge_and_when_the_number_is_taken_off(world):
    relative = await verified(world, condition="stable")
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    world.clock.advance(minutes=2)
    await relative.verify()
    await world.relative("other").verify()
    await pending_row(world, "local", "MCK-1")

    # Mina's admission number is corrected: the chats that confirmed the old one stop hearing of her.
    await world.admit("MCK-1", "MCK", patient_name="Mina Das", contact_mobile="94330 55555")
    assert await end_lapsed(world) == 2
    subscriptions = await world.rows(Subscription)
    admissions = {a.id: a.registration_no for a in await world.rows(Admission)}
    assert sorted((admissions[s.admission_id], s.alerts) for s in subscriptions) == [
        ("MCK-1", False), ("MCK-1", False), ("R-1", True), ("R-1", True),
    ]  # fmt: skip
    # The waiting alert about Mina ends, and so does the notice of her admission to the chat that
    # had confirmed her number before she was admitted.
    rows = await world.rows(Notification)
    assert [(row.kind, row.status) for row in rows] == [("new_admission", "cancelled"), ("condition", "cancelled")]

    # Ratan was moved to another hospital: readable for 7 more days, then alerts end.
    await world.set_status("transferred", to_hospital="SSKM Hospital")
    world.clock.advance(days=7, minutes=-1)
    assert await end_lapsed(world) == 0
    world.clock.advance(minutes=1)
    assert await end_lapsed(world) == 2
    assert not any(s.alerts for s in await world.rows(Subscription))


# --- retention after discharge ------------------------------------------------------------------


async def test_chats_and_subscriptions_go_after_the_retention_period_and_the_audit_stays(world):
    retention = timedelta(days=world.bot.settings.config.notifications.retention_days_after_discharge)
    relative = await verified(world, condition="stable")
    talker = world.relative("talker")
    await talker.verify()  # follows Ratan
    await talker.say("/quiet 22-7")
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    both = world.relative("both")
    await both.verify()  # follows Ratan and Mina
    stranger = world.relative("stranger")
    await stranger.say("98300 00000")  # typed a number and left
    await pending_row(world, "local")
    world.clock.advance(hours=1)
    await world.set_status("discharged")  # Ratan goes home; Mina stays
    discharged_at = world.clock.now
    audited = await disclosures(world)
    assert audited > 0

    world.clock.now = discharged_at + retention - timedelta(minutes=1)
    await talker.say("/status")  # still writing
    # Only the stranger goes: idle for the retention period and following nobody.
    assert await delete_old(world) == housekeeping.Deleted(subscriptions=0, chats=1)
    assert {chat.chat_key for chat in await world.rows(Chat)} == {"local", "both", "talker"}

    world.clock.now = discharged_at + retention + timedelta(minutes=1)
    assert await delete_old(world) == housekeeping.Deleted(subscriptions=3, chats=1)
    left = {chat.chat_key: chat for chat in await world.rows(Chat)}
    assert set(left) == {"both", "talker"}  # "local" followed only Ratan and was idle
    assert left["talker"].quiet_from == 22  # written to a minute ago: kept, without Ratan
    admissions = {a.id: a.registration_no for a in await world.rows(Admission)}
    assert [(admissions[s.admission_id], s.chat_id) for s in await world.rows(Subscription)] == [
        ("MCK-1", left["both"].id)
    ]
    assert await relative.chat() is None
    assert {v.chat_id for v in await world.rows(Verification)} == {left["both"].id, left["talker"].id}
    # Nothing about Ratan is left: only the notice of Mina's admission, still waiting for the chat
    # that confirmed her number before she was admitted.
    assert [(admissions[row.admission_id], row.chat_id, row.kind) for row in await world.rows(Notification)] == [
        ("MCK-1", left["talker"].id, "new_admission")
    ]
    # Admissions and the audit stay.
    assert len(await world.rows(Admission)) == 2
    assert await disclosures(world) == audited
    assert await delete_old(world) == housekeeping.Deleted(subscriptions=0, chats=0)


async def test_a_forgotten_chats_language_is_kept_for_the_retention_period_then_goes(world):
    retention = timedelta(days=world.bot.settings.config.notifications.retention_days_after_discharge)
    hindi = world.bot.catalogues.get("hi")
    for key in ("back", "silent"):
        relative = world.relative(key)
        await relative.say("/language")
        await relative.say("3")  # हिन्दी
        await relative.say("/forget")
        await relative.say("1")  # Yes, delete
    forgotten_at = world.clock.now

    world.clock.now = forgotten_at + retention - timedelta(minutes=1)
    assert (await delete_old(world)).kept_languages == 0
    assert (await world.relative("back").say("/start")).startswith(hindi.gettext(WELCOME_MESSAGE))

    world.clock.now = forgotten_at + retention + timedelta(minutes=1)
    assert (await delete_old(world)).kept_languages == 1
    assert (await world.relative("silent").say("/start")).startswith(WELCOME_MESSAGE)


async def test_the_worker_schedules_the_housekeeping_hourly(services):
    scheduler = build_scheduler(services)
    for name in ("purge_code_requests", "end_lapsed_verifications", "delete_after_retention", "erase_patient_data"):
        job = scheduler.get_job(name)
        assert job is not None and job.trigger.interval == timedelta(hours=1), name


# --- patients' data after discharge ---------------------------------------------------------------

RATAN = ("Ratan Das", *forms(MOBILE), *forms(ALTERNATE), "Covid Ward 2", "B-14", "Oxygen by mask", "Review in a week")
SUNIL = ("Sunil Roy", *forms(SUNIL_MOBILE), "SSKM Hospital", "Needs dialysis")
MINA = ("Mina Das", *forms(OTHER_MOBILE), "Medicine 1", "A-3", "Eating well")


async def erase(world: World) -> int:
    bot: Services = world.bot
    return await housekeeping.erase_patient_data(bot.database, bot.settings.config.retention, world.clock.now)


async def test_patients_data_is_erased_days_after_discharge_and_the_audit_stays(world):
    retention = timedelta(days=world.bot.settings.config.retention.patient_days_after_discharge)
    await world.admit(alternate_mobiles=["94330 12121"], age=64, sex="M")
    await world.update(condition="critical", respiratory_support="oxygen", remarks="Oxygen by mask")
    relative = world.relative()
    await relative.verify()  # follows Ratan: a verification, a subscription, a disclosure
    await world.admit("R-2", patient_name="Sunil Roy", contact_mobile="98300 77777")
    await world.admit("MCK-1", "MCK", patient_name="Mina Das", contact_mobile="94330 55555", ward="Medicine 1",
                      bed="A-3")  # fmt: skip
    await world.update("MCK-1", "MCK", condition="stable", remarks="Eating well")
    await world.relative("mina's").verify("94330 55555", OTHER_MOBILE)
    world.clock.advance(hours=1)
    await world.set_status("discharged", remarks="Review in a week")  # alerts wait in the outbox
    await world.set_status("transferred", "R-2", to_hospital="SSKM Hospital", remarks="Needs dialysis")
    closed_at = world.clock.now
    audited = len(await world.rows(AuditEvent))

    world.clock.now = closed_at + retention - timedelta(minutes=1)
    assert await erase(world) == 0
    for name in (*RATAN, *SUNIL, *MINA):
        assert await where_found(world.bot.database, name), name

    world.clock.now = closed_at + retention + timedelta(minutes=1)
    assert await erase(world) == 2
    assert await where_found(world.bot.database, *RATAN, *SUNIL) == []
    for name in MINA:  # still admitted: untouched
        assert await where_found(world.bot.database, name), name
    # What statistics and the audit trail need stays: which hospital, which registration number,
    # admitted when, how it ended and when.
    admissions = {a.registration_no: a for a in await world.rows(Admission)}
    assert set(admissions) == {"R-1", "R-2", "MCK-1"}
    ratan = admissions["R-1"]
    assert (ratan.status, ratan.status_at, ratan.admitted_at) == ("discharged", closed_at, START - timedelta(days=1))
    assert await world.rows(ConditionUpdate, ConditionUpdate.admission_id == ratan.id) == []
    assert len(await world.rows(ConditionUpdate)) == 1  # Mina's
    assert {s.admission_id for s in await world.rows(Subscription)} == {admissions["MCK-1"].id}
    assert {n.admission_id for n in await world.rows(Notification)} <= {admissions["MCK-1"].id}
    assert [v.mobile for v in await world.rows(Verification)] == [OTHER_MOBILE]
    assert len(await world.rows(AuditEvent)) == audited
    # The relative's chat stays (the chats' own retention deletes it), without Ratan.
    assert "Ratan" not in await relative.say("/status")
    # The hospital still finds the registration number, with nothing personal in it.
    response = await world.api.get("/api/v1/admissions/R-1", headers=auth(world.keys["MRB"]))
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["latest_update"]) == ("discharged", None)
    assert await erase(world) == 0  # done once


async def test_an_admitted_patient_is_never_erased(world):
    await world.admit()
    await world.update(condition="stable", remarks="Eating well")
    world.clock.advance(days=3650)
    assert await erase(world) == 0
    assert await where_found(world.bot.database, "Ratan Das", MOBILE, "Eating well")


async def test_a_patient_admitted_again_is_not_erased(world):
    retention = timedelta(days=world.bot.settings.config.retention.patient_days_after_discharge)
    await world.admit()
    await world.set_status("discharged")
    world.clock.advance(days=10)
    await world.set_status("admitted")
    world.clock.now += retention
    assert await erase(world) == 0
    assert await where_found(world.bot.database, "Ratan Das", MOBILE)
