"""The outbox: the one module that writes its rows (`models.chat.Notification`), from the change
that adds them to what becomes of them.

- `enqueue`, `add_digests`: new rows, in the same transaction as the change they tell of, so that
  a rolled-back write sends nothing.
- `release_held`, `cancel_chats`, `cancel_pairs`, `forget_chat`: what the relative's conversation
  and the access rules do to rows that wait.
- `claim`: the dispatcher's hold on due rows while it sends them.
- `mark`: what became of the alerts the dispatcher sent, or a platform reported on later (a
  `Marking` per alert: `sent`, `cancelled`, `held`, `dead`, `retried`, `resend_as_template`).
- `report`, `requeue_dead`: what `python -m bot outbox` shows an operator, and its `--retry`.

A session that adds rows or leaves rows waiting is flagged (`OUTBOX_FLAG`) so that, once it commits,
the dispatcher of this process looks at once (`bot.platform.db.Database.outbox_listeners`): they may
be due, or due sooner than it reckoned. Dispatchers in other processes find them at their next look.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal_column,
    not_,
    or_,
    true,
    tuple_,
    update,
)
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.db import CLOCK, OUTBOX_FLAG
from bot.platform.settings import NotificationsConfig
from models import table_of
from models.chat import Chat, Notification, Subscription, Verification
from models.enums import AdmissionStatus, Condition, NotificationStatus
from models.queries import in_chunks
from models.tables import Admission, ConditionUpdate, Hospital, utcnow

CRITICAL = 0
ROUTINE = 1
DIGEST = "digest"  # the kind of a daily digest's row (bot.alerts.digest)
CORRECTION = "correction"  # the kind of a row telling that an update relatives may have read was withdrawn
NEW_ADMISSION = "new_admission"  # the kind of a row telling a verified chat of a new admission under its number
_ERROR_LENGTH = 300  # Notification.error
_DELIVERY_LENGTH = 40  # Notification.delivery


@dataclass(frozen=True)
class Change:
    """Something relatives of `admission_id` should hear about."""

    admission_id: int
    kind: str  # "condition", "status" or CORRECTION
    before: dict[str, Any]  # the state they knew: see `snapshot`
    critical: bool

    @property
    def priority(self) -> int:
        return CRITICAL if self.critical else ROUTINE


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


def correction(admission_id: int, withdrawn: ConditionUpdate, status: str, current_condition: str | None) -> Change:
    """The hospital withdrew `withdrawn`, the latest update: relatives who read it are told it was
    entered in error (`bot.alerts.compose`); within the grace period it merges with the withdrawn
    update's own alert and nobody hears of either."""
    return Change(admission_id, CORRECTION, snapshot(withdrawn, status), current_condition == Condition.CRITICAL)


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
        _new_row(chat_id, change.admission_id, change.kind, change.priority, change.before, now)
        for change in changes
        for chat_id in chats_by_admission.get(change.admission_id, [])
    ]
    return await _insert(session, rows)


async def tell_new_admissions(session: AsyncSession, numbers: Mapping[int, Collection[str]]) -> int:
    """One row per new admission (id: its contact and alternate numbers) and per reachable chat
    whose verification of one of those numbers holds, unless it sent /stop. Such a chat reads the
    admission only after a new code (`bot.relatives.access.verify`): the row tells it there is
    something to confirm, and nothing else (`bot.alerts.compose.new_admission_notice`)."""
    now = session.info.get(CLOCK, utcnow)()
    chats_by_number: dict[str, set[int]] = {}
    for chunk in in_chunks(sorted({number for admission in numbers.values() for number in admission})):
        result = await session.exec(
            select(Verification.mobile, Verification.chat_id)
            .join(Chat, col(Chat.id) == col(Verification.chat_id))
            .where(
                col(Verification.mobile).in_(chunk),
                Verification.expires_at > now,
                col(Chat.unreachable_at).is_(None),
                col(Chat.alerts_stopped).is_(False),  # /stop: no notice either
            )
        )
        for number, chat_id in result.all():
            chats_by_number.setdefault(number, set()).add(chat_id)
    before = snapshot(None, AdmissionStatus.ADMITTED)  # the chat knows nothing of it
    rows = [
        _new_row(chat_id, admission_id, NEW_ADMISSION, ROUTINE, before, now)
        for admission_id, admission_numbers in numbers.items()
        for chat_id in sorted(set().union(*(chats_by_number.get(number, set()) for number in admission_numbers)))
    ]
    return await _insert(session, rows)


