"""WhatsApp adapter (Twilio): the webhook Twilio calls with each message a relative sends, and the
replies, sent back through Twilio's Messages API on its async client.

- Twilio signs every webhook (`X-Twilio-Signature`). The signature covers the URL Twilio called,
  so it is checked against PUBLIC_BASE_URL plus the path, not the URL this server sees behind a
  TLS proxy. A bad or missing signature gets 403 before anything is read or changed.
- Twilio delivers a message again when our answer is slow or fails; the dialogue handles each
  `MessageSid` once (`Inbound.message_id`).
- Free-form WhatsApp messages have no buttons: a reply's buttons become numbered lines, and a
  relative's one-digit answer picks one (the dialogue keeps the choices with the chat).
- WhatsApp users expect the keywords STOP, START and HELP; the command table
  (bot/relatives/commands.py) has them in Bengali and Hindi too. Slash commands typed as text
  (`/status`) work as on Telegram.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial

from fastapi import APIRouter, Request, Response
from starlette.datastructures import ImmutableMultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.alerts.channels import Alert, NotConfigured, PermanentFailure, RetryLater, TemporaryFailure
from bot.alerts.delivery import DeliveryOutcome, DeliveryReport, record_delivery
from bot.alerts.pacing import Pacer
from bot.platform.db import Database
from bot.platform.i18n import language_of_script
from bot.platform.locks import KeyedLocks
from bot.platform.metrics import Metrics
from bot.platform.phones import ascii_digits, mask
from bot.platform.settings import NotificationsConfig, WhatsAppPacing, WhatsAppTemplates
from bot.platform.text import unstorable
from bot.relatives import access, commands
from bot.relatives.conversation import Conversation
from bot.relatives.replies import Inbound, Reply, Span
from handlers.twilio_api import SEND_ERRORS, describe_failure

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
WEBHOOK_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio refuses a longer body (error 21617).
MAX_LENGTH = 1600
# WhatsApp takes free text only within 24 hours of the relative's last message.
SESSION_WINDOW = timedelta(hours=24)
# Twilio's "too many requests" (its API's concurrency, the WhatsApp sender's rate): no retry_after.
TOO_MANY = frozenset({20429, 63018})
RETRY_AFTER_SECONDS = 1.0
# Twilio's WhatsApp errors after which no message will ever reach the number: not on WhatsApp
# (63003, 63024), blocked us (63014), opted out with STOP (21610).
PERMANENT = frozenset({63003, 63014, 63024, 21610})
# WhatsApp refused free text: the relative's last message is more than 24 hours old.
OUTSIDE_WINDOW = 63016
# What Twilio's status callbacks report of a message.
MESSAGE_STATUSES = frozenset(
    {"accepted", "scheduled", "queued", "sending", "sent", "delivered", "read", "undelivered", "failed", "canceled"}
)
# The statuses of a message that did not arrive; its ErrorCode says why.
FAILED_STATUSES = frozenset({"failed", "undelivered"})
# Nothing for Twilio to send itself: the replies go through the Messages API.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_ADDRESS = re.compile(r"^whatsapp:(\+[1-9]\d{7,14})$")
_MESSAGE_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")  # two letters and 32 hex digits
# Twilio's error codes are a few ASCII digits (str.isdigit() also takes "²", which int() refuses).
_ERROR_CODE = re.compile(r"[0-9]{1,9}")


class BadMessage(ValueError):
    """A signed webhook that is not a relative's WhatsApp message; the message says why."""


