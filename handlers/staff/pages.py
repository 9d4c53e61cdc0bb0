"""The ward's pages: login, the staff member's own password, the ward list, a patient (an update
in a few taps, undo), admitting a patient, and discharge, transfer and death after a confirmation.

Every write goes through `bot.intake.rules`, as the hospital API's do, audited with the staff
member as actor (`staff:<username>@<HOSPITAL>`): an update made here and the same update sent
through the API are the same rows and the same alerts.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the routes at run time.
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from bot.platform.i18n import Language
from bot.relatives.status_card import MOMENT, care_area_name, condition_name, support_name
from bot.staff import accounts, wards
from bot.staff.accounts import N_
from handlers.staff.auth import (
    LANGUAGE_COOKIE,
    LOGIN_PATH,
    STYLESHEET,
    CheckedForm,
    CurrentStaff,
    DbSession,
    Services,
    StaffChangingPassword,
    StaffServices,
    end_session,
    redirect,
    render,
    set_cookie,
    start_session,
)

router = APIRouter()

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
        request, "login.html", title="Ward Watch", username="", error=None, available=services.catalogues.codes
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
    if login.account is None:
        assert login.refusal is not None
        page_language = services.catalogues.get(language)
        message = page_language.gettext(REFUSALS[login.refusal])
        if login.until is not None:
            message = message.format(time=page_language.time(login.until, _zone(services)))
        return render(
            request, "login.html", REFUSAL_STATUS[login.refusal], title="Ward Watch", username=username,
            error=message, available=services.catalogues.codes,
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
