"""The relative's commands, each written once in `COMMANDS`: its name, its entry in Telegram's "/"
menu, its line in the help text, the words a WhatsApp user may send instead, and the step of the
dialogue it runs.

Telegram's menu and the commands its bot answers (handlers/telegram.py), the help text and the
dispatch (bot/relatives/conversation.py) and WhatsApp's keywords all read this table when they
need it, through the module (`commands.COMMANDS`), never a copy taken at import: a command added
here reaches them all. `parse_typed` reads a command typed as text the same way for every channel.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple


def N_(message: str) -> str:
    """Marks a text for `make messages` where it is written; it is translated where it is shown."""
    return message


@dataclass(frozen=True)
class Command:
    name: str  # what follows the slash, in lower case: "quiet" of /quiet
    menu_description: str  # its entry in Telegram's "/" menu: a message id
    help_line: str  # its line in the help text, after "/quiet: ": a message id
    step: str  # the name of the `Conversation` method that answers it
    # Words that are this command when they are the whole message, per language (WhatsApp users
    # expect STOP, START and HELP to work, as they do for other businesses).
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    takes_argument: bool = False  # the step is given what follows the command: "22-7" of "/quiet 22-7"


# In the order of Telegram's menu and of the help text.
COMMANDS: tuple[Command, ...] = (
    Command(
        "start",
        N_("Begin, or see your patients again"),
        N_("begin, or see your patients again"),
        "_start",
        keywords={"en": ("START",), "bn": ("শুরু",), "hi": ("शुरू",)},
    ),
    Command("status", N_("The latest condition"), N_("the latest condition"), "_status"),
    Command(
        "stop",
        N_("No more alerts"),
        N_("no more alerts"),
        "_stop",
        keywords={"en": ("STOP",), "bn": ("বন্ধ",), "hi": ("बंद", "रोकें")},
    ),
    Command(
        "quiet",
        N_("Quiet hours at night"),
        N_("quiet hours at night, for example /quiet 22-7"),
        "_quiet",
        takes_argument=True,
    ),
    Command("language", N_("Change the language"), N_("change the language"), "_ask_language"),
    Command(
        "help",
        N_("What this bot can do"),
        N_("this message"),
        "_help",
        keywords={"en": ("HELP",), "bn": ("সাহায্য",), "hi": ("मदद",)},
    ),
    Command("forget", N_("Delete everything about this chat"), N_("delete everything about this chat"), "_forget"),
    Command("cancel", N_("Stop what you are doing"), N_("stop what you are doing"), "_cancel"),
)


class Typed(NamedTuple):
    """A command typed as text. `command` is in lower case and may be no command of the table
    ("/whatever"): the dialogue answers that with the hint for the step the chat is in."""

    command: str
    argument: str | None = None


# "/quiet 22-7", and "/start@WardWatchBot": a command addressed to the bot by name, as Telegram
# writes them in group chats (and people copy them from there).
_SLASH_COMMAND = re.compile(r"/(?P<command>[^\s@]*)(?:@\S*)?(?:\s+(?P<argument>.*))?", re.DOTALL)
# What may end a keyword: a full stop, an exclamation mark, the danda of Bengali and Hindi.
_FINAL_STOPS = ".!।"


def parse_typed(text: str) -> Typed | None:
    """The command in a message typed as text: a slash command ("/status", "/quiet 22-7",
    "/start@WardWatchBot"), or a keyword of `COMMANDS` as the whole message, in any case, with or
    without a final full stop or danda ("STOP", "Help.", "शुरू।"). None when the message is no
    command: an answer (a number, a code) or a question."""
    text = unicodedata.normalize("NFC", text).strip()
    slash = _SLASH_COMMAND.fullmatch(text)
    if slash is not None:
        return Typed(slash["command"].casefold(), (slash["argument"] or "").strip() or None)
    word = text.rstrip(_FINAL_STOPS).strip().casefold()
    for command in COMMANDS:
        if any(word == keyword.casefold() for words in command.keywords.values() for keyword in words):
            return Typed(command.name)
    return None


def named(name: str) -> Command | None:
    """The command of that name in `COMMANDS`, if there is one."""
    return next((command for command in COMMANDS if command.name == name), None)
