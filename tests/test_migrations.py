"""The migrations build exactly the schema the models describe, and can be undone and redone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlmodel import SQLModel

from bot.platform import db
from tests.support import schema_differences, table_names


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def downgrade(url: str, revision: str) -> None:
    # Alembic's env.py runs its own event loop, so it must not run on the test's.
    await asyncio.to_thread(command.downgrade, db.alembic_config(url), revision)


async def test_migrating_an_empty_sqlite_file_gives_the_models_schema(tmp_path):
    url = sqlite_url(tmp_path / "fresh" / "ward.sqlite3")  # the folder does not exist yet

    await db.upgrade_async(url)

    assert await schema_differences(url) == []
    assert await table_names(url) == {*SQLModel.metadata.tables, "alembic_version"}


async def test_the_test_database_has_the_models_schema(migrated_url):
    """Runs on PostgreSQL too when TEST_DATABASE_URL is set: migrated from empty by conftest."""
    assert await schema_differences(migrated_url) == []


async def test_upgrading_twice_changes_nothing(tmp_path):
    url = sqlite_url(tmp_path / "ward.sqlite3")

    await db.upgrade_async(url)
    await db.upgrade_async(url)

    assert await schema_differences(url) == []


async def test_downgrade_to_base_then_upgrade_again(tmp_path):
    url = sqlite_url(tmp_path / "ward.sqlite3")
    await db.upgrade_async(url)

    await downgrade(url, "base")
    assert await table_names(url) == {"alembic_version"}

    await db.upgrade_async(url)
    assert await schema_differences(url) == []
    assert await table_names(url) == {*SQLModel.metadata.tables, "alembic_version"}
