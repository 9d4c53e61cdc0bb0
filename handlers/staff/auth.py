"""What every staff page shares: the services, who is logged in (sessions), CSRF, and rendering.

Sessions are signed cookies: the account's id, when the session began and the account's
`session_version`, with a keyed hash (SECRET_KEY) over the three. A session lasts a shift
(12 hours) and ends at once when the account's version is raised (logout, a new password, a reset,
disabling). The cookie is HttpOnly, SameSite=Lax, and Secure when the page is served over https.

Every form POST carries a CSRF token, a keyed hash of the session cookie (before login, of a
random cookie of its own), checked by `checked_form`: 403 without it.

Routes use `current_staff` (redirects to the login page, or to the new password a one-time
password calls for) or `admin_staff` (403 for ward staff), `checked_form` for a POST's fields, and
`render` for a page; templates get `csrf_token()`.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the dependencies at
# run time.
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from bot.platform.db import Database
from bot.platform.i18n import LANGUAGE_NAMES, Catalogues, Language
from bot.platform.metrics import LOGIN_FAILURE, LOGIN_LOCKED, LOGIN_SUCCESS, Metrics
from bot.platform.security import keyed_hash
from bot.platform.settings import FileConfig
from bot.staff import accounts
from bot.staff.accounts import N_
from models import Hospital
from models.staff import StaffAccount, StaffRole

SESSION_COOKIE = "ww_staff"
FORM_COOKIE = "ww_staff_form"  # the CSRF basis before login
LANGUAGE_COOKIE = "ww_staff_language"  # the language of the login page
SESSION_LIFETIME = timedelta(hours=12)
COOKIE_PATH = "/staff"
LOGIN_PATH = "/staff/login"
PASSWORD_PATH = "/staff/password"
CSRF_FIELD = "csrf"

_HERE = Path(__file__).resolve().parent
STYLESHEET = (_HERE / "static" / "staff.css").read_bytes()
# In the stylesheet's address, so that browsers may keep it for a year and still get a new one.
STYLESHEET_VERSION = hashlib.sha256(STYLESHEET).hexdigest()[:12]
_templates = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class StaffServices:
    """What the staff pages need from the composition root."""

    database: Database
    secret_key: bytes
    config: FileConfig
    catalogues: Catalogues
    clock: Callable[[], datetime]
    public_base_url: str | None = None  # https here makes every cookie Secure
    metrics: Metrics = field(default_factory=Metrics)  # counts the logins


@dataclass(frozen=True)
class Staff:
    """The staff member a request comes from."""

    account: StaffAccount
    hospital: Hospital
    language: Language

    @property
    def is_admin(self) -> bool:
        return self.account.role == StaffRole.ADMIN

    @property
    def actor(self) -> str:
        return accounts.actor(self.account, self.hospital)


class PageError(Exception):
    """Answered with the error page: `message` is an English text, shown translated."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class Redirect(Exception):
    """Answered 303 See Other to `location`: a dependency's way of sending the browser elsewhere."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def login_outcome(login: accounts.Login) -> str:
    """A login as the metrics count it: refused before the password was looked at is locked."""
    if login.account is not None:
        return LOGIN_SUCCESS
    if login.refusal in (accounts.Refusal.LOCKED, accounts.Refusal.ADDRESS_WAITS):
        return LOGIN_LOCKED
    return LOGIN_FAILURE


def staff_services(request: Request) -> StaffServices:
    return request.app.state.staff


Services = Annotated[StaffServices, Depends(staff_services)]


async def _database_session(request: Request, services: Services) -> AsyncIterator[AsyncSession]:
    """One session per request; a POST's writes wait for their turn (`Database.writing`)."""
    async with services.database.request_session(writes=request.method != "GET") as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(_database_session)]


# --- sessions ------------------------------------------------------------------------------------


def _signature(secret_key: bytes, account_id: int, issued: int, version: int) -> str:
    return keyed_hash(secret_key, f"staff-session|{account_id}|{issued}|{version}")


def session_cookie_value(secret_key: bytes, account: StaffAccount, now: datetime) -> str:
    issued = int(now.timestamp())
    signature = _signature(secret_key, account.id, issued, account.session_version)
    return f"{account.id}.{issued}.{account.session_version}.{signature}"


def _read_session(secret_key: bytes, value: str) -> tuple[int, int, int] | None:
    """(account id, issued at, version) of a cookie this service signed, else None."""
    parts = value.split(".")
    if len(parts) != 4 or not all(part.isascii() and part.isdigit() for part in parts[:3]):
        return None
    account_id, issued, version = (int(part) for part in parts[:3])
    if not hmac.compare_digest(_signature(secret_key, account_id, issued, version), parts[3]):
        return None
    return account_id, issued, version


def _secure(request: Request, services: StaffServices) -> bool:
    base = services.public_base_url or ""
    return request.url.scheme == "https" or urlsplit(base).scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax",
        secure=_secure(request, staff_services(request)),
    )  # fmt: skip


