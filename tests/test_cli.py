"""`python -m bot ...` as an operator uses it: register hospitals, hand out keys, migrate."""

from __future__ import annotations

import argparse
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
from bot.intake.demo import HOSPITALS, PATIENTS
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


HEADER = "code\tname\tdistrict\thelpline\trelatives see vitals\trelatives see remarks"


async def test_list_shows_the_registered_hospitals_by_code_with_what_relatives_see(shell, capsys):
    empty = await run(capsys, "hospitals", "list")
    assert empty.out == "no hospitals yet: `python -m bot hospitals add CODE --name NAME --helpline PHONE` adds one\n"
    await add(capsys, "MRB", "M.R. Bangur Hospital", "033 2473 2222", "--district", "Kolkata")
    await add(capsys, "MCK", "Medical College Kolkata", "033 2241 4901")

    result = await run(capsys, "hospitals", "list")

    assert result.code == 0
    # config.yaml's disclosure_defaults: vitals shown, remarks not.
    assert result.out.splitlines() == [
        HEADER,
        "MCK\tMedical College Kolkata\t-\t+913322414901\tyes\tno",
        "MRB\tM.R. Bangur Hospital\tKolkata\t+913324732222\tyes\tno",
    ]
    assert "MRB." not in result.out  # never a key


# --- hospitals set -----------------------------------------------------------------------------


async def audit_details(services: Services) -> list[tuple[str, dict]]:
    async with services.database.session() as session:
        query = select(AuditEvent).where(AuditEvent.actor == "cli").order_by(col(AuditEvent.id))
        return [(event.action, event.detail) for event in (await session.exec(query)).all()]


async def test_set_changes_the_helpline_and_what_relatives_see_and_audits_it(shell, services, capsys):
    await add(capsys, "MRB", "M.R. Bangur Hospital", "033 2473 2222", "--district", "Kolkata")

    result = await run(
        capsys, "hospitals", "set", "mrb", "--helpline", "033 2400 1000", "--disclose-vitals", "no",
        "--disclose-remarks", "YES",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "MRB M.R. Bangur Hospital",
        "helpline: +913324001000",
        "relatives see vitals: no",
        "relatives see remarks: yes",
        "changed: helpline, vitals, remarks",
    ]
    listed = await run(capsys, "hospitals", "list")
    assert listed.out.splitlines()[1] == "MRB\tM.R. Bangur Hospital\tKolkata\t+913324001000\tno\tyes"
    assert await audit_details(services) == [
        ("hospital.added", {}),
        ("hospital.helpline_changed", {"previous": "+913324732222", "helpline": "+913324001000"}),
        ("hospital.disclosure_changed", {"show_vitals": False, "show_remarks": True}),
    ]


async def test_set_changes_only_what_it_is_given(shell, services, capsys):
    await add(capsys)

    result = await run(capsys, "hospitals", "set", "MRB", "--disclose-remarks", "yes")
    again = await run(capsys, "hospitals", "set", "MRB", "--disclose-remarks", "yes", "--helpline", "+91 33 2473 2222")

    assert result.out.splitlines()[1:] == [
        "helpline: +913324732222", "relatives see vitals: yes", "relatives see remarks: yes", "changed: remarks",
    ]  # fmt: skip
    assert (again.code, again.out.splitlines()[-1]) == (0, "nothing changed: it was so already")
    assert [action for action, _ in await audit_details(services)] == ["hospital.added", "hospital.disclosure_changed"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["XYZ", "--disclose-vitals", "no"], "error: code: no hospital XYZ"),
        (["MRB", "--helpline", "12345"], "error: helpline: "),
        (["MRB", "--helpline", "call the front desk"], "error: helpline: not a phone number"),
        (["MRB"], "error: nothing to set: give --helpline, --disclose-vitals or --disclose-remarks"),
    ],
)
async def test_set_refuses_what_it_cannot_do_and_changes_nothing(shell, services, capsys, argv, message):
    await add(capsys)

    result = await run(capsys, "hospitals", "set", *argv)

    assert (result.code, result.out) == (1, "")
    (line,) = result.err.splitlines()
    assert line.startswith(message), line
    (hospital,) = await hospitals(services)
    assert (hospital.helpline, hospital.show_vitals, hospital.show_remarks) == ("+913324732222", True, False)
    assert await cli_audit(services) == ["hospital.added"]


def test_set_takes_only_yes_or_no_for_what_relatives_see(operator, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["hospitals", "set", "MRB", "--disclose-vitals", "maybe"])

    assert exited.value.code == 2
    assert "--disclose-vitals: 'maybe': yes or no" in capsys.readouterr().err


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
        ["wardwatch.sqlite3", "wardwatch.sqlite3-wal", "wardwatch.sqlite3-shm", "wardwatch.sqlite3.lock", "secret_key"],
        0o600,
    )
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert seen.modes("wardwatch.sqlite3", "sqlite3.connect")
    assert set(seen.modes("wardwatch.sqlite3", "sqlite3.connect")) == {0o600}, seen.seen
    assert {mode for name in seen.seen for mode in seen.modes(name)} <= {None, 0o600}, seen.seen


# --- the demo, twice (a second `make run`) -----------------------------------------------------


async def test_the_demo_prints_its_registration_numbers_and_a_second_run_says_how_to_get_a_key(shell, capsys):
    first = await run(capsys, "demo")
    second = await run(capsys, "demo")

    assert first.code == second.code == 0
    for hospital in HOSPITALS:
        numbers = ", ".join(patient.registration_no for patient in PATIENTS[hospital.code])
        assert f"  registration numbers: {numbers}" in first.out.splitlines()
        assert (
            f"{hospital.code} {hospital.name}: already exists, skipped (no demo patients added); its key was shown "
            f"when it was added: `python -m bot hospitals rotate-key {hospital.code}` issues a new one"
        ) in second.out.splitlines()
    assert "MRB-20-0413" in first.out  # Ratan Das, whom the README's walk-through follows
    assert "API key" not in second.out


# --- every command explains itself ---------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command and subcommand of the parser, with the words that lead to it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


def test_every_command_has_a_description_and_every_argument_a_help(capsys):
    found = list(subcommands(cli._parser()))
    assert {" ".join(path) for path, _ in found} >= {"run", "web", "worker", "hospitals set", "outbox", "staff add"}

    for path, parser in found:
        assert (parser.description or "").strip(), path
        arguments = [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]
        with pytest.raises(SystemExit):
            cli.main([*path, "--help"])
        shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
        assert " ".join(parser.description.split()) in shown, path
        for action in arguments:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert (action.help or "").strip(), f"{' '.join(path)} {name}: no help"
            assert " ".join(action.help.split()) in shown, (path, name)


@pytest.mark.parametrize(
    "command, words",
    [
        ("worker", ["dispatcher, which sends the alerts", "scheduler's periodic jobs", "/metrics"]),
        ("web", ["hospital API", "ward page", "WhatsApp webhooks", "Telegram bot when TELEGRAM_BOT_TOKEN is set"]),
        ("run", ["the Telegram bot, the dispatcher that sends alerts and the scheduler's periodic jobs"]),
    ],
)
def test_worker_and_web_say_what_they_run(capsys, command, words):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())

    for said in words:
        assert said in shown, shown
