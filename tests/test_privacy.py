"""What a relative's /forget leaves behind: no chat id and no number the chat typed, anywhere in the
database; the audit trail stays, naming the chat by a pseudonym that only SECRET_KEY reproduces.
Also for databases written before pseudonyms: the upgrade rewrites them. Runs on SQLite, and on
PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import sqlmodel
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from bot.app import Services
from bot.platform import db
from bot.platform.settings import async_database_url
from bot.relatives.access import chat_actor
from bot.relatives.replies import Inbound
from handlers.console import ConsoleSender
from models import AuditEvent
from tests.conftest import _BACKENDS, PROJECT_ROOT, SECRET, _postgres, make_settings, now_utc
from tests.support import SETTINGS_ENVIRONMENT
from tests.test_conversation import CRITICAL_ICU, MOBILE, World, world  # noqa: F401 (world: a fixture)

# A relative writing on WhatsApp from their own phone: its number is the chat's key.
WHATSAPP_NUMBER = "+919433077777"


async def stored_texts(database: db.Database) -> list[tuple[str, str, str]]:
    """(table, column, text) of every text and JSON value in the database."""
    found = []
    async with database.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await connection.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    if isinstance(value, str):
                        found.append((table.name, column, value))
                    elif isinstance(value, dict | list):
                        found.append((table.name, column, json.dumps(value, ensure_ascii=False)))
    return found


async def where_found(database: db.Database, *needles: str, allowed: set[tuple[str, str]] = frozenset()) -> list:
    """Where any of `needles` is stored, outside the (table, column)s `allowed`."""
    return [
        (table, column, text)
        for table, column, text in await stored_texts(database)
        if (table, column) not in allowed and any(needle in text for needle in needles)
    ]


def forms(mobile: str) -> tuple[str, str]:
    """An Indian number as stored (E.164) and as its ten digits."""
    return mobile, mobile.removeprefix("+91")


class WhatsAppOutbox(ConsoleSender):
    """Alerts to WhatsApp chats, kept instead of sent."""

    channel = "whatsapp"
    uses_templates = True


async def say(world: World, text: str | None = None, command: str | None = None, button: str | None = None) -> str:
    inbound = Inbound("whatsapp", WHATSAPP_NUMBER, text=text, command=command, button=button)
    replies = await world.bot.conversation.handle(inbound)
    await world.bot.background.drain()
    return "\n".join(reply.plain for reply in replies)


async def test_after_forget_nothing_stored_names_the_chat_or_its_number_and_the_audit_stays(world):
    await world.admit()
    await world.update(condition="stable")
    world.bot.senders["whatsapp"] = WhatsAppOutbox(lambda text: None)
    await say(world, "98300 12345")
    assert (await say(world, world.code_for())).startswith("Thank you, your number is confirmed.")
    await say(world, command="status")
    await world.update(hours_ago=0, **CRITICAL_ICU)
    world.clock.advance(seconds=world.bot.settings.config.notifications.grace_seconds + 1)
    assert await world.bot.dispatcher.dispatch_once() == 1

    await say(world, command="forget")
    assert await say(world, button="forget:yes") == (
        "Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."
    )

    # The admission's own number stays with the admission (the hospital's record) and nowhere else.
    hospital_record = {("admission", "contact_mobile"), ("alternate_mobile", "mobile")}
    assert await where_found(world.bot.database, *forms(WHATSAPP_NUMBER)) == []
    assert await where_found(world.bot.database, *forms(MOBILE), allowed=hospital_record) == []
    audit = await world.rows(AuditEvent, AuditEvent.channel == "whatsapp")
    assert sorted(row.action for row in audit) == ["alert.sent", "status.disclosed", "status.disclosed"]
    # One pseudonym for the chat, in every row: its audit stays linkable.
    (actor,) = {row.actor for row in audit}
    assert actor.startswith("whatsapp:ps_")


async def test_a_chat_keeps_its_pseudonym_and_another_chat_gets_another(world):
    await world.admit()
    await say(world, "98300 12345")
    await say(world, world.code_for())
    await say(world, command="forget")
    await say(world, button="forget:yes")
    world.clock.advance(days=1)
    await say(world, "98300 12345")
    await say(world, world.code_for())  # the same chat, back after /forget
    other = world.relative("other")
    await other.verify()

    actors = [row.actor for row in await world.rows(AuditEvent, AuditEvent.action == "status.disclosed")]
    assert len(actors) == 3
    whatsapp = {actor for actor in actors if actor.startswith("whatsapp:")}
    console = {actor for actor in actors if actor.startswith("console:")}
    assert len(whatsapp) == 1 and len(console) == 1
    assert console != {"console:other"}


# --- databases written before pseudonyms -------------------------------------------------------------

AUDIT_0005 = sa.table(
    "audit_event",
    sa.column("at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("channel", sa.String),
    sa.column("detail", sa.JSON),
)
CODES_0005 = sa.table(
    "otp_challenge",
    sa.column("chat_key", sa.String),
    sa.column("mobile", sa.String),
    sa.column("code_hash", sa.String),
    sa.column("sent", sa.Boolean),
    sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("wrong_tries", sa.Integer),
    sa.column("voided", sa.Boolean),
)


@pytest.fixture(params=_BACKENDS)
def empty_url(request, tmp_path) -> Iterator[str]:
    """A database of its own, with no tables yet."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ward.sqlite3'}"
        return
    given = make_url(async_database_url(os.environ["TEST_DATABASE_URL"]))
    own = given.set(database=f"{given.database}_upgrade{os.getpid()}")
    asyncio.run(_postgres(given, f'DROP DATABASE IF EXISTS "{own.database}"', f'CREATE DATABASE "{own.database}"'))
    yield own.render_as_string(hide_password=False)
    asyncio.run(_postgres(given, f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))


