"""What the ingest and the dispatch benchmarks share: databases, child processes, the table."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.platform.settings import async_database_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key-of-32-characters-or-more"  # as SECRET_KEY must be outside local mode
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def child_env(url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BOT_CONFIG": str(PROJECT_ROOT / "config.yaml"),
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        **extra,
    }


def server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or DEFAULT_SERVER


@asynccontextmanager
async def sqlite_database(folder: Path, name: str) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{folder / name}.sqlite3"


@asynccontextmanager
async def postgresql_database(server_url: str, name: str, template: str | None = None) -> AsyncIterator[str]:
    """A fresh database `name` on the server (a copy of `template` if given), dropped afterwards."""
    admin = create_async_engine(async_database_url(server_url), isolation_level="AUTOCOMMIT")
    url = make_url(async_database_url(server_url)).set(database=name)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            copy = f" TEMPLATE {template}" if template else ""
            await connection.execute(text(f"CREATE DATABASE {name}{copy}"))
        yield url.render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()


async def postgresql_unreachable(server_url: str) -> str | None:
    """None when the server answers, else why not."""
    engine = create_async_engine(async_database_url(server_url), connect_args={"timeout": 5})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "skip PostgreSQL"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        await engine.dispose()


def log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def print_rows(header: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)
