"""The hospital API: admissions, condition updates and status changes, one hospital per key.

Handlers translate HTTP to `bot.intake.rules` calls and back. Each request is one transaction: any
error leaves the database as it was. Another hospital's admission answers exactly as an unknown
one (404), so a key cannot even learn which registration numbers exist elsewhere.

The key is checked before anything else (`_KeyFirstRoute`): before the body is read and before a
writer's turn is taken, so a request without a valid key costs one lookup whatever it sends. A
422 lists at most `MAX_ERRORS` errors and never quotes what was sent.

A registration number may hold `/` (`SSK/2026/1001`): the routes read it with Starlette's `path`
converter, since servers decode `%2F` before routing, so `/admissions/SSK/2026/1001/updates` and
`/admissions/SSK%2F2026%2F1001/updates` are the same request. Each route's method and fixed tail
(`/updates`, `/status`) keeps it apart from the others.

`router` is included by `bot.app.build_web_app`, which also puts the `HospitalApiServices` the
routes use in `app.state.hospital_api`.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the routes and their
# dependencies at run time.
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.intake import rules
from bot.intake.hospitals import hospital_for_key
from bot.intake.schemas import (
    REGISTRATION_NO_MAX_LENGTH,
    REGISTRATION_NO_PATTERN,
    REGISTRATION_NO_RULE,
    AdmissionIn,
    ConditionUpdateIn,
    FieldErrors,
    IntakeContext,
    StatusIn,
)
from bot.platform.db import Database
from bot.platform.logs import add_to_log_context
from bot.platform.text import printable
from models import Admission, ConditionUpdate, Hospital, queries

SOURCE = "api"

RegistrationNo = Annotated[
    str,
    Path(
        pattern=REGISTRATION_NO_PATTERN,
        max_length=REGISTRATION_NO_MAX_LENGTH,
        description=f"the hospital's own registration number: {REGISTRATION_NO_RULE}. "
        "A '/' goes in the path as it is or as %2F: both are the same request",
        examples=["MRB-2026-1001", "SSK/2026/1001"],
    ),
]

UpdateId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the update's `id`, as answered when it was recorded")]


_SHOWN_TIME = "in the hospital's time zone, with its offset"


class UpdateOut(BaseModel):
    id: int = Field(description="the update's id: `DELETE .../updates/{id}` withdraws it")
    condition: str = Field(description="stable, moderate or critical")
    care_area: str | None = Field(
        description="ward, hdu, icu or ccu (carried over from the update before when not sent)"
    )
    respiratory_support: str | None = Field(
        description="none, oxygen, hfnc, niv or ventilator (carried over from the update before when not sent)"
    )
    spo2: int | None = Field(description="oxygen saturation, %")
    pulse: int | None = Field(description="beats per minute")
    bp_systolic: int | None = Field(description="mmHg")
    bp_diastolic: int | None = Field(description="mmHg")
    temperature_c: float | None = Field(description="°C")
    resp_rate: int | None = Field(description="breaths per minute")
    blood_sugar: int | None = Field(description="mg/dL")
    remarks: str | None = Field(description="the doctor's words, as sent")
    recorded_at: datetime = Field(description=f"when the condition was recorded, {_SHOWN_TIME}")
    received_at: datetime = Field(description=f"when Ward Watch received it, {_SHOWN_TIME}")


class RecordedUpdateOut(UpdateOut):
    is_latest: bool = Field(
        description="whether this is now the patient's latest update, the one relatives see; false for one "
        "recorded before the latest, which is kept in the history only"
    )


class AdmissionOut(BaseModel):
    hospital: str = Field(description="the code of the hospital whose key was used")
    registration_no: str = Field(description="the hospital's own registration number")
    patient_name: str = Field(description="as sent")
    age: int | None = Field(description="in years")
    sex: str | None = Field(description="M, F or O")
    contact_mobile: str = Field(description="the admission mobile number, E.164 (+919830012345)")
    alternate_mobiles: list[str] = Field(description="the other mobile numbers that may follow the patient, E.164")
    ward: str | None = Field(description="the ward the patient lies in")
    bed: str | None = Field(description="the bed, as the ward names it")
    admitted_at: datetime | None = Field(description=f"when the patient was admitted, {_SHOWN_TIME}")
    status: str = Field(description="admitted, discharged, transferred or deceased")
    status_at: datetime | None = Field(description=f"when the status last changed, {_SHOWN_TIME}")
    transferred_to: str | None = Field(description="where the patient went, when transferred")
    status_remarks: str | None = Field(description="the remarks sent with the status")
    latest_update: UpdateOut | None = Field(description="the condition relatives see; null before the first update")


class LeftOutOut(BaseModel):
    field: str = Field(description="which value of the body, as a 422 names it: alternate_mobiles.1")
    value: str = Field(description="the value as it was sent")
    reason: str = Field(description="why it was left out")


class WrittenAdmissionOut(AdmissionOut):
    warnings: list[LeftOutOut] = Field(
        description="values left out of what was stored, and why: a landline among `alternate_mobiles` (it "
        "could never receive a code by SMS) is dropped and the rest of the admission kept; empty when "
        "everything was stored"
    )


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return value.astimezone(zone) if value else None


def _update_out(update: ConditionUpdate, zone: ZoneInfo) -> dict[str, Any]:
    values = update.model_dump(exclude={"admission_id", "source"})
    values["recorded_at"] = _local(update.recorded_at, zone)
    values["received_at"] = _local(update.received_at, zone)
    return values


async def _admission_out(session: AsyncSession, hospital: Hospital, admission: Admission) -> AdmissionOut:
    zone = ZoneInfo(hospital.time_zone)
    latest = await queries.latest_update(session, admission.id)
    return AdmissionOut(
        **admission.model_dump(
            include={
                "registration_no",
                "patient_name",
                "age",
                "sex",
                "contact_mobile",
                "ward",
                "bed",
                "status",
                "transferred_to",
                "status_remarks",
            }
        ),  # fmt: skip
        hospital=hospital.code,
        alternate_mobiles=await queries.alternates_of(session, admission.id),
        admitted_at=_local(admission.admitted_at, zone),
        status_at=_local(admission.status_at, zone),
        latest_update=_update_out(latest, zone) if latest else None,
    )


# Enough to fix a request; a body of a million unknown fields once made a 422 of a million errors.
MAX_ERRORS = 20


def _error(kind: str, loc: list | tuple, msg: str) -> dict[str, Any]:
    """One error as FastAPI words it, without the value sent (`input`, `ctx`). A field's name
    is the client's own text and may hold what JSON can escape but UTF-8 cannot encode."""
    return {"type": kind, "loc": [part if isinstance(part, int) else printable(str(part)) for part in loc], "msg": msg}


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors[:MAX_ERRORS]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def field_errors_response(errors: FieldErrors) -> JSONResponse:
    """The same shape FastAPI gives a pydantic error, so clients parse one format."""
    return _unprocessable(
        [
            _error(
                "value_error", ["body", *(int(part) if part.isdigit() else part for part in field.split("."))], reason
            )
            for field, reason in errors.errors
        ]
    )


