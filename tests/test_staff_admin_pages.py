"""The admin's pages over HTTP: staff accounts, the hospital's disclosure, helpline and API key, the
CSV upload (preview, then apply), and who was told. An admin's browser is an httpx client of the
real web app that keeps its cookies and sends each form's CSRF token (`tests.staff_support`); the
relatives are console chats and the dispatcher is the real one (`tests.test_staff_admin_reports`),
on the test's clock. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from sqlmodel import col, select

from bot.app import build_web_app
from bot.intake.hospitals import get_hospital
from bot.staff import accounts
from handlers.staff.admin import ROWS_LISTED
from models import Admission, AuditEvent, ConditionUpdate, Hospital
from models.staff import StaffAccount
from models.uploads import StaffUpload
from tests.conftest import auth
from tests.staff_support import NEW_PASSWORD, StaffBrowser, add_staff, cheap_argon2, csrf_of  # noqa: F401
from tests.test_staff_admin_reports import CRITICAL_ICU, MOBILE, MODERATE, World, world  # noqa: F401

ADMIN_PAGES = ["/staff/admin/staff", "/staff/admin/hospital", "/staff/admin/upload", "/staff/admin/today"]
ONE_TIME_PASSWORD = re.compile(r'<p class="secret">([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</p>')
API_KEY = re.compile(r'<p class="secret">(MRB\.[A-Za-z0-9_-]+)</p>')
HEADER = "registration_no,patient_name,contact_mobile,ward,condition,care_area,respiratory_support,spo2\n"


def browser_for(world: World, address: str = "10.0.0.7") -> StaffBrowser:
    transport = httpx.ASGITransport(app=build_web_app(world.bot), client=(address, 50000))
    return StaffBrowser(httpx.AsyncClient(transport=transport, base_url="http://testserver"))


@pytest.fixture
async def admin(world):
    """Anita, MRB's admin, logged in with her own password."""
    browser = browser_for(world)
    await browser.log_in_for_good("anita", await add_staff(world.bot, "anita", role="admin"))
    yield browser
    await browser.http.aclose()


async def staff_browser(world: World, username: str, password: str) -> StaffBrowser:
    browser = browser_for(world, address="10.0.0.8")
    await browser.log_in_for_good(username, password)
    return browser


async def rows(world: World, model, *where) -> list:
    async with world.bot.database.session() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


async def hospital(world: World, code: str = "MRB") -> Hospital:
    async with world.bot.database.session() as session:
        found = await get_hospital(session, code)
        assert found is not None
        return found