def start_session(response: Response, request: Request, account: StaffAccount) -> None:
    """Log `account` in on this browser (after a login or its own new password)."""
    services = staff_services(request)
    value = session_cookie_value(services.secret_key, account, services.clock())
    set_cookie(response, request, SESSION_COOKIE, value, max_age=int(SESSION_LIFETIME.total_seconds()))


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request, staff_services(request)),
    )


async def _logged_in(request: Request, session: AsyncSession, services: StaffServices) -> Staff | None:
    value = request.cookies.get(SESSION_COOKIE)
    read = _read_session(services.secret_key, value) if value else None
    if read is None:
        return None
    account_id, issued, version = read
    now = services.clock()
    if not now.timestamp() - SESSION_LIFETIME.total_seconds() < issued <= now.timestamp() + 60:
        return None
    account = await session.get(StaffAccount, account_id, populate_existing=True)
    if account is None or account.session_version != version or account.disabled_at is not None:
        return None
    hospital = await session.get(Hospital, account.hospital_id)
    assert hospital is not None  # a foreign key
    request.state.staff_session = value
    staff = Staff(account, hospital, services.catalogues.get(account.language))
    request.state.staff = staff
    return staff


async def _staff_even_before_a_new_password(request: Request, session: DbSession, services: Services) -> Staff:
    staff = await _logged_in(request, session, services)
    if staff is None:
        raise Redirect(LOGIN_PATH)
    return staff


async def _current_staff(
    staff: Annotated[Staff, Depends(_staff_even_before_a_new_password)],
) -> Staff:
    if staff.account.must_change_password:
        raise Redirect(PASSWORD_PATH)
    return staff


async def _admin_staff(staff: Annotated[Staff, Depends(_current_staff)]) -> Staff:
    if not staff.is_admin:
        raise PageError(403, N_("Only your hospital's admin may open this page."))
    return staff


# Logged in, any role; the login page otherwise, or the new password a one-time password calls for.
current_staff = _current_staff
CurrentStaff = Annotated[Staff, Depends(_current_staff)]
# Logged in, waiting or not for a new password: the password page itself.
StaffChangingPassword = Annotated[Staff, Depends(_staff_even_before_a_new_password)]
# The hospital's admin; 403 for ward staff.
admin_staff = _admin_staff
AdminStaff = Annotated[Staff, Depends(_admin_staff)]


# --- CSRF ----------------------------------------------------------------------------------------


def _csrf_for(secret_key: bytes, basis: str) -> str:
    return keyed_hash(secret_key, f"staff-csrf|{basis}")


def csrf_token(request: Request) -> str:
    """The token a form on this page must send back in its `csrf` field."""
    services = staff_services(request)
    basis = getattr(request.state, "staff_session", None)
    if basis is None:
        basis = request.cookies.get(FORM_COOKIE) or getattr(request.state, "new_form_cookie", None)
        if basis is None:
            basis = request.state.new_form_cookie = secrets.token_urlsafe(24)
    return _csrf_for(services.secret_key, basis)


async def _checked_form(request: Request, services: Services) -> FormData:
    """The POSTed form, once its CSRF token matches this browser's session (or, before login, its
    form cookie); 403 otherwise."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    bases = [request.cookies.get(SESSION_COOKIE), request.cookies.get(FORM_COOKIE)]
    if not isinstance(sent, str) or not any(
        basis and hmac.compare_digest(_csrf_for(services.secret_key, basis), sent) for basis in bases
    ):
        raise PageError(403, N_("This form has expired. Go back, reload the page and send it again."))
    return form


checked_form = _checked_form
CheckedForm = Annotated[FormData, Depends(_checked_form)]


# --- pages ---------------------------------------------------------------------------------------


def page_language(request: Request) -> Language:
    """The staff member's language; before login, the one chosen on the login page."""
    staff = getattr(request.state, "staff", None)
    if staff is not None:
        return staff.language
    catalogues = staff_services(request).catalogues
    return catalogues.get(request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page of `templates/`, in the staff member's language. Pages are never cached: they show
    patients, and a shared ward phone's back button must not show them after logout."""
    language = page_language(request)
    staff = getattr(request.state, "staff", None)
    html = _templates.get_template(template).render(
        _=language.gettext,
        ngettext=language.ngettext,
        language=language,
        languages=LANGUAGE_NAMES,
        staff=staff,
        csrf_token=lambda: csrf_token(request),
        stylesheet=f"{COOKIE_PATH}/static/staff.css?v={STYLESHEET_VERSION}",
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    new_form_cookie = getattr(request.state, "new_form_cookie", None)
    if new_form_cookie is not None:
        set_cookie(response, request, FORM_COOKIE, new_form_cookie)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


async def page_error_response(request: Request, exc: Exception) -> Response:
    """Registered for PageError and Redirect (`handlers.staff.install`)."""
    if isinstance(exc, Redirect):
        return redirect(exc.location)
    assert isinstance(exc, PageError)
    message = page_language(request).gettext(exc.message)
    return render(request, "error.html", exc.status_code, title=message, message=message)


SECURITY_HEADERS = {
    # Our own stylesheet and forms only; no script at all, no framing (clickjacking).
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
