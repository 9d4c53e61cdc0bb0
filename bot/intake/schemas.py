"""What hospitals send, validated in two layers shared by the API and the CSV import.

1. Shape: the pydantic models below check types, enums and plausible ranges. FastAPI applies them
   to request bodies; the CSV import applies them to each row.
   Every text field refuses what cannot be stored (`bot.platform.text`): NUL and the other
   control characters, lone surrogates; tab and line breaks are allowed in remarks only.
2. Context: `resolve()` checks what needs the hospital and the clock: mobile numbers of the
   configured region, times without an offset read in the hospital's zone, no times before
   2000 or in the future. It raises `FieldErrors`, reported exactly like a shape error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonDict

from bot.platform.phones import PhoneNumberError, normalise_mobile
from bot.platform.text import unstorable
from models.enums import AdmissionStatus, CareArea, Condition, RespiratorySupport, Sex

# A hospital's clock may run a little ahead of ours; beyond this a time "in the future" is a typo.
CLOCK_SKEW = timedelta(minutes=5)

# A hospital's registration number, in API paths and CSV cells alike.
REGISTRATION_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

# No record of a patient in hospital now is older: an earlier time is a typo, or a system's empty
# date ("0001-01-01"). Read in the hospital's zone, as times without an offset are.
EARLIEST_TIME = datetime(2000, 1, 1)
TOO_EARLY = "is before 2000-01-01"
_TIME = "ISO 8601; no offset: hospital time; not before 2000-01-01, nor in the future"

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
class IntakeContext:
    region: str
    tz: tzinfo
    now: datetime


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

    patient_name: Name
    contact_mobile: Text = Field(description=f"the admission mobile number: {_MOBILE_RULE}", json_schema_extra=_MOBILE)
    alternate_mobiles: list[Annotated[Text, Field(json_schema_extra=_MOBILE)]] = Field(
        default_factory=list, max_length=5, description=f"up to 5 more numbers, each {_MOBILE_RULE}"
    )
    age: Int = Field(default=None, ge=0, le=130)
    sex: Annotated[Sex | None, BeforeValidator(_sex)] = None
    ward: Short | None = None
    bed: Bed | None = None
    admitted_at: datetime | None = Field(default=None, description=_TIME)

    def resolve(self, ctx: IntakeContext) -> AdmissionIn:
        errors: list[tuple[str, str]] = []
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
                errors.append((f"alternate_mobiles.{index}", str(exc)))
                continue
            if number != contact and number not in alternates:
                alternates.append(number)
        admitted_at = _resolve_time(self.admitted_at, "admitted_at", ctx, errors)
        _raise_if(errors)
        return self.model_copy(
            update={"contact_mobile": contact, "alternate_mobiles": alternates, "admitted_at": admitted_at}
        )


class ConditionUpdateIn(_Input):
    """`POST /api/v1/admissions/{registration_no}/updates`: one entry in the patient's history.

    `care_area` and `respiratory_support`, when left out, stay what they were."""

    condition: Annotated[Condition, BeforeValidator(_lower)]
    care_area: Annotated[CareArea | None, BeforeValidator(_lower)] = None
    respiratory_support: Annotated[RespiratorySupport | None, BeforeValidator(_lower)] = None
    spo2: Int = Field(default=None, ge=0, le=100, description="%")
    pulse: Int = Field(default=None, ge=20, le=250, description="beats per minute")
    bp_systolic: Int = Field(default=None, ge=50, le=260, description="mmHg")
    bp_diastolic: Int = Field(default=None, ge=20, le=180, description="mmHg")
    temperature_c: Float = Field(default=None, ge=30, le=45)
    resp_rate: Int = Field(default=None, ge=4, le=80, description="breaths per minute")
    blood_sugar: Int = Field(default=None, ge=20, le=800, description="mg/dL")
    remarks: Remarks | None = None
    recorded_at: datetime | None = Field(default=None, description=f"{_TIME}; default: now")

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

    status: Annotated[AdmissionStatus, BeforeValidator(_lower)]
    at: datetime | None = Field(default=None, description=f"{_TIME}; default: now")
    # validate_default: the check below must run when to_hospital is left out, too.
    to_hospital: Name | None = Field(default=None, validate_default=True, description="required when transferred")
    remarks: Remarks | None = None

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