def plain(page: httpx.Response) -> str:
    """The page's text as a reader sees it: no tags, one space between words."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page.text)))


def secret(page: httpx.Response, pattern: re.Pattern) -> str:
    found = pattern.search(page.text)
    assert found, page.text
    return found.group(1)


# --- only the admin -------------------------------------------------------------------------------


async def test_ward_staff_get_403_on_every_admin_page_and_nobody_logged_in_goes_to_login(world):
    ward = await staff_browser(world, "rina", await add_staff(world.bot, "rina"))
    for path in ADMIN_PAGES:
        assert (await ward.get(path)).status_code == 403, path
    page = await ward.get("/staff/")
    refused = await ward.http.post("/staff/admin/hospital/key", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403
    assert (await world.api.get("/api/v1/admissions/R-1", headers=auth(world.keys["MRB"]))).status_code == 404
    await ward.http.aclose()

    stranger = browser_for(world)
    for path in ADMIN_PAGES:
        answer = await stranger.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/staff/login"), path
    await stranger.http.aclose()


async def test_the_admin_sees_the_admin_pages_in_the_menu_and_ward_staff_do_not(world, admin):
    menu = (await admin.get("/staff/")).text
    for path in ADMIN_PAGES:
        assert f'href="{path}"' in menu
    ward = await staff_browser(world, "rina", await add_staff(world.bot, "rina"))
    assert "/staff/admin/" not in (await ward.get("/staff/")).text
    await ward.http.aclose()


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(world, admin):
    await add_staff(world.bot, "rina")
    (rina,) = await rows(world, StaffAccount, StaffAccount.username == "rina")
    for action, data in (
        (f"/staff/admin/staff/{rina.id}/disable", {}),
        ("/staff/admin/hospital/helpline", {"helpline": "033 2473 1111"}),
        ("/staff/admin/hospital/key", {}),
        ("/staff/admin/staff", {"username": "mallory", "role": "admin"}),
    ):
        assert (await admin.http.post(action, data=data)).status_code == 403, action
        assert (await admin.http.post(action, data={**data, "csrf": "forged"})).status_code == 403, action
    (rina,) = await rows(world, StaffAccount, StaffAccount.username == "rina")
    assert rina.disabled_at is None
    assert (await hospital(world)).helpline == "+913324732222"
    assert [account.username for account in await rows(world, StaffAccount)] == ["anita", "rina"]


# --- staff accounts -----------------------------------------------------------------------------------


async def test_an_admin_adds_an_account_whose_one_time_password_must_be_changed_at_first_login(world, admin):
    await world.admit("R-1", ward="Medicine 2")
    page = await admin.get("/staff/admin/staff")
    assert 'value="Medicine 2"' in page.text  # a ward patients are in, to tick

    added = await admin.submit(
        "/staff/admin/staff", "/staff/admin/staff", username="Rina.Das", role="ward", wards="Medicine 2",
        other_ward="Covid Ward 2",
    )  # fmt: skip
    assert added.status_code == 200
    assert "rina.das" in added.text and "It is not shown again." in added.text
    password = secret(added, ONE_TIME_PASSWORD)

    (account,) = await rows(world, StaffAccount, StaffAccount.username == "rina.das")
    assert (account.role, account.wards, account.must_change_password) == ("ward", ["Medicine 2", "Covid Ward 2"], True)
    events = await rows(world, AuditEvent, AuditEvent.action == "staff.added")
    assert [(event.actor, event.detail["username"]) for event in events] == [
        ("cli", "anita"),
        ("staff:anita@MRB", "rina.das"),
    ]
    rina = browser_for(world, address="10.0.0.8")
    first = await rina.log_in("rina.das", password)
    assert (first.status_code, first.headers["location"]) == (303, "/staff/password")
    listed = (await admin.get("/staff/admin/staff")).text
    assert "rina.das" in listed and "Has not chosen a password yet" in listed
    await rina.http.aclose()


async def test_a_refused_account_is_explained_and_nothing_is_added(world, admin):
    await add_staff(world.bot, "rina")
    for username, role, reason in (
        ("rina", "ward", "The username rina is taken."),
        ("r", "ward", "A username has 3 to 64 characters"),
        ("mina", "superuser", "The role must be ward or admin."),
    ):
        refused = await admin.submit("/staff/admin/staff", "/staff/admin/staff", username=username, role=role)
        assert refused.status_code == 422 and reason in refused.text, reason
        assert f'value="{username}"' in refused.text  # what was typed stays in the form
    assert [account.username for account in await rows(world, StaffAccount)] == ["anita", "rina"]


async def rina_at_work(world):
    """Rina, ward staff, logged in, and her account's row."""
    ward = await staff_browser(world, "rina", await add_staff(world.bot, "rina"))
    (rina,) = await rows(world, StaffAccount, StaffAccount.username == "rina")
    return ward, rina


async def on_account(admin, account, action: str):
    """The admin's second tap on an account's page: "reset", "disable" or "enable"."""
    return await admin.submit(f"/staff/admin/staff/{account.id}", f"/staff/admin/staff/{account.id}/{action}")


async def test_a_reset_gives_a_new_one_time_password_and_ends_the_accounts_sessions(world, admin):
    ward, rina = await rina_at_work(world)

    reset = await on_account(admin, rina, "reset")
    assert reset.status_code == 200
    password = secret(reset, ONE_TIME_PASSWORD)

    assert (await ward.get("/staff/")).headers["location"] == "/staff/login"
    assert (await ward.log_in("rina", NEW_PASSWORD)).status_code == 401
    assert (await ward.log_in("rina", password)).headers["location"] == "/staff/password"
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "staff.password_reset")
    assert (event.actor, event.detail) == ("staff:anita@MRB", {"username": "rina"})
    await ward.http.aclose()


async def test_a_disabled_account_cannot_log_in_and_its_sessions_end(world, admin):
    ward, rina = await rina_at_work(world)

    disabled = await on_account(admin, rina, "disable")
    assert (disabled.status_code, disabled.headers["location"]) == (303, f"/staff/admin/staff/{rina.id}?done=disabled")
    page = await admin.http.get(disabled.headers["location"])
    assert "The account is disabled" in page.text and "/disable" not in page.text

    assert (await ward.get("/staff/")).headers["location"] == "/staff/login"
    assert (await ward.log_in("rina", NEW_PASSWORD)).status_code == 403
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "staff.disabled")
    assert event.actor == "staff:anita@MRB"
    await ward.http.aclose()


