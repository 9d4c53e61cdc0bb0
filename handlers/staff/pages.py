"""The ward's pages: login, the staff member's own password, the ward list, a patient (an update
in a few taps, undo), admitting a patient, and discharge, transfer and death after a confirmation.

Every write goes through `bot.intake.rules`, as the hospital API's do, audited with the staff
member as actor (`staff:<username>@<HOSPITAL>`): an update made here and the same update sent
through the API are the same rows and the same alerts.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the routes at run time.
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from babel.dates import format_timedelta
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.convertors import Convertor, register_url_convertor

from bot.alerts.compose import compose_alert
from bot.intake import rules
from bot.intake.schemas import (
    REGISTRATION_NO_PATTERN,
    AdmissionIn,
    ConditionUpdateIn,
    FieldErrors,
    IntakeContext,
    StatusIn,
    is_registration_no,
)
from bot.outbox import snapshot
from bot.platform.i18n import Language
from bot.relatives.remarks import PRESET_REMARKS
from bot.relatives.status_card import MOMENT, CardData, care_area_name, condition_name, helpline_text, support_name
from bot.staff import accounts, wards
from bot.staff.accounts import N_
from handlers.staff.auth import (
    LANGUAGE_COOKIE,
    LOGIN_PATH,
    STYLESHEET,
    CheckedForm,
    CurrentStaff,
    DbSession,
    PageError,
    Services,
    Staff,
    StaffChangingPassword,
    StaffServices,
    end_session,
    login_outcome,
    page_language,
    redirect,
    render,
    set_cookie,
    start_session,
)
from models import Admission, ConditionUpdate, queries
from models.enums import AdmissionStatus, CareArea, Condition, RespiratorySupport

router = APIRouter()


class _LeavingConvertor(Convertor[str]):
    """`discharge`, `transfer` or `death` at the end of a patient's path, matched by the router
    itself: a registration number may hold '/' (`SSK/2026/1001`, read with the `path` converter),
    so `/patients/SSK/2026/1001` must not be taken for patient `SSK/2026` leaving by `1001`."""

    regex = "discharge|transfer|death"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("leaving", _LeavingConvertor())

REFUSALS = {
    accounts.Refusal.WRONG: N_("Wrong username or password."),
    accounts.Refusal.LOCKED: N_(
        "Too many wrong passwords: this account is locked until {time}. Your hospital's admin can unlock it."
    ),
    accounts.Refusal.DISABLED: N_("This account is disabled. Ask your hospital's admin."),
    accounts.Refusal.ADDRESS_WAITS: N_("Too many wrong passwords from this network. Try again after {time}."),
}

REFUSAL_STATUS = {
    accounts.Refusal.WRONG: 401,
    accounts.Refusal.LOCKED: 403,
    accounts.Refusal.DISABLED: 403,
    accounts.Refusal.ADDRESS_WAITS: 429,
}


@dataclass(frozen=True)
class Names:
    """The condition, care area and breathing support as a page names them, in one language."""

    language: Language

    def condition(self, value: str) -> str:
        return condition_name(self.language, value)

    def area(self, value: str) -> str:
        return care_area_name(self.language, value)

    def support(self, value: str) -> str:
        return support_name(self.language, value)


def _zone(staff_services: StaffServices) -> ZoneInfo:
    return ZoneInfo(staff_services.config.hospital_time_zone)


def _form_text(form, name: str, limit: int = 1000) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


# --- the stylesheet ------------------------------------------------------------------------------


@router.get("/static/staff.css")
async def stylesheet() -> Response:
    # Its address carries its version (auth.STYLESHEET_VERSION): it may be kept for a year.
    return Response(STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=31536000, immutable"})


# --- logging in and out --------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, services: Services, lang: Annotated[str | None, Query(max_length=8)] = None):
    response = render(
        request,
        "login.html",
        title=page_language(request).gettext("Log in"),
        username="",
        error=None,
        available=services.catalogues.codes,
    )
    chosen = services.catalogues.match(lang)
    if chosen:
        set_cookie(response, request, LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600)
    return response


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/login")
async def log_in(request: Request, services: Services, form: CheckedForm):
    username = _form_text(form, "username", 64)
    language = services.catalogues.match(_form_text(form, "language", 8))
    now = services.clock()
    address = accounts.address_hash(services.secret_key, _client_address(request))
    login = await accounts.log_in(
        services.database, username, _form_text(form, "password", 128), address, now, language
    )
    services.metrics.staff_login(login_outcome(login))
    if login.account is None:
        assert login.refusal is not None
        shown_in = services.catalogues.get(language)
        message = shown_in.gettext(REFUSALS[login.refusal])
        if login.until is not None:
            message = message.format(time=shown_in.time(login.until, _zone(services)))
        return render(
            request, "login.html", REFUSAL_STATUS[login.refusal], title=shown_in.gettext("Log in"),
            username=username, error=message, available=services.catalogues.codes,
        )  # fmt: skip
    response = redirect("/staff/password" if login.account.must_change_password else "/staff/")
    start_session(response, request, login.account)
    return response


@router.post("/logout")
async def log_out(request: Request, staff: StaffChangingPassword, session: DbSession, form: CheckedForm):
    await accounts.end_sessions(session, staff.account)
    await session.commit()
    response = redirect(LOGIN_PATH)
    end_session(response, request)
    return response


# --- the staff member's own password -------------------------------------------------------------


def _password_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    language = request.state.staff.language
    return render(
        request, "password.html", status_code, title=language.gettext("Choose your own password"), error=error,
        min_length=accounts.MIN_PASSWORD_LENGTH,
    )  # fmt: skip


@router.get("/password")
async def password_page(request: Request, staff: StaffChangingPassword):
    return _password_page(request)


@router.post("/password")
async def change_password(request: Request, staff: StaffChangingPassword, session: DbSession, form: CheckedForm):
    try:
        await accounts.change_password(
            session, staff.account, staff.hospital, _form_text(form, "current", 128), _form_text(form, "new", 1000)
        )
    except accounts.StaffError as refused:  # refused before any change
        message = staff.language.gettext(refused.message).format(**refused.values)
        return _password_page(request, message, 422)
    await session.commit()
    response = redirect("/staff/")
    start_session(response, request, staff.account)  # the new password ended every session before
    return response


# --- the ward list -------------------------------------------------------------------------------


@router.get("/")
async def ward_list(
    request: Request, staff: CurrentStaff, session: DbSession, services: Services,
    q: Annotated[str, Query(max_length=wards.SEARCH_LENGTH)] = "",
):  # fmt: skip
    patients = await wards.ward_patients(session, staff.account, services.config.overdue_hours, q)
    now = services.clock()
    language = staff.language
    title = ", ".join(staff.account.wards) if staff.account.wards else staff.hospital.name
    return render(
        request, "wards.html", title=title, patients=patients, search=q, now=now, names=Names(language),
        ago=lambda moment: language.ago(max(now - moment, MOMENT)),
    )  # fmt: skip


# --- a patient -----------------------------------------------------------------------------------

SOURCE = "staff"
CONDITIONS = ("stable", "moderate", "critical")
CARE_AREAS = ("ward", "hdu", "icu", "ccu")
SUPPORTS = ("none", "oxygen", "hfnc", "niv", "ventilator")
# The buttons' words: short, as a ward says them.
_AREA_BUTTONS = {"ward": N_("General ward"), "hdu": "HDU", "icu": "ICU", "ccu": "CCU"}
_SUPPORT_BUTTONS = {
    "none": N_("No support"),
    "oxygen": N_("Oxygen"),
    "hfnc": "HFNC",
    "niv": "NIV",
    "ventilator": N_("Ventilator"),
}
VITALS = (
    ("spo2", N_("SpO2 (%)"), 0, 100, "1"),
    ("pulse", N_("Pulse (per minute)"), 20, 250, "1"),
    ("bp_systolic", N_("BP systolic (mmHg)"), 50, 260, "1"),
    ("bp_diastolic", N_("BP diastolic (mmHg)"), 20, 180, "1"),
    ("temperature_c", N_("Temperature (°C)"), 30, 45, "0.1"),
    ("resp_rate", N_("Breathing rate (per minute)"), 4, 80, "1"),
    ("blood_sugar", N_("Blood sugar (mg/dL)"), 20, 800, "1"),
)
FIELD_NAMES = {
    "condition": N_("Condition"),
    "care_area": N_("Care area"),
    "respiratory_support": N_("Breathing support"),
    "remarks": N_("Remark"),
    "recorded_at": N_("Time"),
    **{name: label for name, label, *_ in VITALS},
}
REMARK_LENGTH = 200  # short free text; the API takes up to 1000


def _context(services: StaffServices, staff: Staff) -> IntakeContext:
    return IntakeContext(
        region=services.config.phone_region, tz=ZoneInfo(staff.hospital.time_zone), now=services.clock()
    )


async def _patient(session: AsyncSession, staff: Staff, registration_no: str) -> Admission:
    admission = await wards.find_patient(session, staff.account, registration_no)
    if admission is None:  # another hospital's, another ward's, or nobody's: the same answer
        raise PageError(404, N_("There is no such patient here."))
    return admission


def _reasons(staff: Staff, errors: list[tuple[str, str]]) -> list[str]:
    """`SpO2 (%): Input should be less than or equal to 100`: the field in the staff member's
    language, the reason in the API's words."""
    _ = staff.language.gettext
    names = [FIELD_NAMES.get(field.split(".")[0]) for field, _reason in errors]
    return [f"{_(name) if name else field}: {reason}" for name, (field, reason) in zip(names, errors, strict=True)]


