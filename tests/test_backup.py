"""`python -m bot backup FILE` and `python -m bot restore FILE` as an operator uses them on a SQLite
database: a copy taken while the hospital API writes, put back into a fresh place, holds every
write the API acknowledged before the backup began."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import sys
from pathlib import Path
from typing import TextIO

import httpx
import pytest
from sqlmodel import select

from bot import cli
from bot.app import Services, build_web_app
from bot.intake.hospitals import add_hospital
from bot.platform import db
from models import Admission, Hospital
from tests.conftest import PROJECT_ROOT, SECRET, auth, make_settings
from tests.test_cli import keep_logging, operator  # noqa: F401 (fixtures)
from tests.test_stopping import environment, free_port, until_healthy

ADMISSION = {"patient_name": "Ratan Das", "contact_mobile": "98300 12345"}


@pytest.fixture
def keyed_operator(operator):
    """The CLI tests' operator's shell, with the test SECRET_KEY set."""
    operator.setenv("SECRET_KEY", SECRET)
    return operator


async def hospital_codes(database_url: str) -> list[str]:
    services = Services.build(make_settings(database_url))
    try:
        async with services.database.session() as session:
            return list((await session.exec(select(Hospital.code))).all())
    finally:
        await services.database.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def command(operator, capsys, database_url: str, *argv: str) -> tuple[int, str, str]:
    operator.setenv("DATABASE_URL", database_url)
    code = await asyncio.to_thread(cli.main, list(argv))  # its own event loop, as under `python -m bot`
    out, err = capsys.readouterr()
    return code, out, err


async def registrations(database_url: str) -> set[str]:
    services = Services.build(make_settings(database_url))
    try:
        async with services.database.session() as session:
            return set((await session.exec(select(Admission.registration_no))).all())
    finally:
        await services.database.dispose()


async def test_a_backup_taken_while_the_api_writes_restores_every_acknowledged_write(keyed_operator, capsys, tmp_path):
    live = sqlite_url(tmp_path / "live" / "ward-watch.sqlite3")
    await asyncio.to_thread(db.upgrade, live)  # it runs its own event loop
    services = Services.build(make_settings(live))
    async with services.database.session() as session:
        key = (
            await add_hospital(session, services.settings, services.secret_key, "MRB", "Bangur", "033 2473 2222")
        ).api_key
        await session.commit()
    acknowledged: list[str] = []
    goal = [20]  # how many acknowledged writes `reached` waits for
    reached = asyncio.Event()
    stop = asyncio.Event()

    async def hospital_writes() -> None:
        transport = httpx.ASGITransport(app=build_web_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            n = 0
            while not stop.is_set():
                n += 1
                response = await http.put(f"/api/v1/admissions/R-{n}", json=ADMISSION, headers=auth(key))
                assert response.status_code == 201, response.text
                acknowledged.append(f"R-{n}")
                if len(acknowledged) >= goal[0]:
                    reached.set()

    writer = asyncio.create_task(hospital_writes())
    try:
        await asyncio.wait_for(reached.wait(), 30)
        before_backup = list(acknowledged)
        backup_file = tmp_path / "backups" / "ward-watch.sqlite3"
        backup_file.parent.mkdir()
        code, out, err = await command(keyed_operator, capsys, live, "backup", str(backup_file))
        reached.clear()
        goal[0] = len(acknowledged) + 5
        await asyncio.wait_for(reached.wait(), 30)  # the API was not held up by the backup
    finally:
        stop.set()
        await writer
        await services.database.dispose()

    assert code == 0, err
    assert out.startswith(f"backed up to {backup_file} (")
    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600  # it holds names and numbers

    fresh = sqlite_url(tmp_path / "elsewhere" / "ward-watch.sqlite3")
    code, out, err = await command(keyed_operator, capsys, fresh, "restore", str(backup_file))
    assert code == 0, err
    assert out.splitlines() == [
        f"restored from {backup_file}: run `python -m bot db upgrade` before starting the service"
    ]
    restored = await registrations(fresh)
    assert set(before_backup) <= restored  # nothing acknowledged before the backup is lost
    assert restored <= set(acknowledged)
    assert stat.S_IMODE((tmp_path / "elsewhere" / "ward-watch.sqlite3").stat().st_mode) == 0o600

    # The restored database serves the API as before: the hospital's key still opens it.
    services = Services.build(make_settings(fresh))
    try:
        transport = httpx.ASGITransport(app=build_web_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.put("/api/v1/admissions/R-1", json=ADMISSION, headers=auth(key))
            assert response.status_code == 200, response.text
    finally:
        await services.database.dispose()


async def test_a_restore_is_refused_while_the_service_runs_and_replaces_the_database_once_stopped(
    keyed_operator, capsys, tmp_path
):
    port = free_port()
    environ = await environment(tmp_path, port)  # a migrated SQLite file of its own
    live = environ["DATABASE_URL"]
    saved = tmp_path / "saved.sqlite3"
    assert (await command(keyed_operator, capsys, live, "backup", str(saved)))[0] == 0
    services = Services.build(make_settings(live))
    async with services.database.session() as session:
        await add_hospital(session, services.settings, services.secret_key, "MRB", "Bangur", "033 2473 2222")
        await session.commit()
    await services.database.dispose()

    web = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "web", cwd=PROJECT_ROOT, env=environ,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(until_healthy(port, lambda: web.returncode is not None), 120)
        code, out, err = await command(keyed_operator, capsys, live, "restore", str(saved))
    finally:
        web.send_signal(signal.SIGTERM)
        await asyncio.wait_for(web.wait(), 15)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: the database is in use: stop the service's processes (web, worker, run, chat) "
        "and wait for any import or other command to end"
    ]
    assert await hospital_codes(live) == ["MRB"]  # nothing changed

    code, out, err = await command(keyed_operator, capsys, live, "restore", str(saved))
    assert code == 0, err
    assert await hospital_codes(live) == []  # as it was when saved


async def opened_by_reader(pipe: Path, reader: asyncio.subprocess.Process) -> TextIO:
    """`pipe` opened to write, which returns once `reader` opens it to read; fails if `reader` ends first."""
    opening = asyncio.ensure_future(asyncio.to_thread(open, pipe, "w", encoding="utf-8"))
    ended = asyncio.ensure_future(reader.wait())
    await asyncio.wait({opening, ended}, return_when=asyncio.FIRST_COMPLETED)
    if not opening.done():
        os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))  # a reader, so that the open returns
        (await opening).close()
        raise AssertionError(f"the reader ended first: {await reader.stderr.read() if reader.stderr else b''!r}")
    ended.cancel()
    return opening.result()


async def test_a_restore_is_refused_while_an_import_runs_and_the_import_keeps_its_rows(
    keyed_operator, capsys, tmp_path
):
    environ = await environment(tmp_path, free_port())  # a migrated SQLite file of its own
    live = environ["DATABASE_URL"]
    services = Services.build(make_settings(live))
    async with services.database.session() as session:
        await add_hospital(session, services.settings, services.secret_key, "MRB", "Bangur", "033 2473 2222")
        await session.commit()
    await services.database.dispose()
    saved = tmp_path / "saved.sqlite3"
    assert (await command(keyed_operator, capsys, live, "backup", str(saved)))[0] == 0
    # The import reads its file from a pipe: it runs, holding what it holds, until the file is written;
    # the pipe opens to write once the import opens it to read, after it took what it holds.
    csv_file = tmp_path / "today.csv"
    os.mkfifo(csv_file)

    importing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "import", str(csv_file), "--hospital", "MRB", cwd=PROJECT_ROOT, env=environ,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    writing = await opened_by_reader(csv_file, importing)
    try:
        code, out, err = await command(keyed_operator, capsys, live, "restore", str(saved))
        writing.write("registration_no,patient_name,contact_mobile\nR-1,Ratan Das,098300 12345\n")
    finally:
        writing.close()
    imported, import_errors = await asyncio.wait_for(importing.communicate(), 60)

    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: the database is in use: stop the service's processes (web, worker, run, chat) "
        "and wait for any import or other command to end"
    ]
    assert importing.returncode == 0, import_errors.decode()
    assert "today.csv for MRB: 1 row read; 1 admission created" in imported.decode()
    assert await registrations(live) == {"R-1"}
    assert await hospital_codes(live) == ["MRB"]


async def test_a_file_that_is_not_a_backup_is_not_restored_nor_a_backup_written_nowhere(
    keyed_operator, capsys, tmp_path
):
    live = sqlite_url(tmp_path / "ward-watch.sqlite3")
    await asyncio.to_thread(db.upgrade, live)  # it runs its own event loop
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()

    code, _, err = await command(keyed_operator, capsys, live, "restore", str(notes))
    assert code == 1 and err.startswith(f"error: {notes} is not a SQLite database")
    code, _, err = await command(keyed_operator, capsys, live, "restore", str(empty))
    assert (code, err) == (1, f"error: {empty} is not a Ward Watch database\n")
    code, _, err = await command(keyed_operator, capsys, live, "restore", str(tmp_path / "missing.sqlite3"))
    assert (code, err) == (1, f"error: there is no backup at {tmp_path / 'missing.sqlite3'}\n")
    assert await registrations(live) == set()  # the database is as it was
    code, _, err = await command(keyed_operator, capsys, live, "backup", str(tmp_path / "nowhere" / "backup.sqlite3"))
    assert (code, err) == (1, f"error: there is no folder {tmp_path / 'nowhere'}\n")


async def test_postgresql_is_backed_up_with_its_own_tools(keyed_operator, capsys, tmp_path):
    postgres = "postgresql://wardwatch@db.example/wardwatch"
    for action in ("backup", "restore"):
        code, out, err = await command(keyed_operator, capsys, postgres, action, str(tmp_path / "dump"))
        assert (code, out) == (1, "")
        assert err == (
            "error: the database is postgresql, not SQLite: use pg_dump and pg_restore (see the README's Backups)\n"
        )