async def test_a_disabled_account_enabled_again_logs_in_with_its_own_password(world, admin):
    ward, rina = await rina_at_work(world)
    await on_account(admin, rina, "disable")
    assert (await ward.log_in("rina", NEW_PASSWORD)).status_code == 403

    page = await admin.get(f"/staff/admin/staff/{rina.id}")
    assert "Enable the account again" in page.text and "/reset" not in page.text
    forged = await admin.http.post(f"/staff/admin/staff/{rina.id}/enable", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert (await ward.log_in("rina", NEW_PASSWORD)).status_code == 403

    enabled = await on_account(admin, rina, "enable")
    assert (enabled.status_code, enabled.headers["location"]) == (303, f"/staff/admin/staff/{rina.id}?done=enabled")
    page = await admin.http.get(enabled.headers["location"])
    assert "The account is enabled again" in page.text and "Active" in page.text and "/disable" in page.text
    assert "rina" in (await admin.get("/staff/admin/staff")).text

    logged_in = await ward.log_in("rina", NEW_PASSWORD)
    assert (logged_in.status_code, logged_in.headers["location"]) == (303, "/staff/")
    assert (await ward.get("/staff/")).status_code == 200
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "staff.enabled")
    assert (event.actor, event.detail) == ("staff:anita@MRB", {"username": "rina"})
    await ward.http.aclose()


async def test_enabling_again_keeps_the_sessions_the_disable_ended_and_a_lock_from_wrong_passwords(world, admin):
    ward, rina = await rina_at_work(world)
    await on_account(admin, rina, "disable")
    guesser = browser_for(world, address="10.0.0.66")
    for _ in range(5):
        await guesser.log_in("rina", "not-her-password")
    await guesser.http.aclose()

    await on_account(admin, rina, "enable")
    assert (await ward.get("/staff/")).headers["location"] == "/staff/login"
    assert "Locked until" in (await admin.get(f"/staff/admin/staff/{rina.id}")).text
    locked = await ward.log_in("rina", NEW_PASSWORD)
    assert locked.status_code == 403 and "this account is locked until" in locked.text
    await ward.http.aclose()


async def test_another_hospitals_disabled_account_cannot_be_enabled(world, admin):
    await add_staff(world.bot, "kamal", hospital="MCK")
    (kamal,) = await rows(world, StaffAccount, StaffAccount.username == "kamal")
    async with world.bot.database.session() as session:
        account = await session.get(StaffAccount, kamal.id)
        assert account is not None
        await accounts.disable_account(session, account, await hospital(world, "MCK"), "cli", world.clock.now)
        await session.commit()
    page = await admin.get("/staff/admin/staff")
    refused = await admin.http.post(f"/staff/admin/staff/{kamal.id}/enable", data={"csrf": csrf_of(page)})
    assert refused.status_code == 404 and "There is no such account at your hospital." in refused.text
    (kamal,) = await rows(world, StaffAccount, StaffAccount.username == "kamal")
    assert kamal.disabled_at is not None


async def test_the_admin_cannot_reset_or_disable_their_own_account(world, admin):
    (anita,) = await rows(world, StaffAccount, StaffAccount.username == "anita")
    page = await admin.get(f"/staff/admin/staff/{anita.id}")
    assert "This is your own account." in page.text and "/reset" not in page.text
    for action in ("reset", "disable"):
        refused = await admin.http.post(f"/staff/admin/staff/{anita.id}/{action}", data={"csrf": csrf_of(page)})
        assert refused.status_code == 403
    (anita,) = await rows(world, StaffAccount, StaffAccount.username == "anita")
    assert anita.disabled_at is None and not anita.must_change_password


async def test_another_hospitals_account_is_not_found(world, admin):
    await add_staff(world.bot, "kamal", hospital="MCK")
    (kamal,) = await rows(world, StaffAccount, StaffAccount.username == "kamal")
    assert "kamal" not in (await admin.get("/staff/admin/staff")).text
    assert (await admin.get(f"/staff/admin/staff/{kamal.id}")).status_code == 404
    page = await admin.get("/staff/admin/staff")
    for action in ("reset", "disable"):
        refused = await admin.http.post(f"/staff/admin/staff/{kamal.id}/{action}", data={"csrf": csrf_of(page)})
        assert refused.status_code == 404
    (kamal,) = await rows(world, StaffAccount, StaffAccount.username == "kamal")
    assert kamal.disabled_at is None