async def insert(url: str, table: sa.TableClause, *rows: dict[str, Any]) -> None:
    database = db.Database(url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(sa.insert(table), list(rows))
    finally:
        await database.dispose()


async def test_upgrading_rewrites_the_chats_and_numbers_stored_before_pseudonyms(empty_url, monkeypatch):
    """A database as revision 0005 left it: relatives' chats named in the audit trail, code
    requests under the chat's key and the number. After the upgrade the hospital's actors read as
    before, the chats are pseudonyms the service recognises, and a lockout still holds."""
    for name in SETTINGS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    # The key the service runs with, read by the upgrade as `python -m bot db upgrade` reads it.
    monkeypatch.setenv("BOT_CONFIG", str(PROJECT_ROOT / "config.yaml"))
    monkeypatch.setenv("SECRET_KEY", SECRET)
    url = empty_url
    settings = make_settings(url)
    await db.upgrade_async(url, "0005")
    now = now_utc()
    await insert(
        url, AUDIT_0005,
        {"at": now, "actor": f"whatsapp:{WHATSAPP_NUMBER}", "action": "status.disclosed", "channel": "whatsapp",
         "detail": {"update_id": 1}},
        {"at": now, "actor": "telegram:5550001", "action": "alert.sent", "channel": "telegram",
         "detail": {"kinds": ["condition"], "update_id": 1}},
        {"at": now, "actor": "api:MRB", "action": "admission.created", "channel": None, "detail": {}},
    )  # fmt: skip
    await insert(
        url, CODES_0005,
        {"chat_key": f"whatsapp:{WHATSAPP_NUMBER}", "mobile": MOBILE, "code_hash": "0" * 64, "sent": True,
         "created_at": now - timedelta(minutes=5), "expires_at": now + timedelta(minutes=5),
         "wrong_tries": settings.config.otp.max_wrong_tries, "voided": True},
    )  # fmt: skip

    await db.upgrade_async(url)

    upgraded = db.Database(url)
    try:
        assert await where_found(upgraded, *forms(WHATSAPP_NUMBER), *forms(MOBILE), "5550001") == []
        async with upgraded.session() as session:
            actors = dict((await session.exec(sa.select(AuditEvent.action, AuditEvent.actor))).all())
    finally:
        await upgraded.dispose()
    assert actors["admission.created"] == "api:MRB"
    assert actors["alert.sent"].startswith("telegram:ps_")

    # The service, on the upgraded database, names that chat as the upgrade did and still holds
    # the lockout of its code requests.
    upgraded_services = Services.build(settings)
    try:
        replies = await upgraded_services.conversation.handle(Inbound("whatsapp", WHATSAPP_NUMBER, text="98300 12345"))
        assert replies[0].plain.startswith("Too many wrong codes were typed for this number.")
    finally:
        await upgraded_services.close()
    assert actors["status.disclosed"] == chat_actor(SECRET.encode(), "whatsapp", WHATSAPP_NUMBER)
