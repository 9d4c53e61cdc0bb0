"""The admin's pages: staff accounts (add, reset a password, disable, enable again), the hospital (what relatives
are shown, its helpline, a new API key), the CSV upload (a preview of every row, then "apply"),
and who was told (today's figures, compliance per ward, one patient's followers and alerts).

Every page needs the hospital's admin (`AdminStaff`: 403 for ward staff). A password or an API
key is shown once, in the answer to the POST that made it, never cached (`render`), never stored.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the routes at run time.
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from starlette.datastructures import UploadFile

from bot.intake import csv_import, rules
from bot.intake.schemas import REGISTRATION_NO_MAX_LENGTH, REGISTRATION_NO_PATTERN
from bot.outbox import CORRECTION, NEW_ADMISSION
from bot.platform.i18n import Language
from bot.platform.phones import national
from bot.staff import accounts, admin, reports, wards
from bot.staff.accounts import N_
from bot.staff.reports import AlertState
from handlers.staff.auth import (
    AdminStaff,
    CheckedForm,
    DbSession,
    PageError,
    Services,
    Staff,
    checked_form,
    redirect,
    render,
)

router = APIRouter(prefix="/admin")
# The CSV upload alone may be larger than the server's limit (server.max_body_bytes): it weighs its
# body itself, by the length the request declares, against server.upload_max_bytes, so that a file
# too large is answered with the upload page naming the limit. Starlette's own limit would answer a
# bare "Content Too Large" instead; `handlers.staff.install` includes this router without it.
upload_router = APIRouter(prefix="/admin")
MIB = 1024 * 1024  # the page says "MB", as phones and Windows name these units
# Rows of a preview listed one by one, problems first; the summary counts them all. Keeps the page
# light on a phone whatever the file.
ROWS_LISTED = 100
ALERTS_LISTED = 50
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
RegistrationNo = Annotated[str, Path(pattern=REGISTRATION_NO_PATTERN, max_length=REGISTRATION_NO_MAX_LENGTH)]
CHANNEL_NAMES = {"telegram": "Telegram", "whatsapp": "WhatsApp", "console": "Console"}
_REGISTRATION_NO = re.compile(REGISTRATION_NO_PATTERN)


def _text(form, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _refusal(staff: Staff, refused: accounts.StaffError) -> str:
    return staff.language.gettext(refused.message).format(**refused.values)


@dataclass(frozen=True)
class LocalTimes:
    """Times and numbers as this hospital's staff read them, in their language; `now` is the page's."""

    language: Language
    zone: ZoneInfo
    now: datetime

    def time(self, moment: datetime) -> str:
        return self.language.time(moment, self.zone)

    def date(self, moment: datetime) -> str:
        return self.language.date(moment, self.zone)

    def number(self, value: float) -> str:
        return self.language.number(value)


def _local_times(staff: Staff, services) -> LocalTimes:
    return LocalTimes(staff.language, ZoneInfo(staff.hospital.time_zone), services.clock())


# --- staff accounts ------------------------------------------------------------------------------


def _account_state(staff: Staff, account, now: datetime) -> str:
    _ = staff.language.gettext
    if account.disabled_at is not None:
        return _("Disabled")
    if account.locked_until is not None and account.locked_until > now:
        return _("Locked until {time}").format(
            time=staff.language.time(account.locked_until, ZoneInfo(staff.hospital.time_zone))
        )
    if account.must_change_password:
        return _("Has not chosen a password yet")
    return _("Active")


async def _staff_page(
    request: Request, staff: Staff, session, services, status_code: int = 200, error: str | None = None, form=None
):
    now = services.clock()
    listed = await admin.staff_of(session, staff.hospital)
    return render(
        request, "admin_staff.html", status_code, title=staff.language.gettext("Staff accounts"),
        accounts=[(account, _account_state(staff, account, now)) for account in listed],
        known_wards=await admin.known_wards(session, staff.hospital), error=error, form=form or {},
    )  # fmt: skip


@router.get("/staff")
async def staff_page(request: Request, staff: AdminStaff, session: DbSession, services: Services):
    return await _staff_page(request, staff, session, services)


@router.post("/staff")
async def add_staff(request: Request, staff: AdminStaff, session: DbSession, services: Services, form: CheckedForm):
    username, role = _text(form, "username", 64), _text(form, "role", 8)
    chosen = [ward for ward in form.getlist("wards") if isinstance(ward, str)]
    other = _text(form, "other_ward", 100)
    fields = {"username": username, "role": role, "wards": chosen, "other": other}
    try:
        issued = await accounts.add_account(
            session, staff.hospital, username, role, [*chosen, other] if other else chosen, staff.actor
        )
    except accounts.StaffError as refused:  # refused before anything was written
        return await _staff_page(request, staff, session, services, 422, _refusal(staff, refused), fields)
    await session.commit()
    return _one_time_password(request, staff, issued.account.username, issued.password, created=True)


def _one_time_password(request: Request, staff: Staff, username: str, password: str, created: bool):
    _ = staff.language.gettext
    return render(
        request, "admin_password.html", title=_("Account created") if created else _("Password reset"),
        username=username, password=password,
    )  # fmt: skip


async def _account(session, staff: Staff, account_id: int):
    account = await admin.account_of(session, staff.hospital, account_id)
    if account is None:
        raise PageError(404, N_("There is no such account at your hospital."))
    return account


@router.get("/staff/{account_id}")
async def account_page(
    request: Request, staff: AdminStaff, session: DbSession, services: Services, account_id: RowId,
    done: Annotated[str, Query(max_length=16)] = "",
):  # fmt: skip
    account = await _account(session, staff, account_id)
    return render(
        request, "admin_account.html", title=account.username, account=account, yourself=account.id == staff.account.id,
        state=_account_state(staff, account, services.clock()), done=done,
    )  # fmt: skip


def _not_yourself(staff: Staff, account) -> None:
    if account.id == staff.account.id:
        raise PageError(403, N_("Not on your own account: another admin can do it."))


@router.post("/staff/{account_id}/reset")
async def reset_password(request: Request, staff: AdminStaff, session: DbSession, form: CheckedForm, account_id: RowId):
    account = await _account(session, staff, account_id)
    _not_yourself(staff, account)
    password = await accounts.reset_password(session, account, staff.hospital, staff.actor)
    await session.commit()
    return _one_time_password(request, staff, account.username, password, created=False)


@router.post("/staff/{account_id}/disable")
async def disable_account(
    staff: AdminStaff, session: DbSession, services: Services, form: CheckedForm, account_id: RowId
):
    account = await _account(session, staff, account_id)
    _not_yourself(staff, account)
    if account.disabled_at is None:
        await accounts.disable_account(session, account, staff.hospital, staff.actor, services.clock())
        await session.commit()
    return redirect(f"/staff/admin/staff/{account.id}?done=disabled")


@router.post("/staff/{account_id}/enable")
async def enable_account(staff: AdminStaff, session: DbSession, form: CheckedForm, account_id: RowId):
    account = await _account(session, staff, account_id)
    if account.disabled_at is not None:
        await accounts.enable_account(session, account, staff.hospital, staff.actor)
        await session.commit()
    return redirect(f"/staff/admin/staff/{account.id}?done=enabled")


# --- the hospital --------------------------------------------------------------------------------


def _hospital_page(
    request: Request, staff: Staff, services, status_code: int = 200, saved: str = "", error: str | None = None,
    helpline: str | None = None,
):  # fmt: skip
    hospital = staff.hospital
    return render(
        request, "admin_hospital.html", status_code, title=hospital.name, hospital=hospital, saved=saved,
        error=error, helpline=national(hospital.helpline) if helpline is None else helpline,
        clock=_local_times(staff, services),
    )  # fmt: skip


@router.get("/hospital")
async def hospital_page(
    request: Request, staff: AdminStaff, services: Services, saved: Annotated[str, Query(max_length=16)] = ""
):
    return _hospital_page(request, staff, services, saved=saved)


@router.post("/hospital/disclosure")
async def set_disclosure(staff: AdminStaff, session: DbSession, form: CheckedForm):
    shown = set(form.getlist("show"))
    await admin.set_disclosure(session, staff.hospital, "vitals" in shown, "remarks" in shown, staff.actor)
    await session.commit()
    return redirect("/staff/admin/hospital?saved=disclosure")


@router.post("/hospital/helpline")
async def set_helpline(request: Request, staff: AdminStaff, session: DbSession, services: Services, form: CheckedForm):
    typed = _text(form, "helpline", 40)
    try:
        await admin.set_helpline(session, staff.hospital, typed, services.config.phone_region, staff.actor)
    except accounts.StaffError as refused:  # refused before anything was written
        return _hospital_page(request, staff, services, 422, error=_refusal(staff, refused), helpline=typed)
    await session.commit()
    return redirect("/staff/admin/hospital?saved=helpline")


@router.post("/hospital/key")
async def new_api_key(request: Request, staff: AdminStaff, session: DbSession, services: Services, form: CheckedForm):
    key = await admin.new_api_key(session, services.secret_key, staff.hospital, staff.actor)
    await session.commit()
    return render(request, "admin_key.html", title=staff.language.gettext("New API key"), key=key)


# --- the CSV upload ------------------------------------------------------------------------------


def _upload_page(request: Request, staff: Staff, services, status_code: int = 200, error: str | None = None):
    return render(
        request, "admin_upload.html", status_code, title=staff.language.gettext("Upload a CSV file"), error=error,
        largest=staff.language.number(services.config.server.upload_max_bytes / MIB),
    )  # fmt: skip


@router.get("/upload")
async def upload_page(request: Request, staff: AdminStaff, services: Services):
    return _upload_page(request, staff, services)


def _row_text(language: Language, row: csv_import.RowResult) -> str:
    _ = language.gettext
    if row.outcome is None:
        return "; ".join(row.problems)  # the import's own words, as `python -m bot import` prints them
    parts = [
        {
            rules.Outcome.CREATED: _("new admission"),
            rules.Outcome.UPDATED: _("details changed"),
            rules.Outcome.UNCHANGED: _("details unchanged"),
        }[row.outcome.admission]
    ]
    if row.outcome.update == rules.Outcome.CREATED:
        parts.append(_("condition recorded"))
    elif row.outcome.update == rules.Outcome.UNCHANGED:
        parts.append(_("condition already recorded"))
    if row.outcome.status == rules.Outcome.UPDATED:
        parts.append(_("status changed"))
    # What was left out of a kept row, in the import's own words as `python -m bot import` prints them.
    return "; ".join([", ".join(parts), *row.warnings])


async def _import_page(
    request: Request, staff: Staff, session, report: csv_import.ImportReport, upload_id: int | None = None
):
    """The preview of an import (with `upload_id`, to apply it) or what it did."""
    # The import commits or rolls back itself; a rollback leaves the staff member's rows unread.
    await session.refresh(staff.account)
    await session.refresh(staff.hospital)
    _ = staff.language.gettext
    problems_first = sorted(report.lines, key=lambda row: (row.outcome is not None, row.line))
    title = _("What this file would do") if report.dry_run else _("What the import did")
    return render(
        request, "admin_import.html", 422 if report.file_error else 200, title=title, report=report,
        rows=[(row, _row_text(staff.language, row)) for row in problems_first[:ROWS_LISTED]],
        not_listed=max(0, len(report.lines) - ROWS_LISTED), upload_id=upload_id, number=staff.language.number,
    )  # fmt: skip


@upload_router.post("/upload")
async def preview_upload(request: Request, staff: AdminStaff, session: DbSession, services: Services):
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():  # every browser declares it; without it the size is known only once read
        raise PageError(411, N_("The upload did not say how large it is. Upload the file again from this page."))
    if int(declared) > services.config.server.upload_max_bytes:
        largest = staff.language.number(services.config.server.upload_max_bytes / MIB)
        error = staff.language.gettext(
            "This file is larger than {size} MB, the most an upload may be. Split it into smaller files."
        ).format(size=largest)
        return _upload_page(request, staff, services, 413, error)
    form = await checked_form(request, services)
    file = form.get("file")
    content = await file.read() if isinstance(file, UploadFile) else b""
    if not content:
        return _upload_page(request, staff, services, 422, staff.language.gettext("Choose a CSV file first."))
    assert isinstance(file, UploadFile)
    name = file.filename or "upload.csv"
    now = services.clock()
    upload_id = (await admin.keep_upload(session, staff.account, name, content, now)).id
    await session.commit()
    report = await csv_import.import_content(
        session, content, name, staff.hospital.code, services.config.phone_region, now, dry_run=True, actor=staff.actor
    )
    return await _import_page(request, staff, session, report, None if report.file_error else upload_id)


@router.post("/upload/{upload_id}/apply")
async def apply_upload(
    request: Request, staff: AdminStaff, session: DbSession, services: Services, form: CheckedForm,
    upload_id: RowId,
):  # fmt: skip
    now = services.clock()
    taken = await admin.take_upload(session, staff.account, upload_id, now)
    if taken is None:
        raise PageError(404, N_("This upload was applied already, or is more than a day old. Upload the file again."))
    name, content = taken
    report = await csv_import.import_content(
        session, content, name, staff.hospital.code, services.config.phone_region, now, actor=staff.actor
    )
    return await _import_page(request, staff, session, report)


# --- who was told --------------------------------------------------------------------------------


@router.get("/today")
async def today_page(request: Request, staff: AdminStaff, session: DbSession, services: Services):
    now = services.clock()
    limits = services.config.overdue_hours
    figures = await reports.today(session, staff.hospital, now)
    compliance = await reports.compliance(session, staff.hospital, now, limits)
    return render(
        request, "admin_today.html", title=staff.language.gettext("Today"), figures=figures, compliance=compliance,
        days=reports.COMPLIANCE_DAYS, limits=limits, clock=_local_times(staff, services),
    )  # fmt: skip


@router.get("/delivery")
async def find_delivery(staff: AdminStaff, reg: Annotated[str, Query(max_length=64)] = ""):
    """The search form of the day's page: a registration number, to that patient's alerts."""
    typed = reg.strip()
    if not _REGISTRATION_NO.match(typed):
        raise PageError(404, N_("There is no such patient here."))
    return redirect(f"/staff/admin/patients/{typed}")


def _alert_text(language: Language, clock: LocalTimes, alert: reports.AlertLine) -> str:
    _ = language.gettext
    state = alert.state
    at = clock.time(alert.at) if alert.at else ""
    if state == AlertState.CORRECTION_WINDOW:
        return _("Waiting for the correction window; goes at {time}").format(time=at)
    if state == AlertState.HELD:
        return _("Held until {time}: the relative's quiet hours, or the app asked us to wait").format(time=at)
    if state == AlertState.DUE:
        return _("Due now, waiting for its turn")
    if state == AlertState.RETRYING:
        return _("Failed ({error}); trying again at {time}").format(error=alert.error or "", time=at)
    if state == AlertState.SENT:
        reported = {"delivered": _("delivered"), "read": _("read")}.get(alert.delivery or "", alert.delivery)
        sent = _("Sent at {time}").format(time=at)
        return f"{sent} · {reported}" if reported else sent
    if state == AlertState.DEAD:
        return _("Failed for good: {error}").format(error=alert.error or "")
    return _("Not sent: nothing left to tell, or nobody to tell it to")


def _alert_reader(language: Language, alert: reports.AlertLine) -> str:
    """Who the alert went to: the number a follower verified, masked, or, for a chat that does not
    follow the patient, why it was told anyway."""
    _ = language.gettext
    if alert.number:
        return alert.number
    if alert.kinds == (NEW_ADMISSION,):  # its chat confirmed the number before this admission
        return _("A chat told of a new admission under its number; not yet verified for this patient")
    return _("A chat that no longer follows")


def _follower_text(language: Language, follower: reports.Follower) -> str:
    _ = language.gettext
    if not follower.reachable:
        return _("Unreachable: blocked us or opted out")
    if not follower.current:
        return _("No longer verified for this patient")
    if not follower.alerts:
        return _("Stopped the alerts")
    return _("Told of every change")


@router.get("/patients/{registration_no:path}")  # path: the number may hold '/'
async def delivery_page(
    request: Request, staff: AdminStaff, session: DbSession, services: Services, registration_no: RegistrationNo
):
    admission = await wards.find_patient(session, staff.account, registration_no)
    if admission is None:
        raise PageError(404, N_("There is no such patient here."))
    grace = timedelta(seconds=services.config.notifications.grace_seconds)
    clock = _local_times(staff, services)
    delivery = await reports.patient_delivery(session, admission, clock.now, grace)
    language = staff.language
    _ = language.gettext
    kinds = {
        "condition": _("Condition update"),
        "status": _("Admission status"),
        "digest": _("Daily summary"),
        CORRECTION: _("Correction"),
        NEW_ADMISSION: _("New admission notice"),
    }
    return render(
        request, "admin_delivery.html", title=admission.patient_name, admission=admission, clock=clock,
        followers=[(CHANNEL_NAMES.get(f.channel, f.channel), f, _follower_text(language, f))
                   for f in delivery.followers],
        alerts=[(CHANNEL_NAMES.get(a.channel, a.channel), a, _alert_reader(language, a),
                 ", ".join(kinds.get(kind, kind) for kind in a.kinds), _alert_text(language, clock, a))
                for a in delivery.alerts[:ALERTS_LISTED]],
        not_listed=max(0, len(delivery.alerts) - ALERTS_LISTED),
    )  # fmt: skip
