"""Shared fixtures. Every database test runs on SQLite, and on PostgreSQL too when
TEST_DATABASE_URL is set (`.ci/run` sets it). The schema comes from the real migrations."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from bot.app import Services, build_web_app
from bot.intake.hospitals import add_hospital
from bot.platform import db
from bot.platform.settings import Settings, async_database_url, load_settings
from tests.support import PROJECT_ROOT, auth  # noqa: F401 (auth: tests import it from here)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "test-secret-key-of-32-characters-or-more"  # as SECRET_KEY must be outside local mode

_BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session", params=_BACKENDS)
def migrated_url(request, tmp_path_factory) -> Iterator[str]:
    """A database migrated from empty, once per backend for the whole run."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        db.upgrade(url)
        yield url
        return
    given = make_url(async_database_url(os.environ["TEST_DATABASE_URL"]))
    # A database of this run's own beside the one given, so that two runs on one server (two
    # engineers, or CI beside a developer) cannot wipe each other's tables.
    own = given.set(database=f"{given.database}_run{os.getpid()}")
    asyncio.run(_postgres(given, f'DROP DATABASE IF EXISTS "{own.database}"', f'CREATE DATABASE "{own.database}"'))
    url = own.render_as_string(hide_password=False)
    db.upgrade(url)
    yield url
    asyncio.run(_postgres(given, f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))


async def _postgres(url, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def make_settings(database_url: str, **environ: str) -> Settings:
    return load_settings(
        {
            "BOT_CONFIG": str(PROJECT_ROOT / "config.yaml"),
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET,
            **environ,
        }
    )


@pytest.fixture
async def services(migrated_url) -> AsyncIterator[Services]:
    """Services on an emptied database. The clock is real unless a test replaces it."""
    built = Services.build(make_settings(migrated_url))
    async with built.database.engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            await connection.execute(table.delete())
    yield built
    await built.database.dispose()


@pytest.fixture
async def client(services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_web_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def keys(services) -> dict[str, str]:
    """Two hospitals, MRB and MCK, and their API keys."""
    issued = {}
    async with services.database.session() as session:
        for code, name, helpline in (
            ("MRB", "M.R. Bangur Hospital", "033 2473 2222"),
            ("MCK", "Medical College Kolkata", "033 2241 4901"),
        ):
            issued[code] = (
                await add_hospital(session, services.settings, services.secret_key, code, name, helpline)
            ).api_key
        await session.commit()
    return issued


def now_utc() -> datetime:
    return datetime.now(UTC)
