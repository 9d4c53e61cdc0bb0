"""What a hospital's admin reads about relatives being told: for one patient, the chats that
follow them and what became of each alert; for the hospital, today's figures; and, ward by ward,
how many patients were updated on schedule over the last days. Plain queries over a session: the
staff pages word and show them.

An alert is what one message to one chat carries: the dispatcher merges the outbox rows of a chat
and patient that are due together into one message, so rows that went (or will go) out together
are shown as one alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.phones import mask
from bot.platform.settings import OverdueConfig
from bot.relatives.access import number_still_theirs
from bot.relatives.status_card import overdue_after
from models import Admission, AuditEvent, ConditionUpdate, Hospital, queries
from models.chat import Chat, Notification, Subscription, Verification
from models.enums import AdmissionStatus, NotificationStatus
from models.queries import in_chunks

# The alerts of one patient shown, newest first: a page, not an archive.
ALERT_ROWS_READ = 300
COMPLIANCE_DAYS = 7


# --- one patient -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Follower:
    """A chat that follows the patient."""

    channel: str
    number: str  # the number it verified, masked: +91******2345
    since: datetime
    alerts: bool  # False once the relative sent /stop
    reachable: bool  # False once the platform refused the chat for good (blocked, opted out)
    current: bool  # its verification holds, for a number that is still the admission's

    @property
    def told(self) -> bool:
        """Whether this chat hears of the patient's next change."""
        return self.alerts and self.reachable and self.current


class AlertState(StrEnum):
    CORRECTION_WINDOW = "correction window"  # held so that a quick correction replaces it; goes at `at`
    HELD = "held"  # until `at`: the relative's quiet hours, or the platform asked us to wait
    DUE = "due"  # due now, waiting for its turn
    RETRYING = "retrying"  # a try failed (`error`); the next one at `at`
    SENT = "sent"  # at `at`; `delivery` is what the platform reported since (WhatsApp)
    DEAD = "dead"  # failed for good (`error`)
    CANCELLED = "cancelled"  # nothing left to tell (a change undone in time), or nobody to tell


@dataclass(frozen=True)
class AlertLine:
    channel: str
    number: str | None  # masked; None when the chat no longer follows the patient
    kinds: tuple[str, ...]  # condition, status, digest
    created_at: datetime  # of the first change it tells
    state: AlertState
    at: datetime | None  # when it goes, went or is tried again, by `state`
    delivery: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PatientDelivery:
    followers: list[Follower]
    alerts: list[AlertLine]  # newest first


async def patient_delivery(
    session: AsyncSession, admission: Admission, now: datetime, grace: timedelta
) -> PatientDelivery:
    """Who follows `admission` and what became of its latest alerts; `grace` is the correction
    window (`notifications.grace_seconds`)."""
    result = await session.exec(
        select(  # type: ignore[call-overload]  # SQLModel's select is typed for at most four columns
            col(Subscription.chat_id),
            col(Subscription.created_at),
            col(Subscription.alerts),
            col(Chat.channel),
            col(Chat.unreachable_at),
            col(Verification.mobile),
            col(Verification.expires_at),
            number_still_theirs(),
        )
        .join(Chat, col(Chat.id) == col(Subscription.chat_id))
        .join(Verification, col(Verification.id) == col(Subscription.verification_id))
        .join(Admission, col(Admission.id) == col(Subscription.admission_id))
        .where(Subscription.admission_id == admission.id)
        .order_by(col(Subscription.created_at), col(Subscription.id))
    )
    followers: list[Follower] = []
    numbers: dict[int, str] = {}
    for chat_id, since, alerts, channel, unreachable_at, mobile, expires_at, still_theirs in result.all():
        numbers[chat_id] = mask(mobile)
        current = bool(still_theirs) and expires_at > now
        followers.append(Follower(channel, numbers[chat_id], since, alerts, unreachable_at is None, current))

    rows = await session.exec(
        select(Notification, Chat.channel)
        .join(Chat, col(Chat.id) == col(Notification.chat_id))
        .where(Notification.admission_id == admission.id)
        .order_by(col(Notification.id).desc())
        .limit(ALERT_ROWS_READ)
    )
    groups: dict[tuple, list[Notification]] = {}
    channels: dict[int, str] = {}
    for row, channel in rows.all():
        channels[row.chat_id] = channel
        groups.setdefault(_together(row), []).append(row)
    alerts = [_alert_line(group, channels[group[0].chat_id], numbers.get(group[0].chat_id), now, grace)
              for group in groups.values()]  # fmt: skip
    return PatientDelivery(followers, alerts)


