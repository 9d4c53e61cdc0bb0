"""The daily digest: a chat whose patient had no change in 24 hours hears so, with the card.

At `notifications.digest_at` (hospital time) the worker's job adds one "digest" row to the outbox
for each chat with alerts on for a patient still admitted and readable by that chat (see
`bot.relatives.access.readable_cards`) when nothing was recorded about the patient for 24 hours: no
condition update, no change of status, no admission. The dispatcher sends it like routine news
(quiet hours hold it), saying "no change since <time>" followed by the card, which carries the
overdue warning when the hospital is late. A change recorded after the row was added makes the
digest moot: it is dropped, and the change's own alert tells the news.

Running the job twice (a restart, a second worker) adds nothing new: a pair that got a digest row
in the last `ONE_A_DAY` hours is left out, and on PostgreSQL an advisory lock keeps two workers
from adding the same rows at the same moment.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel import col, select

from bot import outbox
from bot.outbox import DIGEST, snapshot
from bot.platform.db import Database
from bot.platform.i18n import Language
from bot.platform.settings import FileConfig, OverdueConfig
from bot.relatives import access
from bot.relatives.replies import Reply, Span
from bot.relatives.status_card import CardData, render_card
from models import (
    Admission,
    Chat,
    ConditionUpdate,
    Notification,
    Subscription,
    Verification,
)
from models.enums import AdmissionStatus

log = logging.getLogger(__name__)
NO_CHANGE_FOR = timedelta(hours=24)
ONE_A_DAY = timedelta(hours=12)
_LOCK_KEY = 0x77617264  # any constant shared by every worker


def last_change(card: CardData) -> datetime:
    """When anything was last recorded about the patient: an update, a status, the admission."""
    admission = card.admission
    times = [card.latest.recorded_at if card.latest else None, admission.status_at,
             admission.admitted_at or admission.created_at]  # fmt: skip
    return max(moment for moment in times if moment is not None)


async def enqueue_digests(database: Database, config: FileConfig, now: datetime) -> int:
    """Add today's digest rows; how many."""
    quiet_since = now - NO_CHANGE_FOR
    async with database.session() as session:
        if database.is_postgresql:
            connection = await session.connection()
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=_LOCK_KEY))
        recent_update = (
            select(ConditionUpdate.id)
            .where(
                ConditionUpdate.admission_id == Admission.id,
                col(ConditionUpdate.retracted_at).is_(None),
                ConditionUpdate.recorded_at > quiet_since,
            )
            .exists()
        )
        digest_already = (
            select(Notification.id)
            .where(
                Notification.chat_id == Subscription.chat_id,
                Notification.admission_id == Subscription.admission_id,
                Notification.kind == DIGEST,
                Notification.created_at > now - ONE_A_DAY,
            )
            .exists()
        )
        # A first cut in SQL; readable_cards below has the last word on what each chat may read.
        result = await session.exec(
            select(Subscription.chat_id, Subscription.admission_id)
            .join(Chat, col(Chat.id) == col(Subscription.chat_id))
            .join(Verification, col(Verification.id) == col(Subscription.verification_id))
            .join(Admission, col(Admission.id) == col(Subscription.admission_id))
            .where(
                Subscription.alerts,
                col(Chat.unreachable_at).is_(None),
                Verification.expires_at > now,
                Admission.status == AdmissionStatus.ADMITTED,
                ~recent_update,
                ~digest_already,
            )
            .order_by(col(Subscription.chat_id), col(Subscription.admission_id))
        )
        wanted: dict[int, list[int]] = {}
        for chat_id, admission_id in result.all():
            wanted.setdefault(chat_id, []).append(admission_id)
        digests = []
        for chat_id, admission_ids in wanted.items():
            chat = await session.get(Chat, chat_id)
            if chat is None:
                continue
            for card in await access.readable_cards(session, chat, now, config.verification, admission_ids):
                if card.admission.status == AdmissionStatus.ADMITTED and last_change(card) <= quiet_since:
                    before = snapshot(card.latest, card.admission.status)
                    digests.append(outbox.Digest(chat_id, card.admission.id, before))
        added = await outbox.add_digests(session, digests, now)
        await session.commit()
    log.info("daily digest: %d chat-patient pairs", added)
    return added


def compose_digest(
    card: CardData, row: Notification, language: Language, now: datetime, limits: OverdueConfig
) -> Reply | None:
    """ "No change since <time>" and the card; None when the patient is no longer admitted or
    something was recorded after the digest was queued (that change's alert tells it)."""
    if card.admission.status != AdmissionStatus.ADMITTED:
        return None
    since = last_change(card)
    if since > row.created_at or snapshot(card.latest, card.admission.status) != row.before:
        return None
    _ = language.gettext
    header = _("Daily update: no change since {time}.").format(
        time=language.time(since, ZoneInfo(card.hospital.time_zone))
    )
    current = render_card(card, language, now, limits)
    return Reply((Span(header, bold=True), Span("\n\n"), *current.spans))
