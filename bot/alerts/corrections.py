"""When a relative last read what a correction takes back.

A withdrawn update was the latest from the moment it was recorded until it was withdrawn, so the
last message that showed the chat this patient before the withdrawal (an alert, or a card it asked
for) showed it. The audit trail records each of those messages (`alert.sent`, `status.disclosed`),
so the correction can name the message it corrects: "the message at 10:34".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.relatives.access import chat_actor
from models import AuditEvent
from models.chat import Chat, Notification

# The audit actions of a message that showed a relative a patient's state.
DISCLOSURES = ("alert.sent", "status.disclosed")


async def last_shown(
    session: AsyncSession, secret_key: bytes, chat: Chat, admission_id: int, correction_id: int
) -> datetime | None:
    """When the chat was last shown the admission before the outbox row `correction_id` (the
    withdrawal) was added; None if never."""
    withdrawn_at = select(Notification.created_at).where(Notification.id == correction_id).scalar_subquery()
    result = await session.exec(
        select(func.max(AuditEvent.at)).where(
            AuditEvent.admission_id == admission_id,
            AuditEvent.actor == chat_actor(secret_key, chat.channel, chat.chat_key),
            col(AuditEvent.action).in_(DISCLOSURES),
            AuditEvent.at <= withdrawn_at,
        )
    )
    return result.one()