def inbound_from(form: Mapping[str, str]) -> Inbound:
    """Twilio's webhook parameters as the dialogue's `Inbound`; the chat is the sender's number."""
    address = _ADDRESS.match(form.get("From", ""))
    if address is None:
        raise BadMessage("From: not a WhatsApp number (whatsapp:+<country><number>)")
    message_sid = form.get("MessageSid", "")
    if not _MESSAGE_SID.match(message_sid):
        raise BadMessage("MessageSid: missing or malformed")
    inbound = partial(Inbound, CHANNEL, address.group(1), message_id=message_sid)
    # A Content quick reply sends its button's id as ButtonPayload (and its label as Body).
    payload = form.get("ButtonPayload", "").strip()
    if payload:
        if reason := unstorable(payload):  # our own button ids: no relative typed this
            raise BadMessage(f"ButtonPayload: {reason}")
        return inbound(button=payload)
    text = unicodedata.normalize("NFC", form.get("Body", "")).strip()
    # A photo, a voice note, a location, a contact card: nothing to read; nor in text with a
    # character that is not text (NUL, a terminal escape).
    if not text or unstorable(text, multiline=True):
        return inbound(unsupported=True)
    # WhatsApp tells nothing of the phone's language: the script of the first message decides.
    hint = language_of_script(text)
    typed = commands.parse_typed(text)
    if typed is not None:
        return inbound(command=typed.command, argument=typed.argument, language_hint=hint)
    digit = ascii_digits(text)
    choice = int(digit) if len(digit) == 1 and digit.isdecimal() else None
    return inbound(text=text, choice=choice, language_hint=hint)


# --- rendering ----------------------------------------------------------------------------------


def _bold(text: str) -> str:
    """WhatsApp bolds `*text*` only when the asterisks touch the words, and not across lines."""
    lines = []
    for line in text.split("\n"):
        words = line.strip()
        lines.append(line.replace(words, f"*{words}*", 1) if words else line)
    return "\n".join(lines)


def _text(spans: tuple[Span, ...]) -> str:
    return "".join(_bold(span.text) if span.bold else span.text for span in spans)


def render(reply: Reply) -> list[str]:
    """The reply as WhatsApp messages of at most `MAX_LENGTH` characters, cut between lines:
    bold spans as *bold*, buttons as numbered lines ("1. Send a new code") under the text."""
    text = _text(reply.spans)
    if reply.buttons:
        choices = "\n".join(f"{number}. {button.label}" for number, button in enumerate(reply.buttons, 1))
        text = f"{text}\n\n{choices}"
    messages, current = [], ""
    for line in text.split("\n"):
        while len(line) > MAX_LENGTH:  # one enormous line: cut it in pieces
            messages += [current, line[:MAX_LENGTH]]
            current, line = "", line[MAX_LENGTH:]
        if current and len(current) + 1 + len(line) > MAX_LENGTH:
            messages.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    messages.append(current)
    return [message.strip() for message in messages if message.strip()]


# --- sending ------------------------------------------------------------------------------------


class _OutsideWindow(Exception):
    """WhatsApp refused free text: the relative last wrote more than 24 hours ago."""


