"""`python -m bot ...` as an operator uses it: register hospitals, hand out keys, migrate."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from dataclasses import dataclass

import httpx
import pytest
from sqlmodel import col, select

from bot import cli
from bot.app import Services, build_web_app
from bot.platform.settings import load_settings
from models import AuditEvent, Hospital
from tests.conftest import PROJECT_ROOT, SECRET, auth
from tests.support import SETTINGS_ENVIRONMENT, FileModes, schema_differences

KEY_LINE = re.compile(r"^API key \(shown once, keep it safe\): (\S+)$", re.MULTILINE)
ADMISSION = {"patient_name": "Ratan Das", "contact_mobile": "98300 12345"}


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def api_key(self) -> str:
        (key,) = KEY_LINE.findall(self.out)
        return key


@pytest.fixture(autouse=True)
def keep_logging():
    """The CLI configures logging (and Alembic reads alembic.ini); give the next test it back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved


@pytest.fixture
def operator(monkeypatch, tmp_path):
    """A shell with only the repo's config set, in an empty working directory."""
    for name in SETTINGS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOT_CONFIG", str(PROJECT_ROOT / "config.yaml"))
    return monkeypatch


@pytest.fixture
def shell(operator, services):
    """The operator's shell pointed at the (emptied) test database, with the test SECRET_KEY."""
    operator.setenv("DATABASE_URL", services.settings.database_url)
    operator.setenv("SECRET_KEY", SECRET)
    return operator


async def run(capsys, *argv: str) -> Run:
    # main() runs its own event loop, as it does under `python -m bot`; give it a thread.
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return Run(code, out, err)


async def add(capsys, code="MRB", name="M.R. Bangur Hospital", helpline="033 2473 2222", *more) -> Run:
    return await run(capsys, "hospitals", "add", code, "--name", name, "--helpline", helpline, *more)


