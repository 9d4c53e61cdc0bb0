"""Reading a chat's quiet hours as relatives type them: `22-7`, `22:00-07:00`, `10pm-7am`,
`২২-৭`, `off`. The hours are the hospital's; the dispatcher holds routine news until they end."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.platform.phones import ascii_digits
from models.chat import Chat

OFF_WORDS = {"off", "none", "no", "বন্ধ", "बंद"}
_TIME = r"(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)?"
_RANGE = re.compile(rf"^{_TIME}\s*(?:-|–|—|to|\s)\s*{_TIME}$")


class QuietHoursError(ValueError):
    """`kind` says why, for a reply in the relative's language: unreadable, range, whole_hours,
    same."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def parse(text: str) -> tuple[int, int] | None:
    """(from, until) in whole hours 0-23, or None for "off". Raises QuietHoursError."""
    cleaned = " ".join(ascii_digits(text).lower().replace(".m.", "m").split())
    if cleaned in OFF_WORDS:
        return None
    match = _RANGE.fullmatch(cleaned)
    if match is None:
        raise QuietHoursError("unreadable")
    start = _hour(*match.group(1, 2, 3))
    end = _hour(*match.group(4, 5, 6))
    if start == end:
        raise QuietHoursError("same")
    return start, end


def _hour(hour_text: str, minutes: str | None, half: str | None) -> int:
    hour = int(hour_text)
    if half is not None:
        if not 1 <= hour <= 12:
            raise QuietHoursError("range")
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif hour > 23:
        raise QuietHoursError("range")
    if minutes is not None and int(minutes) != 0:
        raise QuietHoursError("whole_hours")
    return hour


def shown(hour: int) -> str:
    """`22:00`, `07:00`."""
    return f"{hour:02d}:00"


def in_quiet_hours(chat: Chat, local: datetime) -> bool:
    if chat.quiet_from is None or chat.quiet_until is None:
        return False
    hour = local.hour
    if chat.quiet_from <= chat.quiet_until:
        return chat.quiet_from <= hour < chat.quiet_until
    return hour >= chat.quiet_from or hour < chat.quiet_until


def quiet_hours_end(chat: Chat, local: datetime) -> datetime:
    end = local.replace(hour=chat.quiet_until or 0, minute=0, second=0, microsecond=0)
    return end if end > local else end + timedelta(days=1)
