"""What a platform reports later about an alert it accepted (WhatsApp's delivery reports): recorded
on the outbox rows the alert carried, and acted upon. The channel's adapter says what its platform
meant (`DeliveryReport`); this module knows no platform.

- on its way, delivered, read...: recorded;
- unreachable (the number is not on the platform, the relative blocked us or said STOP): the
  chat's alerts end, as after a refusal at send time;
- outside the window (free text that arrived after the platform's 24 hours after all): the alert
  goes again, as its approved template;
- any other failure (a rate limit, an outage...): retried with the dispatcher's backoff, then kept
  as dead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import select

from bot import outbox
from bot.platform.db import Database
from bot.platform.settings import NotificationsConfig
from bot.relatives import access
from models.chat import Notification

log = logging.getLogger(__name__)


class DeliveryOutcome(StrEnum):
    """What a delivery report means for the alert."""

    RECORDED = "recorded"
    UNREACHABLE = "unreachable"
    OUTSIDE_WINDOW = "outside window"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryReport:
    message_id: str  # the platform's id of the message, as the sender returned it
    outcome: DeliveryOutcome
    status: str  # the platform's own words, recorded on the rows ("read", "undelivered 63016")
    error: str = ""  # a failure's short description, kept as the rows' error


async def record_delivery(
    database: Database, policy: NotificationsConfig, report: DeliveryReport, now: datetime
) -> None:
    """Apply one delivery report to the rows of the alert it is about, if any."""
    async with database.session() as session:
        rows = list(
            (await session.exec(select(Notification).where(Notification.message_id == report.message_id))).all()
        )
        if not rows:  # a reply to a relative's message, or an alert already sent again
            return
        marking = outbox.delivery(report.status)
        if report.outcome == DeliveryOutcome.UNREACHABLE:
            await access.mark_unreachable(session, rows[0].chat_id, now)
            marking |= outbox.dead(report.error)
        elif report.outcome == DeliveryOutcome.OUTSIDE_WINDOW:
            marking |= outbox.resend_as_template()
        elif report.outcome == DeliveryOutcome.FAILED:
            marking |= outbox.retried(policy, max(row.attempts for row in rows), now, report.error)
        await outbox.mark(session, [outbox.Marked(tuple(row.id for row in rows), marking)], now)
        await session.commit()
    if report.outcome != DeliveryOutcome.RECORDED:
        log.info("alert delivery failed (%s): %s, the alert is now %s", report.status, report.outcome, marking.status)