class WhatsAppSender:
    """Sends through Twilio's Messages API: the replies to a relative's message, and the
    dispatcher's alerts (`send`). An alert within 24 hours of the relative's last message goes as
    free text; later, WhatsApp accepts only an approved template: the one config.yaml gives for
    that kind of alert and language (`whatsapp_templates`), filled with the alert's fields, or
    `NotConfigured` when it gives none. Its delivery is reported to `status_callback` (see
    `WhatsAppChannel.status_router`).

    Twilio's refusals in the dispatcher's terms: a number that opted out or cannot get WhatsApp
    messages is a `PermanentFailure`; Twilio's "too many requests" a `RetryLater`; any other
    refusal or a network error a `TemporaryFailure`."""

    channel = CHANNEL
    uses_templates = True

    def __init__(
        self,
        client: Client,
        sender: str,
        templates: WhatsAppTemplates,
        pacing: WhatsAppPacing,
        status_callback: str,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._from = sender
        self._metrics = metrics or Metrics()
        self._templates = templates
        self._status_callback = status_callback
        self._clock = clock
        self.pacer = Pacer(pacing.messages_per_second)

    async def send_replies(self, chat_key: str, replies: list[Reply]) -> None:
        try:
            for reply in replies:
                for body in render(reply):
                    await self._create(chat_key, body=body)
        except _OutsideWindow:  # the relative has just written: should WhatsApp still refuse, say so
            raise TemporaryFailure("WhatsApp refused the reply as outside its 24-hour window") from None

    async def send(self, alert: Alert) -> str:
        """The alert as text or as its template; the id Twilio gave the message."""
        if self._window_open(alert):
            try:
                sids = [await self._create(alert.chat_key, body=body) for body in render(alert.reply)]
                return sids[-1]
            except _OutsideWindow:  # the relative's last message was longer ago than we knew
                pass
        template = self._templates.find(alert.kind, alert.language)
        if template is None:
            raise NotConfigured(f"template {alert.kind} not configured")
        variables = {placeholder: alert.fields[name] for placeholder, name in template.variables.items()}
        return await self._create(
            alert.chat_key,
            content_sid=template.content_sid,
            content_variables=json.dumps(variables, ensure_ascii=False),
        )

    def _window_open(self, alert: Alert) -> bool:
        if alert.template_only or alert.last_inbound_at is None:
            return False
        return self._clock() - alert.last_inbound_at < SESSION_WINDOW

    async def _create(self, chat_key: str, **content: str) -> str:
        try:
            message = await self._client.messages.create_async(
                from_=self._from, to=f"whatsapp:{chat_key}", status_callback=self._status_callback, **content
            )
        except TwilioRestException as error:
            if error.code == OUTSIDE_WINDOW:
                raise _OutsideWindow from None
            if error.code in PERMANENT:
                raise PermanentFailure(describe_failure(error)) from None
            if error.status == 429 or error.code in TOO_MANY:
                self._metrics.rate_limited(CHANNEL)
                raise RetryLater(RETRY_AFTER_SECONDS) from None
            raise TemporaryFailure(describe_failure(error)) from None
        except SEND_ERRORS as error:
            raise TemporaryFailure(describe_failure(error)) from None
        return message.sid


def delivery_report(message_sid: str, status: str, error_code: int | None) -> DeliveryReport:
    """A status callback's MessageSid, MessageStatus and ErrorCode in the dispatcher's terms."""
    if status not in FAILED_STATUSES:
        return DeliveryReport(message_sid, DeliveryOutcome.RECORDED, status)
    if error_code in PERMANENT:
        outcome = DeliveryOutcome.UNREACHABLE
    elif error_code == OUTSIDE_WINDOW:
        outcome = DeliveryOutcome.OUTSIDE_WINDOW
    else:  # 63018 (rate limit) and the rest: worth another try
        outcome = DeliveryOutcome.FAILED
    words = f"{status} {error_code}" if error_code else status
    return DeliveryReport(message_sid, outcome, words, f"Twilio {error_code or status}")


class WhatsAppChannel:
    """Twilio's webhooks: a relative's message (checked, handed to the dialogue, the replies sent,
    empty TwiML answered) and the delivery reports of our alerts. Both need Twilio's signature."""

    def __init__(
        self,
        conversation: Conversation,
        sender: WhatsAppSender,
        database: Database,
        policy: NotificationsConfig,
        clock: Callable[[], datetime],
        auth_token: str,
        public_base_url: str,
        own_number: str,
        metrics: Metrics | None = None,
    ) -> None:
        self._conversation = conversation
        self._sender = sender
        self._database = database
        self._policy = policy
        self._clock = clock
        self._validator = RequestValidator(auth_token)
        self._public_base_url = public_base_url.rstrip("/")
        self._own_number = own_number
        self._metrics = metrics or Metrics()
        # Starlette handles requests at once: one chat's messages wait here for each other, so that
        # each is read, answered and replied to in the order they reached this process.
        self._chats = KeyedLocks()

    def signed_url(self, path: str, query: str = "") -> str:
        """The URL Twilio called and signed: PUBLIC_BASE_URL, the path, the query if any."""
        return f"{self._public_base_url}{path}" + (f"?{query}" if query else "")

    async def _reply(self, chat_key: str, replies: list[Reply], received: float) -> None:
        """Send the replies to a message that arrived at `received` (`time.perf_counter`); a
        refusal is logged (number masked) and never fails the webhook, which Twilio would only
        deliver again."""
        try:
            await self._sender.send_replies(chat_key, replies)
        except PermanentFailure as error:
            await access.mark_unreachable_by_key(self._database, CHANNEL, chat_key, self._clock())
            log.warning("WhatsApp %s has opted out, its alerts end: %s", mask(chat_key), error)
        except (TemporaryFailure, RetryLater) as error:  # Twilio busy: lost like any refused reply
            log.warning("reply to WhatsApp %s not sent: %s", mask(chat_key), error)
        else:
            self._metrics.replies_sent(CHANNEL, len(replies), time.perf_counter() - received)

    async def _signed_form(self, request: Request) -> ImmutableMultiDict | None:
        """The form Twilio posted, or None when Twilio's signature does not hold for it."""
        params = ImmutableMultiDict([(key, str(value)) for key, value in (await request.form()).multi_items()])
        signature = request.headers.get(SIGNATURE_HEADER, "")
        url = self.signed_url(request.url.path, request.url.query)
        if not signature or not self._validator.validate(url, params, signature):
            log.warning("Twilio webhook %s refused: %s signature", request.url.path, "wrong" if signature else "no")
            return None
        return params

    def webhook_router(self) -> APIRouter:
        """`POST /webhooks/twilio/whatsapp`, a relative's message, and `POST /webhooks/twilio/status`,
        the delivery report of an alert: accepted only with Twilio's signature."""
        router = APIRouter(include_in_schema=False)

        @router.post(WEBHOOK_PATH)
        async def twilio_whatsapp_webhook(request: Request) -> Response:
            params = await self._signed_form(request)
            if params is None:
                return Response(status_code=403)
            try:
                if params.get("From") == self._own_number:  # a status callback sent to this URL
                    raise BadMessage("From: this service's own number; status callbacks go elsewhere")
                inbound = inbound_from(params)
            except BadMessage as error:
                log.warning("WhatsApp webhook refused: %s", error)
                return Response(str(error), status_code=400, media_type="text/plain")
            received = time.perf_counter()
            self._metrics.message_received(CHANNEL)
            async with self._chats.held(inbound.chat_key):
                try:
                    replies = await self._conversation.handle(inbound)
                except Exception:  # noqa: BLE001 - whatever the fault (the database not answering), the relative hears of it
                    # Twilio does not deliver the message again after an error answer: asked to
                    # send it again, the relative is not left without an answer.
                    log.exception("WhatsApp message from %s not answered", mask(inbound.chat_key))
                    replies = self._conversation.failed(inbound.language_hint)
                await self._reply(inbound.chat_key, replies, received)
            return Response(EMPTY_TWIML, media_type="text/xml")

        @router.post(STATUS_PATH)
        async def twilio_status_callback(request: Request) -> Response:
            params = await self._signed_form(request)
            if params is None:
                return Response(status_code=403)
            sid, status, code = (params.get(name, "") for name in ("MessageSid", "MessageStatus", "ErrorCode"))
            malformed_code = bool(code) and not _ERROR_CODE.fullmatch(code)
            if not _MESSAGE_SID.match(sid) or status not in MESSAGE_STATUSES or malformed_code:
                log.warning("Twilio status callback refused: MessageSid, MessageStatus or ErrorCode malformed")
                return Response("MessageSid, MessageStatus or ErrorCode: malformed", status_code=400)
            report = delivery_report(sid, status, int(code) if code else None)
            await record_delivery(self._database, self._policy, report, self._clock())
            return Response(status_code=200)

        return router
