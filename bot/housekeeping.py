"""Periodic clean-up, run by the scheduler of the `worker` process."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col

from bot.db import Database
from bot.settings import OtpConfig
from models.chat import OtpChallenge


async def purge_code_requests(database: Database, policy: OtpConfig, now: datetime) -> int:
    """Delete code requests older than every limit that counts them (a day for the numbers a chat
    tried, `wrong_tries_window_hours` for wrong tries): they hold a phone number and nothing
    else needs them."""
    keep = timedelta(hours=max(24.0, policy.wrong_tries_window_hours))
    async with database.session() as session:
        result = await session.exec(delete(OtpChallenge).where(col(OtpChallenge.created_at) < now - keep))
        await session.commit()
    return result.rowcount