@dataclass(frozen=True)
class Digest:
    """A daily digest for one chat about one admission (see `bot.alerts.digest`)."""

    chat_id: int
    admission_id: int
    before: dict[str, Any]  # the state it tells is unchanged: see `snapshot`


async def add_digests(session: AsyncSession, digests: Iterable[Digest], now: datetime) -> int:
    """One routine row per digest, created at `now` (a change recorded later makes it moot)."""
    rows = [_new_row(digest.chat_id, digest.admission_id, DIGEST, ROUTINE, digest.before, now) for digest in digests]
    return await _insert(session, rows)


def _new_row(chat_id: int, admission_id: int, kind: str, priority: int, before: dict, now: datetime) -> dict:
    return {
        "chat_id": chat_id, "admission_id": admission_id, "kind": kind, "priority": priority, "before": before,
        "created_at": now, "status": NotificationStatus.PENDING, "attempts": 0,
    }  # fmt: skip


async def _insert(session: AsyncSession, rows: list[dict]) -> int:
    if rows:
        await session.exec(insert(table_of(Notification)), params=rows)
        session.info[OUTBOX_FLAG] = True
    return len(rows)


# --- rows that wait ---------------------------------------------------------------------------------


def _waiting():
    return col(Notification.status) == NotificationStatus.PENDING


async def release_held(session: AsyncSession, chat_id: int, now: datetime) -> None:
    """The chat's news held back until later (by quiet hours that just changed) is due now; rows
    waiting for a retry keep waiting: they have attempts."""
    result = await session.exec(
        update(Notification)
        .where(
            col(Notification.chat_id) == chat_id,
            _waiting(),
            col(Notification.attempts) == 0,
            col(Notification.not_before) > now,
        )
        .values(not_before=None)
    )
    if result.rowcount:
        session.info[OUTBOX_FLAG] = True


async def cancel_chats(session: AsyncSession, chat_ids: Collection[int]) -> None:
    """Cancel every pending row of these chats (the platform refused them for good)."""
    await _cancel(session, col(Notification.chat_id).in_(chat_ids))


async def cancel_pairs(session: AsyncSession, pairs: Collection[tuple[int, int]]) -> None:
    """Cancel the pending rows of these (chat id, admission id) pairs (the chat may no longer read
    the patient)."""
    await _cancel(session, tuple_(col(Notification.chat_id), col(Notification.admission_id)).in_(pairs))


async def _cancel(session: AsyncSession, which) -> None:
    # A dispatcher that holds some of them marks them as it sees fit; cancelled here, they are
    # never claimed again.
    await session.exec(
        update(Notification).where(which, _waiting()).values(status=NotificationStatus.CANCELLED, claimed_until=None)
    )


async def forget_chat(session: AsyncSession, chat_id: int) -> None:
    """Delete every row of the chat, sent or waiting: the chat is being forgotten. A dispatcher
    holding some of them then finds nothing to mark."""
    await session.exec(delete(Notification).where(col(Notification.chat_id) == chat_id))


# --- the dispatcher's claim -----------------------------------------------------------------------------


def on_channels(channels: Collection[str]):
    """In a query over Notification: rows for chats on one of these channels."""
    return col(Notification.chat_id).in_(select(Chat.id).where(col(Chat.channel).in_(channels)))


