"""Staff accounts and logging in to the ward's page: one-time passwords, lockout, the slowed
address, sessions that end after a shift or at logout, CSRF, and the command that adds accounts."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import select

from bot.app import build_web_app
from bot.cli import main
from bot.staff import accounts
from models import AuditEvent
from models.staff import StaffAccount
from tests.conftest import SECRET
from tests.staff_support import NEW_PASSWORD, StaffBrowser, add_staff, cheap_argon2, csrf_of  # noqa: F401
from tests.support import Clock

START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)


@pytest.fixture
def clock(services) -> Clock:
    clock = Clock(START)
    services.clock = clock
    return clock


def browser_for(services, address: str = "10.0.0.7", scheme: str = "http") -> StaffBrowser:
    transport = httpx.ASGITransport(app=build_web_app(services), client=(address, 50000))
    return StaffBrowser(httpx.AsyncClient(transport=transport, base_url=f"{scheme}://testserver"))


@pytest.fixture
async def browser(services, keys, clock):
    browser = browser_for(services)
    yield browser
    await browser.http.aclose()


def replace_session_cookie(browser: StaffBrowser, value: str) -> None:
    """The session cookie this browser sends from now on is `value` (kept, or forged)."""
    jar = browser.http.cookies.jar
    for cookie in [cookie for cookie in jar if cookie.name == "ww_staff"]:
        jar.clear(cookie.domain, cookie.path, cookie.name)
    browser.http.cookies.set("ww_staff", value, domain="testserver.local", path="/staff")


async def account(services, username: str) -> StaffAccount:
    async with services.database.session() as session:
        found = await accounts.find_account(session, username)
        assert found is not None
        return found


# --- logging in ------------------------------------------------------------------------------------


async def test_the_one_time_password_must_be_changed_before_anything_else(services, browser):
    one_time = await add_staff(services, "rina")

    answer = await browser.log_in("rina", one_time)
    assert answer.status_code == 303 and answer.headers["location"] == "/staff/password"
    # Every page leads back to the new password.
    ward = await browser.get("/staff/")
    assert ward.status_code == 303 and ward.headers["location"] == "/staff/password"

    refused = await browser.submit("/staff/password", "/staff/password", current=one_time, new="short")
    assert refused.status_code == 422
    assert "The new password must have at least 10 characters." in refused.text
    changed = await browser.submit("/staff/password", "/staff/password", current=one_time, new=NEW_PASSWORD)
    assert changed.status_code == 303 and changed.headers["location"] == "/staff/"
    assert (await browser.get("/staff/")).status_code == 200

    # The one-time password is gone.
    await browser.submit("/staff/", "/staff/logout")
    assert (await browser.log_in("rina", one_time)).status_code == 401
    assert (await browser.log_in("RINA ", NEW_PASSWORD)).status_code == 303


async def test_a_wrong_password_and_an_unknown_username_get_the_same_answer(services, browser):
    await add_staff(services, "rina")

    wrong = await browser.log_in("rina", "not the password")
    unknown = await browser.log_in("nobody", "not the password")

    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password." in wrong.text and "Wrong username or password." in unknown.text
    assert "ww_staff=" not in wrong.headers.get("set-cookie", "")


async def test_five_wrong_passwords_lock_the_account_for_15_minutes(services, browser, clock):
    one_time = await add_staff(services, "rina")
    for _ in range(4):
        assert (await browser.log_in("rina", "wrong password")).status_code == 401

    locked = await browser.log_in("rina", "wrong password")
    assert locked.status_code == 403
    assert "this account is locked until 2 Jul, 12:15 PM" in locked.text
    # Even the right password waits (once the address's own short wait is over).
    clock.advance(seconds=1)
    assert (await browser.log_in("rina", one_time)).status_code == 403
    clock.advance(minutes=14, seconds=58)
    assert (await browser.log_in("rina", one_time)).status_code == 403

    clock.advance(seconds=2)
    assert (await browser.log_in("rina", one_time)).status_code == 303
    async with services.database.session() as session:
        (lock,) = (await session.exec(select(AuditEvent).where(AuditEvent.action == "staff.locked"))).all()
    assert lock.actor == "staff:rina@MRB"


async def test_a_login_counts_wrong_passwords_from_zero_again(services, browser, clock):
    one_time = await add_staff(services, "rina")
    for _ in range(4):
        await browser.log_in("rina", "wrong password")
    assert (await browser.log_in("rina", one_time)).status_code == 303
    clock.advance(minutes=16)  # this address's wrong passwords are forgotten; the account's were reset
    for _ in range(4):
        assert (await browser.log_in("rina", "wrong password")).status_code == 401
    assert (await account(services, "rina")).failed_logins == 4


async def test_wrong_passwords_from_one_address_slow_it_down_whatever_the_account(services, keys, clock):
    await add_staff(services, "rina")
    guesser, colleague = browser_for(services, "10.0.0.66"), browser_for(services, "10.0.0.8")
    # Five guesses at five accounts: no account is locked, but the address must wait.
    for number in range(5):
        assert (await guesser.log_in(f"user{number}", "guess")).status_code == 401
    assert (await guesser.log_in("user9", "guess")).status_code == 429
    # Each further wrong password doubles the wait.
    clock.advance(seconds=1)
    assert (await guesser.log_in("user9", "guess")).status_code == 401
    assert (await guesser.log_in("user9", "guess")).status_code == 429
    clock.advance(seconds=1)
    assert (await guesser.log_in("user9", "guess")).status_code == 429
    clock.advance(seconds=1)
    answer = await guesser.log_in("rina", "guess")
    assert answer.status_code == 401
    waiting = await guesser.log_in("rina", "guess")
    assert waiting.status_code == 429 and "Too many wrong passwords from this network" in waiting.text
    # Another address is not slowed; after 15 quiet minutes the address starts again.
    assert (await colleague.log_in("rina", "guess")).status_code == 401
    clock.advance(minutes=16)
    for _ in range(5):
        assert (await guesser.log_in("user1", "guess")).status_code == 401
    await guesser.http.aclose()
    await colleague.http.aclose()


async def test_a_disabled_account_cannot_log_in_and_its_sessions_end(services, browser, clock):
    one_time = await add_staff(services, "rina")
    await browser.log_in_for_good("rina", one_time)
    async with services.database.session() as session:
        rina = await accounts.find_account(session, "rina")
        assert rina is not None
        hospital_account = rina
        from bot.intake.hospitals import get_hospital

        hospital = await get_hospital(session, "MRB")
        assert hospital is not None
        await accounts.disable_account(session, hospital_account, hospital, "staff:admin@MRB", clock.now)
        await session.commit()

    assert (await browser.get("/staff/")).headers["location"] == "/staff/login"
    refused = await browser.log_in("rina", NEW_PASSWORD)
    assert refused.status_code == 403 and "This account is disabled." in refused.text


async def test_a_reset_gives_a_new_one_time_password_and_unlocks(services, browser, clock):
    one_time = await add_staff(services, "rina")
    for _ in range(5):
        await browser.log_in("rina", "wrong password")
    async with services.database.session() as session:
        from bot.intake.hospitals import get_hospital

        hospital = await get_hospital(session, "MRB")
        rina = await accounts.find_account(session, "rina")
        assert hospital is not None and rina is not None
        new_one_time = await accounts.reset_password(session, rina, hospital, "staff:admin@MRB")
        await session.commit()

    assert new_one_time != one_time
    clock.advance(seconds=1)  # the address's own wait after five wrong passwords
    assert (await browser.log_in("rina", one_time)).status_code == 401
    clock.advance(seconds=2)
    answer = await browser.log_in("rina", new_one_time)
    assert answer.status_code == 303 and answer.headers["location"] == "/staff/password"


# --- sessions ------------------------------------------------------------------------------------------


async def test_the_session_cookie_is_httponly_samesite_and_ends_after_12_hours(services, browser, clock):
    one_time = await add_staff(services, "rina")
    answer = await browser.log_in("rina", one_time)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("ww_staff=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/staff" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain http here
    await browser.submit("/staff/password", "/staff/password", current=one_time, new=NEW_PASSWORD)

    clock.advance(hours=11, minutes=59)
    assert (await browser.get("/staff/")).status_code == 200
    clock.advance(minutes=2)
    expired = await browser.get("/staff/")
    assert expired.status_code == 303 and expired.headers["location"] == "/staff/login"


async def test_the_cookie_is_secure_when_the_service_is_served_over_https(services, keys, clock):
    services.settings = services.settings.model_copy(
        update={"env": services.settings.env.model_copy(update={"public_base_url": "https://ward.example.org"})}
    )
    one_time = await add_staff(services, "rina")
    # Behind the TLS proxy PUBLIC_BASE_URL names, the browser speaks https.
    browser = browser_for(services, scheme="https")
    page = await browser.get("/staff/login")
    assert "Secure" in page.headers["set-cookie"]  # the form cookie too
    answer = await browser.http.post(
        "/staff/login", data={"csrf": csrf_of(page), "username": "rina", "password": one_time}
    )
    assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]
    await browser.http.aclose()


async def test_logout_ends_the_session_even_if_the_cookie_is_kept(services, browser):
    one_time = await add_staff(services, "rina")
    await browser.log_in_for_good("rina", one_time)
    kept = browser.http.cookies["ww_staff"]

    answer = await browser.submit("/staff/", "/staff/logout")
    assert answer.status_code == 303 and answer.headers["location"] == "/staff/login"
    assert "ww_staff=" in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]

    replace_session_cookie(browser, kept)
    assert (await browser.get("/staff/")).headers["location"] == "/staff/login"


async def test_a_forged_or_altered_session_cookie_is_not_a_session(services, browser):
    one_time = await add_staff(services, "rina")
    await browser.log_in_for_good("rina", one_time)
    account_id, issued, version, signature = browser.http.cookies["ww_staff"].split(".")
    for forged in (
        f"{int(account_id) + 1}.{issued}.{version}.{signature}",
        f"{account_id}.{int(issued) + 3600}.{version}.{signature}",
        f"{account_id}.{issued}.{version}.{'0' * 64}",
        "garbage",
    ):
        replace_session_cookie(browser, forged)
        assert (await browser.get("/staff/")).headers["location"] == "/staff/login", forged


async def test_a_new_password_ends_the_other_sessions_of_the_account(services, keys, clock):
    one_time = await add_staff(services, "rina")
    phone, desk = browser_for(services), browser_for(services)
    await phone.log_in_for_good("rina", one_time)
    await desk.log_in("rina", NEW_PASSWORD)
    assert (await desk.get("/staff/")).status_code == 200

    answer = await phone.submit("/staff/password", "/staff/password", current=NEW_PASSWORD, new="another long one")
    assert answer.status_code == 303

    assert (await phone.get("/staff/")).status_code == 200
    assert (await desk.get("/staff/")).headers["location"] == "/staff/login"
    await phone.http.aclose()
    await desk.http.aclose()


# --- CSRF ------------------------------------------------------------------------------------------------


async def test_a_form_without_its_csrf_token_is_refused_with_403(services, browser):
    one_time = await add_staff(services, "rina")
    no_token = await browser.http.post("/staff/login", data={"username": "rina", "password": one_time})
    assert no_token.status_code == 403
    await browser.get("/staff/login")  # the form cookie exists now; a made-up token is still refused
    made_up = await browser.http.post("/staff/login", data={"csrf": "0" * 64, "username": "rina", "password": one_time})
    assert made_up.status_code == 403
    assert "ww_staff=" not in made_up.headers.get("set-cookie", "")

    await browser.log_in_for_good("rina", one_time)
    assert (await browser.http.post("/staff/logout", data={})).status_code == 403
    assert (await browser.get("/staff/")).status_code == 200  # still logged in


async def test_another_browsers_token_is_refused(services, keys, clock):
    one_time = await add_staff(services, "rina")
    mine, other = browser_for(services), browser_for(services)
    await mine.log_in_for_good("rina", one_time)
    others_page = await other.get("/staff/login")

    answer = await mine.http.post("/staff/logout", data={"csrf": csrf_of(others_page)})

    assert answer.status_code == 403
    await mine.http.aclose()
    await other.http.aclose()


# --- the pages carry what keeps them safe ---------------------------------------------------------------


async def test_pages_are_not_cached_nor_framed_and_load_nothing_from_elsewhere(services, browser):
    page = await browser.get("/staff/login")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
    assert "<script" not in page.text and "http" not in page.text.replace("http-equiv", "")
    stylesheet = page.text.split('rel="stylesheet" href="')[1].split('"')[0]
    css = await browser.get(stylesheet)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_the_login_page_speaks_the_language_chosen(services, browser):
    one_time = await add_staff(services, "rina")
    page = await browser.get("/staff/login", lang="bn")
    assert 'lang="bn"' in page.text and "পাসওয়ার্ড" in page.text

    await browser.log_in("rina", one_time, language="bn")
    assert (await account(services, "rina")).language == "bn"
    password_page = await browser.get("/staff/password")
    assert 'lang="bn"' in password_page.text


# --- python -m bot staff add -------------------------------------------------------------------------------


def test_the_command_adds_an_account_and_prints_its_one_time_password(services, keys, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)

    code = main(["staff", "add", "Rina.Pal", "--hospital", "mrb", "--role", "ward", "--ward", "ICU 1", "--ward", "HDU"])

    assert code == 0
    out = capsys.readouterr().out
    assert "rina.pal (ward) at MRB: ICU 1, HDU" in out
    password = out.split("One-time password (shown once, changed at the first login): ")[1].strip()
    assert len(password) == 14 and password.count("-") == 2

    assert main(["staff", "add", "rina.pal", "--hospital", "MRB", "--role", "admin"]) == 1
    assert "The username rina.pal is taken." in capsys.readouterr().err
    assert main(["staff", "add", "x", "--hospital", "MRB", "--role", "admin"]) == 1
    assert main(["staff", "add", "someone", "--hospital", "XYZ", "--role", "admin"]) == 1
    assert "no hospital XYZ" in capsys.readouterr().err
