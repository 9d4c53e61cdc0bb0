"""The worker's periodic jobs."""

from datetime import timedelta

from sqlmodel import select

from bot import housekeeping
from bot.app import build_scheduler
from models.chat import OtpChallenge
from tests.conftest import now_utc


async def test_code_requests_older_than_every_limit_are_purged(services):
    now = now_utc()
    window = timedelta(hours=services.settings.config.otp.wrong_tries_window_hours)
    ages = {"fresh": timedelta(minutes=5), "inside": window - timedelta(minutes=1), "old": window + timedelta(hours=1)}
    async with services.database.session() as session:
        for chat_key, age in ages.items():
            session.add(OtpChallenge(chat_key=chat_key, mobile="+919000000001", created_at=now - age, expires_at=now - age))
        await session.commit()

    purged = await housekeeping.purge_code_requests(services.database, services.settings.config.otp, now)

    async with services.database.session() as session:
        left = {row.chat_key for row in (await session.exec(select(OtpChallenge))).all()}
    assert (purged, left) == (1, {"fresh", "inside"})


async def test_the_worker_schedules_the_purge_hourly(services):
    scheduler = build_scheduler(services)
    job = scheduler.get_job("purge_code_requests")
    assert job is not None and job.trigger.interval == timedelta(hours=1)
