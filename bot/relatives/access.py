"""Verified relatives: which admissions a chat may read, subscribing, stopping, forgetting."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import BindParameter, bindparam, delete, tuple_, update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import outbox
from bot.platform.db import Database
from bot.platform.security import pseudonym
from bot.platform.settings import VerificationConfig
from bot.relatives.status_card import CardData
from models import Admission, AlternateMobile, AuditEvent, Hospital
from models.audit import audit_values
from models.chat import Chat, Subscription, Verification
from models.enums import AdmissionStatus
from models.queries import latest_updates


def _still_current(admission: Admission, now: datetime, policy: VerificationConfig) -> bool:
    """Admitted, or closed (discharged, moved, died) less than `days_after_discharge` ago."""
    if admission.status == AdmissionStatus.ADMITTED or admission.status_at is None:
        return True
    return now < admission.status_at + timedelta(days=policy.days_after_discharge)


def _under_number():
    """The admissions whose contact or alternate number is the parameter `mobile`."""
    mobile: BindParameter[str] = bindparam("mobile")
    alternates = select(AlternateMobile.admission_id).where(AlternateMobile.mobile == mobile)
    return or_(Admission.contact_mobile == mobile, col(Admission.id).in_(alternates))


# Every number and every code runs one of these two, built once (docs/ARCHITECTURE.md says why).
@cache
def _registered_query():
    return select(Admission.id).where(_under_number()).limit(1)


@cache
def _current_query():
    return select(Admission).where(_under_number()).order_by(col(Admission.id))


async def registered(session: AsyncSession, mobile: str) -> bool:
    """Is `mobile` the contact or an alternate number of any admission? Never shown to a user."""
    return (await session.exec(_registered_query(), params={"mobile": mobile})).first() is not None


async def current_admissions(
    session: AsyncSession, mobile: str, now: datetime, policy: VerificationConfig
) -> list[Admission]:
    result = await session.exec(_current_query(), params={"mobile": mobile})
    return [admission for admission in result.all() if _still_current(admission, now, policy)]


@cache
def _subscriptions_query():
    return select(Subscription).where(Subscription.chat_id == bindparam("chat_id"))


async def verify(
    session: AsyncSession, chat: Chat, mobile: str, now: datetime, policy: VerificationConfig
) -> list[Admission]:
    """The chat proved it holds `mobile`: subscribe it to the admissions under that number now.
    An admission added later needs a new code."""
    admissions = await current_admissions(session, mobile, now, policy)
    verification = Verification(
        chat_id=chat.id, mobile=mobile, verified_at=now, expires_at=now + timedelta(days=policy.max_days)
    )
    session.add(verification)
    await session.flush()
    existing = await session.exec(_subscriptions_query(), params={"chat_id": chat.id})
    by_admission = {subscription.admission_id: subscription for subscription in existing.all()}
    for admission in admissions:
        subscription = by_admission.get(admission.id) or Subscription(
            chat_id=chat.id, admission_id=admission.id, verification_id=verification.id
        )
        subscription.verification_id = verification.id
        subscription.alerts = True
        session.add(subscription)
    chat.alerts_stopped = False
    return admissions


async def readable_cards(
    session: AsyncSession,
    chat: Chat,
    now: datetime,
    policy: VerificationConfig,
    admission_ids: list[int] | None = None,
) -> list[CardData]:
    """What this chat may read now: subscribed admissions under a verification that holds, and
    still under the number that was verified (a hospital that corrects a mistyped number takes
    the patient away from whoever confirmed the wrong one). `admission_ids` narrows it down."""
    readable = await readable_by_chat(session, [chat.id], now, policy, admission_ids)
    return readable.get(chat.id, [])


def number_still_theirs():
    """In a query over Admission and Verification: the verified number is still the admission's
    contact or one of its alternates (a hospital that corrects a mistyped number takes the patient
    away from whoever confirmed the wrong one)."""
    still_an_alternate = (
        select(AlternateMobile.id)
        .where(AlternateMobile.admission_id == Admission.id, AlternateMobile.mobile == Verification.mobile)
        .exists()
    )
    return or_(col(Admission.contact_mobile) == col(Verification.mobile), still_an_alternate)


@cache
def _readable_query(narrowed: bool, alerting_only: bool):
    """`readable_by_chat`'s statement, built once for each of its four forms (every /status, every
    alert)."""
    narrower = [col(Admission.id).in_(bindparam("admission_ids", expanding=True))] if narrowed else []
    if alerting_only:
        narrower.append(col(Subscription.alerts).is_(True))
    return (
        select(Subscription.chat_id, Admission, Hospital)
        .join(Subscription, col(Subscription.admission_id) == col(Admission.id))
        .join(Verification, col(Verification.id) == col(Subscription.verification_id))
        .join(Hospital, col(Hospital.id) == col(Admission.hospital_id))
        .where(
            col(Subscription.chat_id).in_(bindparam("chat_ids", expanding=True)),
            col(Verification.expires_at) > bindparam("now"),
            number_still_theirs(),
            *narrower,
        )
        .order_by(col(Subscription.chat_id), col(Admission.id))
    )


async def readable_by_chat(
    session: AsyncSession,
    chat_ids: Collection[int],
    now: datetime,
    policy: VerificationConfig,
    admission_ids: Collection[int] | None = None,
    alerting_only: bool = False,
) -> dict[int, list[CardData]]:
    """`readable_cards` of many chats in two queries, by chat id; with `alerting_only`, only the
    subscriptions whose alerts are on."""
    query = _readable_query(admission_ids is not None, alerting_only)
    parameters = {"chat_ids": list(chat_ids), "now": now, "admission_ids": list(admission_ids or ())}
    result = await session.exec(query, params=parameters)
    current = [(chat_id, admission, hospital) for chat_id, admission, hospital in result.all()
               if _still_current(admission, now, policy)]  # fmt: skip
    latest = await latest_updates(session, {admission.id for _chat_id, admission, _hospital in current})
    readable: dict[int, list[CardData]] = defaultdict(list)
    for chat_id, admission, hospital in current:
        readable[chat_id].append(CardData(hospital, admission, latest.get(admission.id)))
    return dict(readable)


def chat_actor(secret_key: bytes, channel: str, chat_key: str) -> str:
    """How the audit trail names a relative's chat: the channel and a pseudonym, the same for the
    same chat (`whatsapp:ps_…`). Never its key, which is a phone number on WhatsApp: the audit
    outlives /forget and the retention period, and must not keep the number."""
    return f"{channel}:{pseudonym(secret_key, f'{channel}:{chat_key}')}"


def record_disclosure(session: AsyncSession, chat: Chat, card: CardData, now: datetime, secret_key: bytes) -> None:
    """Who read which admission, on which channel, and when: `now`, the time the card was shown
    (the clock every part reads), not the time of the database write."""
    values = audit_values(
        chat_actor(secret_key, chat.channel, chat.chat_key), "status.disclosed", card.hospital.id, card.admission.id,
        channel=chat.channel, update_id=card.latest.id if card.latest else None,
    )  # fmt: skip
    session.add(AuditEvent(**{**values, "at": now}))


async def _set_alerts(session: AsyncSession, chat: Chat, alerts: bool) -> int:
    """Turn alerts on or off for every subscription of the chat; how many changed."""
    result = await session.exec(
        select(Subscription).where(Subscription.chat_id == chat.id, Subscription.alerts == (not alerts))
    )
    subscriptions = list(result.all())
    for subscription in subscriptions:
        subscription.alerts = alerts
        session.add(subscription)
    return len(subscriptions)


async def stop_alerts(session: AsyncSession, chat: Chat) -> int:
    """/stop: the chat hears of nothing more, not even of a new admission under its number."""
    chat.alerts_stopped = True
    return await _set_alerts(session, chat, False)


async def resume_alerts(session: AsyncSession, chat: Chat) -> int:
    chat.alerts_stopped = False
    return await _set_alerts(session, chat, True)


async def end_alerts_about(session: AsyncSession, pairs: Collection[tuple[int, int]]) -> None:
    """Alerts end for these (chat id, admission id) pairs: each chat was told the admission's last
    news (a discharge, a death). The card stays readable."""
    if pairs:
        await session.exec(
            update(Subscription)
            .where(tuple_(col(Subscription.chat_id), col(Subscription.admission_id)).in_(pairs))
            .values(alerts=False)
        )


async def mark_unreachable(session: AsyncSession, chat_id: int, now: datetime) -> None:
    """The platform refused the chat for good (the user blocked the bot, the chat is gone, the
    WhatsApp number opted out): its alerts end and those waiting are cancelled. The chat's next
    message makes it reachable again; /start (WhatsApp: START) resumes the alerts."""
    await session.exec(update(Chat).where(col(Chat.id) == chat_id).values(unreachable_at=now, alerts_stopped=True))
    await session.exec(update(Subscription).where(col(Subscription.chat_id) == chat_id).values(alerts=False))
    await outbox.cancel_chats(session, [chat_id])


async def mark_unreachable_by_key(database: Database, channel: str, chat_key: str, now: datetime) -> None:
    """`mark_unreachable`, in a transaction of its own, for the chat a channel knows by its key (the
    platform refused a reply for good); nothing when there is no such chat (it was forgotten)."""
    async with database.session() as session:
        found = await session.exec(select(Chat.id).where(Chat.channel == channel, Chat.chat_key == chat_key))
        chat_id = found.first()
        if chat_id is not None:
            await mark_unreachable(session, chat_id, now)
            await session.commit()


async def forget(session: AsyncSession, chat: Chat) -> None:
    """Delete this chat's subscriptions, verifications, alerts (sent or pending) and conversation.
    The audit stays, and so do the chat's code requests (they hold the limits on codes): both name
    the chat and the numbers it typed only by pseudonyms."""
    await outbox.forget_chat(session, chat.id)
    await session.exec(delete(Subscription).where(col(Subscription.chat_id) == chat.id))
    await session.exec(delete(Verification).where(col(Verification.chat_id) == chat.id))
    await session.delete(chat)
