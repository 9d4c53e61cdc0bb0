"""What hospitals send, validated in two layers shared by the API and the CSV import.

1. Shape: the pydantic models below check types, enums and plausible ranges. FastAPI applies them
   to request bodies; the CSV import applies them to each row.
   Every text field refuses what cannot be stored (`bot.platform.text`): NUL and the other
   control characters, lone surrogates; tab and line breaks are allowed in remarks only.
2. Context: `resolve()` checks what needs the hospital and the clock: mobile numbers of the
   configured region, times without an offset read in the hospital's zone, no times before
   2000 or in the future. It raises `FieldErrors`, reported exactly like a shape error. What it
   can mend it mends and says so (`AdmissionIn.left_out`): a landline among the alternate numbers
   is left out rather than refusing the whole admission.

Values are read as people type them: `93%` for SpO2, a time day first (`27/11/2026 09:30`) as
spreadsheets in India write it. A temperature that is clearly Fahrenheit (86-113, 30-45 °C) is
refused with its Celsius value rather than converted: the field says °C, and a system that sends
°F should be corrected once, not guessed at for every patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonDict

from bot.platform.phones import PhoneNumberError, normalise_mobile
from bot.platform.text import unstorable
from models.enums import AdmissionStatus, CareArea, Condition, RespiratorySupport, Sex

# A hospital's clock may run a little ahead of ours; beyond this a time "in the future" is a typo.
CLOCK_SKEW = timedelta(minutes=5)

# A hospital's registration number, in API paths and CSV cells alike: parts of letters, digits,
# '.', '_' and '-', each starting with a letter or digit, joined by '/' (`SSK/2026/1001`), at most
# REGISTRATION_NO_MAX_LENGTH in all. No part is "." or "..", so a path that carries one is never
# read as a step up. (The length is a separate rule: pydantic's regular expressions have no
# look-ahead to hold it.)
REGISTRATION_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"
REGISTRATION_NO_MAX_LENGTH = 64
REGISTRATION_NO_RULE = (
    "letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit; "
    "'/' between parts, each starting with a letter or digit (SSK/2026/1001)"
)
_REGISTRATION_NO = re.compile(REGISTRATION_NO_PATTERN)

# No record of a patient in hospital now is older: an earlier time is a typo, or a system's empty
# date ("0001-01-01"). Read in the hospital's zone, as times without an offset are.
EARLIEST_TIME = datetime(2000, 1, 1)
TOO_EARLY = "is before 2000-01-01"
_TIME = (
    "ISO 8601 (2026-11-27T09:30) or day first as spreadsheets write it (27/11/2026 09:30, 27-11-2026, "
    "seconds optional); no offset: hospital time; not before 2000-01-01, nor in the future"
)
# Day first, as spreadsheets in India write a time: 27/11/2026 09:30, 27-11-2026, 27/11/2026 09:30:15.
DAY_FIRST_PATTERN = (
    r"(?P<day>\d{1,2})(?P<sep>[/-])(?P<month>\d{1,2})(?P=sep)(?P<year>\d{4})"
    r"(?:[ T]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
)
_DAY_FIRST = re.compile(DAY_FIRST_PATTERN)
# What the API's document says a time may look like (the back-reference above is not for JSON Schema).
_DAY_FIRST_SCHEMA = r"^\d{1,2}([/-])\d{1,2}[/-]\d{4}([ T]+\d{1,2}:\d{2}(:\d{2})?)?$"
# A body temperature in °F: 86-113 °F is 30-45 °C, the range temperature_c takes.
_FAHRENHEIT = (86.0, 113.0)

# The plain way to write an Indian mobile number (`phone_region: IN`), stated in the API's schema.
# `resolve` reads more (brackets, Bengali or Devanagari digits) and gives the reason for a refusal,
# so the pattern documents the format rather than enforcing it.
_MOBILE: JsonDict = {"pattern": r"^(\+91[ -]?|0091 ?|0)?[6-9][0-9]{4}[ -]?[0-9]{5}$"}
_MOBILE_RULE = (
    "a mobile number of the configured region; in India 10 digits, the first 6-9, after +91, 0091, 0 or "
    "nothing (spaces, hyphens, brackets and Bengali or Devanagari digits are read too)"
)


class FieldErrors(ValueError):
    """One or more (field, reason) pairs, in the order the fields were checked."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors))
        self.errors = errors