async def request_validation_response(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422, less what was sent: a missing or unknown field used to echo the whole
    body. Registered for RequestValidationError only (bot/app.py)."""
    assert isinstance(exc, RequestValidationError)
    return _unprocessable([_error(error["type"], error["loc"], error["msg"]) for error in exc.errors()[:MAX_ERRORS]])


@dataclass(frozen=True)
class HospitalApiServices:
    """What the routes need from the composition root."""

    database: Database
    secret_key: bytes
    region: str  # whose mobile numbers are accepted
    clock: Callable[[], datetime]


_bearer = HTTPBearer(auto_error=False, description="the hospital's API key")
_NO_KEY = "missing or invalid API key"


def _services(request: Request) -> HospitalApiServices:
    return request.app.state.hospital_api


async def _key_holder(request: Request) -> int:
    """The id of the hospital whose key the request carries; 401 otherwise."""
    credentials = await _bearer(request)
    hospital = None
    if credentials is not None:
        services = _services(request)
        async with services.database.session() as session:
            hospital = await hospital_for_key(session, services.secret_key, credentials.credentials)
    if hospital is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _NO_KEY, headers={"WWW-Authenticate": "Bearer"})
    return hospital.id


class _KeyFirstRoute(APIRoute):
    """A route that checks the key before FastAPI reads the body. FastAPI reads and parses a body
    before it solves any dependency, so a key checked in a dependency made the server read, parse
    and answer whatever anyone sent, and wait for a writer's turn first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def key_first(request: Request) -> Response:
            request.state.hospital_id = await _key_holder(request)
            return await handle(request)

        return key_first


class Problem(BaseModel):
    detail: str = Field(description="what went wrong, in words")


class ErrorDetail(BaseModel):
    type: str = Field(description="the kind of error: missing, value_error, less_than_equal, ...")
    loc: list[str | int] = Field(description='where: ["body", "alternate_mobiles", 1], ["path", "registration_no"]')
    msg: str = Field(description="the reason, in words; the value sent is never repeated")


class Invalid(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": [
                        {
                            "type": "less_than_equal",
                            "loc": ["body", "spo2"],
                            "msg": "Input should be less than or equal to 100",
                        }
                    ]
                }
            ]
        }
    )

    detail: list[ErrorDetail] = Field(description=f"each problem found, at most {MAX_ERRORS}")


