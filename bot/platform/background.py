"""Work that must not hold up a reply, such as sending an SMS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger(__name__)


class Background:
    """Tasks that must not hold up a reply (sending an SMS). Kept referenced until done;
    `drain()` waits for them (tests, shutdown)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, work: Awaitable[None], what: str) -> None:
        task = asyncio.ensure_future(self._guard(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Awaitable[None], what: str) -> None:
        try:
            await work
        except Exception:  # noqa: BLE001 - a failed send must not kill the process
            log.exception("background task failed: %s", what)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
