"""Adding alerts to the outbox, in the same transaction as the change they tell of.

A rolled-back write therefore sends nothing. The session is marked so that, once it commits, the
dispatcher of this process is woken at once (`bot.platform.db.Database.on_outbox_commit`); dispatchers in
other processes find the rows at their next look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.db import CLOCK, OUTBOX_FLAG
from models.chat import Chat, Notification, Subscription
from models.enums import AdmissionStatus, Condition
from models.tables import Admission, ConditionUpdate, Hospital, utcnow

CRITICAL = 0
ROUTINE = 1


@dataclass(frozen=True)
class Change:
    """Something relatives of `admission_id` should hear about."""

    admission_id: int
    kind: str  # "condition" or "status"
    before: dict[str, Any]  # the state they knew: see `snapshot`
    critical: bool


def snapshot(latest: ConditionUpdate | None, status: str) -> dict[str, Any]:
    """The part of an admission's state an alert compares: what changed from this to now."""
    return {
        "condition": latest.condition if latest else None,
        "care_area": latest.care_area if latest else None,
        "respiratory_support": latest.respiratory_support if latest else None,
        "status": status,
    }


def condition_change(
    admission_id: int, latest: ConditionUpdate | None, status: str, new_condition: str | None
) -> Change:
    return Change(admission_id, "condition", snapshot(latest, status), new_condition == Condition.CRITICAL)


def status_change(admission_id: int, latest: ConditionUpdate | None, previous_status: str, new_status: str) -> Change:
    critical = new_status in (AdmissionStatus.TRANSFERRED, AdmissionStatus.DECEASED)
    return Change(admission_id, "status", snapshot(latest, previous_status), critical)


async def enqueue(session: AsyncSession, changes: Iterable[Change]) -> int:
    """One outbox row per change and per chat that follows the admission with alerts on."""
    changes = list(changes)
    if not changes:
        return 0
    admission_ids = sorted({change.admission_id for change in changes})
    result = await session.exec(
        select(Subscription.admission_id, Subscription.chat_id)
        .join(Chat, col(Chat.id) == col(Subscription.chat_id))
        .where(
            col(Subscription.admission_id).in_(admission_ids),
            Subscription.alerts,
            col(Chat.unreachable_at).is_(None),
        )
    )
    chats_by_admission: dict[int, list[int]] = {}
    for admission_id, chat_id in result.all():
        chats_by_admission.setdefault(admission_id, []).append(chat_id)
    now = session.info.get(CLOCK, utcnow)()
    rows = [
        {
            "chat_id": chat_id,
            "admission_id": change.admission_id,
            "kind": change.kind,
            "priority": CRITICAL if change.critical else ROUTINE,
            "before": change.before,
            "created_at": now,
            "status": "pending",
            "attempts": 0,
        }
        for change in changes
        for chat_id in chats_by_admission.get(change.admission_id, [])
    ]
    if rows:
        await session.exec(insert(Notification.__table__), params=rows)
        session.info[OUTBOX_FLAG] = True
    return len(rows)


# --- what `python -m bot outbox` shows ------------------------------------------------------------


@dataclass(frozen=True)
class DeadAlert:
    id: int
    channel: str
    hospital: str  # its code
    registration_no: str
    attempts: int
    error: str | None
    created_at: datetime


async def report(session: AsyncSession, limit: int = 100) -> tuple[dict[str, int], list[DeadAlert]]:
    """How many rows are in each status, and the latest `limit` dead ones (never the chat's key)."""
    counts = dict(
        (await session.exec(select(Notification.status, func.count()).group_by(Notification.status))).all()
    )
    result = await session.exec(
        select(Notification, Chat.channel, Hospital.code, Admission.registration_no)
        .join(Chat, col(Chat.id) == col(Notification.chat_id))
        .join(Admission, col(Admission.id) == col(Notification.admission_id))
        .join(Hospital, col(Hospital.id) == col(Admission.hospital_id))
        .where(Notification.status == "dead")
        .order_by(col(Notification.id).desc())
        .limit(limit)
    )
    dead = [
        DeadAlert(row.id, channel, code, registration_no, row.attempts, row.error, row.created_at)
        for row, channel, code, registration_no in result.all()
    ]
    return counts, dead
