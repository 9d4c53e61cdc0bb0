"""The dispatcher: drains the outbox at each platform's pace, retrying what may succeed later.

One loop per process. It claims due rows of the channels it can send on (`bot.outbox.claim`),
merges the rows of one chat and admission into one alert with the latest state, sends each
through its channel's `Sender` paced by its `Pacer`, and marks the rows in small chunks
(`bot.outbox.mark`).

Failures: a 429 waits its retry_after (the whole channel pauses); a timeout or server error is
retried with exponential backoff and jitter (`bot.outbox.retry_at`) up to
`notifications.max_attempts`, then kept as dead (`python -m bot outbox`); a permanent refusal (the
user blocked the bot, the chat is gone) is never retried and ends that chat's alerts; an alert the
channel cannot send as configured (no WhatsApp template of its kind) is kept as dead with that reason.

Duplicate window: rows are marked after each chunk of `CHUNK` alerts. If the process dies after a
chunk was sent and before it was marked, those alerts (at most `CHUNK` per process) are sent
again once their claim lapses (`notifications.claim_seconds`). Nothing is ever lost. No alert is
sent after `CLAIM_USE` of its claim has passed (a long 429 pause, slow chats): it is left for the
next claim, so that a dispatcher that claims it after the lapse cannot send it a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import outbox
from bot.alerts import corrections
from bot.alerts.channels import Alert, NotConfigured, PermanentFailure, RetryLater, Sender, TemporaryFailure
from bot.alerts.compose import alert_kind, compose_alert, new_admission_notice, template_fields
from bot.alerts.digest import compose_digest
from bot.outbox import CORRECTION, DIGEST, NEW_ADMISSION
from bot.platform import health, metrics
from bot.platform.db import Database
from bot.platform.i18n import Catalogues
from bot.platform.logs import add_to_log_context
from bot.platform.metrics import UNKNOWN_KIND, Metrics
from bot.platform.settings import FileConfig
from bot.relatives import access
from bot.relatives.quiet_hours import in_quiet_hours, quiet_hours_end
from bot.relatives.status_card import CardData, destination_of, transfer_destinations
from models import AuditEvent, Hospital, table_of
from models.audit import audit_values
from models.chat import Chat, Notification
from models.enums import AdmissionStatus, NotificationStatus

log = logging.getLogger(__name__)
CHUNK = 25
IDLE_LOOK_SECONDS = 1.0  # how often to look for rows added by other processes
CLAIM_USE = 0.5  # share of notifications.claim_seconds in which a claimed alert may still be sent


class Outcome(StrEnum):
    """What became of one alert in a pass."""

    READY = "ready"  # composed, to be sent
    SENT = "sent"
    CANCELLED = "cancelled"  # nothing to tell (any more), or nobody to tell it to
    RETRY = "retry"  # the platform asked us to wait (429): held, no attempt counted
    FAILED = "failed"  # a temporary failure: retried with backoff, then dead
    BLOCKED = "blocked"  # refused for good: dead, and the chat's alerts end
    NOT_CONFIGURED = "not configured"  # the channel lacks what it needs (a template): dead until put back
    QUIET = "quiet"  # routine news in the chat's quiet hours: held until they end
    UNSENDABLE = "unsendable"  # for a channel this process cannot send on: left for another
    EXPIRED = "expired"  # the claim ran out before its turn came: left as it is, for the next claim


# Outcomes that leave the rows as claimed: the claim lapses by itself.
_LEFT_ALONE = frozenset({Outcome.EXPIRED, Outcome.UNSENDABLE})


@dataclass
class _Group:
    """The claimed rows of one chat and admission: one alert."""

    chat_id: int
    admission_id: int
    rows: list[Notification]
    # The rows' claimed_until as this dispatcher set it: whoever claims them after it lapsed
    # sets another, so that this one's late marking leaves them alone.
    claim: datetime | None = None

    @property
    def priority(self) -> int:
        return min(row.priority for row in self.rows)


@dataclass
class _Pending:
    """The pending rows of one chat and admission, as `Dispatcher._pending` reads them."""

    last_id: int | None = None
    first_id: int | None = None
    first_before: dict[str, Any] = field(default_factory=dict)
    # The first row is a correction (an update withdrawn): its id, and when the chat was last shown
    # the patient before it was made (`corrections.last_shown`), the message it takes back.
    correction_id: int | None = None
    corrected_at: datetime | None = None


@dataclass
class _Outgoing:
    sender: Sender
    alert: Alert


@dataclass
class _Result:
    group: _Group
    outcome: Outcome
    delay: float = 0.0
    error: str | None = None
    # Pending rows of the same chat and admission up to this id were covered by the state this
    # alert showed (or found unchanged): they are settled with it rather than sent again.
    covers_up_to: int | None = None
    # A sent alert: its audit row (who was told about which admission, on which channel, when),
    # and whether it told of a discharge or a death, the last alert about that admission.
    audit: dict | None = None
    last: bool = False
    outgoing: _Outgoing | None = None  # a ready alert
    message_id: str | None = None  # a sent alert's, as its platform named it
    # For the metrics, where known before the alert is ready: its chat's channel, and its kind.
    channel: str | None = None
    kind: str | None = None


class Dispatcher:
    def __init__(
        self,
        database: Database,
        config: FileConfig,
        catalogues: Catalogues,
        senders: dict[str, Sender],
        clock: Callable[[], datetime],
        secret_key: bytes,
        metrics: Metrics | None = None,
    ) -> None:
        self._database = database
        self._config = config
        self._policy = config.notifications
        self._catalogues = catalogues
        self._senders = senders
        self._clock = clock
        self._secret_key = secret_key  # names the chat in the audit trail (`access.chat_actor`)
        self._wake = asyncio.Event()
        self._refused: set[tuple[str, str]] = set()  # (channel, chat) refused for good in this pass
        self.name = f"dispatcher-{random.getrandbits(32):08x}"
        self._beaten_at: float | None = None  # the event loop's time of this dispatcher's last heartbeat
        self._metrics = metrics or Metrics()

    def wake(self) -> None:
        """A new row was committed in this process: look now, not at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Drain the outbox until cancelled."""
        while True:
            # Cleared before the pass, so that a row committed during it wakes the next one.
            self._wake.clear()
            try:
                await self._beat()
                if await self.dispatch_once():
                    continue
                idle = await self._idle_seconds()
            except Exception:  # noqa: BLE001 - a bad moment (database restart) must not stop alerts
                log.exception("dispatcher pass failed; trying again")
                idle = IDLE_LOOK_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def _beat(self) -> None:
        """Tell `/readyz` (`bot.platform.health`) this loop is alive, at most every `HEARTBEAT_SECONDS`."""
        loop_time = asyncio.get_running_loop().time()
        if self._beaten_at is not None and loop_time - self._beaten_at < health.HEARTBEAT_SECONDS:
            return
        async with self._database.session() as session:
            await health.beat(session, health.DISPATCHER, self._clock())
            await session.commit()
        self._beaten_at = loop_time

    async def _idle_seconds(self) -> float:
        """Until the next pending row may be claimed (its grace period, retry time or someone
        else's claim ends), at most `IDLE_LOOK_SECONDS`."""
        now = self._clock()
        claimed_until, not_before = col(Notification.claimed_until), col(Notification.not_before)
        free = or_(claimed_until.is_(None), claimed_until < now)
        async with self._database.session() as session:
            oldest, held_until, claim_ends = (
                await session.exec(
                    select(
                        func.min(Notification.created_at).filter(free, or_(not_before.is_(None), not_before <= now)),
                        func.min(not_before).filter(free, not_before > now),
                        func.min(claimed_until).filter(claimed_until >= now),
                    ).where(Notification.status == NotificationStatus.PENDING, self._sendable())
                )
            ).one()
        moments = [moment for moment in (held_until, claim_ends) if moment is not None]
        if oldest is not None:
            moments.append(oldest + timedelta(seconds=self._policy.grace_seconds))
        if not moments:
            return IDLE_LOOK_SECONDS
        return min(IDLE_LOOK_SECONDS, max(0.01, (min(moments) - now).total_seconds()))

    # --- one pass ----------------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Claim one batch of due rows and deal with all of it; how many alerts were handled."""
        loop = asyncio.get_running_loop()
        groups = await self._claim()
        send_before = loop.time() + self._policy.claim_seconds * CLAIM_USE
        self._refused = set()
        for start in range(0, len(groups), CHUNK):
            await self._beat()  # a pass of many paced alerts takes longer than a heartbeat's interval
            # Every alert of the chunk is composed first, then they queue for the pacer in the
            # claim's order: critical news first.
            prepared = await self._prepare(groups[start : start + CHUNK])
            results = await asyncio.gather(*(self._send(result, send_before) for result in prepared))
            await self._record(results)
            self._count(prepared, results)
        return len(groups)

    async def _prepare(self, chunk: list[_Group]) -> list[_Result]:
        try:
            return await self._deliver(chunk)
        except Exception as error:  # noqa: BLE001 - a bad moment: the chunk is retried later
            log.exception("alerts could not be composed")
            return [_Result(group, Outcome.FAILED, error=f"{type(error).__name__}: {error}") for group in chunk]

    async def _send(self, result: _Result, send_before: float) -> _Result:
        if result.outcome != Outcome.READY or result.outgoing is None:
            return result
        group, outgoing = result.group, result.outgoing
        sender = outgoing.sender
        chat_key = outgoing.alert.chat_key
        # Each alert is sent in a task of its own (`dispatch_once` gathers them): its context is its own.
        add_to_log_context(
            channel=sender.channel, chat=access.chat_actor(self._secret_key, sender.channel, chat_key),
            admission_id=group.admission_id,
        )  # fmt: skip
        async with sender.pacer.slot(chat_key, send_before) as granted:
            if not granted:  # not before the claim runs short: left for the next claim
                return _Result(group, Outcome.EXPIRED)
            if (sender.channel, chat_key) in self._refused:  # its other alert just did
                return _Result(group, Outcome.CANCELLED)
            try:
                message_id = await sender.send(outgoing.alert)
            except RetryLater as error:
                sender.pacer.pause(error.seconds)
                return _Result(group, Outcome.RETRY, delay=error.seconds, error=str(error))
            except PermanentFailure as error:
                self._refused.add((sender.channel, chat_key))
                return _Result(group, Outcome.BLOCKED, error=str(error))
            except TemporaryFailure as error:
                return _Result(group, Outcome.FAILED, error=str(error))
            except NotConfigured as error:
                return _Result(group, Outcome.NOT_CONFIGURED, error=str(error))
            except Exception as error:  # noqa: BLE001 - unforeseen: retried like a temporary failure
                log.exception("alert send failed on %s", sender.channel)
                return _Result(group, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
        log.debug("alert sent on %s", sender.channel)
        return _Result(
            group, Outcome.SENT, message_id=message_id,
            covers_up_to=result.covers_up_to, audit=result.audit, last=result.last,
        )  # fmt: skip

    def _sendable(self):
        """Rows for chats on a channel this process can send on: the others are left to the
        processes that can (claiming them here would only keep them from those)."""
        return outbox.on_channels(sorted(self._senders))

    async def _claim(self) -> list[_Group]:
        now = self._clock()
        claim = now + timedelta(seconds=self._policy.claim_seconds)
        async with self._database.session() as session:
            ids = await outbox.claim(
                session, self._sendable(), now, now - timedelta(seconds=self._policy.grace_seconds), claim,
                self._policy.batch_size, skip_locked=self._database.is_postgresql,
            )  # fmt: skip
            await session.commit()
            if not ids:
                return []
            rows = (await session.exec(select(Notification).where(col(Notification.id).in_(ids)))).all()
        by_pair: dict[tuple[int, int], list[Notification]] = defaultdict(list)
        for row in rows:
            by_pair[(row.chat_id, row.admission_id)].append(row)
        groups = [
            _Group(chat_id, admission_id, sorted(items, key=lambda r: r.id), claim)
            for (chat_id, admission_id), items in by_pair.items()
        ]
        return sorted(groups, key=lambda group: (group.priority, group.rows[0].id))

    async def _deliver(self, chunk: list[_Group]) -> list[_Result]:
        """What each alert of the chunk says, read in a few queries for the whole chunk."""
        now = self._clock()
        chat_ids = {group.chat_id for group in chunk}
        admission_ids = {group.admission_id for group in chunk}
        async with self._database.session() as session:
            chats = {
                chat.id: chat for chat in (await session.exec(select(Chat).where(col(Chat.id).in_(chat_ids)))).all()
            }
            # Before the cards are read: a row added after this query may tell of a change the
            # card does not show yet, so it must stay pending rather than be settled by this alert.
            pending = await self._pending(session, chat_ids, admission_ids, chunk[0].claim, now)
            await self._corrected(session, chats, pending)
            readable = await access.readable_by_chat(
                session, chat_ids, now, self._config.verification, admission_ids, alerting_only=True
            )
            destinations = await transfer_destinations(session, (c for cards in readable.values() for c in cards))
        results = []
        for group in chunk:
            card = next((c for c in readable.get(group.chat_id, ()) if c.admission.id == group.admission_id), None)
            try:
                results.append(self._compose(group, chats.get(group.chat_id), card, pending, destinations, now))
            except Exception as error:  # noqa: BLE001 - one bad alert must not sink its whole chunk
                log.exception("alert could not be composed")
                results.append(_Result(group, Outcome.FAILED, error=f"{type(error).__name__}: {error}"))
        return results

    def _compose(
        self,
        group: _Group,
        chat: Chat | None,
        card: CardData | None,
        pending: dict[tuple[int, int], _Pending],
        destinations: dict[str, Hospital],
        now: datetime,
    ) -> _Result:
        if chat is None or chat.unreachable_at is not None:
            return _Result(group, Outcome.CANCELLED, channel=chat.channel if chat else None)
        sender = self._senders.get(chat.channel)
        if sender is None:  # that channel is not configured in this process: leave it
            return _Result(group, Outcome.UNSENDABLE)
        if all(row.kind == NEW_ADMISSION for row in group.rows):
            return self._notice(group, chat, card, sender, now)
        if card is None:  # verification lapsed, the number was corrected away, /stop, alerts ended
            return _Result(group, Outcome.CANCELLED, channel=chat.channel)
        local = now.astimezone(ZoneInfo(card.hospital.time_zone))
        if group.priority > 0 and in_quiet_hours(chat, local):
            wait = (quiet_hours_end(chat, local) - local).total_seconds()
            kind = DIGEST if all(row.kind == DIGEST for row in group.rows) else alert_kind(card)
            return _Result(group, Outcome.QUIET, delay=wait, channel=chat.channel, kind=kind)
        language = self._catalogues.get(chat.language)
        waiting = pending.get((group.chat_id, group.admission_id), _Pending())
        covered = waiting.last_id
        news = [row for row in group.rows if row.kind != DIGEST]
        destination = None
        if news:
            # What the relative knew before the oldest change still untold, which may be a row
            # outside this claim (a routine change queued behind critical news).
            older_untold = waiting.first_id is not None and waiting.first_id < news[0].id
            before = waiting.first_before if older_untold else news[0].before
            destination = destination_of(card, destinations)
            corrected_at = waiting.corrected_at
            reply = compose_alert(card, before, language, now, self._config.overdue_hours, destination, corrected_at)
            kind = alert_kind(card, corrected_at)
        else:  # a digest says "no change": it settles nothing else that is pending
            before, corrected_at = group.rows[-1].before, None
            reply = compose_digest(card, group.rows[-1], language, now, self._config.overdue_hours)
            kind, covered = DIGEST, None
        if reply is None:
            return _Result(group, Outcome.CANCELLED, covers_up_to=covered, channel=chat.channel, kind=kind)
        fields = template_fields(card, before, language, destination, corrected_at) if sender.uses_templates else {}
        alert = Alert(
            chat.chat_key, reply, kind, language.code, fields,
            last_inbound_at=chat.last_inbound_at, template_only=any(row.template_only for row in group.rows),
        )  # fmt: skip
        channel = chat.channel
        audit = audit_values(
            access.chat_actor(self._secret_key, channel, chat.chat_key), "alert.sent", card.hospital.id,
            card.admission.id, channel=channel,
            kinds=sorted({row.kind for row in group.rows}), update_id=card.latest.id if card.latest else None,
        )  # fmt: skip
        last = card.admission.status in (AdmissionStatus.DISCHARGED, AdmissionStatus.DECEASED)
        return _Result(
            group, Outcome.READY, covers_up_to=covered, audit={**audit, "at": now}, last=last,
            outgoing=_Outgoing(sender, alert),
        )  # fmt: skip

    def _notice(self, group: _Group, chat: Chat, card: CardData | None, sender: Sender, now: datetime) -> _Result:
        """A new admission under the chat's confirmed number: said without a word about the patient
        (`compose.new_admission_notice`), held in quiet hours, moot once the chat reads the card or
        sends /stop."""
        if card is not None or chat.alerts_stopped:
            return _Result(group, Outcome.CANCELLED, channel=chat.channel, kind=NEW_ADMISSION)
        local = now.astimezone(ZoneInfo(self._config.hospital_time_zone))
        if in_quiet_hours(chat, local):
            wait = (quiet_hours_end(chat, local) - local).total_seconds()
            return _Result(group, Outcome.QUIET, delay=wait, channel=chat.channel, kind=NEW_ADMISSION)
        language = self._catalogues.get(chat.language)
        alert = Alert(
            chat.chat_key, new_admission_notice(language), NEW_ADMISSION, language.code, {},
            last_inbound_at=chat.last_inbound_at, template_only=any(row.template_only for row in group.rows),
        )  # fmt: skip
        audit = audit_values(
            access.chat_actor(self._secret_key, chat.channel, chat.chat_key), "alert.sent", None, group.admission_id,
            channel=chat.channel, kinds=[NEW_ADMISSION],
        )  # fmt: skip
        return _Result(group, Outcome.READY, audit={**audit, "at": now}, outgoing=_Outgoing(sender, alert))

    async def _pending(
        self, session: AsyncSession, chat_ids: set[int], admission_ids: set[int], claim: datetime | None, now: datetime
    ) -> dict[tuple[int, int], _Pending]:
        """For each chat and admission: the newest pending row (the alert settles those up to
        it), and the oldest pending change no other dispatcher holds (where the alert starts)."""
        claimed_until = col(Notification.claimed_until)
        result = await session.exec(
            select(  # type: ignore[call-overload]  # SQLModel's select is typed for at most four columns
                col(Notification.id),
                col(Notification.chat_id),
                col(Notification.admission_id),
                col(Notification.kind),
                col(Notification.before),
                or_(claimed_until.is_(None), claimed_until < now, claimed_until == claim),
            )  # fmt: skip
            .where(
                col(Notification.chat_id).in_(chat_ids),
                col(Notification.admission_id).in_(admission_ids),
                # `status` in an expression, so that no index on it serves: SQLite's planner, which
                # has no statistics, would otherwise walk every pending row of the outbox by the due
                # index (8 ms a chunk with a backlog of 20,000 rows) rather than the chats' rows.
                col(Notification.status).concat("") == NotificationStatus.PENDING,
            )
            .order_by(col(Notification.id))
        )
        found: dict[tuple[int, int], _Pending] = defaultdict(_Pending)
        for row_id, chat_id, admission_id, kind, before, free in result.all():
            pair = found[(chat_id, admission_id)]
            pair.last_id = row_id
            if free and kind != DIGEST and pair.first_id is None:
                pair.first_id, pair.first_before = row_id, before
                pair.correction_id = row_id if kind == CORRECTION else None
        return found

    async def _corrected(
        self, session: AsyncSession, chats: dict[int, Chat], pending: dict[tuple[int, int], _Pending]
    ) -> None:
        """For each alert that starts from a withdrawn update: when the chat last read it."""
        for (chat_id, admission_id), waiting in pending.items():
            chat = chats.get(chat_id)
            if waiting.correction_id is not None and chat is not None:
                waiting.corrected_at = await corrections.last_shown(
                    session, self._secret_key, chat, admission_id, waiting.correction_id
                )

    async def _record(self, results: list[_Result]) -> None:
        """Mark the chunk's rows in one transaction, in a few statements for the whole chunk
        (`outbox.mark`); audit what was sent; end the alerts that told their last news, and those of
        chats that refused us for good."""
        now = self._clock()
        if any(result.outcome == Outcome.UNSENDABLE for result in results):
            log.warning("alerts for a channel this process cannot send on: left for another")
        marked: list[outbox.Marked] = []
        audits: list[dict] = []
        told_last: list[tuple[int, int]] = []
        unreachable: set[int] = set()
        for result in results:
            if result.outcome in _LEFT_ALONE:
                continue
            group = result.group
            covered = None
            if result.covers_up_to is not None:
                covered = outbox.Covered(group.chat_id, group.admission_id, result.covers_up_to)
            ids = tuple(row.id for row in group.rows)
            marked.append(outbox.Marked(ids, self._marking(result, now), group.claim, covered))
            if result.outcome == Outcome.SENT:
                if result.audit is not None:  # every disclosure is audited
                    audits.append(result.audit)
                if result.last:
                    told_last.append((group.chat_id, group.admission_id))
            elif result.outcome == Outcome.BLOCKED:
                unreachable.add(group.chat_id)
        async with self._database.session() as session:
            await outbox.mark(session, marked, now)
            if audits:
                await session.exec(insert(table_of(AuditEvent)), params=audits)
            # An alert that told a discharge or a death was the last about it: decided by what the
            # alert showed, not by the status now (a discharge recorded while a condition alert was
            # on its way must still be told).
            await access.end_alerts_about(session, told_last)
            for chat_id in unreachable:  # after the rows above: it cancels the chat's pending rest
                await access.mark_unreachable(session, chat_id, now)
            await session.commit()

    def _count(self, prepared: list[_Result], results: list[_Result]) -> None:
        """Tell the metrics what became of each alert of a chunk, as its rows were marked
        (`bot.platform.metrics`: sent, retried, held, dead, cancelled); alerts left for another
        claim are not counted until they end somewhere."""
        now = self._clock()
        for ready, result in zip(prepared, results, strict=True):
            if result.outcome in _LEFT_ALONE:
                continue
            if ready.outgoing is not None:
                channel, kind = ready.outgoing.sender.channel, ready.outgoing.alert.kind
            else:
                channel, kind = ready.channel or "unknown", ready.kind or UNKNOWN_KIND
            outcome = _reported(dict(self._marking(result, now).items))
            self._metrics.alert(channel, kind, outcome)
            if outcome in (metrics.RETRIED, metrics.HELD) and result.outcome in (Outcome.RETRY, Outcome.FAILED):
                self._metrics.send_retry(channel)

    def _marking(self, result: _Result, now: datetime) -> outbox.Marking:
        """What a group's rows become after its outcome."""
        if result.outcome == Outcome.SENT:
            return outbox.sent(now, result.message_id)
        if result.outcome == Outcome.CANCELLED:
            return outbox.cancelled()
        if result.outcome in (Outcome.RETRY, Outcome.QUIET):
            return outbox.held(now + timedelta(seconds=result.delay))
        if result.outcome in (Outcome.BLOCKED, Outcome.NOT_CONFIGURED):
            return outbox.dead(result.error or "")
        # failed: counted, then dead
        attempts = max(row.attempts for row in result.group.rows)
        return outbox.retried(self._policy, attempts, now, result.error or "")


def _reported(marking: dict[str, Any]) -> str:
    """The outcome the metrics report for rows marked so: what the outbox now says of them."""
    status = marking["status"]
    if status == NotificationStatus.PENDING:  # waiting again: after a counted attempt, or not
        return metrics.RETRIED if "attempts" in marking else metrics.HELD
    return {NotificationStatus.SENT: metrics.SENT, NotificationStatus.DEAD: metrics.DEAD}.get(status, metrics.CANCELLED)
