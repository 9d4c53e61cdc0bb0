"""What `/readyz` reads to tell whether relatives are being answered and told.

- The dispatcher's heartbeat, in the database (`models.Heartbeat`), so that the web process reads
  what the worker process writes. The dispatcher beats at most every `HEARTBEAT_SECONDS`: one
  small write, not one per pass.
- The oldest due alert: how long the outbox's most overdue pending row has been due.
- The outside services: when calls to Telegram or Twilio started failing. This one is kept per
  process (`OUTSIDE_SERVICES`): each process reports the calls it made itself, so the web
  process knows its replies and codes, the worker its alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.db import Database
from bot.platform.settings import FileConfig
from models import Heartbeat, Notification, table_of
from models.enums import NotificationStatus

DISPATCHER = "dispatcher"
# How often the dispatcher writes its beat; one older than twice this means it is stuck or gone.
HEARTBEAT_SECONDS = 15.0
# How long calls to an outside service may keep failing before the service counts as unreachable.
FAILING_FOR_SECONDS = 60.0

TELEGRAM = "telegram"
TWILIO = "twilio"


class OutsideServices:
    """Per process: since when the calls to each outside service have failed, cleared by the next
    call that gets an answer. `clock` is monotonic, unaffected by the wall clock being set."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failing_since: dict[str, float] = {}

    def answered(self, service: str) -> None:
        self._failing_since.pop(service, None)

    def failed(self, service: str) -> None:
        self._failing_since.setdefault(service, self.clock())

    def failing(self, longer_than: float = FAILING_FOR_SECONDS) -> list[str]:
        """The services whose calls have failed for longer than `longer_than` seconds."""
        now = self.clock()
        return sorted(service for service, since in self._failing_since.items() if now - since > longer_than)

    def clear(self) -> None:
        self._failing_since.clear()


OUTSIDE_SERVICES = OutsideServices()


async def beat(session: AsyncSession, name: str, now: datetime) -> None:
    """Record that the loop `name` is alive at `now` (one row per loop, written over)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table_of(Heartbeat)).values(name=name, beat_at=now)
    await session.exec(statement.on_conflict_do_update(index_elements=["name"], set_={"beat_at": now}))


async def last_beat(session: AsyncSession, name: str) -> datetime | None:
    return (await session.exec(select(Heartbeat.beat_at).where(Heartbeat.name == name))).first()


async def oldest_due_since(session: AsyncSession, now: datetime, grace_seconds: float) -> datetime | None:
    """Since when the longest-waiting pending alert has been due: its correction window's end, or
    the end of its hold (a retry's backoff, a 429, quiet hours), which comes after that window."""
    not_before, created_at = col(Notification.not_before), col(Notification.created_at)
    window_end = now - timedelta(seconds=grace_seconds)
    created, held_until = (
        await session.exec(
            select(
                func.min(created_at).filter(not_before.is_(None)),
                func.min(not_before).filter(not_before <= now),
            ).where(Notification.status == NotificationStatus.PENDING, created_at <= window_end)
        )
    ).one()
    moments = [] if held_until is None else [held_until]
    if created is not None:
        moments.append(created + timedelta(seconds=grace_seconds))
    return min(moments, default=None)


async def unready_reasons(
    database: Database, config: FileConfig, now: datetime, outside: OutsideServices = OUTSIDE_SERVICES
) -> list[str]:
    """Why this service cannot be relied on now, one line each; none when it can."""
    reasons = [f"{service}: calls failing for over {FAILING_FOR_SECONDS:.0f} s" for service in outside.failing()]
    if not await database.ping():
        return ["database: not answering", *reasons]
    async with database.session() as session:
        beat_at = await last_beat(session, DISPATCHER)
        due_since = await oldest_due_since(session, now, config.notifications.grace_seconds)
    if beat_at is None:
        reasons.append("dispatcher: no heartbeat yet")
    elif (now - beat_at).total_seconds() > 2 * HEARTBEAT_SECONDS:
        reasons.append(f"dispatcher: last heartbeat {(now - beat_at).total_seconds():.0f} s ago")
    limit = config.operations.max_alert_delay_seconds
    if due_since is not None and (now - due_since).total_seconds() > limit:
        reasons.append(f"outbox: the oldest due alert has waited {(now - due_since).total_seconds():.0f} s")
    return reasons