# --- the hospital -------------------------------------------------------------------------------------


async def test_what_relatives_are_shown_changes_their_card(world, admin):
    await world.admit()
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU, spo2=89, remarks="On 6 L/min oxygen")
    relative = await world.relative("son", "98300 12345", MOBILE)
    card = await relative.say("/status")
    assert "SpO2 89%" in card and "On 6 L/min oxygen" not in card

    saved = await admin.submit("/staff/admin/hospital", "/staff/admin/hospital/disclosure", show="remarks")
    assert (saved.status_code, saved.headers["location"]) == (303, "/staff/admin/hospital?saved=disclosure")
    page = await admin.http.get(saved.headers["location"])
    assert "Saved." in page.text
    assert 'value="remarks" checked' in page.text and 'value="vitals" checked' not in page.text

    card = await relative.say("/status")
    assert "SpO2" not in card and "Doctor's note: On 6 L/min oxygen" in card
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "hospital.disclosure_changed")
    assert (event.actor, event.detail) == ("staff:anita@MRB", {"show_vitals": False, "show_remarks": True})


async def test_the_helpline_is_checked_as_the_command_checks_it(world, admin):
    refused = await admin.submit("/staff/admin/hospital", "/staff/admin/hospital/helpline", helpline="call us")
    assert refused.status_code == 422 and "The helpline is not a phone number" in refused.text
    assert 'value="call us"' in refused.text
    assert (await hospital(world)).helpline == "+913324732222"

    saved = await admin.submit("/staff/admin/hospital", "/staff/admin/hospital/helpline", helpline="033-2473-1111")
    assert saved.status_code == 303
    assert (await hospital(world)).helpline == "+913324731111"
    assert 'value="033 2473 1111"' in (await admin.get("/staff/admin/hospital")).text
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "hospital.helpline_changed")
    assert event.actor == "staff:anita@MRB"


async def test_a_new_api_key_is_shown_once_and_the_old_one_stops_at_once(world, admin):
    old = world.keys["MRB"]
    issued = await admin.submit("/staff/admin/hospital", "/staff/admin/hospital/key")
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
    key = secret(issued, API_KEY)

    assert (await world.api.get("/api/v1/admissions/R-1", headers=auth(old))).status_code == 401
    assert (await world.api.get("/api/v1/admissions/R-1", headers=auth(key))).status_code == 404
    assert key not in (await admin.get("/staff/admin/hospital")).text
    (event,) = await rows(world, AuditEvent, AuditEvent.action == "hospital.key_rotated")
    assert event.actor == "staff:anita@MRB"


# --- the CSV upload ----------------------------------------------------------------------------------


async def upload(admin: StaffBrowser, content: bytes, name: str = "today.csv") -> httpx.Response:
    page = await admin.get("/staff/admin/upload")
    return await admin.http.post(
        "/staff/admin/upload", data={"csrf": csrf_of(page)}, files={"file": (name, content, "text/csv")}
    )


async def apply(admin: StaffBrowser, preview: httpx.Response) -> httpx.Response:
    action = re.search(r'action="(/staff/admin/upload/\d+/apply)"', preview.text)
    assert action, preview.text
    return await admin.http.post(action.group(1), data={"csrf": csrf_of(preview)})


GOOD_AND_BAD = (
    HEADER
    + "R-1,Ratan Das,098300 12345,Medicine 2,critical,icu,oxygen,89\n"
    + "R-2,Mina Das,12345,Medicine 2,stable,ward,none,98\n"
    + "R-3,Asha Roy,098300 33333,Medicine 2,stable,ward,none,101\n"
    + "R-4,Karim Sk,098300 44444,Medicine 2,moderate,ward,oxygen,94\n"
).encode()