async def claim(
    session: AsyncSession,
    which,
    now: datetime,
    created_by: datetime,
    until: datetime,
    limit: int,
    skip_locked: bool,
) -> list[int]:
    """Claim until `until` at most `limit` of the rows `which` selects that are due: waiting,
    created by `created_by` (the correction window), not held past `now`, claimed by nobody (or
    by someone whose claim lapsed); critical news first, then the oldest. Their ids.

    With `skip_locked` (PostgreSQL) rows another transaction is claiming are passed over
    (`FOR UPDATE SKIP LOCKED`), so that two dispatchers never claim the same row; SQLite lets one
    writer at a time in, which does the same."""
    candidates = (
        select(Notification.id)
        .where(
            _waiting(),
            which,
            Notification.created_at <= created_by,
            or_(col(Notification.not_before).is_(None), col(Notification.not_before) <= now),
            or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now),
        )
        .order_by(col(Notification.priority), col(Notification.id))
        .limit(limit)
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    claimed = await session.exec(
        update(Notification)
        .where(col(Notification.id).in_(candidates.scalar_subquery()))
        .values(claimed_until=until)
        .returning(col(Notification.id))
    )
    return [row[0] for row in claimed.all()]


# --- what became of an alert ------------------------------------------------------------------------


@dataclass(frozen=True)
class Marking:
    """New values for the rows of one alert. Equal markings are one statement: a chunk of alerts
    that all went out alike is marked at once."""

    items: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **values: Any) -> Marking:
        return cls(tuple(sorted(values.items())))

    def __or__(self, other: Marking) -> Marking:
        return Marking.of(**{**dict(self.items), **dict(other.items)})

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.items)

    @property
    def status(self) -> NotificationStatus | None:
        return self.values.get("status")


def sent(now: datetime, message_id: str | None) -> Marking:
    """Sent; `message_id` is the platform's, when it reports the delivery later."""
    return Marking.of(
        status=NotificationStatus.SENT, sent_at=now, message_id=message_id, delivery=None, claimed_until=None
    )


def cancelled() -> Marking:
    return Marking.of(status=NotificationStatus.CANCELLED, claimed_until=None)


def held(until: datetime) -> Marking:
    """Waiting, without an attempt counted, until `until` (the end of quiet hours, a 429's
    retry_after)."""
    return Marking.of(status=NotificationStatus.PENDING, not_before=until, claimed_until=None)


def dead(error: str) -> Marking:
    """Refused for good: never tried again."""
    return Marking.of(status=NotificationStatus.DEAD, error=error[:_ERROR_LENGTH], claimed_until=None)


def retried(policy: NotificationsConfig, attempts: int, now: datetime, error: str) -> Marking:
    """After a failed try, `attempts` tries having failed before it: waiting for the next
    (`retry_at`), or dead when it was the `policy.max_attempts`th."""
    attempts += 1
    error = error[:_ERROR_LENGTH]
    if attempts >= policy.max_attempts:
        return Marking.of(status=NotificationStatus.DEAD, attempts=attempts, error=error, claimed_until=None)
    return Marking.of(status=NotificationStatus.PENDING, attempts=attempts, error=error, message_id=None,
                      not_before=retry_at(policy, attempts, now), claimed_until=None)  # fmt: skip


def retry_at(policy: NotificationsConfig, attempts: int, now: datetime) -> datetime:
    """When to try again after `attempts` failed tries: exponential backoff from
    `backoff_first_seconds`, at most `backoff_max_seconds`, drawn from its second half so that
    alerts that failed together (an outage) do not come back together."""
    backoff = min(policy.backoff_max_seconds, policy.backoff_first_seconds * 2 ** (attempts - 1))
    return now + timedelta(seconds=random.uniform(backoff / 2, backoff))