@dataclass(frozen=True)
class LeftOut:
    """A value `resolve` left out rather than refuse the whole body, and why."""

    field: str  # as FieldErrors names it: "alternate_mobiles.1"
    value: str  # as it was sent
    reason: str


@dataclass(frozen=True)
class IntakeContext:
    region: str
    tz: tzinfo
    now: datetime


def is_registration_no(text: str) -> bool:
    """Whether `text` is a registration number as `REGISTRATION_NO_PATTERN` and its length allow."""
    return len(text) <= REGISTRATION_NO_MAX_LENGTH and _REGISTRATION_NO.match(text) is not None


def day_first_time(text: str) -> datetime | None:
    """`27/11/2026 09:30` (also with `-`, seconds optional, or a date alone: midnight) as a naive
    time; None when `text` is not written day first. Raises ValueError for a day that does not
    exist (31/02/2026)."""
    match = _DAY_FIRST.fullmatch(text.strip())
    if match is None:
        return None
    parts = {key: int(value) for key, value in match.groupdict().items() if key != "sep" and value}
    try:
        return datetime(
            parts["year"], parts["month"], parts["day"],
            parts.get("hour", 0), parts.get("minute", 0), parts.get("second", 0),
        )  # fmt: skip
    except ValueError:
        raise ValueError(f"{text.strip()} is not a date (day/month/year)") from None


def _day_first(value: Any) -> Any:
    if isinstance(value, str):
        return day_first_time(value) or value
    return value


def _percent(value: Any) -> Any:
    # "93%" and "93 %", as SpO2 is written on the chart.
    if isinstance(value, str) and value.strip().endswith("%"):
        return value.strip().removesuffix("%").strip()
    return value


def _celsius(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if _FAHRENHEIT[0] <= number <= _FAHRENHEIT[1]:
        celsius = (number - 32) * 5 / 9
        raise ValueError(f"{number:g} looks like °F; temperature_c is in °C: {number:g} °F is {celsius:.1f} °C")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _sex(value: Any) -> Any:
    if isinstance(value, str):
        words = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
        return words.get(value.strip().lower(), value)
    return value


def _not_bool(value: Any) -> Any:
    # pydantic reads JSON true as 1: a "spo2": true would be stored as an SpO2 of 1%.
    if isinstance(value, bool):
        raise ValueError("should be a number, not true or false")
    return value


def _one_line(value: Any) -> Any:
    if isinstance(value, str) and (reason := unstorable(value)):
        raise ValueError(reason)
    return value


def _lines(value: Any) -> Any:
    if isinstance(value, str) and (reason := unstorable(value, multiline=True)):
        raise ValueError(reason)
    return value


Int = Annotated[int | None, BeforeValidator(_not_bool)]
Float = Annotated[float | None, BeforeValidator(_not_bool)]
Percent = Annotated[int | None, BeforeValidator(_not_bool), BeforeValidator(_percent)]
Celsius = Annotated[float | None, BeforeValidator(_not_bool), BeforeValidator(_celsius)]
Time = Annotated[
    datetime | None,
    BeforeValidator(_day_first),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "pattern": _DAY_FIRST_SCHEMA},
                {"type": "null"},
            ]
        }
    ),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), BeforeValidator(_one_line)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), BeforeValidator(_one_line)
]
Short = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), BeforeValidator(_one_line)
]
Bed = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50), BeforeValidator(_one_line)]
Remarks = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), BeforeValidator(_lines)]


class _Input(BaseModel):
    # An unknown field is almost always a misspelt one ("spo_2"): refuse it rather than drop it.
    model_config = ConfigDict(extra="forbid")


