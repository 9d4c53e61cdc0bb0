"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel, select

import models  # noqa: F401  (registers every table on SQLModel.metadata)
from bot.platform import db
from handlers.console import ConsoleChat
from models.chat import Chat

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")  # a one-time code in an SMS
# Every variable load_settings reads, so that a test does not depend on the shell that runs it.
SETTINGS_ENVIRONMENT = (
    "BOT_CONFIG", "DATABASE_URL", "HOST", "PORT", "SECRET_KEY", "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE_URL", "TELEGRAM_WEBHOOK_URL", "TELEGRAM_WEBHOOK_SECRET", "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE_URL", "TWILIO_SMS_FROM", "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_WHATSAPP_FROM", "TWILIO_VERIFY_SERVICE_SID", "PUBLIC_BASE_URL", "OTP_PROVIDER", "METRICS_TOKEN",
    "LOG_FORMAT",
)  # fmt: skip


# Approved WhatsApp templates, as an operator writes them into config.yaml (made-up SIDs): what
# TWILIO_WHATSAPP_FROM requires. Updates have one per language; the other kinds English only.
def _template(number: int, *fields: str) -> dict:
    return {"content_sid": f"HX{number:032x}", "variables": {str(i): name for i, name in enumerate(fields, 1)}}


WHATSAPP_TEMPLATES = {
    "update": {
        "en": _template(1, "patient", "changes", "condition", "updated_at"),
        "bn": _template(2, "patient", "changes", "condition", "updated_at"),
        "hi": _template(3, "patient", "changes", "condition", "updated_at"),
    },
    "discharge": {"en": _template(4, "patient", "hospital")},
    "transfer": {"en": _template(5, "patient", "hospital", "helpline")},
    "death": {"en": _template(6, "patient", "hospital", "helpline")},
    "digest": {"en": _template(7, "patient", "condition", "updated_at")},
    "correction": {
        "en": _template(8, "patient", "corrected_at", "condition", "updated_at"),
        "bn": _template(9, "patient", "corrected_at", "condition", "updated_at"),
    },
    "new_admission": {"en": _template(10)},
}


def config_with_templates(directory: Path) -> Path:
    """A copy of config.yaml with `WHATSAPP_TEMPLATES`, in `directory`."""
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["whatsapp_templates"] = WHATSAPP_TEMPLATES
    path = directory / "config-whatsapp.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


async def schema_differences(url: str) -> list:
    """What `alembic revision --autogenerate` would write to bring the database to the models."""

    def compare(connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, SQLModel.metadata)

    database = db.Database(url)
    try:
        async with database.engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await database.dispose()


async def table_names(url: str) -> set[str]:
    database = db.Database(url)
    try:
        async with database.engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await database.dispose()


