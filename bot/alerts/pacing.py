"""Pacing: how fast a channel's messages may go, overall and to one chat, replies first."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


class Pacer:
    """At most `per_second` messages in any one second overall, and `per_chat_per_second` to any
    one chat. Use: `async with pacer.slot(chat_key, deadline) as granted: if granted: send(...)`.

    The platform counts a message when its request reaches it, some time between our sending and
    its answer. So that no network delay can make two messages look closer together than allowed,
    a message holds one of the second's places from the moment it may go until one second after
    its answer came, and the next message to the same chat waits for one interval after the
    answer to the previous one. That costs a little pace (30 / (1 + latency) per second) and
    never causes a 429. `pause` (after a 429) holds every message until its end.

    Replies to relatives and alerts of one process share the pacer: a reply (`reply_slot`) takes
    the next free place ahead of every alert waiting, since a relative is waiting for it. It waits
    for no chat interval (a reply of a confirmation and two status cards goes at once, as the
    relative expects), but an alert to the chat waits its interval after the reply.
    """

    def __init__(self, per_second: float, per_chat_per_second: float | None = None) -> None:
        places = max(1, int(per_second))
        self._window = places / per_second
        self._places = _Places(places)
        self._chat_interval = 1 / per_chat_per_second if per_chat_per_second else 0.0
        self._chats: dict[str, _ChatTurn] = {}
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    @asynccontextmanager
    async def slot(self, chat_key: str, deadline: float | None = None) -> AsyncIterator[bool]:
        """Wait until a message to `chat_key` may go, and send it inside the block. Gives False
        at once, and no slot, when its turn would come only after `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        turn = self._chats.setdefault(chat_key, _ChatTurn())
        turn.users += 1
        try:
            if not await self._take(loop, turn, deadline):
                yield False
                return
            try:
                yield True
            finally:
                turn.ready_at = loop.time() + self._chat_interval
                loop.call_later(self._window, self._places.release)
                turn.lock.release()
        finally:
            turn.users -= 1
        if len(self._chats) > 10_000:  # forget chats past their interval that nobody waits for
            now = loop.time()
            self._chats = {key: t for key, t in self._chats.items() if t.users or t.ready_at > now}

    @asynccontextmanager
    async def reply_slot(self, chat_key: str) -> AsyncIterator[None]:
        """Wait until a reply to `chat_key` may go, ahead of the alerts waiting, and send it inside
        the block. The chat's next alert keeps its interval after the reply."""
        loop = asyncio.get_running_loop()
        while True:
            await _sleep_until(loop, lambda: self._paused_until)
            await self._places.acquire(urgent=True)
            if self._paused_until <= loop.time():
                break
            self._places.release()  # paused while it waited for a place
        try:
            yield
        finally:
            loop.call_later(self._window, self._places.release)
            if self._chat_interval:
                turn = self._chats.setdefault(chat_key, _ChatTurn())
                turn.ready_at = max(turn.ready_at, loop.time() + self._chat_interval)

    async def _take(self, loop: asyncio.AbstractEventLoop, turn: _ChatTurn, deadline: float | None) -> bool:
        """The chat's turn (one message to a chat at a time) and one of the second's places."""

        def too_late() -> bool:
            return deadline is not None and max(turn.ready_at, self._paused_until) > deadline

        try:
            async with asyncio.timeout_at(deadline):
                await turn.lock.acquire()
        except TimeoutError:
            return False
        try:
            async with asyncio.timeout_at(deadline):
                while not too_late():
                    await _sleep_until(loop, lambda: max(turn.ready_at, self._paused_until))
                    await self._places.acquire()
                    if self._paused_until <= loop.time():
                        return True
                    self._places.release()  # paused while it waited for a place
        except TimeoutError:
            pass
        except BaseException:
            turn.lock.release()
            raise
        turn.lock.release()
        return False


class _Places:
    """The places of one second, like a semaphore whose urgent waiters go before the others."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._routine: deque[asyncio.Future[None]] = deque()

    async def acquire(self, urgent: bool = False) -> None:
        queue = self._urgent if urgent else self._routine
        if self._free and not self._urgent and (urgent or not self._routine):
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed a place, then cancelled: pass it on
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._routine):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


@dataclass
class _ChatTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready_at: float = 0.0  # loop time
    users: int = 0


async def _sleep_until(loop: asyncio.AbstractEventLoop, moment: Callable[[], float]) -> None:
    # The moment can move while we sleep (a 429's pause starts or grows), so look again on waking.
    while (delay := moment() - loop.time()) > 0:  # noqa: ASYNC110 - a moment in time, not a condition anyone signals
        await asyncio.sleep(delay)