async def test_an_upload_is_previewed_row_by_row_and_saves_nothing_until_applied(world, admin):
    await world.admit("R-4", patient_name="Karim Sk", contact_mobile="098300 44444", ward="Medicine 2")

    preview = await upload(admin, GOOD_AND_BAD)
    assert preview.status_code == 200
    text = plain(preview)
    # Problems first, each with its line, registration number, patient's name and the import's reasons.
    assert (
        text.index("3 R-2 Mina Das contact_mobile")
        < text.index("4 R-3 Asha Roy spo2")
        < text.index("2 R-1 Ratan Das new admission")
    )
    assert '4 R-3 Asha Roy spo2: must be at most 100, not "101"' in text
    assert "2 R-1 Ratan Das new admission, condition recorded" in text
    assert "5 R-4 Karim Sk details unchanged, condition recorded" in text
    assert "Rows rejected 2" in text
    assert await rows(world, Admission, Admission.registration_no == "R-1") == []
    assert await rows(world, ConditionUpdate) == []

    applied = await apply(admin, preview)
    assert applied.status_code == 200 and "What the import did" in applied.text
    assert [admission.registration_no for admission in await rows(world, Admission)] == ["R-4", "R-1"]
    assert len(await rows(world, ConditionUpdate)) == 2
    actors = {event.actor for event in await rows(world, AuditEvent, col(AuditEvent.admission_id).is_not(None))}
    assert actors == {"api:MRB", "staff:anita@MRB"}
    assert await rows(world, StaffUpload) == []  # the file is not kept

    again = await apply(admin, preview)
    assert again.status_code == 404 and "Upload the file again" in again.text
    assert len(await rows(world, ConditionUpdate)) == 2


async def test_an_uploaded_change_tells_relatives_as_the_api_would(world, admin):
    await world.admit("R-1", ward="Medicine 2")
    await world.record("R-1", "MRB", world.clock.now - timedelta(hours=1), **MODERATE)
    await world.relative("son", "98300 12345", MOBILE)

    await apply(admin, await upload(admin, GOOD_AND_BAD))
    await world.dispatch()
    alert = world.shown[-1]
    assert "Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit), now on oxygen" in alert


async def test_a_file_that_cannot_be_imported_says_why_and_offers_no_apply(world, admin):
    refused = await upload(admin, b"registration_no;patient_name;contact_mobile\nR-1;A;098300 12345\n")
    assert refused.status_code == 422
    assert "the columns are separated by ';'" in plain(refused) and "/apply" not in refused.text

    latin1 = await upload(admin, (HEADER + "R-1,Sen Gupta Ä,098300 12345,W,stable,ward,none,98\n").encode("latin-1"))
    assert latin1.status_code == 422 and "is not UTF-8" in latin1.text

    nothing = await admin.http.post(
        "/staff/admin/upload", data={"csrf": csrf_of(await admin.get("/staff/admin/upload"))}
    )
    assert nothing.status_code == 422 and "Choose a CSV file first." in nothing.text


