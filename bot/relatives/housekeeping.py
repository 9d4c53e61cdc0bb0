"""Periodic clean-up, run by the scheduler of the `worker` process. The audit table is never
touched: it records who read what, and that outlives every chat and every patient's data (it
names relatives' chats by pseudonyms, and holds no patient's name or number)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, update
from sqlmodel import col, select

from bot import outbox
from bot.platform.db import Database
from bot.platform.settings import NotificationsConfig, OtpConfig, RetentionConfig, VerificationConfig
from bot.relatives import access
from models import (
    Admission,
    AlternateMobile,
    Chat,
    ConditionUpdate,
    InboundMessage,
    Notification,
    OtpChallenge,
    Subscription,
    Verification,
)  # fmt: skip
from models.chat import KeptLanguage
from models.enums import AdmissionStatus
from models.queries import in_chunks


async def purge_code_requests(database: Database, policy: OtpConfig, now: datetime) -> int:
    """Delete code requests older than every limit that counts them (a day for the numbers a chat
    tried, `wrong_tries_window_hours` for wrong tries): they hold a phone number and nothing
    else needs them."""
    keep = timedelta(hours=max(24.0, policy.wrong_tries_window_hours))
    async with database.session() as session:
        result = await session.exec(delete(OtpChallenge).where(col(OtpChallenge.created_at) < now - keep))
        await session.commit()
    return result.rowcount


# Twilio delivers a webhook again within minutes when our answer was slow or failed; a day
# covers every retry, and the ids of older messages serve nothing.
KEEP_INBOUND_MESSAGE_IDS = timedelta(days=1)


async def purge_inbound_messages(database: Database, now: datetime) -> int:
    """Delete the ids of messages handled more than a day ago (see `models.chat.InboundMessage`)."""
    async with database.session() as session:
        result = await session.exec(
            delete(InboundMessage).where(col(InboundMessage.received_at) < now - KEEP_INBOUND_MESSAGE_IDS)
        )
        await session.commit()
    return result.rowcount


async def end_lapsed_verifications(database: Database, policy: VerificationConfig, now: datetime) -> int:
    """Turn alerts off where the chat may no longer read the patient, as `readable_cards` decides:
    the verification expired, the admission closed more than `days_after_discharge` ago, or the
    verified number is no longer the admission's. Their pending alerts are cancelled. The right to
    read ends by itself; this stops the outbox filling with alerts that can only be cancelled.
    How many subscriptions ended."""
    async with database.session() as session:
        result = await session.exec(
            select(Subscription.id, Subscription.chat_id, Subscription.admission_id)
            .join(Verification, col(Verification.id) == col(Subscription.verification_id))
            .join(Admission, col(Admission.id) == col(Subscription.admission_id))
            .where(
                Subscription.alerts,
                or_(
                    col(Verification.expires_at) <= now,
                    and_(
                        col(Admission.status) != AdmissionStatus.ADMITTED,
                        col(Admission.status_at).is_not(None),
                        col(Admission.status_at) <= now - timedelta(days=policy.days_after_discharge),
                    ),
                    ~access.number_still_theirs(),
                ),
            )
        )
        lapsed = result.all()
        for chunk in in_chunks(lapsed):
            await session.exec(
                update(Subscription).where(col(Subscription.id).in_([row[0] for row in chunk])).values(alerts=False)
            )
            await outbox.cancel_pairs(session, [(chat_id, admission_id) for _id, chat_id, admission_id in chunk])
        await session.commit()
    return len(lapsed)


@dataclass(frozen=True)
class Deleted:
    subscriptions: int
    chats: int
    kept_languages: int = 0  # of chats that /forget deleted and that never wrote again


async def delete_after_retention(database: Database, policy: NotificationsConfig, now: datetime) -> Deleted:
    """`retention_days_after_discharge` after a discharge, transfer or death: every chat's
    subscription to that admission and its outbox rows go. Then a chat that follows nobody and
    has not written for as long goes too, with its verifications and outbox rows (the numbers it
    typed, its language, its quiet hours). So does the language a chat that /forget deleted kept
    (`models.chat.KeptLanguage`), kept as long ago without a word from the chat since: the same
    silence, the same period. Admissions and the audit stay."""
    cutoff = now - timedelta(days=policy.retention_days_after_discharge)
    closed = select(Admission.id).where(
        Admission.status != AdmissionStatus.ADMITTED,
        col(Admission.status_at).is_not(None),
        col(Admission.status_at) < cutoff,
    )
    follows = select(Subscription.id).where(Subscription.chat_id == Chat.id).exists()
    # The outbox rows go here, not through bot.outbox: they are history (alerts about admissions
    # closed for the whole retention period, those of chats silent for as long), deleted with the
    # subscriptions and chats they belong to, before them as the foreign keys want. bot.outbox
    # writes the rows the dispatcher may still act on, a forgotten chat's waiting alerts among them.
    async with database.session() as session:
        closed_ids = list((await session.exec(closed)).all())
        subscriptions = 0
        for chunk in in_chunks(closed_ids):
            await session.exec(delete(Notification).where(col(Notification.admission_id).in_(chunk)))
            result = await session.exec(delete(Subscription).where(col(Subscription.admission_id).in_(chunk)))
            subscriptions += result.rowcount
        idle = select(Chat.id).where(
            ~follows,
            func.coalesce(col(Chat.last_inbound_at), col(Chat.created_at)) < cutoff,
            col(Chat.updated_at) < cutoff,
        )
        chat_ids = list((await session.exec(idle)).all())
        for chunk in in_chunks(chat_ids):
            await session.exec(delete(Notification).where(col(Notification.chat_id).in_(chunk)))
            await session.exec(delete(Verification).where(col(Verification.chat_id).in_(chunk)))
            await session.exec(delete(Chat).where(col(Chat.id).in_(chunk), ~follows))
        languages = await session.exec(delete(KeptLanguage).where(col(KeptLanguage.kept_at) < cutoff))
        await session.commit()
    return Deleted(subscriptions, len(chat_ids), languages.rowcount)


# What an admission keeps of its patient once erased: nothing (the two required columns empty).
_ERASED = {
    "patient_name": "", "age": None, "sex": None, "contact_mobile": "", "ward": None, "bed": None,
    "transferred_to": None, "status_remarks": None,
}  # fmt: skip


async def erase_patient_data(database: Database, policy: RetentionConfig, now: datetime) -> int:
    """`patient_days_after_discharge` after a discharge, transfer or death, erase what we hold
    about the patient: the admission's name, age, sex, numbers, ward, bed, destination and
    remarks, its condition history, and what chats hold because of it (subscriptions, their alerts,
    the verifications of its numbers that no other subscription needs). Its purpose, keeping the
    relatives informed, is served; India's Digital Personal Data Protection Act 2023 asks for
    erasure then. The admission row stays with its hospital, registration number, dates and status:
    statistics count it, and the audit trail, which stays, still says which admission each
    disclosure was about. How many admissions were erased.

    A hospital sending the same registration number again fills the admission in again; while it
    stays closed that long ago, the next run erases it again."""
    cutoff = now - timedelta(days=policy.patient_days_after_discharge)
    closed_long_ago = (
        col(Admission.status) != AdmissionStatus.ADMITTED,
        col(Admission.status_at).is_not(None),
        col(Admission.status_at) < cutoff,
    )
    async with database.session() as session:
        # Not erased yet: an erased admission's contact number is empty.
        to_erase = await session.exec(
            select(Admission.id, Admission.contact_mobile).where(*closed_long_ago, col(Admission.contact_mobile) != "")
        )
        found = list(to_erase.all())
    erased = 0
    for chunk in in_chunks(found):
        async with database.session() as session:
            # Checked again as it is erased: a hospital may have admitted the patient again since.
            updated = await session.exec(
                update(Admission)
                .where(col(Admission.id).in_([admission_id for admission_id, _mobile in chunk]), *closed_long_ago)
                .values(**_ERASED, updated_at=now)
                .returning(col(Admission.id))
            )
            ids = set(updated.scalars().all())
            if not ids:
                continue
            alternates = await session.exec(
                select(AlternateMobile.mobile).where(col(AlternateMobile.admission_id).in_(ids))
            )
            mobiles = {mobile for admission_id, mobile in chunk if admission_id in ids} | set(alternates.all())
            for model in (Notification, Subscription, ConditionUpdate, AlternateMobile):
                await session.exec(delete(model).where(col(model.admission_id).in_(ids)))
            needed = select(Subscription.id).where(col(Subscription.verification_id) == col(Verification.id)).exists()
            for numbers in in_chunks(sorted(mobiles)):
                await session.exec(delete(Verification).where(col(Verification.mobile).in_(numbers), ~needed))
            await session.commit()
            erased += len(ids)
    return erased