def resend_as_template() -> Marking:
    """The platform refused the text after all (outside WhatsApp's 24-hour window): due again at
    once, as the template of its kind."""
    return Marking.of(
        status=NotificationStatus.PENDING, template_only=True, message_id=None, not_before=None, claimed_until=None
    )


def delivery(report: str) -> Marking:
    """What the platform last reported of the message's delivery ("delivered", "read"...)."""
    return Marking.of(delivery=report[:_DELIVERY_LENGTH])


@dataclass(frozen=True)
class Covered:
    """Pending rows of one chat and admission up to `up_to` (an id) that an alert told, or found
    there was nothing to tell: they end as its own rows did."""

    chat_id: int
    admission_id: int
    up_to: int


@dataclass(frozen=True)
class Marked:
    """One alert's rows and their marking."""

    ids: tuple[int, ...]
    marking: Marking
    # The rows' claimed_until as the dispatcher that sent them set it: rows claimed again since
    # (the claim lapsed) belong to the new claimer and are left alone. None: not claimed.
    claim: datetime | None = None
    covered: Covered | None = None


async def mark(session: AsyncSession, marked: Iterable[Marked], now: datetime) -> None:
    """Mark the alerts' rows: one statement for all alerts marked alike, one for the rows they
    covered."""
    alike: dict[tuple[datetime | None, Marking], list[int]] = {}
    covers: list[dict] = []
    for alert in marked:
        alike.setdefault((alert.claim, alert.marking), []).extend(alert.ids)
        if alert.covered is not None:
            covers.append({"chat": alert.covered.chat_id, "admission": alert.covered.admission_id,
                           "up_to": alert.covered.up_to, "status": alert.marking.status,
                           "sent_at": alert.marking.values.get("sent_at")})  # fmt: skip
    for (claim, marking), ids in alike.items():
        mine = col(Notification.claimed_until) == claim if claim is not None else true()
        await session.exec(update(Notification).where(col(Notification.id).in_(ids), mine).values(**marking.values))
        if marking.status == NotificationStatus.PENDING:
            session.info[OUTBOX_FLAG] = True
    if covers:  # after the rows above, which are no longer pending then
        table = table_of(Notification)
        await session.exec(
            update(table)
            .where(
                table.c.chat_id == bindparam("chat"),
                table.c.admission_id == bindparam("admission"),
                table.c.id <= bindparam("up_to"),
                table.c.status == NotificationStatus.PENDING,
                # another dispatcher's: it settles them itself
                or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
            )
            .values(status=bindparam("status"), sent_at=bindparam("sent_at")),
            params=covers,
        )


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


@dataclass(frozen=True)
class Ended:
    """How many alerts of one hospital on one channel ended dead or cancelled for one reason."""

    hospital: str  # its code
    channel: str
    status: str  # dead or cancelled
    reason: str
    rows: int


@dataclass(frozen=True)
class Report:
    counts: dict[str, int]  # rows by status
    ended: list[Ended]  # by hospital, channel, status, then the most rows first
    dead: list[DeadAlert]  # the latest, newest first


# A cancellation records no reason: what the chat's state says now is the likeliest one.
UNREACHABLE = "the chat cannot be reached (blocked the bot, gone, opted out)"
NOT_FOLLOWING = "the chat no longer follows the patient (stop, verification lapsed, alerts ended)"
NOTHING_TO_TELL = "nothing left to tell when it was due"
_CANCELLED_BECAUSE = {0: UNREACHABLE, 1: NOT_FOLLOWING, 2: NOTHING_TO_TELL}
NO_ERROR = "no error recorded"