async def test_an_upload_may_be_larger_than_an_api_body_but_not_without_limit(world, admin):
    limit = world.bot.settings.config.server.max_body_bytes
    line = "R-{},Patient {},098300 {:05d},Medicine 2,stable,ward,none,98\n"
    big = HEADER + "".join(line.format(n, n, n) for n in range(1, 8000))
    assert len(big) > limit
    preview = await upload(admin, big.encode())
    assert preview.status_code == 200 and "Rows read 7,999" in plain(preview)
    assert len(preview.content) < 50_000  # the rows beyond the first ROWS_LISTED are counted, not listed
    assert preview.text.count("<tr><td>") == ROWS_LISTED

    too_big = await upload(admin, b"x" * (8 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and "This file is larger than 8 MB" in plain(too_big)


def with_upload_limit(world: World, limit: int) -> None:
    """The web apps built from now on take uploads of at most `limit` bytes (server.upload_max_bytes)."""
    config = world.bot.settings.config
    server = config.server.model_copy(update={"upload_max_bytes": limit})
    world.bot.settings = world.bot.settings.model_copy(update={"config": config.model_copy(update={"server": server})})


async def test_the_configured_upload_limit_is_named_on_the_form_and_a_larger_file_is_refused(world):
    with_upload_limit(world, 1024 * 1024)
    admin = browser_for(world)
    await admin.log_in_for_good("anita", await add_staff(world.bot, "anita", role="admin"))
    assert "A file may be up to 1 MB." in plain(await admin.get("/staff/admin/upload"))

    line = "R-{},Patient {},098300 {:05d},Medicine 2,stable,ward,none,98\n"
    just_over = (HEADER + "".join(line.format(n, n, n) for n in range(1, 20000))).encode()[: 1024 * 1024 + 1]
    refused = await upload(admin, just_over)
    assert refused.status_code == 413
    assert "This file is larger than 1 MB, the most an upload may be." in plain(refused)
    assert 'type="file"' in refused.text  # the form again, to choose a smaller file
    assert await rows(world, StaffUpload) == [] and await rows(world, Admission) == []

    preview = await upload(admin, GOOD_AND_BAD)
    assert preview.status_code == 200 and "What this file would do" in preview.text
    await admin.http.aclose()


async def test_an_upload_that_does_not_declare_its_length_is_refused(world, admin):
    page = await admin.get("/staff/admin/upload")
    boundary = "wardwatch"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf_of(page)}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="today.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n{GOOD_AND_BAD.decode()}\r\n--{boundary}--\r\n"
    ).encode()

    async def chunked():
        yield body

    refused = await admin.http.post(
        "/staff/admin/upload", content=chunked(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert refused.status_code == 411 and "Upload the file again from this page." in plain(refused)
    assert await rows(world, StaffUpload) == []


async def test_another_admins_upload_cannot_be_applied(world, admin):
    preview = await upload(admin, GOOD_AND_BAD)
    other = await staff_browser(world, "dev", await add_staff(world.bot, "dev", role="admin"))
    action = re.search(r'action="(/staff/admin/upload/\d+/apply)"', preview.text)
    assert action
    page = await other.get("/staff/admin/upload")
    assert (await other.http.post(action.group(1), data={"csrf": csrf_of(page)})).status_code == 404
    assert await rows(world, Admission) == []
    await other.http.aclose()


# --- who was told ----------------------------------------------------------------------------------


async def test_the_delivery_view_shows_masked_followers_and_each_alerts_fate(world, admin):
    await world.admit("R-1", ward="Medicine 2")
    await world.record("R-1", "MRB", world.clock.now - timedelta(hours=1), **MODERATE)
    await world.relative("son", "98300 12345", MOBILE)
    await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)

    page = await admin.get("/staff/admin/patients/R-1")
    assert page.status_code == 200
    assert "+91******2345" in page.text and "9830012345" not in page.text
    assert "Console" in page.text and "Told of every change" in page.text
    assert "Waiting for the correction window; goes at 2 Jul, 12:02 PM" in page.text

    await world.dispatch()
    page = await admin.get("/staff/admin/patients/R-1")
    assert "Sent at 2 Jul, 12:02 PM" in page.text

    found = await admin.get("/staff/admin/delivery", reg="R-1")
    assert (found.status_code, found.headers["location"]) == (303, "/staff/admin/patients/R-1")
    # The patient's page leads there, for the admin only.
    assert 'href="/staff/admin/patients/R-1">Who was told<' in (await admin.get("/staff/patients/R-1")).text
    ward = await staff_browser(world, "rina", await add_staff(world.bot, "rina"))
    patient_page = await ward.get("/staff/patients/R-1")
    assert patient_page.status_code == 200 and "/staff/admin/" not in patient_page.text
    await ward.http.aclose()


async def test_another_hospitals_patient_answers_404(world, admin):
    await world.admit("R-9", hospital="MCK")
    assert (await admin.get("/staff/admin/patients/R-9")).status_code == 404
    assert (await admin.get("/staff/admin/patients/R-404")).status_code == 404
    assert (await admin.get("/staff/admin/delivery", reg="../login")).status_code == 404


async def test_the_days_page_counts_today_and_compliance_per_ward(world, admin):
    now = world.clock.now
    await world.admit("M-1", ward="Medicine 2", admitted_at=(now - timedelta(hours=20)).isoformat())
    await world.record("M-1", "MRB", now - timedelta(hours=2), **MODERATE)
    await world.admit("M-2", ward="Medicine 2", admitted_at=(now - timedelta(hours=30)).isoformat())
    await world.relative("son", "98300 12345", MOBILE)

    text = plain(await admin.get("/staff/admin/today"))
    assert "Updates recorded 1" in text and "Relatives verified 1" in text
    assert "Medicine 2 2 1 (50%)" in text


async def test_the_admin_pages_speak_the_admins_language(world):
    browser = browser_for(world)
    await browser.log_in_for_good("anita", await add_staff(world.bot, "anita", role="admin"), language="bn")
    page = await browser.get("/staff/admin/today")
    assert page.status_code == 200 and '<html lang="bn">' in page.text
    assert "Updates recorded" not in page.text
    await browser.http.aclose()
