"""Helpers for the tests of the ward's page: accounts made as the CLI makes them, and a staff
member's browser as an httpx client that keeps its cookies and sends each form's CSRF token."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from bot.app import Services
from bot.intake.hospitals import get_hospital
from bot.staff import accounts

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
NEW_PASSWORD = "a long ward password"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    """Argon2 still, with the least work it allows: the recommended parameters take a quarter of
    a second per hash, and these tests hash hundreds of times."""
    monkeypatch.setattr(
        accounts, "password_hash", PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
    )


async def add_staff(
    services: Services, username: str, hospital: str = "MRB", role: str = "ward", wards: tuple[str, ...] = ()
) -> str:
    """An account as `python -m bot staff add` makes it; its one-time password."""
    async with services.database.session() as session:
        found = await get_hospital(session, hospital)
        assert found is not None
        issued = await accounts.add_account(session, found, username, role, list(wards), actor="cli")
        await session.commit()
        return issued.password


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}"
    return unescape(found.group(1))


class StaffBrowser:
    """A staff member's browser: cookies kept, forms sent with the token of the page they are on."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def get(self, path: str, **params) -> httpx.Response:
        return await self.http.get(path, params=params)

    async def submit(self, page_path: str, action: str, **fields: str) -> httpx.Response:
        """Open `page_path`, then POST its form to `action` with `fields` and the page's token."""
        page = await self.http.get(page_path)
        assert page.status_code == 200, page.text
        return await self.http.post(action, data={"csrf": csrf_of(page), **fields})

    async def log_in(self, username: str, password: str, language: str = "en") -> httpx.Response:
        return await self.submit(
            f"/staff/login?lang={language}", "/staff/login", username=username, password=password, language=language
        )

    async def log_in_for_good(self, username: str, one_time_password: str, language: str = "en") -> None:
        """First login with the one-time password, then the staff member's own password."""
        answer = await self.log_in(username, one_time_password, language)
        assert answer.status_code == 303 and answer.headers["location"] == "/staff/password", answer.text
        answer = await self.submit("/staff/password", "/staff/password", current=one_time_password, new=NEW_PASSWORD)
        assert answer.status_code == 303 and answer.headers["location"] == "/staff/", answer.text
