"""Telegram adapter: python-telegram-bot updates in, the conversation's replies out.

The callbacks are thin: each turns one kind of update into an `Inbound` for the `Conversation`
(kept in the application's `bot_data` when it is built) and sends the replies. The commands, their
"/" menu and how a typed one reads come from the command table (bot/relatives/commands.py).
`register_handlers` adds the callbacks in their order, which matters: PTB tries them in turn and
stops at the first that matches.
"""

from __future__ import annotations

import hmac
import html
import logging
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Request, Response
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import MessageLimit, ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.alerts.channels import Alert, PermanentFailure, RetryLater, TemporaryFailure
from bot.alerts.pacing import Pacer
from bot.platform.i18n import Catalogues, Language
from bot.platform.locks import KeyedLocks
from bot.platform.metrics import Metrics
from bot.platform.settings import Settings
from bot.platform.text import unstorable
from bot.relatives import commands
from bot.relatives.conversation import Conversation
from bot.relatives.replies import Inbound, Reply, Span
from handlers.telegram_request import AiohttpRequest, RepliesFirst

log = logging.getLogger(__name__)
CHANNEL = "telegram"
# Where the application keeps the `Conversation` its callbacks hand the updates to.
CONVERSATION = "conversation"
METRICS = "metrics"  # and the `Metrics` that count them
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's update ids are 64-bit at most; the bound also keeps "update:<id>" within the 64
# characters of inbound_message.message_id.
UPDATE_IDS = range(2**63)
# Updates handled at once in one process; more wait their turn (PTB keeps them in order).
CONCURRENT_UPDATES = 256
# The Bot API's sendMessage, spelt in lower case (Telegram's method names are case-insensitive):
# `Bot.do_api_request` warns when given the name of a method its Bot has ("sendMessage",
# "send_message"), and that method would read every answer into a `Message`.
SEND_MESSAGE = "sendmessage"


# --- rendering ----------------------------------------------------------------------------------


def _html(span: Span) -> str:
    # Hospital text such as "SpO2 <90 & falling" must reach the relative intact: escape it all.
    text = html.escape(span.text, quote=False)
    return f"<b>{text}</b>" if span.bold else text