class Clock:
    """A test's clock, for `Services.clock`: it moves only when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class HospitalDesk:
    """A hospital's system calling the API, for a test world that has `api` (an httpx client of
    the web app), `keys` (the API key of each hospital code) and `clock` (a `Clock`)."""

    api: httpx.AsyncClient
    keys: dict[str, str]
    clock: Clock

    def _headers(self, hospital: str) -> dict[str, str]:
        return auth(self.keys[hospital])

    async def admit(self, reg: str = "R-1", hospital: str = "MRB", **fields: Any) -> None:
        """Ratan Das, admitted a day ago on 098300 12345, unless `fields` say otherwise."""
        body = {
            "patient_name": "Ratan Das", "contact_mobile": "098300 12345", "ward": "Covid Ward 2", "bed": "B-14",
            "admitted_at": (self.clock.now - timedelta(days=1)).isoformat(), **fields,
        }  # fmt: skip
        response = await self.api.put(f"/api/v1/admissions/{reg}", json=body, headers=self._headers(hospital))
        assert response.status_code in (200, 201), response.text

    async def record(self, reg: str, hospital: str, recorded_at: datetime, **fields: Any) -> dict:
        """A condition update; the update as the API answers it."""
        body = {"recorded_at": recorded_at.isoformat(), **fields}
        response = await self.api.post(f"/api/v1/admissions/{reg}/updates", json=body, headers=self._headers(hospital))
        assert response.status_code == 201, response.text
        return response.json()

    async def set_status(self, status: str, reg: str = "R-1", hospital: str = "MRB", **fields: Any) -> None:
        body = {"status": status, "at": self.clock.now.isoformat(), **fields}
        response = await self.api.post(f"/api/v1/admissions/{reg}/status", json=body, headers=self._headers(hospital))
        assert response.status_code == 200, response.text


async def _no_input() -> str | None:
    return None


class ConsoleRelative:
    """One relative in the local console chat of `world.bot` (a `bot.app.Services`): what they
    type, and the lines the console writes back."""

    def __init__(self, world, key: str) -> None:
        self.world = world
        self.key = key
        self.lines: list[str] = []
        self.console = ConsoleChat(world.bot.conversation, _no_input, self.lines.append, chat_key=key)

    async def say(self, line: str) -> str:
        """Type one line; the answer as the console shows it (replies, then their choices)."""
        start = len(self.lines)
        await self.console.say(line)
        await self.world.bot.background.drain()
        return "\n".join(self.lines[start:]).strip()

    async def chat(self) -> Chat | None:
        async with self.world.bot.database.session() as session:
            result = await session.exec(select(Chat).where(Chat.channel == "console", Chat.chat_key == self.key))
            return result.first()


class FileModes:
    """What the files of one folder were like each time this process touched them (opened, changed
    or linked them, or had SQLite connect to them): by file name, the audit event and the file's
    permission bits, or None where it did not exist yet. `with FileModes(folder) as modes: ...`

    Python's audit hooks see those operations; one hook is added the first time and cannot be
    removed, so it looks only while a FileModes is open."""

    _watching: ClassVar[dict[str, FileModes]] = {}
    _hooked: ClassVar[bool] = False

    def __init__(self, folder: Path) -> None:
        self.folder = os.path.abspath(folder)
        self.seen: dict[str, list[tuple[str, int | None]]] = {}

    def __enter__(self) -> FileModes:
        if not FileModes._hooked:
            sys.addaudithook(FileModes._note)
            FileModes._hooked = True
        FileModes._watching[self.folder] = self
        return self

    def __exit__(self, *_exc_info: object) -> None:
        FileModes._watching.pop(self.folder, None)

    def modes(self, name: str, event: str | None = None) -> list[int | None]:
        return [mode for seen_at, mode in self.seen.get(name, []) if event in (None, seen_at)]

    @staticmethod
    def _note(event: str, args: tuple) -> None:
        if not FileModes._watching or not args or not isinstance(args[0], str | os.PathLike):
            return
        path = os.path.abspath(os.fsdecode(os.fspath(args[0])))
        watching = FileModes._watching.get(os.path.dirname(path))
        if watching is None:
            return
        try:
            mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
        watching.seen.setdefault(os.path.basename(path), []).append((event, mode))


def service_environment(**settings: str) -> dict[str, str]:
    """The environment of a `python -m bot ...` a test starts: this one's, without any setting of
    ours but `settings`, so that the test does not depend on the shell that runs it."""
    return {key: value for key, value in os.environ.items() if key not in SETTINGS_ENVIRONMENT} | settings


async def start_service(command: str, environ: dict[str, str], output: Path) -> asyncio.subprocess.Process:
    """`python -m bot COMMAND` in the background, all it writes going to `output`."""
    with output.open("wb") as written:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", command, cwd=PROJECT_ROOT, env=environ,
            stdin=subprocess.DEVNULL, stdout=written, stderr=subprocess.STDOUT,
        )  # fmt: skip


def free_port() -> int:
    """A loopback port nobody listens on, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def until_healthy(http: httpx.AsyncClient, process: asyncio.subprocess.Process, output: Path) -> None:
    """Wait until a `python -m bot ...` process answers /healthz; fail with its output if it ends first."""
    while True:
        if process.returncode is not None:
            raise AssertionError("the process ended before it served:\n" + await asyncio.to_thread(output.read_text))
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


async def code_sent_to(twilio: Any, mobile: str) -> str:
    """The code of the last SMS the fake Twilio took for `mobile` (it may still be on its way)."""
    while True:
        twilio.answered.clear()
        if twilio.messages_to(mobile):
            found = CODE.search(twilio.messages_to(mobile)[-1].body)
            assert found is not None, twilio.messages_to(mobile)[-1].body
            return found.group()
        await twilio.answered.wait()
