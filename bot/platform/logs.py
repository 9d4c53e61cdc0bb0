"""Logging that keeps relatives' phone numbers out of the logs.

The rule (docs/ARCHITECTURE.md, "Rules that protect patients"): logs mask phone numbers
(`+91******2345`) and never contain a code. Our own messages already mask what they name
(`bot.platform.phones.mask`); `MaskPhoneNumbers` is the net under everything else: a library's
message, an exception text such as Twilio's "The 'To' number +919830012345 is not a valid phone
number", a traceback. It sits on every handler (`mask_every_handler`), uvicorn's own included:
uvicorn logs a request's traceback through handlers of its own, which the root's never see.

Names cannot be recognised in free text either: the database engine keeps the parameters of a
failed statement out of its error (`bot.platform.db.create_engine`).

Codes cannot be recognised in free text, so they are kept out at the source: no module logs a
message body, and Twilio's HTTP loggers (request URLs and headers at INFO) are turned down.

With `LOG_FORMAT=json` every line is one JSON object (`JsonLines`) carrying, besides the message,
what the code handling it had put in the log context (`log_context`): the request id every web
request gets (`RequestIds`), the channel, the hospital's code, the chat's pseudonym, the admission.
The masking filter runs before any formatter, so the JSON carries the masked message.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bot.platform.phones import mask

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The context a JSON line carries where the code knows it; never a phone number or a chat's own key.
CONTEXT_FIELDS = ("channel", "hospital", "chat", "admission_id")
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)
REQUEST_ID_HEADER = "x-request-id"
# An incoming X-Request-ID is kept when it looks like an id (a proxy's or a load balancer's);
# anything else (too long, spaces, a `+` as in a phone number) is replaced by one of ours.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Twilio logs every request's URL and headers at INFO on these.
TWILIO_HTTP_LOGGERS = ("twilio.http_client", "twilio.async_http_client")
# httpx logs every request's URL at INFO, and python-telegram-bot's URLs hold the bot token
# (`.../bot<TOKEN>/sendMessage`): one line with the secret per Telegram call.
HTTPX_LOGGERS = ("httpx",)
# Chatty at INFO about every job run, which would bury the console chat.
QUIET_LOGGERS = (*TWILIO_HTTP_LOGGERS, *HTTPX_LOGGERS, "apscheduler", "alembic")

# A number in E.164 (`+919830012345`), also written with single spaces or dashes between the
# digits (`+91 98300 12345`), inside `whatsapp:+91...`, or URL-encoded (`%2B91...`, as in a
# query string). 8 to 15 digits; not when glued to more digits.
_PHONE = re.compile(r"(?<![\d%])(\+|%2[Bb])(\d(?:[ -]?\d){7,14})(?![\d])")


def mask_phones(text: str) -> str:
    """Every phone number in `text` masked as `bot.platform.phones.mask` does: `+91******2345`."""

    def masked(match: re.Match) -> str:
        prefix, digits = match.group(1), re.sub(r"[ -]", "", match.group(2))
        return prefix + mask("+" + digits)[1:]

    return _PHONE.sub(masked, text)


class MaskPhoneNumbers(logging.Filter):
    """Masks phone numbers in a record's message, its exception text and its stack; put it on a
    handler, so that it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the formatter's to report
            return True
        if _PHONE.search(message):
            _mask_message(record, message)
        if record.exc_info and not record.exc_text:
            # What the formatter would write, masked; the formatter then uses it as it is.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phones(record.stack_info)
        return True


def _mask_message(record: logging.LogRecord, message: str) -> None:
    """Masks the numbers where they are, in the text and its string arguments, so that a formatter
    that reads the arguments themselves (uvicorn's access log does) still finds them; a number
    inside an argument of another kind (an exception) leaves one masked text, arguments merged in."""
    if isinstance(record.msg, str) and isinstance(record.args, tuple):
        record.msg = mask_phones(record.msg)
        record.args = tuple(mask_phones(arg) if isinstance(arg, str) else arg for arg in record.args)
        if not _PHONE.search(record.getMessage()):
            return
    record.msg, record.args = mask_phones(message), None


def mask_every_handler() -> None:
    """`MaskPhoneNumbers` on every handler of every logger, and on the one logging falls back on
    when a logger has none. Call it again once a library has set up handlers of its own."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {handler for logger in loggers if isinstance(logger, logging.Logger) for handler in logger.handlers}
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(existing, MaskPhoneNumbers) for existing in handler.filters):
            handler.addFilter(MaskPhoneNumbers())


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within the block (and the tasks it starts), JSON log lines carry these fields too."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def add_to_log_context(**fields: Any) -> None:
    """These fields in the log context until the task ends (a web request's, an alert's) or the
    enclosing `log_context` block does: for what is learnt on the way, such as a request's hospital."""
    _context.set({**_context.get(), **fields})


def current_log_context() -> Mapping[str, Any]:
    return _context.get()


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request id, the
    context fields that are known, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        context = current_log_context()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": context.get("request_id"),
        }
        line.update((name, context[name]) for name in CONTEXT_FIELDS if context.get(name) is not None)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def json_logs() -> bool:
    """Whether `LOG_FORMAT` asks for JSON lines. Logging starts before the settings are read; they
    then refuse any value but `text` and `json` (`bot.platform.settings.Environment`)."""
    return os.environ.get("LOG_FORMAT", "").strip() == "json"


def format_every_handler() -> None:
    """With `LOG_FORMAT=json`, `JsonLines` on every handler, as `mask_every_handler` puts the mask:
    uvicorn's handlers would otherwise write their own plain lines."""
    if not json_logs():
        return
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            for handler in logger.handlers:
                handler.setFormatter(JsonLines())


class RequestIds:
    """ASGI middleware: every HTTP request gets a request id, in the log context and in the
    answer's `X-Request-ID`; a sane incoming one is kept.

    The id stays in the context after the app returns or raises: uvicorn runs each request in a
    task of its own, and writes the access line of a failed request and its traceback in that task
    afterwards."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value) for name, value in message.get("headers", ()) if name.lower() != b"x-request-id"
                ]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]}
            await send(message)

        add_to_log_context(request_id=request_id)
        await self.app(scope, receive, send_with_id)


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr at `level` with phone numbers masked on every handler, as plain text or, with
    `LOG_FORMAT=json`, JSON lines; Twilio's HTTP logging, the scheduler and the migrations only
    from WARNING."""
    logging.basicConfig(level=level, format=FORMAT)
    mask_every_handler()
    format_every_handler()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
