"""Quiet hours and the daily digest, as a relative meets them in the console chat: `/quiet`, news
held until morning or sent at once, and the "no change since ..." message of the morning.

The hospital writes through the API; one dispatcher pass (`dispatch`) sends what is due by the
test's clock, which starts at 12:00 in Kolkata on 2 July 2024. Runs on SQLite, and on PostgreSQL
when TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.alerts.digest import DIGEST, compose_digest, enqueue_digests
from bot.app import build_scheduler
from bot.platform.settings import OverdueConfig
from bot.relatives import access
from models import Admission, Chat, Notification, Subscription
from tests.test_conversation import START, World, verified, world  # noqa: F401 (world: a fixture)

KOLKATA = ZoneInfo("Asia/Kolkata")
GRACE = timedelta(seconds=120)  # config.yaml: notifications.grace_seconds
EXAMPLE = "Please send it like this: /quiet 22-7 (from 22:00 to 07:00), or /quiet off."
NO_QUIET_HOURS = (
    "You have no quiet hours: news comes at any time. To keep routine news until morning, send for "
    "example /quiet 22-7 (from 22:00 to 07:00, hospital time). Urgent news always comes at once."
)
SET_22_7 = (
    "Quiet hours set: from 22:00 to 07:00, hospital time. Routine news waits until 07:00; urgent news "
    "always comes at once. Send /quiet off to end them."
)
OFF = "Quiet hours are off: news comes at any time."
OVERDUE_24 = (
    "⚠️ The hospital has not sent a new update for a while (they usually update every 24 hours). "
    "You can call M.R. Bangur Hospital at 033 2473 2222."
)


def kolkata(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 7, day, hour, minute, tzinfo=KOLKATA).astimezone(UTC)


def alerts(world: World) -> list[str]:
    """What the console dispatcher showed (the console's "SMS" lines are left out)."""
    return [line.strip() for line in world.sms if line.startswith("\n")]


async def dispatch(world: World, at: datetime | None = None) -> list[str]:
    """Move the clock to `at` (or past the correction window), run one pass; the alerts shown."""
    world.clock.now = at or world.clock.now + GRACE + timedelta(seconds=1)
    shown = len(alerts(world))
    await world.bot.dispatcher.dispatch_once()
    return alerts(world)[shown:]


async def quiet(world: World, key: str = "local") -> tuple[int | None, int | None]:
    (chat,) = await world.rows(Chat, Chat.chat_key == key)
    return chat.quiet_from, chat.quiet_until


async def digests(world: World) -> list[Notification]:
    return await world.rows(Notification, Notification.kind == DIGEST)


async def run_digest(world: World) -> int:
    return await enqueue_digests(world.bot.database, world.bot.settings.config, world.clock.now)


# --- /quiet ------------------------------------------------------------------------------------


async def test_quiet_hours_are_set_shown_and_turned_off(world):
    relative = world.relative()
    assert await relative.say("/quiet") == NO_QUIET_HOURS
    assert await relative.say("/quiet 22-7") == SET_22_7
    assert await quiet(world) == (22, 7)
    assert await relative.say("/quiet") == (
        "Quiet hours: from 22:00 to 07:00, hospital time. Routine news waits until 07:00; urgent news always "
        "comes at once. Send /quiet off to end them, or for example /quiet 23-6 to change them."
    )
    assert await relative.say("/quiet 0-6") == SET_22_7.replace("22:00", "00:00").replace("07:00", "06:00")
    assert await quiet(world) == (0, 6)
    assert await relative.say("/quiet off") == OFF
    assert await quiet(world) == (None, None)
    assert await relative.say("/quiet") == NO_QUIET_HOURS
    assert await relative.say("/quiet OFF") == OFF


@pytest.mark.parametrize(
    "typed", ["22-7", "22:00-07:00", "22 - 7", "22 to 7", "10pm-7am", "10 p.m. - 7 a.m.", "২২-৭", "२२:००-०७:००"]
)
async def test_quiet_hours_in_the_ways_people_write_them(world, typed):
    relative = world.relative()
    # The chat begins in English: a first message in Bengali or Devanagari digits would choose that language.
    await relative.say("/start")
    assert await relative.say(f"/quiet {typed}") == SET_22_7
    assert await quiet(world) == (22, 7)


@pytest.mark.parametrize(
    "typed, reason",
    [
        ("25-7", "Hours go from 0 to 23."),
        ("22-24", "Hours go from 0 to 23."),
        ("13pm-7am", "Hours go from 0 to 23."),
        ("22:30-7", "Quiet hours begin and end on the hour, such as 22:00."),
        ("7-7", "The start and the end must be different hours."),
        ("22", "I could not read those hours."),
        ("tonight", "I could not read those hours."),
        ("22-7-8", "I could not read those hours."),
        ("-7", "I could not read those hours."),
    ],
)
async def test_bad_quiet_hours_get_a_reason_and_change_nothing(world, typed, reason):
    relative = world.relative()
    await relative.say("/quiet 23-6")
    assert await relative.say(f"/quiet {typed}") == f"{reason} {EXAMPLE}"
    assert await quiet(world) == (23, 6)


async def test_quiet_hours_in_bengali(world):
    relative = world.relative()
    await relative.say("/language")
    await relative.say("2")
    answer = await relative.say("/quiet ২২-৭")
    assert "২২:০০" in answer and "০৭:০০" in answer and "/quiet off" in answer
    assert await quiet(world) == (22, 7)


async def test_help_lists_quiet(world):
    assert "\n/quiet: quiet hours at night, for example /quiet 22-7\n" in await world.relative().say("/help")


# --- quiet hours hold routine news -------------------------------------------------------------


async def test_routine_news_waits_until_the_quiet_hours_end(world):
    relative = await verified(world, condition="stable")
    await relative.say("/quiet 22-7")
    world.clock.now = kolkata(2, 23)
    await world.update(condition="moderate", hours_ago=0)

    assert await dispatch(world) == []
    (row,) = await world.rows(Notification)
    assert (row.status, row.not_before) == ("pending", kolkata(3, 7))
    assert await dispatch(world, kolkata(3, 6, 59)) == []

    (alert,) = await dispatch(world, kolkata(3, 7))
    assert alert.startswith("🔔 Update on Ratan Das: Stable → Moderate")
    assert [row.status for row in await world.rows(Notification)] == ["sent"]


@pytest.mark.parametrize(
    "change, first_line",
    [
        ({"condition": "critical"}, "🔔 Update on Ratan Das: Stable → Critical"),
        ({"status": "transferred", "to_hospital": "SSKM Hospital"}, "Ratan Das"),
        ({"status": "deceased"}, "Ratan Das"),
    ],
)
async def test_critical_news_transfers_and_deaths_go_through_quiet_hours(world, change, first_line):
    relative = await verified(world, condition="stable")
    await relative.say("/quiet 22-7")
    world.clock.now = kolkata(2, 23)
    if "status" in change:
        await world.set_status(**change)
    else:
        await world.update(hours_ago=0, **change)
    (alert,) = await dispatch(world)
    assert alert.splitlines()[0] == first_line
    assert [row.status for row in await world.rows(Notification)] == ["sent"]


async def test_turning_quiet_hours_off_releases_what_they_held(world):
    relative = await verified(world, condition="stable")
    await relative.say("/quiet 22-7")
    world.clock.now = kolkata(2, 23)
    await world.update(condition="moderate", hours_ago=0)
    assert await dispatch(world) == []

    world.clock.now = kolkata(2, 23, 30)
    await relative.say("/quiet off")
    (alert,) = await dispatch(world, world.clock.now)
    assert alert.startswith("🔔 Update on Ratan Das: Stable → Moderate")


async def test_changed_quiet_hours_hold_news_to_their_new_end(world):
    relative = await verified(world, condition="stable")
    await relative.say("/quiet 22-7")
    world.clock.now = kolkata(2, 23)
    await world.update(condition="moderate", hours_ago=0)
    assert await dispatch(world) == []

    await relative.say("/quiet 22-6")
    assert await dispatch(world, world.clock.now) == []
    (row,) = await world.rows(Notification)
    assert row.not_before == kolkata(3, 6)
    assert len(await dispatch(world, kolkata(3, 6))) == 1


# --- the daily digest ------------------------------------------------------------------------------


async def test_a_patient_without_change_for_a_day_gets_the_digest_with_the_overdue_warning(world):
    await verified(world, condition="stable", care_area="ward")  # recorded 8:00 on 2 July
    world.clock.now = kolkata(3, 10)

    assert await run_digest(world) == 1
    (digest,) = await dispatch(world)
    assert digest.splitlines() == [
        "Daily update: no change since 2 Jul, 8:00 AM.",
        "",
        "🟢 Ratan Das: Stable",
        "M.R. Bangur Hospital, Covid Ward 2, bed B-14",
        "Being treated in: General ward",
        "Last updated 2 Jul, 8:00 AM (1 day ago)",
        OVERDUE_24,
    ]
    assert [row.status for row in await digests(world)] == ["sent"]


async def test_the_digest_has_no_warning_when_the_hospital_is_not_late(world):
    """With the default limits every digest is overdue for a ward patient (24 hours without news
    is the limit); a hospital allowed 48 hours is not late after 26."""
    relative = await verified(world, condition="stable", care_area="ward")
    world.clock.now = kolkata(3, 10)
    await run_digest(world)
    (row,) = await digests(world)
    async with world.bot.database.session() as session:
        (card,) = await access.readable_cards(
            session, await relative.chat(), world.clock.now, world.bot.settings.config.verification
        )
    language = world.bot.catalogues.get("en")
    relaxed = OverdueConfig(intensive_care=6, critical=12, other=48)
    text = compose_digest(card, row, language, world.clock.now, relaxed).plain
    assert text.startswith("Daily update: no change since 2 Jul, 8:00 AM.") and "⚠️" not in text
    default = compose_digest(card, row, language, world.clock.now, world.bot.settings.config.overdue_hours)
    assert default.plain.endswith(OVERDUE_24)


async def test_no_digest_for_a_patient_with_news_in_the_last_day(world):
    await world.admit()
    await world.update(condition="stable")
    await world.admit("MCK-1", "MCK", patient_name="Mina Das")
    await world.update("MCK-1", "MCK", condition="moderate")
    relative = world.relative()
    await relative.verify()
    world.clock.now = kolkata(3, 9)
    await world.update(condition="stable", spo2=97, hours_ago=1)  # same condition: still an update

    world.clock.now = kolkata(3, 10)
    assert await run_digest(world) == 1
    admissions = {a.registration_no: a.id for a in await world.rows(Admission)}
    assert [row.admission_id for row in await digests(world)] == [admissions["MCK-1"]]
    shown = await dispatch(world)
    assert [line.splitlines()[2] for line in shown if line.startswith("Daily update")] == ["🟡 Mina Das: Moderate"]


async def test_no_digest_after_a_status_change_nor_when_alerts_are_off(world):
    relative = await verified(world, condition="stable")
    stopped = world.relative("stopped")
    await stopped.verify()
    await stopped.say("/stop")
    world.clock.now = kolkata(3, 10)
    assert await run_digest(world) == 1  # the stopped chat gets none
    assert [row.chat_id for row in await digests(world)] == [(await relative.chat()).id]

    await world.set_status("discharged")
    world.clock.now = kolkata(4, 10)
    assert await run_digest(world) == 0


async def test_a_patient_without_any_update_counts_from_the_admission(world):
    await world.admit()  # admitted at 12:00 on 1 July, no update since
    relative = world.relative()
    await relative.verify()
    world.clock.now = kolkata(3, 10)
    assert await run_digest(world) == 1
    (digest,) = await dispatch(world)
    assert digest.splitlines()[0] == "Daily update: no change since 1 Jul, 12:00 PM."
    assert digest.splitlines()[-1] == "No condition update has been recorded yet."


async def test_a_patient_admitted_less_than_a_day_ago_gets_no_digest(world):
    await world.admit(admitted_at=(world.clock.now - timedelta(hours=3)).isoformat())
    await world.relative().verify()
    world.clock.now = kolkata(2, 14)
    assert await run_digest(world) == 0


async def test_the_digest_is_added_once_a_day(world):
    await verified(world, condition="stable")
    world.clock.now = kolkata(3, 10)
    assert await run_digest(world) == 1
    world.clock.now = kolkata(3, 10, 30)  # a restart, a second worker
    assert await run_digest(world) == 0
    world.clock.now = kolkata(4, 10)
    assert await run_digest(world) == 1
    assert len(await digests(world)) == 2


async def test_quiet_hours_hold_the_digest(world):
    relative = await verified(world, condition="stable")
    await relative.say("/quiet 8-11")
    world.clock.now = kolkata(3, 10)
    await run_digest(world)
    assert await dispatch(world) == []
    (digest,) = await dispatch(world, kolkata(3, 11))
    assert digest.startswith("Daily update: no change since 2 Jul, 8:00 AM.")


async def test_news_after_the_digest_was_queued_replaces_it(world):
    await verified(world, condition="stable")
    world.clock.now = kolkata(3, 10)
    await run_digest(world)
    world.clock.now = kolkata(3, 10, 1)
    await world.update(condition="moderate", hours_ago=0)

    assert await dispatch(world, kolkata(3, 10, 2) + timedelta(seconds=10)) == []  # only the digest is due
    assert [row.status for row in await digests(world)] == ["cancelled"]
    (alert,) = await dispatch(world, kolkata(3, 10, 4))
    assert alert.startswith("🔔 Update on Ratan Das: Stable → Moderate")


async def test_a_digest_and_news_due_together_make_one_alert(world):
    await verified(world, condition="stable")
    world.clock.now = kolkata(3, 10)
    await run_digest(world)
    await world.update(condition="moderate", hours_ago=0)
    (alert,) = await dispatch(world)
    assert alert.startswith("🔔 Update on Ratan Das: Stable → Moderate")
    assert {row.status for row in await world.rows(Notification)} == {"sent"}


async def test_the_digest_is_scheduled_at_digest_at_in_hospital_time(services):
    job = build_scheduler(services).get_job("daily_digest")
    assert job is not None and isinstance(job.trigger, CronTrigger)
    assert str(job.trigger.timezone) == "Asia/Kolkata"
    assert services.settings.config.notifications.digest_at == "10:00"
    after = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)  # 12:00 in Kolkata
    assert job.trigger.get_next_fire_time(None, after) == datetime(2024, 7, 3, 10, 0, tzinfo=KOLKATA)


async def test_the_digest_skips_subscriptions_it_may_not_read(world):
    """An expired verification reads nothing, so it gets no digest."""
    await verified(world, condition="stable")
    world.clock.now = START + timedelta(days=30, hours=1)
    assert await run_digest(world) == 0
    assert [s.alerts for s in await world.rows(Subscription)] == [True]
