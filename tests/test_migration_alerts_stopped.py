"""Migration 0011 marks the chats whose alerts were already stopped when it runs, so that a chat
that had sent /stop is not told of a new admission after the upgrade either."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command

from bot.platform import db

AT = "2026-12-01 10:00:00.000000"


def before_0011(path: Path) -> None:
    """A hospital with Ratan (admitted) and Mina (discharged), and four chats: one that sent /stop,
    one that follows with alerts on, one told Mina's discharge (her last alert), one that follows
    nobody."""
    rows = {
        "hospital": [(1, "MRB", "M.R. Bangur Hospital", "+913324732222", "Asia/Kolkata", "x", AT, 0, 0, AT)],
        "admission": [(1, 1, "R-1", "Ratan Das", "+919830012345", "admitted", AT, AT),
                      (2, 1, "R-2", "Mina Das", "+919830012345", "discharged", AT, AT)],
        "chat": [(chat_id, "console", key, "verified", AT, AT)
                 for chat_id, key in ((1, "stopped"), (2, "following"), (3, "told-last"), (4, "nobody"))],
        "verification": [(chat_id, chat_id, "+919830012345", AT, "2027-01-01 00:00:00.000000") for chat_id in (1, 2, 3)],
        "subscription": [(1, 1, 1, 1, AT, 0), (2, 2, 1, 2, AT, 1), (3, 3, 2, 3, AT, 0)],
    }  # fmt: skip
    columns = {
        "hospital": "id, code, name, helpline, time_zone, api_key_hash, api_key_issued_at, show_vitals, show_remarks, created_at",
        "admission": "id, hospital_id, registration_no, patient_name, contact_mobile, status, created_at, updated_at",
        "chat": "id, channel, chat_key, state, created_at, updated_at",
        "verification": "id, chat_id, mobile, verified_at, expires_at",
        "subscription": "id, chat_id, admission_id, verification_id, created_at, alerts",
    }  # fmt: skip
    with sqlite3.connect(path) as connection:
        for table, values in rows.items():
            marks = ", ".join("?" * len(values[0]))
            connection.executemany(f"INSERT INTO {table} ({columns[table]}) VALUES ({marks})", values)
    connection.close()


async def test_chats_that_had_stopped_their_alerts_are_marked_and_the_others_not(tmp_path):
    path = tmp_path / "ward.sqlite3"
    config = db.alembic_config(f"sqlite+aiosqlite:///{path}")
    # Alembic's env.py runs its own event loop, so it must not run on the test's.
    await asyncio.to_thread(command.upgrade, config, "0010")
    before_0011(path)

    await asyncio.to_thread(command.upgrade, config, "0011")

    with sqlite3.connect(path) as connection:
        marked = dict(connection.execute("SELECT chat_key, alerts_stopped FROM chat").fetchall())
    connection.close()
    assert marked == {"stopped": 1, "following": 0, "told-last": 0, "nobody": 0}
