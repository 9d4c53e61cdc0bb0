"""Text that can be stored and sent on: the one check for every string that comes in (API fields,
CSV cells, chat messages, webhooks).

A lone surrogate (JSON's `"\\ud800"` decodes to one) has no UTF-8 form, so no database, log or
reply can carry it; PostgreSQL cannot store NUL; and the other C0 control characters are never part
of what a person writes. Tab, newline and carriage return are, but only in text of several lines
(remarks, chat messages), not in a name or a ward.
"""

from __future__ import annotations

import re

_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\ud800-\udfff]")


def unstorable(text: str, multiline: bool = False) -> str | None:
    """Why `text` cannot be taken as it is (naming the first bad character, never quoting the
    text), or None when it can."""
    found = (_NOT_TEXT if multiline else _NOT_ONE_LINE).search(text)
    if found is None:
        return None
    character = found.group()
    if "\ud800" <= character <= "\udfff":
        return "contains an invalid character (a lone UTF-16 surrogate)"
    return f"contains a control character (U+{ord(character):04X})"


def printable(text: str) -> str:
    """`text` with each character `unstorable` refuses written as an escape (`\\u0000`), so that
    it can be quoted back in a message, a log line or a JSON answer."""
    return _NOT_ONE_LINE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