def _together(row: Notification) -> tuple:
    """Rows with the same key went out as one message (a sent alert's rows share its `sent_at`),
    or, still waiting, will go out together at the dispatcher's next look at them."""
    if row.status == NotificationStatus.SENT:
        return (row.chat_id, row.status, row.sent_at)
    if row.status == NotificationStatus.PENDING:
        return (row.chat_id, row.status, row.attempts, row.not_before)
    return (row.chat_id, row.status, row.error, row.id if row.status == NotificationStatus.CANCELLED else None)


def _alert_line(
    rows: list[Notification], channel: str, number: str | None, now: datetime, grace: timedelta
) -> AlertLine:
    first = min(rows, key=lambda row: row.id)
    kinds = tuple(sorted({row.kind for row in rows}))
    line = AlertLine(channel, number, kinds, first.created_at, AlertState.DUE, None, first.delivery, first.error)
    if first.status == NotificationStatus.SENT:
        return _with(line, AlertState.SENT, first.sent_at)
    if first.status == NotificationStatus.DEAD:
        return _with(line, AlertState.DEAD, None)
    if first.status == NotificationStatus.CANCELLED:
        return _with(line, AlertState.CANCELLED, None)
    if first.attempts > 0:
        return _with(line, AlertState.RETRYING, first.not_before)
    if first.not_before is not None and first.not_before > now:
        return _with(line, AlertState.HELD, first.not_before)
    goes_at = first.created_at + grace
    if goes_at > now:
        return _with(line, AlertState.CORRECTION_WINDOW, goes_at)
    return line


def _with(line: AlertLine, state: AlertState, at: datetime | None) -> AlertLine:
    return AlertLine(line.channel, line.number, line.kinds, line.created_at, state, at, line.delivery, line.error)


# --- the hospital today ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Today:
    """The hospital's day so far, from midnight in its time zone."""

    updates_recorded: int  # condition updates recorded today (their own time), not counting those withdrawn
    alerts_sent: int  # messages sent to relatives
    alerts_failed: int  # alerts waiting for another try after a failed one (whenever made)
    alerts_dead: int  # alerts made today that failed for good
    relatives_verified: int  # chats that proved a patient's number today


def start_of_day(hospital: Hospital, now: datetime) -> datetime:
    zone = ZoneInfo(hospital.time_zone)
    return datetime.combine(now.astimezone(zone).date(), time(), zone)


async def today(session: AsyncSession, hospital: Hospital, now: datetime) -> Today:
    since = start_of_day(hospital, now)
    patients = select(Admission.id).where(Admission.hospital_id == hospital.id)
    updates = await session.exec(
        select(func.count())
        .select_from(ConditionUpdate)
        .where(
            col(ConditionUpdate.admission_id).in_(patients),
            ConditionUpdate.recorded_at >= since,
            col(ConditionUpdate.retracted_at).is_(None),
        )
    )
    # The dispatcher audits every message it sends: one event per alert, whatever it merged.
    sent = await session.exec(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.hospital_id == hospital.id, AuditEvent.action == "alert.sent", AuditEvent.at >= since)
    )
    ours = col(Notification.admission_id).in_(patients)
    # A chat's pending rows about one patient go out as one message at the next try.
    failed = (
        select(Notification.chat_id, Notification.admission_id)
        .where(ours, Notification.status == NotificationStatus.PENDING, col(Notification.attempts) > 0)
        .distinct()
        .subquery()
    )
    dead = (
        select(Notification.chat_id, Notification.admission_id, Notification.error)
        .where(ours, Notification.status == NotificationStatus.DEAD, Notification.created_at >= since)
        .distinct()
        .subquery()
    )
    verified = (
        select(Verification.id)
        .join(Subscription, col(Subscription.verification_id) == col(Verification.id))
        .where(col(Subscription.admission_id).in_(patients), Verification.verified_at >= since)
        .distinct()
        .subquery()
    )
    counts = [(await session.exec(select(func.count()).select_from(query))).one() for query in (failed, dead, verified)]
    return Today(updates.one(), sent.one(), *counts)


