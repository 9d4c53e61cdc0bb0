"""The ward's page in a real browser: the real app under uvicorn on a free loopback port, with the
Telegram bot polling the fake Bot API (relatives) and the dispatcher running, the demo hospitals
loaded, and headless Chromium (Debian's `chromium`, which `.ci/run` installs: no tool here can
download a browser) driven by Playwright at a phone's 360×640.

    async def test_something(site):
        await site.log_in(WARD_USERNAME, WARD_PASSWORD)
        await site.shot("ward-list")   # docs/screenshots/ward-list.png with SAVE_SCREENSHOTS=1

Screenshots go to the test's own folder, or with `SAVE_SCREENSHOTS=1` to docs/screenshots/, where
the README shows them. The correction window is `GRACE_SECONDS` here, so a test sees the alert
arrive within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import yaml
from playwright.async_api import Browser, Page, async_playwright

from bot.app import Services, build_telegram, build_web_app
from bot.platform.phones import national
from handlers.telegram import TelegramChannel
from tests.conftest import make_settings
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.staff_support import cheap_argon2  # noqa: F401 (the pages' tests hash with it too)
from tests.support import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
PHONE = {"width": 360, "height": 640}
GRACE_SECONDS = 3
TOKEN = "123:ABC"
CODE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test runner owns the signals
        yield


@dataclass
class Site:
    """The running service, a browser page on it, and the fake Telegram its relatives use."""

    services: Services
    telegram: TelegramChannel
    url: str
    browser: Browser
    page: Page
    fake: FakeTelegram
    twilio: FakeTwilio
    screenshots: Path

    async def open(self, path: str) -> None:
        await self.page.goto(self.url + path)

    async def log_in(self, username: str, password: str, language: str = "en") -> None:
        await self.open(f"/staff/login?lang={language}")
        await self.page.get_by_label(self.text(language, "Username")).fill(username)
        await self.page.get_by_label(self.text(language, "Password")).fill(password)
        await self.page.get_by_role("button", name=self.text(language, "Log in")).click()

    def text(self, language: str, message: str) -> str:
        return self.services.catalogues.get(language).gettext(message)

    async def shot(self, name: str) -> Path:
        """The whole page as it is now, `<name>.png`."""
        path = self.screenshots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def relative_following(self, mobile: str, language_code: str = "en") -> FakeUser:
        """A Telegram user verified on `mobile`: /start, the number, the code sent by SMS."""
        user = self.fake.user(language_code=language_code)
        await self.fake.push(self.fake.updates.command(user, "/start"))
        await self.fake.wait_messages(user.id, 1)
        await self.fake.push(self.fake.updates.text(user, national(mobile)))
        await self.fake.wait_messages(user.id, 2)
        await self.services.background.drain()
        sms = self.twilio.messages_to(mobile)[-1]
        code = CODE.search(sms.body)
        assert code, sms.body
        before = len(self.fake.messages_to(user.id))
        await self.fake.push(self.fake.updates.text(user, code.group(0)))
        replies = await self.fake.wait_messages(user.id, before + 2)
        assert "confirmed" in replies[before].plain, replies[before].plain
        await self.settled(user)
        return user

    async def settled(self, user: FakeUser) -> None:
        """Updates are handled in order: once /help is answered, every earlier reply to `user` is in."""
        before = len(self.fake.messages_to(user.id))
        await self.fake.push(self.fake.updates.command(user, "/help"))
        await self.fake.wait_messages(user.id, before + 1)


def _config(directory: Path) -> str:
    data = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["notifications"]["grace_seconds"] = GRACE_SECONDS
    path = directory / "config-browser.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


async def _serve(app) -> tuple[_Server, asyncio.Task, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the web server stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError("the web server did not start")
        await asyncio.sleep(0.01)
    return server, task, f"http://{host}:{port}"


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: install Debian's chromium (`apt-get install chromium`, as .ci/run does)"
        )
    return CHROMIUM


@pytest.fixture
async def site(services, chromium, tmp_path, caplog) -> AsyncIterator[Site]:
    """The service as `python -m bot run` runs it on the demo data (empty test database first),
    with its Telegram bot on a fake Bot API, and a phone's browser on its ward page."""
    caplog.set_level(logging.WARNING)
    screenshots = SCREENSHOTS if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything runs)
    async with FakeTelegram(TOKEN) as fake, FakeTwilio() as twilio:
        settings = make_settings(
            services.settings.database_url, BOT_CONFIG=_config(tmp_path), TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=f"{fake.url}/bot", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_SMS_FROM=SMS_FROM, TWILIO_API_BASE_URL=twilio.url,
        )  # fmt: skip
        bot = Services.build(settings)
        telegram = build_telegram(bot)
        assert telegram is not None
        await telegram.start()
        async with bot.database.session() as session:
            await bot.load_demo(session)
        server, serving, url = await _serve(build_web_app(bot, telegram))
        dispatching = asyncio.create_task(bot.dispatcher.run())
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(chromium))
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-IN")
            page = await context.new_page()
            try:
                yield Site(bot, telegram, url, browser, page, fake, twilio, screenshots)
            finally:
                await context.close()
                await browser.close()
                dispatching.cancel()
                await asyncio.gather(dispatching, return_exceptions=True)
                server.should_exit = True
                await serving
                await telegram.stop()
                await bot.close()
        assert fake.rejected == []
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
