"""The dispatcher: drains the outbox at each platform's pace, retrying what may succeed later.

One loop per process. It claims due rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so that two
dispatchers never claim the same row; SQLite: one writer at a time does the same), merges the
rows of one chat and admission into one alert with the latest state, sends each through its
channel's `Sender` paced by its `Pacer`, and marks the rows in small chunks.

Failures: a 429 waits its retry_after (the whole channel pauses); a timeout or server error is
retried with exponential backoff and jitter up to `notifications.max_attempts`, then kept as dead
(`python -m bot outbox`); a permanent refusal (the user blocked the bot, the chat is gone) is never
retried and ends that chat's alerts.

Duplicate window: rows are marked after each chunk of `CHUNK` alerts. If the process dies after a
chunk was sent and before it was marked, those alerts (at most `CHUNK` per process) are sent
again once their claim lapses (`notifications.claim_seconds`). Nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol
from zoneinfo import ZoneInfo

from aiolimiter import AsyncLimiter
from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import relatives
from bot.alerts import compose_alert
from bot.db import Database
from bot.i18n import Catalogues
from bot.replies import Reply
from bot.settings import FileConfig
from bot.status_card import CardData
from models import Admission, Hospital
from models.chat import Chat, Notification, Subscription
from models.enums import AdmissionStatus

log = logging.getLogger(__name__)
CHUNK = 25
IDLE_LOOK_SECONDS = 1.0  # how often to look for rows added by other processes


class RetryLater(Exception):
    """The platform asked us to slow down (HTTP 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


class TemporaryFailure(Exception):
    """A timeout, a network error or a server error: worth another try later."""


class PermanentFailure(Exception):
    """The chat can never receive messages again (blocked, deactivated, not found, opted out)."""


class Sender(Protocol):
    channel: str
    pacer: "Pacer"

    async def send(self, chat_key: str, replies: list[Reply]) -> None: ...


class Pacer:
    """At most `per_second` messages overall and `per_chat_per_second` to any one chat."""

    def __init__(self, per_second: float, per_chat_per_second: float | None = None) -> None:
        self._overall = AsyncLimiter(per_second, 1)
        self._chat_interval = 1 / per_chat_per_second if per_chat_per_second else 0.0
        self._chat_ready: dict[str, float] = {}
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    async def wait(self, chat_key: str) -> None:
        loop = asyncio.get_running_loop()
        ready = self._chat_ready.get(chat_key, 0.0)
        self._chat_ready[chat_key] = max(loop.time(), ready) + self._chat_interval
        delay = max(ready, self._paused_until) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._overall.acquire()
        if len(self._chat_ready) > 100_000:  # forget chats long past their interval
            now = loop.time()
            self._chat_ready = {key: at for key, at in self._chat_ready.items() if at > now}


@dataclass
class _Group:
    """The claimed rows of one chat and admission: one alert."""

    chat_id: int
    admission_id: int
    rows: list[Notification]

    @property
    def priority(self) -> int:
        return min(row.priority for row in self.rows)


@dataclass
class _Result:
    group: _Group
    outcome: str  # sent, cancelled, retry, failed, blocked, quiet, unsendable
    delay: float = 0.0
    error: str | None = None
    # Pending rows of the same chat and admission up to this id were covered by the state this
    # alert showed (or found unchanged): they are settled with it rather than sent again.
    covers_up_to: int | None = None


def in_quiet_hours(chat: Chat, local: datetime) -> bool:
    if chat.quiet_from is None or chat.quiet_until is None:
        return False
    hour = local.hour
    if chat.quiet_from <= chat.quiet_until:
        return chat.quiet_from <= hour < chat.quiet_until
    return hour >= chat.quiet_from or hour < chat.quiet_until


def quiet_hours_end(chat: Chat, local: datetime) -> datetime:
    end = local.replace(hour=chat.quiet_until or 0, minute=0, second=0, microsecond=0)
    return end if end > local else end + timedelta(days=1)


class Dispatcher:
    def __init__(
        self,
        database: Database,
        config: FileConfig,
        catalogues: Catalogues,
        senders: dict[str, Sender],
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._config = config
        self._policy = config.notifications
        self._catalogues = catalogues
        self._senders = senders
        self._clock = clock
        self._wake = asyncio.Event()
        self.name = f"dispatcher-{random.getrandbits(32):08x}"

    def wake(self) -> None:
        """A new row was committed in this process: look now, not at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Drain the outbox until cancelled."""
        while True:
            try:
                handled = await self.dispatch_once()
            except Exception:  # noqa: BLE001 - a bad moment (database restart) must not stop alerts
                log.exception("dispatcher pass failed; trying again")
                handled = 0
            if handled:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), await self._idle_seconds())
            except TimeoutError:
                pass

    async def _idle_seconds(self) -> float:
        """Until the next held-back row becomes due, at most `IDLE_LOOK_SECONDS`."""
        now = self._clock()
        async with self._database.session() as session:
            oldest = (
                await session.exec(
                    select(func.min(Notification.created_at)).where(Notification.status == "pending")
                )
            ).one()
        if oldest is None:
            return IDLE_LOOK_SECONDS
        due = oldest + timedelta(seconds=self._policy.grace_seconds)
        return min(IDLE_LOOK_SECONDS, max(0.01, (due - now).total_seconds()))

    # --- one pass ----------------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Claim one batch of due rows and deal with all of it; how many alerts were handled."""
        groups = await self._claim()
        for start in range(0, len(groups), CHUNK):
            chunk = groups[start : start + CHUNK]
            results = await asyncio.gather(*(self._deliver(group) for group in chunk))
            await self._record(results)
        return len(groups)

    async def _claim(self) -> list[_Group]:
        now = self._clock()
        due = now - timedelta(seconds=self._policy.grace_seconds)
        async with self._database.session() as session:
            candidates = (
                select(Notification.id)
                .where(
                    Notification.status == "pending",
                    Notification.created_at <= due,
                    or_(col(Notification.not_before).is_(None), col(Notification.not_before) <= now),
                    or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now),
                )
                .order_by(col(Notification.priority), col(Notification.id))
                .limit(self._policy.batch_size)
            )
            if self._database.is_postgresql:
                candidates = candidates.with_for_update(skip_locked=True)
            claimed = await session.exec(
                update(Notification)
                .where(col(Notification.id).in_(candidates.scalar_subquery()))
                .values(claimed_until=now + timedelta(seconds=self._policy.claim_seconds))
                .returning(Notification.id)
            )
            ids = [row[0] for row in claimed.all()]
            await session.commit()
            if not ids:
                return []
            rows = (await session.exec(select(Notification).where(col(Notification.id).in_(ids)))).all()
        by_pair: dict[tuple[int, int], list[Notification]] = defaultdict(list)
        for row in rows:
            by_pair[(row.chat_id, row.admission_id)].append(row)
        groups = [_Group(chat_id, admission_id, sorted(items, key=lambda r: r.id)) for (chat_id, admission_id), items in by_pair.items()]
        return sorted(groups, key=lambda group: (group.priority, group.rows[0].id))

    async def _deliver(self, group: _Group) -> _Result:
        now = self._clock()
        async with self._database.session() as session:
            chat = await session.get(Chat, group.chat_id)
            if chat is None or chat.unreachable_at is not None:
                return _Result(group, "cancelled")
            sender = self._senders.get(chat.channel)
            if sender is None:  # that channel is not configured in this process: leave it
                return _Result(group, "unsendable")
            cards = await relatives.readable_cards(
                session, chat, now, self._config.verification, [group.admission_id]
            )
            if not cards:  # verification lapsed, or the number was corrected away
                return _Result(group, "cancelled")
            card = cards[0]
            local = now.astimezone(ZoneInfo(card.hospital.time_zone))
            if group.priority > 0 and in_quiet_hours(chat, local):
                wait = (quiet_hours_end(chat, local) - local).total_seconds()
                return _Result(group, "quiet", delay=wait)
            covered = (
                await session.exec(
                    select(func.max(Notification.id)).where(
                        Notification.chat_id == group.chat_id,
                        Notification.admission_id == group.admission_id,
                        Notification.status == "pending",
                    )
                )
            ).one()
            destination = await self._destination(session, card)
            language = self._catalogues.get(chat.language)
            alert = compose_alert(card, group.rows[0].before, language, now, self._config.overdue_hours, destination)
            if alert is None:
                return _Result(group, "cancelled", covers_up_to=covered)
            channel, chat_key = chat.channel, chat.chat_key
        await sender.pacer.wait(chat_key)
        try:
            await sender.send(chat_key, [alert])
        except RetryLater as error:
            sender.pacer.pause(error.seconds)
            return _Result(group, "retry", delay=error.seconds, error=str(error))
        except PermanentFailure as error:
            return _Result(group, "blocked", error=str(error))
        except TemporaryFailure as error:
            return _Result(group, "failed", error=str(error))
        log.debug("alert sent on %s", channel)
        return _Result(group, "sent", covers_up_to=covered)

    async def _destination(self, session: AsyncSession, card: CardData) -> Hospital | None:
        """The hospital a patient was moved to, when it is one of ours (for its helpline)."""
        name = card.admission.transferred_to
        if card.admission.status != AdmissionStatus.TRANSFERRED or not name:
            return None
        result = await session.exec(select(Hospital).where(func.lower(Hospital.name) == name.strip().lower()))
        return result.first()

    async def _record(self, results: list[_Result]) -> None:
        now = self._clock()
        policy = self._policy
        async with self._database.session() as session:
            for result in results:
                group = result.group
                ids = [row.id for row in group.rows]
                values: dict = {"claimed_until": None}
                if result.outcome == "sent":
                    values |= {"status": "sent", "sent_at": now}
                    await self._after_sent(session, group)
                elif result.outcome == "cancelled":
                    values |= {"status": "cancelled"}
                elif result.outcome in ("retry", "quiet"):
                    values |= {"not_before": now + timedelta(seconds=result.delay)}
                elif result.outcome == "blocked":
                    values |= {"status": "dead", "error": (result.error or "")[:300]}
                    await self._unreachable(session, group.chat_id, now)
                elif result.outcome == "failed":
                    attempts = max(row.attempts for row in group.rows) + 1
                    if attempts >= policy.max_attempts:
                        values |= {"status": "dead", "attempts": attempts, "error": (result.error or "")[:300]}
                    else:
                        backoff = min(policy.backoff_max_seconds, policy.backoff_first_seconds * 2 ** (attempts - 1))
                        jittered = random.uniform(backoff / 2, backoff)
                        values |= {"attempts": attempts, "not_before": now + timedelta(seconds=jittered),
                                   "error": (result.error or "")[:300]}  # fmt: skip
                await session.exec(update(Notification).where(col(Notification.id).in_(ids)).values(**values))
                if result.covers_up_to is not None:
                    await session.exec(
                        update(Notification)
                        .where(
                            col(Notification.chat_id) == group.chat_id,
                            col(Notification.admission_id) == group.admission_id,
                            col(Notification.id) <= result.covers_up_to,
                            Notification.status == "pending",
                            col(Notification.id).not_in(ids),
                        )
                        .values(status=values["status"], sent_at=values.get("sent_at"))
                    )
            await session.commit()

    async def _after_sent(self, session: AsyncSession, group: _Group) -> None:
        """A discharge or a death is the last alert: the chat's alerts for it end."""
        admission = await session.get(Admission, group.admission_id)
        if admission is not None and admission.status in (AdmissionStatus.DISCHARGED, AdmissionStatus.DECEASED):
            await session.exec(
                update(Subscription)
                .where(col(Subscription.chat_id) == group.chat_id, col(Subscription.admission_id) == group.admission_id)
                .values(alerts=False)
            )

    async def _unreachable(self, session: AsyncSession, chat_id: int, now: datetime) -> None:
        await session.exec(update(Chat).where(col(Chat.id) == chat_id).values(unreachable_at=now))
        await session.exec(update(Subscription).where(col(Subscription.chat_id) == chat_id).values(alerts=False))
        await session.exec(
            update(Notification)
            .where(col(Notification.chat_id) == chat_id, Notification.status == "pending")
            .values(status="cancelled", claimed_until=None)
        )
