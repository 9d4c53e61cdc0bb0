"""python-telegram-bot's HTTP requests over aiohttp (PTB's `BaseRequest` interface).

Why not PTB's default (httpx): under a burst of alerts, httpcore's connection pool does work in
proportion to its connections times the requests waiting for one, on every request; the
dispatch benchmark measured it at most of the dispatcher's CPU time (about 2 ms per message).
aiohttp, which the twilio client already brings, keeps the same requests under a tenth of that.
Long polling (`getUpdates`) goes through one of its own, with one connection: PTB adds the poll's
timeout to `read_timeout` for that call.

`RepliesFirst` is the application's rate limiter: the replies to relatives go through the same
`Pacer` as this process's alerts (bot/alerts/pacing.py), ahead of them, and a 429 makes a reply
wait its retry_after and go, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import aiohttp
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter
from telegram.request import BaseRequest, RequestData

from bot.alerts.pacing import Pacer
from bot.platform.health import OUTSIDE_SERVICES, TELEGRAM
from bot.platform.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds, as PTB's HTTPXRequest: connecting, and waiting for the answer


class AiohttpRequest(BaseRequest):
    """PTB's requests over aiohttp; each 429 Telegram answers is counted
    (`wardwatch_rate_limited_total`) before PTB raises it."""

    def __init__(
        self, connections: int = 100, timeout: float = DEFAULT_TIMEOUT, metrics: Metrics | None = None
    ) -> None:
        self._connections = connections
        self._timeout = timeout
        self._metrics = metrics or Metrics()
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float:
        return self._timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout=BaseRequest.DEFAULT_NONE,
        write_timeout=BaseRequest.DEFAULT_NONE,
        connect_timeout=BaseRequest.DEFAULT_NONE,
        pool_timeout=BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        if request_data is not None and request_data.contains_files:
            # The bot sends text and buttons only; a file would need a multipart body.
            raise NetworkError("AiohttpRequest does not send files")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._chosen(connect_timeout),
            sock_read=self._chosen(read_timeout),
        )
        data = request_data.json_parameters if request_data is not None else None
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as response:
                answer = response.status, await response.read()
        except TimeoutError as error:
            OUTSIDE_SERVICES.failed(TELEGRAM)
            raise TimedOut from error
        except aiohttp.ClientError as error:
            OUTSIDE_SERVICES.failed(TELEGRAM)
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error
        # For /readyz: a server error or a refused token is Telegram failing us; any other answer
        # (a 400 for a chat that is gone, a 429) is Telegram working.
        if answer[0] >= 500 or answer[0] == 401:
            OUTSIDE_SERVICES.failed(TELEGRAM)
        else:
            OUTSIDE_SERVICES.answered(TELEGRAM)
        if answer[0] == HTTPStatus.TOO_MANY_REQUESTS:
            self._metrics.rate_limited(TELEGRAM)
        return answer

    def _chosen(self, timeout) -> float | None:
        """A call's own timeout, else ours (PTB passes a default marker when the call gave none)."""
        return self._timeout if isinstance(timeout, type(BaseRequest.DEFAULT_NONE)) else timeout


class RepliesFirst(BaseRateLimiter[None]):
    """Paces the application's messages (the replies) with `pacer`, the one this process's alerts
    go through too, ahead of the alerts waiting for it. A 429 pauses the pacer, alerts included,
    for its retry_after; the reply then goes again, as often as Telegram asks it to wait. Calls that
    send no message (getMe, setWebhook, answerCallbackQuery) are not paced."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    async def initialize(self) -> None:
        """Nothing to open: the pacer lives as long as the process."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> Any:
        if not _sends_a_message(endpoint):
            return await callback(*args, **kwargs)
        while True:
            try:
                async with self.pacer.reply_slot(str(data.get("chat_id", ""))):
                    return await callback(*args, **kwargs)
            except RetryAfter as error:
                seconds = _seconds(error.retry_after)
                log.warning("Telegram asked to wait %.0f s before the next message: the reply waits", seconds)
                self.pacer.pause(seconds)


def _sends_a_message(endpoint: str) -> bool:
    """The calls Telegram counts against a bot's 30 messages a second."""
    return endpoint.startswith(("send", "copyMessage", "forwardMessage", "editMessage"))


def _seconds(retry_after: timedelta | int) -> float:
    # A timedelta where PTB_TIMEDELTA is on, as build_telegram (bot/app.py) sets it.
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)
