"""Locks by key, within one process: one chat's messages handled one at a time, in the order they
came, while other chats' go on beside them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding the lock or waiting for it


class KeyedLocks:
    """`async with locks.held(key):` lets one holder of each key in at a time, first come first
    served (asyncio's locks wake their waiters in order). A key's lock is forgotten as soon as
    nobody holds or waits for it, so a million chats leave nothing behind."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        """How many keys are held or waited for now."""
        return len(self._held)

    @asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._held[key]