async def api_answer(key: str) -> int:
    """The status a PUT gets from a web app built the way `python -m bot web` builds it."""
    services = Services.build(load_settings())
    try:
        transport = httpx.ASGITransport(app=build_web_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.put("/api/v1/admissions/R-1", json=ADMISSION, headers=auth(key))
            return response.status_code
    finally:
        await services.database.dispose()


async def hospitals(services: Services) -> list[Hospital]:
    async with services.database.session() as session:
        return list((await session.exec(select(Hospital).order_by(col(Hospital.code)))).all())


async def cli_audit(services: Services) -> list[str]:
    async with services.database.session() as session:
        query = select(AuditEvent.action).where(AuditEvent.actor == "cli").order_by(col(AuditEvent.id))
        return list((await session.exec(query)).all())


# --- hospitals add -----------------------------------------------------------------------------


async def test_add_prints_a_key_that_the_api_accepts(shell, services, capsys):
    result = await add(capsys, "mrb", "M.R. Bangur Hospital", "033 2473 2222", "--district", "Kolkata")

    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "MRB M.R. Bangur Hospital"
    assert result.api_key.startswith("MRB.")
    assert await api_answer(result.api_key) == 201
    assert await api_answer("MRB.not-the-key") == 401
    (hospital,) = await hospitals(services)
    assert (hospital.code, hospital.helpline, hospital.district, hospital.time_zone) == (
        "MRB", "+913324732222", "Kolkata", "Asia/Kolkata",
    )  # fmt: skip
    assert result.api_key not in hospital.model_dump_json()  # only a keyed hash is kept
    assert await cli_audit(services) == ["hospital.added"]


async def test_each_hospital_gets_its_own_key(shell, capsys):
    mrb = (await add(capsys)).api_key
    mck = (await add(capsys, "MCK", "Medical College Kolkata", "033 2241 4901")).api_key

    assert mrb != mck
    assert await api_answer(mrb) == 201
    assert await api_answer(mck) == 201  # R-1 again, but MCK's own


@pytest.mark.parametrize("again", ["MRB", "mrb", " MRB "])
async def test_adding_a_code_twice_is_refused(shell, services, capsys, again):
    first = await add(capsys)

    result = await add(capsys, again, "Another Bangur", "033 2473 1111")

    assert result.code == 1
    assert result.out == ""  # no key printed
    assert result.err.splitlines() == ["error: code: hospital MRB already exists (use rotate-key for a new key)"]
    assert [h.name for h in await hospitals(services)] == ["M.R. Bangur Hospital"]
    assert await api_answer(first.api_key) == 201


@pytest.mark.parametrize(
    "helpline, reason",
    [
        ("12345", "not a valid number"),
        ("call the front desk", "not a phone number"),
        ("+44 20 7946", "not a valid number"),
        ("", "not a phone number"),
    ],
)
async def test_a_bad_helpline_is_refused(shell, services, capsys, helpline, reason):
    result = await add(capsys, "MRB", "M.R. Bangur Hospital", helpline)

    assert result.code == 1
    assert result.out == ""
    (line,) = result.err.splitlines()
    assert line.startswith("error: helpline: ") and reason in line
    assert await hospitals(services) == []


async def test_a_landline_or_mobile_helpline_is_accepted(shell, services, capsys):
    assert (await add(capsys, "MRB", "M.R. Bangur Hospital", "+91 33 2473 2222")).code == 0
    assert (await add(capsys, "MCK", "Medical College Kolkata", "০৯৮৩০০ ১২৩৪৫")).code == 0

    assert [h.helpline for h in await hospitals(services)] == ["+919830012345", "+913324732222"]


@pytest.mark.parametrize("code", ["M", "MRB HOSPITAL", "MR.B", "A-VERY-LONG-CODE-1", "MRB/2"])
async def test_a_bad_code_is_refused(shell, services, capsys, code):
    result = await add(capsys, code)

    assert result.code == 1
    assert result.err.splitlines() == ["error: code: 2-16 letters, digits or dashes, e.g. MRB"]
    assert await hospitals(services) == []


async def test_an_empty_name_is_refused(shell, services, capsys):
    result = await add(capsys, "MRB", "   ")

    assert (result.code, result.err.splitlines()) == (1, ["error: name: must not be empty"])
    assert await hospitals(services) == []


def test_add_without_its_required_options_is_a_usage_error(operator, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["hospitals", "add", "MRB", "--name", "M.R. Bangur Hospital"])

    assert exited.value.code == 2
    assert "--helpline" in capsys.readouterr().err


# --- hospitals rotate-key ----------------------------------------------------------------------


async def test_rotate_key_makes_the_old_key_fail_and_the_new_one_work(shell, services, capsys):
    old = (await add(capsys)).api_key

    result = await run(capsys, "hospitals", "rotate-key", "mrb")

    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "MRB M.R. Bangur Hospital"
    new = result.api_key
    assert new != old
    assert await api_answer(old) == 401
    assert await api_answer(new) == 201
    assert await cli_audit(services) == ["hospital.added", "hospital.key_rotated"]


async def test_rotating_the_key_of_an_unknown_hospital_is_refused(shell, services, capsys):
    result = await run(capsys, "hospitals", "rotate-key", "XYZ")

    assert (result.code, result.out, result.err.splitlines()) == (1, "", ["error: code: no hospital XYZ"])
    assert await cli_audit(services) == []


# --- hospitals list ----------------------------------------------------------------------------


async def test_list_shows_the_registered_hospitals_by_code(shell, capsys):
    assert (await run(capsys, "hospitals", "list")).out == ""
    await add(capsys, "MRB", "M.R. Bangur Hospital", "033 2473 2222", "--district", "Kolkata")
    await add(capsys, "MCK", "Medical College Kolkata", "033 2241 4901")

    result = await run(capsys, "hospitals", "list")

    assert result.code == 0
    assert result.out.splitlines() == [
        "MCK\tMedical College Kolkata\t+913322414901\t",
        "MRB\tM.R. Bangur Hospital\t+913324732222\tKolkata",
    ]
    assert "MRB." not in result.out  # never a key


# --- db upgrade, and local mode ----------------------------------------------------------------


async def test_db_upgrade_migrates_a_fresh_sqlite_file(operator, tmp_path, capsys):
    path = tmp_path / "var" / "ward.sqlite3"
    operator.setenv("DATABASE_URL", f"sqlite:///{path}")  # as operators write it

    first = await run(capsys, "db", "upgrade")
    second = await run(capsys, "db", "upgrade")

    for result in (first, second):
        assert result.code == 0, result.err
        assert result.out == "database is up to date\n"
    assert path.exists()
    assert await schema_differences(f"sqlite+aiosqlite:///{path}") == []


async def test_in_local_mode_a_key_survives_a_restart_without_secret_key(operator, tmp_path, capsys):
    """No SECRET_KEY and SQLite: the key is made once under ./data and used by every process."""
    assert (await run(capsys, "db", "upgrade")).code == 0  # the config's own ./data SQLite file

    result = await add(capsys)

    assert result.code == 0, result.err
    assert (tmp_path / "data" / "secret_key").exists()
    assert (tmp_path / "data" / "wardwatch.sqlite3").exists()
    assert await api_answer(result.api_key) == 201


async def test_local_files_are_their_owners_alone_from_the_start(operator, tmp_path, capsys):
    """data/ holds patients' names and numbers and the key every hash depends on: only its owner
    may read it, whatever the umask, and no file of it is ever readable by others, not even while
    it is being made (SQLite finds the database file already owner-only when it first opens it)."""
    data = tmp_path / "data"
    previous = os.umask(0o022)  # the usual umask: what a file gets unless its maker says otherwise
    try:
        with FileModes(data) as seen:
            assert (await run(capsys, "db", "upgrade")).code == 0
            result = await add(capsys)
            assert result.code == 0, result.err
            assert await api_answer(result.api_key) == 201  # the API writes: the WAL is in use
            # While a connection is open in WAL mode, the write-ahead log and its index exist too.
            services = Services.build(load_settings())
            try:
                async with services.database.engine.begin():
                    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data.iterdir()}
            finally:
                await services.database.dispose()
    finally:
        os.umask(previous)

    assert modes == dict.fromkeys(
        ["wardwatch.sqlite3", "wardwatch.sqlite3-wal", "wardwatch.sqlite3-shm", "secret_key"], 0o600
    )
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert seen.modes("wardwatch.sqlite3", "sqlite3.connect")
    assert set(seen.modes("wardwatch.sqlite3", "sqlite3.connect")) == {0o600}, seen.seen
    assert {mode for name in seen.seen for mode in seen.modes(name)} <= {None, 0o600}, seen.seen
