"""Stopping `python -m bot run` as an operator does: Ctrl-C typed in its terminal, or SIGTERM from a
process manager, with and without a terminal. Everything stops within 5 seconds, the exit status is
0 and nothing is logged as an error: no traceback.

Each test runs the real command in a child process on a SQLite file of its own and a free port. In
a terminal (a pseudo-terminal the child has as its controlling terminal) the local console chat
waits for a line that never comes: the stop must not wait for one either."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.platform import db
from tests.conftest import PROJECT_ROOT, SECRET
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support import free_port, service_environment

STOP_WITHIN = 5.0  # seconds, the requirement itself; a stop usually takes well under one
START_WITHIN = 120.0  # only against a hang
CTRL_C = b"\x03"
TOKEN = "123:ABC"
# What the console chat writes once it waits for the relative's first line, and its answer to it.
OPENING = "Write anything to begin"
ASKS_FOR_NUMBER = "Please send the mobile number that was written down at admission"


async def environment(tmp_path: Path, port: int, **more: str) -> dict[str, str]:
    """The shell of an operator: a SQLite file of its own, migrated; no messaging channel unless
    `more` configures one."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ward.sqlite3'}"
    await db.upgrade_async(url)
    return service_environment(
        BOT_CONFIG=str(PROJECT_ROOT / "config.yaml"), DATABASE_URL=url, SECRET_KEY=SECRET,
        HOST="127.0.0.1", PORT=str(port), **more,
    )  # fmt: skip


async def until_healthy(port: int, exited: Callable[[], bool]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        while True:
            assert not exited(), "the process ended before it served"
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


def assert_clean(output: str) -> None:
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output


class Terminal:
    """`python -m bot run` in a pseudo-terminal of its own; what it writes is kept in `output`."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.pid, self._fd = pty.fork()
        if self.pid == 0:  # the child: only exec, nothing that could take a lock another thread holds
            os.chdir(PROJECT_ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "bot", "run"], environ)
        self._written = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.status: int | None = None

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # EIO: the child's side is closed
                return
            if not chunk:
                return
            self._written += chunk

    @property
    def output(self) -> str:
        return bytes(self._written).decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self._fd, keys)

    def exited(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    async def wait(self, timeout: float) -> float:
        """Seconds until the process ended; after `timeout` it is killed and the test fails."""
        began, killed = time.monotonic(), False
        while not self.exited():
            if not killed and time.monotonic() - began > timeout:
                os.kill(self.pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - began
        self._reader.join(5)
        os.close(self._fd)
        assert not killed, f"still running {timeout} s after the stop:\n{self.output}"
        return elapsed

    async def until_written(self, text: str) -> None:
        while text not in self.output:
            assert not self.exited(), f"the process ended before it wrote {text!r}:\n{self.output}"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
async def test_the_console_chat_in_a_terminal_stops_at_once(tmp_path, stop):
    port = free_port()
    terminal = Terminal(await environment(tmp_path, port))
    try:
        await asyncio.wait_for(terminal.until_written(OPENING), START_WITHIN)
        terminal.type(b"hello\r")
        await asyncio.wait_for(terminal.until_written(ASKS_FOR_NUMBER), START_WITHIN)
        await asyncio.wait_for(until_healthy(port, terminal.exited), START_WITHIN)
        terminal.type(b"/help\r")  # what is typed is still read, line by line
        await asyncio.wait_for(terminal.until_written("/forget: delete everything about this chat"), START_WITHIN)
    finally:
        if not terminal.exited():
            if stop == "ctrl-c":
                terminal.type(CTRL_C)  # the terminal sends SIGINT to the whole foreground group
            else:
                os.kill(terminal.pid, signal.SIGTERM)
        elapsed = await terminal.wait(timeout=15)

    assert terminal.status == 0, terminal.output
    assert elapsed < STOP_WITHIN, terminal.output
    assert_clean(terminal.output)


async def stop_service(
    environ: dict[str, str], port: int, signum: int, ready: Callable[[], bool] = lambda: True
) -> tuple[int | None, float, str]:
    """`python -m bot run` without a terminal, sent `signum` once it serves and `ready()` holds: its
    exit status, the seconds it took to end, and what it wrote."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=PROJECT_ROOT, env=environ,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = asyncio.create_task(process.stdout.read())
    try:
        await asyncio.wait_for(until_healthy(port, lambda: process.returncode is not None), START_WITHIN)
        while not ready():
            assert process.returncode is None, "the process ended before it was ready"
            await asyncio.sleep(0.05)
    finally:
        began = time.monotonic()
        if process.returncode is None:
            process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        elapsed = time.monotonic() - began
    return process.returncode, elapsed, (await output).decode(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
async def test_the_service_without_a_terminal_stops_at_once(tmp_path, signum):
    port = free_port()

    status, elapsed, written = await stop_service(await environment(tmp_path, port), port, signum)

    assert status == 0, written
    assert elapsed < STOP_WITHIN, written
    assert_clean(written)
    assert "Application shutdown complete" in written  # uvicorn finished its work, not cut off


async def test_the_service_with_a_telegram_bot_stops_at_once(tmp_path):
    """Everything at once: the web server, the dispatcher and the bot long-polling Telegram."""
    port = free_port()
    async with FakeTelegram(TOKEN) as telegram, FakeTwilio() as twilio:
        environ = await environment(
            tmp_path, port, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=f"{telegram.url}/bot",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
            TWILIO_API_BASE_URL=twilio.url,
        )  # fmt: skip

        status, elapsed, written = await stop_service(
            environ, port, signal.SIGTERM, ready=lambda: bool(telegram.called("getUpdates"))
        )

    assert status == 0, written
    assert elapsed < STOP_WITHIN, written
    assert_clean(written)
    assert "Application.stop() complete" in written  # python-telegram-bot stopped polling
