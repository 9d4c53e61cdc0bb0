"""Languages: gettext catalogues (English source, Bengali, Hindi) and localised numbers and times.

The catalogues are the `.po` files under `locales/`; they are compiled in memory at start, so
there is no build step. `make messages` re-extracts the message ids from the code and merges them
into the catalogues (Babel); a test fails when a message id lacks a translation.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
DOMAIN = "messages"
LANGUAGE_NAMES = {"en": "English", "bn": "বাংলা", "hi": "हिन्दी"}
# Babel locales per language: Indian English and Bengali formats; Bengali numbers in Bengali
# digits, Hindi in the Latin digits most Hindi readers use on phones.
_BABEL_LOCALES = {"en": "en_IN", "bn": "bn", "hi": "hi_IN"}
# How a moment reads: Bengali and Hindi readers name the part of the day before the hour ("সকাল ৬:২৯",
# "सुबह 6:29", Babel's flexible day periods) where English says "6:29 AM".
_TIME_PATTERNS = {"en": "d MMM, h:mm a", "bn": "d MMM, B h:mm", "hi": "d MMM, B h:mm"}


def load_catalogue(language: str) -> gettext.NullTranslations:
    path = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po_file:
        catalogue = read_po(po_file, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Language:
    """Everything a reply needs to speak one language: words, numbers, times."""

    def __init__(self, code: str, translations: gettext.NullTranslations) -> None:
        self.code = code
        self.locale = Locale.parse(_BABEL_LOCALES[code])
        self._translations = translations

    def gettext(self, message: str) -> str:
        return self._translations.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self._translations.ngettext(singular, plural, count)

    def digits(self, text: str) -> str:
        """Write the digits of `text` in the language's own script where that is the custom."""
        if self.locale.default_numbering_system == "beng":
            return text.translate(_BENGALI_DIGITS)
        return text

    def number(self, value: float) -> str:
        return self.digits(_decimal(value, self.locale))

    def time(self, moment: datetime, zone: tzinfo) -> str:
        """The day and the time of day in `zone`: `27 Nov, 6:29 AM`, `২৭ নভে, সকাল ৬:২৯`, `27 नव॰, सुबह 6:29`."""
        return self.digits(_formatted(moment, zone, _TIME_PATTERNS[self.code], self.locale))

    def date(self, moment: datetime, zone: tzinfo) -> str:
        return self.digits(format_datetime(moment.astimezone(zone), "d MMM y", locale=self.locale))

    def ago(self, elapsed: timedelta) -> str:
        return self.digits(_ago(elapsed, self.locale))


_BENGALI_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")


# Babel reads the locale's patterns again for every number and time it writes (10 µs a number):
# a card writes about ten, and the same values, update times and delays recur from card to card.
@lru_cache(maxsize=4096)
def _decimal(value: float, locale: Locale) -> str:
    # Babel uses the locale's separators but always writes Latin digits.
    return format_decimal(value, locale=locale, numbering_system="default")


@lru_cache(maxsize=4096)
def _ago(elapsed: timedelta, locale: Locale) -> str:
    return format_timedelta(-elapsed, add_direction=True, threshold=1.0, locale=locale)


@lru_cache(maxsize=4096)
def _formatted(moment: datetime, zone: tzinfo, pattern: str, locale: Locale) -> str:
    # The zone is part of the key: aware datetimes of one instant are equal whatever their zone.
    return format_datetime(moment.astimezone(zone), pattern, locale=locale)


# Unicode blocks of the scripts our languages are written in.
_SCRIPTS = {"bn": ("\u0980", "\u09ff"), "hi": ("\u0900", "\u097f")}


def language_of_script(text: str) -> str | None:
    """`bn` for text in Bengali script, `hi` for Devanagari, None for any other: a language hint
    for channels that give none (WhatsApp). Bengali digits alone count too."""
    for code, (first, last) in _SCRIPTS.items():
        if any(first <= char <= last for char in text):
            return code
    return None


class Catalogues:
    """The languages configured, loaded once at start."""

    def __init__(self, available: Sequence[str], default: str) -> None:
        self.default = default
        self._languages = {code: Language(code, load_catalogue(code)) for code in available}

    @property
    def codes(self) -> list[str]:
        return list(self._languages)

    def get(self, code: str | None) -> Language:
        return self._languages.get(self.match(code) or self.default) or self._languages[self.default]

    def match(self, hint: str | None) -> str | None:
        """`bn`, `bn-IN`, `hi_IN` -> the configured language, or None."""
        if not hint:
            return None
        code = hint.replace("_", "-").split("-")[0].lower()
        return code if code in self._languages else None