async def report(session: AsyncSession, limit: int = 100) -> Report:
    """How many rows are in each status; the dead and cancelled ones by hospital, channel and
    reason; the latest `limit` dead ones (never the chat's key)."""
    counts = dict((await session.exec(select(Notification.status, func.count()).group_by(Notification.status))).all())
    ended: dict[tuple[str, str, str, str], int] = {}
    dead_groups = (col(Hospital.code), col(Chat.channel), col(Notification.error))
    for code, channel, error, rows in await _ended(session, NotificationStatus.DEAD, dead_groups):
        key = (code, channel, NotificationStatus.DEAD, " ".join((error or NO_ERROR).split()))
        ended[key] = ended.get(key, 0) + rows
    # Literal columns, not parameters: PostgreSQL groups by an expression only when it is the
    # selected one, and two parameters are never the same to it.
    why = case(
        (col(Chat.unreachable_at).is_not(None), literal_column("0")),
        (not_(func.coalesce(Subscription.alerts, false())), literal_column("1")),
        else_=literal_column("2"),
    )
    cancelled_groups = (col(Hospital.code), col(Chat.channel), why)
    for code, channel, reason, rows in await _ended(session, NotificationStatus.CANCELLED, cancelled_groups):
        ended[(code, channel, NotificationStatus.CANCELLED, _CANCELLED_BECAUSE[reason])] = rows
    result = await session.exec(
        select(Notification, Chat.channel, Hospital.code, Admission.registration_no)
        .join(Chat, col(Chat.id) == col(Notification.chat_id))
        .join(Admission, col(Admission.id) == col(Notification.admission_id))
        .join(Hospital, col(Hospital.id) == col(Admission.hospital_id))
        .where(Notification.status == NotificationStatus.DEAD)
        .order_by(col(Notification.id).desc())
        .limit(limit)
    )
    dead = [
        DeadAlert(row.id, channel, code, registration_no, row.attempts, row.error, row.created_at)
        for row, channel, code, registration_no in result.all()
    ]
    by_group = sorted(ended.items(), key=lambda item: (item[0][:3], -item[1], item[0][3]))
    return Report(counts, [Ended(*key, rows) for key, rows in by_group], dead)


async def _ended(session: AsyncSession, status: NotificationStatus, groups: tuple[Any, Any, Any]) -> list:
    """Rows in `status` counted by `groups` (three expressions over the row, its chat, patient and
    hospital, and the chat's subscription to the patient, when there still is one)."""
    result = await session.exec(
        select(groups[0], groups[1], groups[2], func.count())
        .select_from(Notification)
        .join(Chat, col(Chat.id) == col(Notification.chat_id))
        .join(Admission, col(Admission.id) == col(Notification.admission_id))
        .join(Hospital, col(Hospital.id) == col(Admission.hospital_id))
        .outerjoin(
            Subscription,
            and_(
                col(Subscription.chat_id) == col(Notification.chat_id),
                col(Subscription.admission_id) == col(Notification.admission_id),
            ),
        )
        .where(col(Notification.status) == status)
        .group_by(*groups)
    )
    return list(result.all())


async def requeue_dead(session: AsyncSession, hospital: str | None = None, channel: str | None = None) -> int:
    """Put the dead rows (of one hospital's patients, of chats on one channel) back in the queue
    once their cause is fixed (a template approved, a token renewed), each once: due at once, with
    all their attempts again. Rows of chats that cannot be reached stay dead: their alerts ended
    when the platform refused them. How many rows went back."""
    chats = select(Chat.id).where(col(Chat.unreachable_at).is_(None))
    if channel is not None:
        chats = chats.where(Chat.channel == channel)
    which = [col(Notification.status) == NotificationStatus.DEAD, col(Notification.chat_id).in_(chats)]
    if hospital is not None:
        patients = select(Admission.id).join(Hospital, col(Hospital.id) == col(Admission.hospital_id))
        which.append(col(Notification.admission_id).in_(patients.where(Hospital.code == hospital.strip().upper())))
    result = await session.exec(
        update(Notification)
        .where(*which)
        .values(
            status=NotificationStatus.PENDING,
            attempts=0,
            error=None,
            message_id=None,
            not_before=None,
            claimed_until=None,
        )
    )
    if result.rowcount:
        session.info[OUTBOX_FLAG] = True
    return result.rowcount
