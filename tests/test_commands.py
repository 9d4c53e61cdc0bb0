"""The command table (bot/relatives/commands.py) and the one reading of a typed command: the table
is well formed, a typed command reads the same on every channel, and Telegram's menu and command
handlers, the help text, WhatsApp's keywords and the dialogue's dispatch all come from the table."""

from __future__ import annotations

import inspect
import re
import unicodedata

import pytest
from telegram import BotCommand
from telegram.ext import Application, CommandHandler

from bot.platform.i18n import LANGUAGE_NAMES
from bot.relatives import commands
from bot.relatives.commands import COMMANDS, Command, Typed, parse_typed
from bot.relatives.conversation import Conversation
from handlers.console import ConsoleChat
from handlers.telegram import command_menu, register_handlers
from handlers.whatsapp import inbound_from

# Telegram's rules for a bot command: 1-32 lower-case letters, digits and underscores; a
# description of 1-256 characters.
TELEGRAM_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
TELEGRAM_DESCRIPTION_LENGTH = 256
MESSAGE_SID = "SM" + "0123456789abcdef" * 2
INTRO = (
    "I tell you how a patient is doing, once you confirm the mobile number given at admission with a "
    "code sent to it by SMS."
)


def keywords(command: Command) -> list[str]:
    return [word for words in command.keywords.values() for word in words]


# --- the table ----------------------------------------------------------------------------------


def test_each_command_is_in_the_table_once_with_a_name_telegram_accepts():
    names = [command.name for command in COMMANDS]
    assert names == ["start", "status", "stop", "quiet", "language", "help", "forget", "cancel"]
    assert all(TELEGRAM_COMMAND.fullmatch(name) for name in names)


def test_menu_descriptions_fit_telegram_and_help_lines_are_texts_of_their_own():
    for command in COMMANDS:
        assert 0 < len(command.menu_description) <= TELEGRAM_DESCRIPTION_LENGTH, command.name
        assert command.help_line and "\n" not in command.help_line, command.name


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_each_step_is_a_step_of_the_dialogue(command):
    step = getattr(Conversation, command.step)
    assert inspect.iscoroutinefunction(step)
    expected = ["self", "turn", "argument"] if command.takes_argument else ["self", "turn"]
    assert list(inspect.signature(step).parameters) == expected


def test_keywords_are_whole_words_of_our_languages_and_name_one_command_each():
    seen: dict[str, str] = {}
    for command in COMMANDS:
        assert set(command.keywords) <= set(LANGUAGE_NAMES), command.name
        for word in keywords(command):
            assert word == unicodedata.normalize("NFC", word) and word == word.strip()
            assert not any(char.isdigit() or char.isspace() or char == "/" for char in word), word
            assert seen.setdefault(word.casefold(), command.name) == command.name, word
    assert set(seen.values()) == {"stop", "start", "help"}


def test_whatsapp_users_have_stop_start_and_help_in_every_language():
    for name in ("stop", "start", "help"):
        assert set(commands.named(name).keywords) == set(LANGUAGE_NAMES)
    assert commands.named("stop").keywords["hi"] == ("बंद", "रोकें")


def test_a_command_is_found_by_its_name():
    assert commands.named("quiet").takes_argument
    assert commands.named("whatever") is None and commands.named("") is None


# --- a typed command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("/status", Typed("status")),
        ("/quiet 22-7", Typed("quiet", "22-7")),
        ("  /quiet   22 - 7  ", Typed("quiet", "22 - 7")),
        ("/quiet\n22-7", Typed("quiet", "22-7")),
        ("/start@WardWatchBot", Typed("start")),
        ("/quiet@WardWatchBot off", Typed("quiet", "off")),
        ("/HELP", Typed("help")),
        ("/Status@WardWatchBot", Typed("status")),
        ("/status   ", Typed("status")),
        # Not in the table: the dialogue answers these with the hint for the chat's step.
        ("/whatever now", Typed("whatever", "now")),
        ("/", Typed("")),
        ("/ status", Typed("", "status")),
    ],
)
def test_a_slash_command(typed, read):
    assert parse_typed(typed) == read


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        ("Stop.", "stop"),
        ("stop!", "stop"),
        ("  STOP  ", "stop"),
        ("বন্ধ", "stop"),
        ("বন্ধ।", "stop"),
        ("बंद", "stop"),
        ("रोकें।", "stop"),
        ("Start", "start"),
        ("শুরু", "start"),
        ("शुरू।", "start"),
        ("HELP.", "help"),
        ("সাহায্য", "help"),
        ("मदद", "help"),
    ],
)
def test_a_keyword_as_the_whole_message(typed, command):
    assert parse_typed(typed) == Typed(command)


def test_every_keyword_of_the_table_reads_as_its_command():
    for command in COMMANDS:
        for word in keywords(command):
            for typed in (word, word.lower(), word.upper(), f"{word}.", f"{word}।"):
                assert parse_typed(typed) == Typed(command.name), typed


@pytest.mark.parametrize(
    "typed",
    ["", "   ", "stop please", "please stop", "help me", "STOPP", "st op", "98300 12345", "123456", "2", "hello",
     "বন্ধ করুন", "status", "quiet 22-7"],
)  # fmt: skip
def test_anything_else_is_no_command(typed):
    assert parse_typed(typed) is None


# --- everything comes from the table ------------------------------------------------------------


def test_the_telegram_menu_is_the_table(services):
    for code in services.catalogues.codes:
        language = services.catalogues.get(code)
        assert command_menu(language) == [
            BotCommand(command.name, language.gettext(command.menu_description)) for command in COMMANDS
        ]


async def test_the_help_text_is_the_table_in_each_language(services):
    lines: list[str] = []
    relative = ConsoleChat(services.conversation, _no_input, lines.append, chat_key="help")
    for choice, code in enumerate(services.catalogues.codes, 1):
        await relative.say("/language")
        await relative.say(str(choice))
        language = services.catalogues.get(code)
        expected = [language.gettext(INTRO)]
        expected += [f"/{command.name}: {language.gettext(command.help_line)}" for command in COMMANDS]
        await relative.say("/help")
        assert lines[-1] == "\n" + "\n".join(expected)


async def test_a_command_added_to_the_table_is_in_the_menu_the_help_the_keywords_and_the_dispatch(
    services, monkeypatch
):
    visiting = Command(
        "visiting",
        "Visiting hours",
        "when you may visit",
        "_ask_language",
        keywords={"en": ("VISIT",), "bn": ("দেখা",)},
    )
    monkeypatch.setattr(commands, "COMMANDS", (*COMMANDS, visiting))
    english = services.catalogues.get("en")

    assert command_menu(english)[-1] == BotCommand("visiting", "Visiting hours")
    application = Application.builder().token("123:ABC").build()
    register_handlers(application)
    [command_handler, *_] = application.handlers[0]
    assert isinstance(command_handler, CommandHandler) and "visiting" in command_handler.commands

    whatsapp = inbound_from({"From": "whatsapp:+919830000111", "MessageSid": MESSAGE_SID, "Body": "দেখা।"})
    assert (whatsapp.command, whatsapp.language_hint) == ("visiting", "bn")

    lines: list[str] = []
    relative = ConsoleChat(services.conversation, _no_input, lines.append, chat_key="visiting")
    await relative.say("/help")
    assert lines[-1].endswith("\n/visiting: when you may visit")
    for typed in ("/visiting", "visit"):
        await relative.say(typed)
        assert lines[-2:] == ["\nChoose your language:", "[1] English  [2] বাংলা  [3] हिन्दी"]


async def _no_input() -> str | None:
    return None
