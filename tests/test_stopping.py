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
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.platform import db
from tests.conftest import PROJECT_ROOT, SECRET
from tests.support import SETTINGS_ENVIRONMENT

STOP_WITHIN = 5.0  # seconds, the requirement itself; a stop usually takes well under one
START_WITHIN = 120.0  # only against a hang
CTRL_C = b"\x03"
# What the console chat writes once it waits for the relative's first line.
ASKS_FOR_NUMBER = "Please send the mobile number that was written down at admission"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def local_environment(tmp_path: Path, port: int) -> dict[str, str]:
    """The shell of someone trying Ward Watch locally: no messaging channel, a SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ward.sqlite3'}"
    await db.upgrade_async(url)
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS_ENVIRONMENT}
    return environ | {
        "BOT_CONFIG": str(PROJECT_ROOT / "config.yaml"), "DATABASE_URL": url, "SECRET_KEY": SECRET,
        "HOST": "127.0.0.1", "PORT": str(port),
    }  # fmt: skip


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
    terminal = Terminal(await local_environment(tmp_path, port))
    try:
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
async def test_the_service_without_a_terminal_stops_at_once(tmp_path, signum):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=PROJECT_ROOT, env=await local_environment(tmp_path, port),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = asyncio.create_task(process.stdout.read())
    try:
        await asyncio.wait_for(until_healthy(port, lambda: process.returncode is not None), START_WITHIN)
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
        written = (await output).decode(errors="replace")

    assert process.returncode == 0, written
    assert elapsed < STOP_WITHIN, written
    assert_clean(written)
    assert "Application shutdown complete" in written  # uvicorn finished its work, not cut off