def _problem(description: str, detail: str) -> dict[str, Any]:
    """A documented answer whose body is a `Problem`, with the words it carries."""
    return {
        "model": Problem,
        "description": description,
        "content": {"application/json": {"example": {"detail": detail}}},
    }


_NO_ADMISSION = "no such admission"


router = APIRouter(
    prefix="/api/v1",
    tags=["hospital API"],
    route_class=_KeyFirstRoute,
    # Names the scheme in the OpenAPI document; _KeyFirstRoute does the checking.
    dependencies=[Depends(_bearer)],
    responses={
        400: {"model": Problem, "description": "the body is not UTF-8 text"},
        401: _problem("the key is missing, unknown or rotated away", _NO_KEY),
        404: _problem("no such admission at this hospital (another hospital's answers the same)", _NO_ADMISSION),
        413: {"description": "the body is larger than the server takes (server.max_body_bytes)"},
        422: {"model": Invalid, "description": "the path or the body is refused: each field and why"},
    },
)


Services = Annotated[HospitalApiServices, Depends(_services)]


async def _session(request: Request, services: Services) -> AsyncIterator[AsyncSession]:
    async with services.database.request_session(writes=request.method != "GET") as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session)]


async def _authenticated_hospital(request: Request, session: Session) -> Hospital:
    """The hospital whose key `_KeyFirstRoute` accepted, in this request's session."""
    hospital = await session.get(Hospital, request.state.hospital_id)
    assert hospital is not None, "hospitals are never deleted"
    add_to_log_context(hospital=hospital.code)
    return hospital


CurrentHospital = Annotated[Hospital, Depends(_authenticated_hospital)]


def _context(services: HospitalApiServices, hospital: Hospital) -> IntakeContext:
    return IntakeContext(region=services.region, tz=ZoneInfo(hospital.time_zone), now=services.clock())


def _actor(hospital: Hospital) -> str:
    return f"api:{hospital.code}"


async def _admission_or_404(session: AsyncSession, hospital: Hospital, registration_no: str) -> Admission:
    admission = await queries.find_admission(session, hospital, registration_no)
    if admission is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NO_ADMISSION)
    add_to_log_context(admission_id=admission.id)
    return admission


async def _commit(
    session: AsyncSession,
    hospital: Hospital,
    registration_no: str,
    change: AdmissionIn | ConditionUpdateIn | StatusIn,
) -> rules.Applied:
    try:
        return await rules.commit_one(session, hospital, registration_no, change, _actor(hospital), SOURCE)
    except rules.NoSuchAdmission:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NO_ADMISSION) from None
    except rules.AdmissionClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


# OpenAPI links from an answer to the operations it opens (clients and tools such as schemathesis
# follow them): the same admission, and the update just recorded.
_SAME_ADMISSION = {"registration_no": "$request.path.registration_no"}
_ADMISSION_LINKS = {
    operation: {"operationId": operation, "parameters": _SAME_ADMISSION}
    for operation in ("get_admission", "post_update", "post_status")
}
_UPDATE_LINKS = {
    "delete_update": {
        "operationId": "delete_update",
        "parameters": {**_SAME_ADMISSION, "update_id": "$response.body#/id"},
    }
}