def _validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in exc.errors(include_url=False)]


async def _patient_page(
    request: Request, staff: Staff, session: AsyncSession, services: StaffServices, admission: Admission,
    status_code: int = 200, errors: list[str] | None = None, values: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    latest = await queries.latest_update(session, admission.id)
    now = services.clock()
    language = staff.language
    zone = ZoneInfo(staff.hospital.time_zone)
    due = wards.due_at(admission, latest, services.config.overdue_hours)
    if values is None and latest is not None:
        values = {
            "condition": latest.condition,
            "care_area": latest.care_area or "",
            "respiratory_support": latest.respiratory_support or "",
        }
    _, names = language.gettext, Names(language)
    return render(
        request, "patient.html", status_code, title=admission.patient_name, admission=admission, latest=latest,
        overdue=now > due and admission.status == AdmissionStatus.ADMITTED, errors=errors or [], values=values or {},
        history=await wards.recent_updates(session, admission.id), names=names,
        ago=lambda moment: language.ago(max(now - moment, MOMENT)), time=lambda moment: language.time(moment, zone),
        condition_options=[(code, names.condition(code)) for code in CONDITIONS], areas=[(code, _(label)) for code, label in _AREA_BUTTONS.items()],
        supports=[(code, _(label)) for code, label in _SUPPORT_BUTTONS.items()], vitals=VITALS,
        presets=PRESET_REMARKS, remark_length=REMARK_LENGTH,
        status_text=_status_text(language, admission, zone),
    )  # fmt: skip


def _status_text(language: Language, admission: Admission, zone: ZoneInfo) -> str:
    _ = language.gettext
    when = language.date(admission.status_at, zone) if admission.status_at else ""
    if admission.status == AdmissionStatus.DISCHARGED:
        return _("Discharged on {date}.").format(date=when)
    if admission.status == AdmissionStatus.TRANSFERRED:
        return _("Moved to {destination} on {date}.").format(destination=admission.transferred_to, date=when)
    if admission.status == AdmissionStatus.DECEASED:
        return _("Died on {date}.").format(date=when)
    return ""


# Routed last (at the end of this module): its path would match every patient path below it.
async def patient_page(
    registration_no: str, request: Request, staff: CurrentStaff, session: DbSession, services: Services
):
    admission = await _patient(session, staff, registration_no)
    return await _patient_page(request, staff, session, services, admission)


async def _record(
    session: AsyncSession, staff: Staff, admission: Admission, data: ConditionUpdateIn
) -> rules.RecordedUpdate:
    applied = await rules.commit_one(session, staff.hospital, admission.registration_no, data, staff.actor, SOURCE)
    assert applied.recorded is not None  # what a condition update gives back
    return applied.recorded


@router.post("/patients/{registration_no:path}/updates")
async def record_update(
    registration_no: str, request: Request, staff: CurrentStaff, session: DbSession, services: Services,
    form: CheckedForm,
):  # fmt: skip
    admission = await _patient(session, staff, registration_no)
    fields = ("condition", "care_area", "respiratory_support", *(name for name, *_ in VITALS))
    values = {name: _form_text(form, name, 20).strip() for name in fields}
    preset, own = _form_text(form, "remark", 200), _form_text(form, "remarks", 1000).strip()
    values.update(remark=preset, remarks=own)
    body: dict[str, str | None] = {name: values[name] for name in fields if values[name]}
    errors: list[tuple[str, str]] = []
    if preset and preset not in PRESET_REMARKS:
        errors.append(("remarks", "not one of the ready phrases"))
    if preset and own:
        errors.append(("remarks", staff.language.gettext("Choose a ready phrase or write your own words, not both.")))
    if len(own) > REMARK_LENGTH:
        errors.append(("remarks", f"String should have at most {REMARK_LENGTH} characters"))
    body["remarks"] = preset or own or None
    try:
        data = ConditionUpdateIn.model_validate(body)
    except ValidationError as exc:
        errors = _validation_errors(exc) + errors
    if errors:
        return await _patient_page(request, staff, session, services, admission, 422, _reasons(staff, errors), values)
    try:
        resolved = data.resolve(_context(services, staff))
        recorded = await _record(session, staff, admission, resolved)
    except FieldErrors as exc:
        return await _patient_page(
            request, staff, session, services, admission, 422, _reasons(staff, exc.errors), values
        )
    except rules.AdmissionClosed:
        raise PageError(409, N_("This patient is no longer admitted here.")) from None
    return redirect(f"/staff/patients/{registration_no}/updates/{recorded.update.id}")


@router.post("/patients/{registration_no:path}/no-change")
async def record_no_change(
    registration_no: str, staff: CurrentStaff, session: DbSession, services: Services, form: CheckedForm
):
    """The patient was seen and nothing changed: the same condition, care area and support at this
    time. Relatives' cards show the new time and the overdue clock starts again; their alert finds
    nothing changed and is not sent."""
    admission = await _patient(session, staff, registration_no)
    latest = await queries.latest_update(session, admission.id)
    if latest is None:
        raise PageError(409, N_("Record the patient's condition first."))
    same = ConditionUpdateIn(
        condition=Condition(latest.condition),
        care_area=CareArea(latest.care_area) if latest.care_area else None,
        respiratory_support=RespiratorySupport(latest.respiratory_support) if latest.respiratory_support else None,
    ).resolve(_context(services, staff))
    try:
        recorded = await _record(session, staff, admission, same)
    except rules.AdmissionClosed:
        raise PageError(409, N_("This patient is no longer admitted here.")) from None
    return redirect(f"/staff/patients/{registration_no}/updates/{recorded.update.id}")


async def _own_update(
    session: AsyncSession, admission: Admission, update_id: int, lock: bool = False
) -> ConditionUpdate:
    # Locked to withdraw it (PostgreSQL), as the API's DELETE does: two undos at once withdraw it once.
    update = await session.get(ConditionUpdate, update_id, with_for_update=lock)
    if update is None or update.admission_id != admission.id:
        raise PageError(404, N_("There is no such update of this patient."))
    return update


@router.get("/patients/{registration_no:path}/updates/{update_id}")
async def recorded_page(
    registration_no: str, update_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request,
    staff: CurrentStaff, session: DbSession, services: Services,
):  # fmt: skip
    """What was saved, and what relatives will read and when; Undo."""
    admission = await _patient(session, staff, registration_no)
    update = await _own_update(session, admission, update_id)
    latest = await queries.latest_update(session, admission.id)
    before = await wards.update_before(session, update)
    now = services.clock()
    language = staff.language
    zone = ZoneInfo(staff.hospital.time_zone)
    # The page records an update at the time it is saved, and its alert waits the correction window.
    tell_at = update.recorded_at + timedelta(seconds=services.config.notifications.grace_seconds)
    preview = None
    if update.retracted_at is None and latest is not None and latest.id == update.id:
        card = CardData(staff.hospital, admission, latest)
        alert = compose_alert(card, snapshot(before, admission.status), language, now, services.config.overdue_hours)
        preview = alert.plain if alert is not None else None
    return render(
        request, "recorded.html", title=admission.patient_name, admission=admission, update=update,
        is_latest=latest is not None and latest.id == update.id, preview=preview,
        following=await wards.following(session, admission.id), waiting=now < tell_at,
        tell_at=language.time(tell_at, zone), tell_in=language.digits(format_timedelta(tell_at - now, add_direction=True, locale=language.locale)),
        names=Names(language),
    )  # fmt: skip


@router.post("/patients/{registration_no:path}/updates/{update_id}/undo")
async def undo_update(
    registration_no: str, update_id: Annotated[int, Path(ge=1, le=2**31 - 1)], staff: CurrentStaff,
    session: DbSession, services: Services, form: CheckedForm,
):  # fmt: skip
    """Withdraw the update, as the API's DELETE does: within the correction window relatives hear
    nothing of it; after it, those told hear the corrected state."""
    admission = await _patient(session, staff, registration_no)
    update = await _own_update(session, admission, update_id, lock=True)
    await rules.retract_update(session, staff.hospital, admission, update, staff.actor, services.clock())
    await session.commit()
    return redirect(f"/staff/patients/{registration_no}/updates/{update_id}")


# --- admitting -----------------------------------------------------------------------------------

ADMISSION_FIELDS = (
    "registration_no",
    "patient_name",
    "contact_mobile",
    "alternate_mobiles",
    "age",
    "sex",
    "ward",
    "bed",
    "admitted_at",
)
FIELD_NAMES.update(
    registration_no=N_("Registration number"),
    patient_name=N_("Patient's name"),
    contact_mobile=N_("Mobile number for relatives"),
    alternate_mobiles=N_("Other mobile numbers"),
    age=N_("Age"),
    sex=N_("Sex"),
    ward=N_("Ward"),
    bed=N_("Bed"),
    admitted_at=N_("Admitted at"),
    to_hospital=N_("To which hospital"),
    at=N_("Time"),
    status=N_("Status"),
)
SEXES = (("M", N_("Male")), ("F", N_("Female")), ("O", N_("Other")))


def _admit_page(
    request: Request, staff: Staff, services: StaffServices, status_code: int = 200,
    errors: list[str] | None = None, values: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    _ = staff.language.gettext
    if values is None:
        now = services.clock().astimezone(ZoneInfo(staff.hospital.time_zone))
        only_ward = staff.account.wards[0] if len(staff.account.wards) == 1 else ""
        values = {"admitted_at": now.strftime("%Y-%m-%dT%H:%M"), "ward": only_ward}
    return render(
        request, "admit.html", status_code, title=_("Admit a patient"), errors=errors or [], values=values,
        sexes=[(code, _(label)) for code, label in SEXES], wards_allowed=staff.account.wards,
    )  # fmt: skip


@router.get("/admit")
async def admit_page(request: Request, staff: CurrentStaff, services: Services):
    return _admit_page(request, staff, services)


@router.post("/admit")
async def admit(request: Request, staff: CurrentStaff, session: DbSession, services: Services, form: CheckedForm):
    """A new admission, checked as the API's PUT checks it; a registration number already in use
    here is refused rather than overwritten."""
    values = {name: _form_text(form, name, 300).strip() for name in ADMISSION_FIELDS}
    errors: list[tuple[str, str]] = []
    registration_no = values["registration_no"]
    if not is_registration_no(registration_no):
        errors.append(("registration_no", f"String should match pattern '{REGISTRATION_NO_PATTERN}'"))
    elif await queries.find_admission(session, staff.hospital, registration_no) is not None:
        errors.append(("registration_no", staff.language.gettext("This registration number is already in use here.")))
    if not wards.may_admit_to(staff.account, values["ward"] or None):
        errors.append(("ward", staff.language.gettext("You may admit only to your own wards.")))
    body: dict[str, object] = {name: values[name] for name in ADMISSION_FIELDS[1:] if values[name]}
    if values["alternate_mobiles"]:
        body["alternate_mobiles"] = [
            number.strip() for number in re.split(r"[,;]", values["alternate_mobiles"]) if number.strip()
        ]
    try:
        data = AdmissionIn.model_validate(body).resolve(_context(services, staff))
    except ValidationError as exc:
        errors = _validation_errors(exc) + errors
    except FieldErrors as exc:
        errors = exc.errors + errors
    if errors:
        return _admit_page(request, staff, services, 422, _reasons(staff, errors), values)
    await rules.commit_one(session, staff.hospital, registration_no, data, staff.actor, SOURCE)
    return redirect(f"/staff/patients/{registration_no}")


# --- leaving: discharge, transfer, death ---------------------------------------------------------

LEAVING = {
    "discharge": AdmissionStatus.DISCHARGED,
    "transfer": AdmissionStatus.TRANSFERRED,
    "death": AdmissionStatus.DECEASED,
}
Leaving = Annotated[str, Path(pattern="^(discharge|transfer|death)$")]


def _confirm_page(
    request: Request, staff: Staff, admission: Admission, kind: str, status_code: int = 200,
    errors: list[str] | None = None, to_hospital: str = "",
) -> Response:  # fmt: skip
    _ = staff.language.gettext
    name = admission.patient_name
    question = {
        "discharge": _("Record that {name} went home?"),
        "transfer": _("Record that {name} was moved to another hospital?"),
        "death": _("Record the death of {name}?"),
    }[kind].format(name=name)
    return render(
        request, "confirm.html", status_code, title=question, question=question, kind=kind, admission=admission,
        errors=errors or [], to_hospital=to_hospital, helpline=helpline_text(staff.hospital),
    )  # fmt: skip


@router.get("/patients/{registration_no:path}/{kind:leaving}")
async def confirm_page(registration_no: str, kind: Leaving, request: Request, staff: CurrentStaff, session: DbSession):
    """The second, separate step before a discharge, a transfer or a death is recorded."""
    admission = await _patient(session, staff, registration_no)
    if admission.status != AdmissionStatus.ADMITTED:
        return redirect(f"/staff/patients/{registration_no}")
    return _confirm_page(request, staff, admission, kind)


@router.post("/patients/{registration_no:path}/{kind:leaving}")
async def record_leaving(
    registration_no: str, kind: Leaving, request: Request, staff: CurrentStaff, session: DbSession,
    services: Services, form: CheckedForm,
):  # fmt: skip
    admission = await _patient(session, staff, registration_no)
    to_hospital = _form_text(form, "to_hospital", 300).strip()
    body: dict[str, object] = {"status": LEAVING[kind].value}
    if kind == "transfer" and to_hospital:
        body["to_hospital"] = to_hospital
    try:
        data = StatusIn.model_validate(body).resolve(_context(services, staff))
    except ValidationError as exc:
        errors = _reasons(staff, _validation_errors(exc))
        return _confirm_page(request, staff, admission, kind, 422, errors, to_hospital)
    await rules.commit_one(session, staff.hospital, registration_no, data, staff.actor, SOURCE)
    return redirect(f"/staff/patients/{registration_no}")


router.add_api_route("/patients/{registration_no:path}", patient_page, methods=["GET"])