def render(reply: Reply) -> list[str]:
    """The reply as HTML messages of at most Telegram's length, cut between lines."""
    limit = MessageLimit.MAX_TEXT_LENGTH
    messages: list[str] = []
    current: list[str] = []  # the HTML of each span of the message being filled
    length = 0  # of the message being filled: each span is escaped once, every alert goes through here
    for span in reply.spans:
        piece = _html(span)
        if length + len(piece) > limit and current:
            messages.append("".join(current).strip("\n"))
            current, length = [], 0
        while len(piece) > limit:  # a single enormous span: cut it in plain pieces
            messages.append(_html(Span(span.text[: limit // 2], span.bold)))
            span = Span(span.text[limit // 2 :], span.bold)
            piece = _html(span)
        current.append(piece)
        length += len(piece)
    if current:
        messages.append("".join(current).strip("\n"))
    return messages


def _markup(reply: Reply):
    if reply.buttons:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(button.label, callback_data=button.payload)] for button in reply.buttons]
        )
    if reply.share_contact:
        return ReplyKeyboardMarkup(
            [[KeyboardButton(reply.share_contact, request_contact=True)]],
            resize_keyboard=True,
            one_time_keyboard=True,
        )
    return ReplyKeyboardRemove()


async def send_replies(application: Application, chat_id: int, replies: list[Reply]) -> None:
    await send_with(application.bot, chat_id, replies)


async def send_with(bot: Bot, chat_id: int, replies: list[Reply]) -> None:
    """Sends each reply as HTML messages, the reply's buttons under the last. Telegram's answer is
    not read into a `telegram.Message`, as `Bot.send_message` would (nothing reads it, and it was
    about 4 % of the bot's CPU under load); otherwise the call takes `send_message`'s way through
    the bot: its rate limiter (the application's `RepliesFirst`) and Telegram's refusals raised as
    python-telegram-bot's errors (RetryAfter, Forbidden, BadRequest...)."""
    for reply in replies:
        messages = render(reply)
        for index, text in enumerate(messages):
            last = index == len(messages) - 1
            parameters = {"chat_id": chat_id, "text": text, "parse_mode": ParseMode.HTML}
            if last:
                parameters["reply_markup"] = _markup(reply)
            await bot.do_api_request(SEND_MESSAGE, api_kwargs=parameters)


# --- handlers -----------------------------------------------------------------------------------


async def _answer(update: Update, context: ContextTypes.DEFAULT_TYPE, **event: Any) -> None:
    """Hands the update to the conversation as an `Inbound` with `event`, and sends the replies."""
    user, chat = update.effective_user, update.effective_chat
    if chat is None:  # nothing to answer to (the handlers below take only updates from a chat)
        return
    # Telegram delivers an update again when the webhook's answer is slow or fails, perhaps to
    # another web process, and polling after a restart may get one again: handled once by its id.
    inbound = Inbound(
        channel=CHANNEL, chat_key=str(chat.id), language_hint=user.language_code if user else None,
        message_id=f"update:{update.update_id}", **event,
    )  # fmt: skip
    conversation: Conversation = context.bot_data[CONVERSATION]
    metrics: Metrics = context.bot_data[METRICS]
    received = time.perf_counter()
    metrics.message_received(CHANNEL)
    replies = await conversation.handle(inbound)
    await send_replies(context.application, chat.id, replies)
    metrics.replies_sent(CHANNEL, len(replies), time.perf_counter() - received)


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command, from the "/" menu or typed: "/status", "/quiet 22-7", "/start@WardWatchBot"."""
    message = update.effective_message
    text = message.text or "" if message else ""
    if unstorable(text, multiline=True):
        return await _answer(update, context, unsupported=True)
    typed = commands.parse_typed(text)
    assert typed is not None, "PTB's command filters pass only messages that begin with a command"
    await _answer(update, context, command=typed.command, argument=typed.argument)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press on one of the buttons under a reply: its payload, such as "resend" or "lang:bn"."""
    query = update.callback_query
    if query is None:
        return
    try:
        await query.answer()  # stops the button's spinner
    except BadRequest as error:
        # A press Telegram no longer waits for (after downtime, "query is too old"): it still
        # counts, only the spinner can no longer be stopped.
        log.info("callback query not answered: %s", error.message)
    await _answer(update, context, button=query.data or "")


async def on_contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A contact card shared with "Share my number": it counts as the typed number only when it
    is the sender's own."""
    message, sender = update.effective_message, update.effective_user
    contact = message.contact if message else None
    if contact is None or sender is None:
        return await _answer(update, context, unsupported=True)
    # Anyone can share someone else's contact card; only the sender's own number counts.
    if contact.user_id != sender.id:
        return await _answer(update, context, foreign_contact=True)
    number = contact.phone_number
    await _answer(update, context, contact=number if number.startswith("+") else f"+{number}")


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text: a number, a code, a digit, or anything else the relative writes. Text with a
    character that is not text (NUL, a terminal escape, a lone surrogate) is answered as a sticker
    is: it never reaches the dialogue."""
    message = update.effective_message
    text = message.text if message else None
    if text and unstorable(text, multiline=True):
        return await _answer(update, context, unsupported=True)
    await _answer(update, context, text=text)


async def on_unhandled(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """An update no other callback takes (a kind the bot does not handle, a group's message):
    logged by its kind, never its content."""
    kinds = ", ".join(name for name in update.to_dict() if name != "update_id")
    log.info("Telegram update %s not handled: %s", update.update_id, kinds or "nothing in it")


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A sticker, photo, voice note or anything else without text: a polite hint, never an exception."""
    await _answer(update, context, unsupported=True)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An update whose handling raised (the database not answering, a fault): logged with its
    traceback, and the relative asked to send the message again instead of hearing nothing."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("Telegram update %s not answered", update_id, exc_info=context.error)
    chat = update.effective_chat if isinstance(update, Update) else None
    if chat is None or chat.type != chat.PRIVATE:
        return
    user = update.effective_user if isinstance(update, Update) else None
    conversation: Conversation = context.bot_data[CONVERSATION]
    try:
        await send_with(context.bot, chat.id, conversation.failed(user.language_code if user else None))
    except TelegramError as error:  # the failure was Telegram's own, or it still is
        log.warning("Telegram: the request to send again was not sent either: %s", error.message)


def register_handlers(application: Application) -> None:
    """Every update the bot understands, in the order PTB tries them (the first that matches
    handles the update):
    1. the commands of the table, 2. button presses, 3. shared contacts, 4. plain text, 5. any
    other command (the conversation answers it with a hint), 6. anything else in a private chat
    but Telegram's service messages (a member joined, a title changed), 7. the rest, logged. An
    update whose callback raises goes to `on_error`."""
    private = filters.ChatType.PRIVATE
    names = [command.name for command in commands.COMMANDS]
    application.add_handler(CommandHandler(names, on_command, filters=private))
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_handler(MessageHandler(private & filters.CONTACT, on_contact))
    application.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND, on_text))
    application.add_handler(MessageHandler(private & filters.COMMAND, on_command))
    application.add_handler(MessageHandler(private & ~filters.StatusUpdate.ALL, on_other))
    application.add_handler(TypeHandler(Update, on_unhandled))
    application.add_error_handler(on_error)


def command_menu(language: Language) -> list[BotCommand]:
    """The "/" menu of the Telegram app, in the relative's language."""
    return [BotCommand(command.name, language.gettext(command.menu_description)) for command in commands.COMMANDS]


class ChatInOrder(BaseUpdateProcessor):
    """Updates of different chats handled at the same time, those of one chat one after another
    in the order they came (a number before its code, each reply sent before the next update of
    the chat is read). PTB starts the updates in order and bounds how many are in flight."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self.chats = KeyedLocks()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:  # nothing of a chat's dialogue in it: no order to keep
            await coroutine
            return
        async with self.chats.held(str(chat.id)):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close: PTB waits for the updates in flight."""


def build_application(settings: Settings, conversation: Conversation, metrics: Metrics | None = None) -> Application:
    """PTB's application: this process's updates handled at once, in order per chat
    (`ChatInOrder`), the replies paced by the pacer the alerts of this process share
    (`RepliesFirst`, `TelegramSender`)."""
    pacing = settings.config.pacing.telegram
    pacer = Pacer(pacing.messages_per_second, pacing.per_chat_messages_per_second)
    builder = (
        Application.builder()
        .token(settings.secrets.telegram_bot_token or "")  # set: bot/app.py builds the bot only then
        .base_url(settings.env.telegram_api_base_url)
        .request(AiohttpRequest(metrics=metrics or Metrics()))
        # Under load the long poll returns at once with a few updates, over and over: on PTB's
        # httpx request each poll cost as much CPU as a reply's whole dialogue turn on SQLite.
        .get_updates_request(AiohttpRequest(connections=1))
        .rate_limiter(RepliesFirst(pacer))
        .concurrent_updates(ChatInOrder(CONCURRENT_UPDATES))
    )
    if settings.env.telegram_webhook_url:
        builder = builder.updater(None)
    application = builder.build()
    application.bot_data[CONVERSATION] = conversation
    application.bot_data[METRICS] = metrics or Metrics()
    register_handlers(application)
    return application


class TelegramSender:
    """Sends the dispatcher's alerts, turning Telegram's refusals into the dispatcher's terms.

    Alerts go through a `Bot` of their own, without the application's rate limiter: the
    dispatcher paces them with the pacer the replies go through too (`RepliesFirst`, replies
    first), and must hear of a 429 at once. The rate limiter waits out every retry_after inside the
    call, which for an alert would hold its claim the while (a flood wait of tens of seconds
    outlasts `notifications.claim_seconds`, and another dispatcher then sends the alert again).
    The bot shares the application's HTTP connection pool, opened by `application.initialize()`
    and closed by its `shutdown()`.
    """

    channel = CHANNEL
    uses_templates = False

    def __init__(self, application: Application, settings: Settings) -> None:
        self.application = application
        request = application.bot.request
        self.bot = Bot(
            settings.secrets.telegram_bot_token or "",
            base_url=settings.env.telegram_api_base_url,
            request=request,
            get_updates_request=request,  # never polls: no pool of its own to open and close
        )
        limiter = application.bot.rate_limiter
        assert isinstance(limiter, RepliesFirst), "build_application gives the application its pacer"
        self.pacer = limiter.pacer

    async def send(self, alert: Alert) -> None:
        try:
            await send_with(self.bot, int(alert.chat_key), [alert.reply])
        except RetryAfter as error:
            wait = error.retry_after  # a timedelta where PTB_TIMEDELTA is on, as build_telegram (bot/app.py) sets it
            raise RetryLater(wait.total_seconds() if isinstance(wait, timedelta) else wait) from None
        except Forbidden as error:  # blocked by the user, or the account is deactivated
            raise PermanentFailure(error.message) from None
        except BadRequest as error:
            if "chat not found" in error.message.lower():
                raise PermanentFailure(error.message) from None
            raise TemporaryFailure(error.message) from None
        except (TimedOut, NetworkError) as error:
            raise TemporaryFailure(str(error)) from None
        except TelegramError as error:  # Conflict, InvalidToken, ChatMigrated...: counted, then dead
            raise TemporaryFailure(f"{type(error).__name__}: {error.message}") from None


class TelegramChannel:
    """Starts and stops the bot: long polling by default, a webhook when TELEGRAM_WEBHOOK_URL is set
    (served by our own web server, see `webhook_router`)."""

    def __init__(
        self,
        application: Application,
        catalogues: Catalogues,
        webhook_url: str | None,
        webhook_secret: str | None,
    ) -> None:
        self.application = application
        self._catalogues = catalogues
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret

    async def start(self) -> None:
        await self.application.initialize()
        for code in self._catalogues.codes:
            default = code == self._catalogues.default
            await self.application.bot.set_my_commands(
                command_menu(self._catalogues.get(code)), language_code=None if default else code
            )
        if self._webhook_url:
            await self.application.bot.set_webhook(
                self._webhook_url, secret_token=self._webhook_secret, allowed_updates=Update.ALL_TYPES
            )
        else:
            updater = self.application.updater
            assert updater is not None, "without a webhook the application is built with its updater"
            await updater.start_polling(allowed_updates=Update.ALL_TYPES)
        await self.application.start()
        log.info("Telegram bot @%s is running (%s)", self.application.bot.username,
                 "webhook" if self._webhook_url else "polling")  # fmt: skip

    async def stop(self) -> None:
        if self.application.updater and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    def webhook_router(self) -> APIRouter:
        """`POST <path of TELEGRAM_WEBHOOK_URL>`: Telegram's updates, accepted only with our secret."""
        router = APIRouter(include_in_schema=False)
        expected = (self._webhook_secret or "").encode()
        application = self.application

        @router.post(urlparse(self._webhook_url or "").path or "/webhooks/telegram")
        async def telegram_webhook(request: Request) -> Response:
            given = request.headers.get(WEBHOOK_SECRET_HEADER, "").encode()
            if not expected or not hmac.compare_digest(given, expected):
                return Response(status_code=403)
            update = await _update_in(request, application.bot)
            if update is not None:
                # Handled before the answer, not queued: once Telegram has its 200 the update is
                # done and answered, so an update of the chat delivered after it, to this process
                # or another, finds the chat's state written (in order across processes).
                await application.update_processor.process_update(update, application.process_update(update))
            # Acknowledged either way: Telegram delivers an update again for a day until it gets a
            # 200, and a malformed one would never read better.
            return Response(status_code=200)

        return router


async def _update_in(request: Request, bot: Bot) -> Update | None:
    """The update a webhook request carries; None, logged, for anything the Bot API would not send."""
    try:
        payload = await request.json()
        update = Update.de_json(payload, bot) if isinstance(payload, dict) else None
    except Exception as error:  # noqa: BLE001 - PTB's parser raises whatever a malformed update makes it meet
        # (OverflowError for a date of 1e20, RecursionError for deep nesting, TypeError, KeyError...)
        reason = type(error).__name__
    else:
        if update is not None and type(update.update_id) is int and update.update_id in UPDATE_IDS:
            return update
        reason = "not an update"
    log.warning("Telegram webhook: a malformed update acknowledged and dropped (%s)", reason)
    return None
