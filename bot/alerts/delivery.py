"""What a platform reports later about an alert it accepted (WhatsApp delivery reports, through
Twilio's status callbacks): recorded on the outbox rows the alert carried, and acted upon.

- delivered, read, sent...: recorded;
- a permanent failure (the number is not on WhatsApp, the relative blocked us or said STOP): the
  chat's alerts end, as after a refusal at send time;
- 63016, the free text arrived outside WhatsApp's 24-hour window: the alert goes again, as its
  approved template;
- any other failure (63018 rate limit, an outage...): retried with the dispatcher's backoff, then
  kept as dead.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from bot.platform.db import OUTBOX_FLAG, Database
from bot.platform.settings import NotificationsConfig
from bot.relatives import access
from models.chat import Notification

log = logging.getLogger(__name__)
# Twilio's WhatsApp errors after which no message will ever reach the number.
PERMANENT = frozenset({63003, 63014, 63024, 21610})
OUTSIDE_WINDOW = 63016
FAILED = frozenset({"failed", "undelivered"})


async def record_delivery(
    database: Database,
    policy: NotificationsConfig,
    message_id: str,
    status: str,
    error_code: int | None,
    now: datetime,
) -> str:
    """Apply one delivery report; what was done (for the log and the tests)."""
    async with database.session() as session:
        rows = list((await session.exec(select(Notification).where(Notification.message_id == message_id))).all())
        if not rows:  # a reply to a relative's message, or an alert already sent again
            return "unknown"
        failed = status in FAILED
        delivery = f"{status} {error_code}" if failed and error_code else status
        ids = [row.id for row in rows]
        values: dict = {"delivery": delivery[:40]}
        if not failed:
            outcome = "recorded"
        elif error_code in PERMANENT:
            await access.mark_unreachable(session, rows[0].chat_id, now)
            values |= {"status": "dead", "error": f"Twilio {error_code}"}
            outcome = "unreachable"
        elif error_code == OUTSIDE_WINDOW:
            values |= {"status": "pending", "template_only": True, "message_id": None,
                       "not_before": None, "claimed_until": None}  # fmt: skip
            outcome = "resend by template"
        else:
            attempts = max(row.attempts for row in rows) + 1
            if attempts >= policy.max_attempts:
                values |= {"status": "dead", "attempts": attempts, "error": f"Twilio {error_code or status}"}
                outcome = "dead"
            else:
                backoff = min(policy.backoff_max_seconds, policy.backoff_first_seconds * 2 ** (attempts - 1))
                values |= {"status": "pending", "attempts": attempts, "message_id": None, "claimed_until": None,
                           "not_before": now + timedelta(seconds=random.uniform(backoff / 2, backoff)),
                           "error": f"Twilio {error_code or status}"}  # fmt: skip
                outcome = "retry"
        await session.exec(update(Notification).where(col(Notification.id).in_(ids)).values(**values))
        if values.get("status") == "pending":
            session.info[OUTBOX_FLAG] = True  # wakes this process's dispatcher
        await session.commit()
    if failed:
        log.info("alert delivery failed (%s): %s", delivery, outcome)
    return outcome
