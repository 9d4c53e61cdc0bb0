"""The local console chat: the relative's conversation in a terminal.

Commands are typed as on Telegram (`/status`) or as WhatsApp's keywords (`STOP`); buttons become
numbered choices answered with a digit (the dialogue keeps the choices offered with the chat, as
for WhatsApp). The "SMS" carrying the code is printed in the same terminal by `ConsoleCodes`.
As on WhatsApp, the relative's first message begins the chat, and its script chooses the language.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from bot.alerts.channels import Alert
from bot.alerts.pacing import Pacer
from bot.platform.i18n import language_of_script
from bot.platform.metrics import CODE_SENT, Metrics
from bot.platform.text import unstorable
from bot.relatives import commands
from bot.relatives.conversation import Conversation
from bot.relatives.replies import Inbound, Reply

CHANNEL = "console"
QUIT_WORDS = {"/quit", "/exit"}
OPENING = "Ward Watch local chat. Type /quit to leave.\nWrite anything to begin: in English, বাংলা or हिन्दी."
READ_SIZE = 4096


class ConsoleChat:
    def __init__(
        self,
        conversation: Conversation,
        read_line: Callable[[], Awaitable[str | None]],
        write: Callable[[str], None],
        chat_key: str = "local",
        bold: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._conversation = conversation
        self._metrics = metrics or Metrics()
        self._read_line = read_line
        self._write = write
        self._chat_key = chat_key
        self._bold = bold

    def _show(self, reply: Reply) -> None:
        text = "".join(f"\033[1m{span.text}\033[0m" if span.bold and self._bold else span.text for span in reply.spans)
        self._write(f"\n{text}")
        if reply.buttons:
            self._write("  ".join(f"[{index}] {button.label}" for index, button in enumerate(reply.buttons, 1)))

    def _inbound(self, line: str) -> Inbound:
        if unstorable(line, multiline=True):  # a pasted NUL or terminal escape: not something to read
            return Inbound(CHANNEL, self._chat_key, unsupported=True)
        # As on WhatsApp, the script of the first message chooses the language of a new chat.
        hint = language_of_script(line)
        typed = commands.parse_typed(line)
        if typed is not None:
            return Inbound(CHANNEL, self._chat_key, command=typed.command, argument=typed.argument, language_hint=hint)
        # A choice is a bare digit: "000001" is a code, not choice 1.
        choice = int(line) if len(line) == 1 and line.isdecimal() else None
        return Inbound(CHANNEL, self._chat_key, text=line, choice=choice, language_hint=hint)

    async def say(self, line: str) -> None:
        """Send one line as the relative, and show the answers."""
        received = time.perf_counter()
        self._metrics.message_received(CHANNEL)
        inbound = self._inbound(line.strip())
        replies = await self._conversation.handle(inbound)
        for reply in replies:
            self._show(reply)
        self._metrics.replies_sent(CHANNEL, len(replies), time.perf_counter() - received)

    async def run(self) -> None:
        # No /start of our own: the relative's first message begins the chat, in its script's language.
        self._write(OPENING)
        while True:
            line = await self._read_line()
            if line is None or line.strip() in QUIT_WORDS:
                return
            if line.strip():
                await self.say(line)


class ConsoleCodes:
    """Local use: the "SMS" is printed where the person at the terminal can read it."""

    owns_codes = False
    provider = "console"

    def __init__(self, show: Callable[[str], None] = print, metrics: Metrics | None = None) -> None:
        self._show = show
        self._metrics = metrics or Metrics()

    async def send(self, mobile: str, body: str) -> None:
        self._show(f"[SMS to {mobile}] {body}")
        self._metrics.code(self.provider, CODE_SENT)


class ConsoleSender:
    """Shows the dispatcher's alerts in the terminal, as they happen."""

    channel = CHANNEL
    uses_templates = False

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self.pacer = Pacer(per_second=100)

    async def send(self, alert: Alert) -> None:
        self._write("\n" + alert.reply.plain)


class StdinLines:
    """The lines typed on standard input, read by the event loop itself.

    A thread blocked in `sys.stdin.readline()` cannot be interrupted: on Ctrl-C the process would
    wait for it, that is for Enter, before it could end. Here a line is read only once the loop
    has seen input waiting, so stopping just cancels the wait."""

    def __init__(self, stream: TextIO = sys.stdin) -> None:
        self._fd = stream.fileno()
        self._decoder = codecs.getincrementaldecoder(stream.encoding or "utf-8")(errors="replace")
        self._pending = ""
        self._ended = False

    async def read_line(self) -> str | None:
        """The next line with its line end (the last one may have none); None at the end of input."""
        while "\n" not in self._pending and not self._ended:
            chunk = await self._read_chunk()
            self._ended = not chunk
            self._pending += self._decoder.decode(chunk, final=self._ended)
        if not self._pending:
            return None
        line, end, self._pending = self._pending.partition("\n")
        return line + end

    async def _read_chunk(self) -> bytes:
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not waiting.done():
                waiting.set_result(None)

        try:
            loop.add_reader(self._fd, readable)
        except PermissionError:  # a regular file (`chat < lines.txt`): reading it never blocks
            return os.read(self._fd, READ_SIZE)
        try:
            await waiting
        finally:
            loop.remove_reader(self._fd)
        return os.read(self._fd, READ_SIZE)


def write_stdout(text: str) -> None:
    print(text, flush=True)
