"""What the ingest and the dispatch benchmarks share: databases, child processes, the table."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.admissions import Seeded
from bot.intake.hospitals import add_hospital
from bot.platform.settings import Settings, async_database_url
from models import Admission, ConditionUpdate

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


async def seed_admissions(
    session: AsyncSession, settings: Settings, hospitals: Sequence[tuple[str, str]], admissions: Sequence[Seeded],
    now: datetime,
) -> dict[str, int]:  # fmt: skip
    """`hospitals` (code, name) and `admissions`, admitted two days and updated three hours before
    `now`, written in bulk (no audit, no outbox rows); the admissions' ids by registration number."""
    hospital_ids = []
    for code, name in hospitals:
        issued = await add_hospital(session, settings, SECRET_KEY.encode(), code, name, "033 2400 1000")
        hospital_ids.append(issued.hospital.id)
    await session.flush()
    await session.exec(
        insert(Admission.__table__),
        params=[
            {
                "hospital_id": hospital_ids[a.hospital],
                "registration_no": a.registration_no,
                "patient_name": a.patient_name,
                "contact_mobile": a.contact_mobile,
                "age": a.age,
                "sex": a.sex,
                "ward": a.ward,
                "bed": a.bed,
                "admitted_at": now - timedelta(days=2),
                "status": "admitted",
                "status_at": None,
                "transferred_to": None,
                "status_remarks": None,
                "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            for a in admissions
        ],
    )
    admission_id = dict((await session.exec(select(Admission.registration_no, Admission.id))).all())
    recorded = now - timedelta(hours=3)
    await session.exec(
        insert(ConditionUpdate.__table__),
        params=[
            {
                "admission_id": admission_id[a.registration_no],
                "condition": a.condition,
                "care_area": a.care_area,
                "respiratory_support": a.support,
                "spo2": a.spo2,
                "pulse": a.pulse,
                "recorded_at": recorded,
                "received_at": recorded,
                "source": "api",
            }  # fmt: skip
            for a in admissions
        ],
    )
    return admission_id