@router.put(
    "/admissions/{registration_no:path}",
    operation_id="put_admission",
    response_model=WrittenAdmissionOut,
    responses={
        200: {"description": "updated, or unchanged", "links": _ADMISSION_LINKS},
        201: {"model": WrittenAdmissionOut, "description": "created", "links": _ADMISSION_LINKS},
    },
)
async def put_admission(
    registration_no: RegistrationNo, body: AdmissionIn, response: Response,
    session: Session, hospital: CurrentHospital, services: Services,
):  # fmt: skip
    """Create the admission, or replace its details. Sending the same body again changes nothing."""
    try:
        data = body.resolve(_context(services, hospital))
    except FieldErrors as errors:
        return field_errors_response(errors)
    applied = await _commit(session, hospital, registration_no, data)
    response.status_code = 201 if applied.outcome == rules.Outcome.CREATED else 200
    written = await _admission_out(session, hospital, applied.admission)
    warnings = [LeftOutOut(field=left.field, value=left.value, reason=left.reason) for left in data.left_out]
    return WrittenAdmissionOut(**written.model_dump(), warnings=warnings)


@router.post(
    "/admissions/{registration_no:path}/updates",
    operation_id="post_update",
    status_code=201,
    response_model=RecordedUpdateOut,
    responses={
        200: {
            "model": RecordedUpdateOut,
            "description": "the same update was already recorded; nothing changed",
            "links": _UPDATE_LINKS,
        },
        201: {"description": "recorded", "links": _UPDATE_LINKS},
        409: _problem(
            "the patient is no longer admitted: record status admitted first",
            "the admission is discharged; set status admitted first to add updates",
        ),
    },
)
async def post_update(
    registration_no: RegistrationNo, body: ConditionUpdateIn, response: Response,
    session: Session, hospital: CurrentHospital, services: Services,
):  # fmt: skip
    """Add a condition update to the patient's history. One recorded before the latest is
    kept in the history but does not replace what relatives see."""
    try:
        data = body.resolve(_context(services, hospital))
    except FieldErrors as errors:
        return field_errors_response(errors)
    recorded = (await _commit(session, hospital, registration_no, data)).recorded
    assert recorded is not None  # what a condition update gives back
    if recorded.outcome == rules.Outcome.UNCHANGED:
        response.status_code = 200
    return {**_update_out(recorded.update, ZoneInfo(hospital.time_zone)), "is_latest": recorded.is_latest}


@router.post(
    "/admissions/{registration_no:path}/status",
    operation_id="post_status",
    response_model=AdmissionOut,
    responses={200: {"description": "recorded, or unchanged", "links": _ADMISSION_LINKS}},
)
async def post_status(
    registration_no: RegistrationNo, body: StatusIn, session: Session, hospital: CurrentHospital, services: Services
):
    """Record that the patient is admitted, discharged, transferred (with `to_hospital`) or deceased."""
    try:
        data = body.resolve(_context(services, hospital))
    except FieldErrors as errors:
        return field_errors_response(errors)
    applied = await _commit(session, hospital, registration_no, data)
    return await _admission_out(session, hospital, applied.admission)


@router.delete(
    "/admissions/{registration_no:path}/updates/{update_id}",
    operation_id="delete_update",
    response_model=AdmissionOut,
    responses={
        404: _problem("no such admission, or no such update of this admission", "no such update of this admission")
    },
)
async def delete_update(
    registration_no: RegistrationNo, update_id: UpdateId, session: Session, hospital: CurrentHospital,
    services: Services,
):  # fmt: skip
    """Withdraw a wrong condition update (its `id` is in the answer that recorded it). It stays
    in the history but is never shown again, and the update before it becomes the latest.
    Relatives hear of the correction only if they were already told of the withdrawn update and
    what they see changes; within the correction window they hear nothing of either.
    Answers the admission as `GET` does. Idempotent: withdrawing an update already withdrawn
    answers the same and changes nothing."""
    admission = await _admission_or_404(session, hospital, registration_no)
    # Locked (PostgreSQL), so that two DELETEs at once withdraw it, and tell relatives, once.
    update = await session.get(ConditionUpdate, update_id, with_for_update=True)
    if update is None or update.admission_id != admission.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such update of this admission")
    await rules.retract_update(session, hospital, admission, update, _actor(hospital), services.clock())
    await session.commit()
    return await _admission_out(session, hospital, admission)


@router.get("/admissions/{registration_no:path}", operation_id="get_admission", response_model=AdmissionOut)
async def get_admission(registration_no: RegistrationNo, session: Session, hospital: CurrentHospital):
    """The admission with its latest condition update."""
    admission = await _admission_or_404(session, hospital, registration_no)
    return await _admission_out(session, hospital, admission)
