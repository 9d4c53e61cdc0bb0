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
"""

from __future__ import annotations

import logging
import re

from bot.platform.phones import mask

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

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


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr at `level` with phone numbers masked on every handler; Twilio's HTTP logging,
    the scheduler and the migrations only from WARNING."""
    logging.basicConfig(level=level, format=FORMAT)
    mask_every_handler()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