def _resolve_time(value: datetime | None, field: str, ctx: IntakeContext, errors: list) -> datetime | None:
    if value is None:
        return None
    aware = value if value.utcoffset() is not None else value.replace(tzinfo=ctx.tz)
    if aware < EARLIEST_TIME.replace(tzinfo=ctx.tz):
        errors.append((field, TOO_EARLY))
        return None
    try:
        aware.astimezone(UTC)  # how it is stored; 0001-01-01 in India has no UTC time
    except OverflowError:
        errors.append((field, "is out of range"))
        return None
    if aware > ctx.now + CLOCK_SKEW:
        errors.append((field, "is in the future"))
    return aware


def _raise_if(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise FieldErrors(errors)


class AdmissionIn(_Input):
    """`PUT /api/v1/admissions/{registration_no}`: the whole admission, replaced idempotently."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "patient_name": "Ratan Das",
                    "contact_mobile": "098300 12345",
                    "alternate_mobiles": ["+91 94330 55555"],
                    "age": 67,
                    "sex": "M",
                    "ward": "Medicine 2",
                    "bed": "14",
                    "admitted_at": "20/11/2026 09:30",
                }
            ]
        }
    )

    patient_name: Name = Field(description="the patient's name as relatives know it, in any script; up to 200")
    contact_mobile: Text = Field(description=f"the admission mobile number: {_MOBILE_RULE}", json_schema_extra=_MOBILE)
    alternate_mobiles: list[Annotated[Text, Field(json_schema_extra=_MOBILE)]] = Field(
        default_factory=list,
        max_length=5,
        description=f"up to 5 more numbers, each {_MOBILE_RULE}; a landline among them is left out and the "
        "answer's `warnings` says so",
    )
    age: Int = Field(default=None, ge=0, le=130, description="in years")
    sex: Annotated[Sex | None, BeforeValidator(_sex)] = Field(
        default=None, description="M, F or O (male, female, other are read too)"
    )
    ward: Short | None = Field(default=None, description="the ward the patient lies in, as the hospital names it")
    bed: Bed | None = Field(default=None, description="the bed, as the ward names it")
    admitted_at: Time = Field(default=None, description=_TIME)

    _left_out: list[LeftOut] = PrivateAttr(default_factory=list)

    @property
    def left_out(self) -> list[LeftOut]:
        """What `resolve` left out rather than refuse the admission."""
        return self._left_out

    def resolve(self, ctx: IntakeContext) -> AdmissionIn:
        errors: list[tuple[str, str]] = []
        left_out: list[LeftOut] = []
        try:
            contact = normalise_mobile(self.contact_mobile, ctx.region)
        except PhoneNumberError as exc:
            errors.append(("contact_mobile", str(exc)))
            contact = self.contact_mobile
        alternates: list[str] = []
        for index, text in enumerate(self.alternate_mobiles):
            try:
                number = normalise_mobile(text, ctx.region)
            except PhoneNumberError as exc:
                # A ward's landline written among the numbers: the rest of the admission is good,
                # and a landline could never receive the code anyway.
                if exc.kind == "landline":
                    left_out.append(LeftOut(f"alternate_mobiles.{index}", text, f"{exc}; left out"))
                else:
                    errors.append((f"alternate_mobiles.{index}", str(exc)))
                continue
            if number != contact and number not in alternates:
                alternates.append(number)
        admitted_at = _resolve_time(self.admitted_at, "admitted_at", ctx, errors)
        _raise_if(errors)
        resolved = self.model_copy(
            update={"contact_mobile": contact, "alternate_mobiles": alternates, "admitted_at": admitted_at}
        )
        resolved._left_out = left_out
        return resolved


class ConditionUpdateIn(_Input):
    """`POST /api/v1/admissions/{registration_no}/updates`: one entry in the patient's history.

    `care_area` and `respiratory_support`, when left out, stay what they were."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "condition": "critical",
                    "care_area": "icu",
                    "respiratory_support": "oxygen",
                    "spo2": "91%",
                    "pulse": 104,
                    "bp_systolic": 130,
                    "bp_diastolic": 85,
                    "temperature_c": 38.2,
                    "resp_rate": 24,
                    "blood_sugar": 160,
                    "remarks": "On 6 L/min oxygen by face mask",
                    "recorded_at": "27/11/2026 08:00",
                }
            ]
        }
    )

    condition: Annotated[Condition, BeforeValidator(_lower)] = Field(
        description="stable, moderate or critical (any case)"
    )
    care_area: Annotated[CareArea | None, BeforeValidator(_lower)] = Field(
        default=None, description="ward, hdu, icu or ccu; left out: as before"
    )
    respiratory_support: Annotated[RespiratorySupport | None, BeforeValidator(_lower)] = Field(
        default=None, description="none, oxygen, hfnc, niv or ventilator; left out: as before"
    )
    spo2: Percent = Field(default=None, ge=0, le=100, description='oxygen saturation, % (93 or "93%")')
    pulse: Int = Field(default=None, ge=20, le=250, description="beats per minute")
    bp_systolic: Int = Field(default=None, ge=50, le=260, description="mmHg")
    bp_diastolic: Int = Field(default=None, ge=20, le=180, description="mmHg, below bp_systolic")
    temperature_c: Celsius = Field(
        default=None,
        ge=30,
        le=45,
        description="°C; a value of 86-113 is refused as °F, with its °C value in the reason",
    )
    resp_rate: Int = Field(default=None, ge=4, le=80, description="breaths per minute")
    blood_sugar: Int = Field(default=None, ge=20, le=800, description="mg/dL")
    remarks: Remarks | None = Field(
        default=None, description="the doctor's words, up to 1000; shown to relatives only where the hospital allows"
    )
    recorded_at: Time = Field(default=None, description=f"{_TIME}; default: now")

    @field_validator("bp_diastolic")
    @classmethod
    def _diastolic_below_systolic(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field validator, not a model one, so that the error names bp_diastolic.
        systolic = info.data.get("bp_systolic")
        if value is not None and systolic is not None and value >= systolic:
            raise ValueError("bp_diastolic must be below bp_systolic")
        return value

    def resolve(self, ctx: IntakeContext) -> ConditionUpdateIn:
        errors: list[tuple[str, str]] = []
        recorded_at = _resolve_time(self.recorded_at, "recorded_at", ctx, errors) or ctx.now
        _raise_if(errors)
        return self.model_copy(update={"recorded_at": recorded_at, "remarks": self.remarks or None})


class StatusIn(_Input):
    """`POST /api/v1/admissions/{registration_no}/status`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "transferred",
                    "at": "27/11/2026 18:30",
                    "to_hospital": "SSKM Hospital, Kolkata",
                    "remarks": "For cardiac surgery",
                }
            ]
        }
    )

    status: Annotated[AdmissionStatus, BeforeValidator(_lower)] = Field(
        description="admitted, discharged, transferred or deceased (any case)"
    )
    at: Time = Field(default=None, description=f"when the status changed: {_TIME}; default: now")
    # validate_default: the check below must run when to_hospital is left out, too.
    to_hospital: Name | None = Field(
        default=None,
        validate_default=True,
        description="where the patient went: required when transferred, refused otherwise",
    )
    remarks: Remarks | None = Field(default=None, description="about the change of status, up to 1000")

    @field_validator("to_hospital")
    @classmethod
    def _transfer_names_destination(cls, value: str | None, info: ValidationInfo) -> str | None:
        status = info.data.get("status")  # absent when the status itself was refused
        if status == AdmissionStatus.TRANSFERRED and not value:
            raise ValueError("to_hospital is required when status is transferred")
        if status is not None and status != AdmissionStatus.TRANSFERRED and value:
            raise ValueError("to_hospital is only for status transferred")
        return value

    def resolve(self, ctx: IntakeContext) -> StatusIn:
        errors: list[tuple[str, str]] = []
        at = _resolve_time(self.at, "at", ctx, errors) or ctx.now
        _raise_if(errors)
        return self.model_copy(update={"at": at, "remarks": self.remarks or None})
