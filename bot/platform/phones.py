"""Mobile numbers as people write them, turned into E.164 or refused with a reason."""

from __future__ import annotations

import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


class PhoneNumberError(ValueError):
    """The number cannot be a mobile of the configured region; the message says why and `kind`
    names the reason for replies in other languages: unreadable, invalid, foreign, landline."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def ascii_digits(text: str) -> str:
    """Turn every script's decimal digits (Bengali ৯, Devanagari ९, ...) into 0-9."""
    return "".join(
        str(unicodedata.decimal(char)) if unicodedata.decimal(char, None) is not None else char for char in text
    )


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber:
    cleaned = ascii_digits(text).strip()
    # "0091 98300 12345" is how many people dial abroad; phonenumbers reads it only from India.
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException:
        raise PhoneNumberError("unreadable", "not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneNumberError("invalid", "not a valid number (too short, too long or malformed)")
    return number


def normalise_mobile(text: str, region: str) -> str:
    """Return the E.164 form of a mobile number of `region` written in any common way.

    Spaces, dashes, brackets, a leading 0, +91, 0091 and Bengali or Devanagari digits are all
    accepted. Landlines, numbers of another country and
    malformed numbers raise `PhoneNumberError`.
    """
    number = _parse(text, region)
    if phonenumbers.region_code_for_number(number) != region:
        raise PhoneNumberError("foreign", f"not a number of region {region}")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise PhoneNumberError("landline", "a landline, not a mobile number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise_phone(text: str, region: str) -> str:
    """Return the E.164 form of any valid number (a hospital helpline may be a landline)."""
    return phonenumbers.format_number(_parse(text, region), PhoneNumberFormat.E164)


def national(e164: str) -> str:
    """`+919830012345` -> `098300 12345`, as people in India write their own number."""
    return phonenumbers.format_number(phonenumbers.parse(e164), PhoneNumberFormat.NATIONAL)


def mask(e164: str) -> str:
    """`+919830012345` -> `+91******2345`: enough to tell numbers apart in logs, no more."""
    if len(e164) <= 7:
        return "*" * len(e164)
    return e164[:3] + "*" * (len(e164) - 7) + e164[-4:]