# --- compliance ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WardCompliance:
    """Of the patients of a ward admitted at any time in the period, how many were never overdue
    in it (`overdue_hours`, the rule relatives see on the status card)."""

    ward: str | None  # None: admissions that name no ward
    patients: int
    on_schedule: int

    @property
    def share(self) -> float:
        return self.on_schedule / self.patients


async def compliance(
    session: AsyncSession, hospital: Hospital, now: datetime, limits: OverdueConfig, days: int = COMPLIANCE_DAYS
) -> list[WardCompliance]:
    """Ward by ward (by name, those without a ward last), over the last `days` days: a patient is
    on schedule when, for as long as they were admitted in that time, each update came before
    the one in force was overdue, and the latest is not overdue at the end (now, or the discharge,
    transfer or death). Before their first update a patient is due one within `overdue_hours.other`
    of the admission."""
    window_start = now - timedelta(days=days)
    admitted_since = func.coalesce(col(Admission.admitted_at), col(Admission.created_at))
    result = await session.exec(
        select(Admission).where(
            Admission.hospital_id == hospital.id,
            admitted_since <= now,
            or_(Admission.status == AdmissionStatus.ADMITTED, col(Admission.status_at) >= window_start),
        )
    )
    admissions = list(result.all())
    in_force = await queries.latest_updates(session, [admission.id for admission in admissions], window_start)
    recorded = await _recorded_between(session, [admission.id for admission in admissions], window_start, now)
    wards: dict[str | None, list[bool]] = {}
    for admission in admissions:
        since = admission.admitted_at or admission.created_at
        start = max(window_start, since)
        end = (
            now if admission.status == AdmissionStatus.ADMITTED or admission.status_at is None else admission.status_at
        )
        if end <= start:
            continue
        history = recorded.get(admission.id, [])
        if admission.id in in_force:
            history = [in_force[admission.id], *history]
        on_time = _on_schedule(history, since + timedelta(hours=limits.other), start, end, limits)
        wards.setdefault(admission.ward, []).append(on_time)
    named = sorted(ward for ward in wards if ward is not None)
    order = [*named, None] if None in wards else named
    return [WardCompliance(ward, len(wards[ward]), sum(wards[ward])) for ward in order]


def _on_schedule(
    history: list[ConditionUpdate], first_due: datetime, start: datetime, end: datetime, limits: OverdueConfig
) -> bool:
    """Whether no update in `history` (in the order recorded) came after the one before it was
    overdue, within [start, end], and the last is not overdue at `end`."""
    due = first_due
    for update in history:
        if update.recorded_at > end:
            break
        if start < update.recorded_at and update.recorded_at > due:
            return False
        due = update.recorded_at + overdue_after(update, limits)
    return end <= due


async def _recorded_between(
    session: AsyncSession, admission_ids: list[int], start: datetime, end: datetime
) -> dict[int, list[ConditionUpdate]]:
    """Each admission's updates recorded in [start, end], in the order recorded; withdrawn ones
    never counted."""
    found: dict[int, list[ConditionUpdate]] = {}
    for chunk in in_chunks(sorted(admission_ids)):
        result = await session.exec(
            select(ConditionUpdate)
            .where(
                col(ConditionUpdate.admission_id).in_(chunk),
                col(ConditionUpdate.retracted_at).is_(None),
                ConditionUpdate.recorded_at >= start,
                ConditionUpdate.recorded_at <= end,
            )
            .order_by(col(ConditionUpdate.recorded_at), col(ConditionUpdate.id))
        )
        for update in result.all():
            found.setdefault(update.admission_id, []).append(update)
    return found
