"""`python -m bot ...`: the commands the README lists. Each one is a thin call into a module."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path

from bot import app
from bot.intake.hospitals import HospitalError, add_hospital, change_hospital, get_hospital, list_hospitals, rotate_key
from bot.platform import backup, db
from bot.platform.logs import configure_logging
from bot.platform.settings import Settings, SettingsError, load_settings
from bot.staff.accounts import StaffError, add_account
from models import Hospital
from models.enums import NotificationStatus
from models.staff import StaffRole

YES_NO = {"yes": True, "no": False}


def _yes_or_no(value: str) -> bool:
    """`yes` or `no`, as an operator types it, for the disclosure options."""
    try:
        return YES_NO[value.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{value!r}: yes or no") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Ward Watch: hospitals record their patients' condition; relatives are told on Telegram, "
        "WhatsApp or the console chat. With no command, `run`.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(parent, name: str, summary: str, description: str) -> argparse.ArgumentParser:
        """A subcommand: `summary` in its parent's list, `description` atop its own --help."""
        return parent.add_parser(name, help=summary, description=description)

    command(
        commands, "run", "everything configured in one process (the default)",
        "The web server (hospital API, ward page, WhatsApp and Telegram webhooks), the Telegram bot, the "
        "dispatcher that sends alerts and the scheduler's periodic jobs, in one process. With no messaging "
        "channel configured and a terminal, the console chat on demo data beside them.",
    )  # fmt: skip
    command(
        commands, "web", "the web server and the Telegram bot (Procfile web)",
        "The web server: the hospital API, the ward page (/staff/), /healthz, /readyz and /metrics, the "
        "WhatsApp webhooks when TWILIO_WHATSAPP_FROM is set, and the Telegram bot when TELEGRAM_BOT_TOKEN is "
        "set (its webhook, or polling without TELEGRAM_WEBHOOK_URL). Alerts are sent by `worker`.",
    )  # fmt: skip
    command(
        commands, "worker", "the dispatcher that sends alerts and the scheduler (Procfile worker)",
        "The dispatcher, which sends the alerts waiting in the outbox on every configured channel, and the "
        "scheduler's periodic jobs: the daily digest, expiring verifications, erasing patients' data after "
        "their retention, deleting old uploads; with its own /metrics, /healthz and /readyz on "
        "operations.worker_metrics_port. Relatives' messages are answered by `web`.",
    )  # fmt: skip
    command(
        commands, "chat", "the relative's conversation in this terminal (demo data locally)",
        "The relative's conversation in this terminal: codes 'sent by SMS' are printed here, alerts are shown "
        "as they happen. Locally the demo hospitals and patients are loaded first.",
    )  # fmt: skip

    database = command(commands, "db", "database maintenance", "Database maintenance.")
    command(
        database.add_subparsers(dest="db_command", required=True, metavar="ACTION"),
        "upgrade", "apply the database migrations",
        "Apply the database migrations (Alembic) to DATABASE_URL, or config.yaml's database.url.",
    )  # fmt: skip

    hospitals = command(
        commands, "hospitals", "register hospitals, their API keys, what relatives see",
        "Register hospitals, issue their API keys, and set what their relatives see and whom they call.",
    )  # fmt: skip
    actions = hospitals.add_subparsers(dest="hospitals_command", required=True, metavar="ACTION")
    add = command(
        actions, "add", "register a hospital; prints its API key once",
        "Register a hospital and print its API key, once: its system sends admissions and updates with it. "
        "What its relatives see starts as config.yaml's disclosure_defaults.",
    )  # fmt: skip
    add.add_argument("code", help="short code, 2-16 letters, digits or dashes, e.g. MRB")
    add.add_argument("--name", required=True, help="the name relatives know, e.g. 'M.R. Bangur Hospital'")
    add.add_argument("--helpline", required=True, metavar="PHONE", help="the number relatives are asked to call")
    add.add_argument("--district", help="the district it is in, e.g. Kolkata")
    rotate = command(
        actions, "rotate-key", "issue a new key; the old one stops working",
        "Issue a new API key for a hospital and print it once; the old key stops working at once.",
    )  # fmt: skip
    rotate.add_argument("code", help="the hospital's code, e.g. MRB")
    command(
        actions, "list", "the registered hospitals, what their relatives see, their helplines",
        "The registered hospitals: code, name, district, helpline, and whether relatives see the vitals and "
        "the doctor's remarks. Never a key.",
    )  # fmt: skip
    change = command(
        actions, "set", "set a hospital's helpline and what its relatives see",
        "Set the helpline relatives are asked to call and whether they see the vitals and the doctor's remarks "
        "(a hospital's admin can change them on the ward page too). Each change is audited.",
    )  # fmt: skip
    change.add_argument("code", help="the hospital's code, e.g. MRB")
    change.add_argument("--helpline", metavar="PHONE", help="the number relatives are asked to call")
    change.add_argument(
        "--disclose-vitals",
        type=_yes_or_no,
        metavar="yes|no",
        help="whether relatives see SpO2, pulse, blood pressure...",
    )
    change.add_argument(
        "--disclose-remarks", type=_yes_or_no, metavar="yes|no", help="whether relatives see the doctor's remarks"
    )

    importer = command(
        commands, "import", "bulk upsert admissions from a CSV file",
        "Add or update admissions and condition updates from a hospital's CSV file. Each bad row is reported "
        "with its line and reason and the good ones kept; exit 1 if any row was rejected.",
    )  # fmt: skip
    importer.add_argument("file", type=Path, help="the CSV file (its columns: see the README)")
    importer.add_argument("--hospital", required=True, metavar="CODE", help="the hospital whose patients these are")
    importer.add_argument("--dry-run", action="store_true", help="check and report, change nothing")

    staff = command(
        commands, "staff", "accounts of hospital staff for the ward's page",
        "Accounts of hospital staff for the ward's page (/staff/).",
    )  # fmt: skip
    staff_actions = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    staff_add = command(
        staff_actions, "add", "add an account; prints its one-time password",
        "Add a staff account and print its one-time password, changed at the first login.",
    )  # fmt: skip
    staff_add.add_argument("username", help="the name its holder logs in with")
    staff_add.add_argument("--hospital", required=True, metavar="CODE", help="the hospital it belongs to")
    staff_add.add_argument(
        "--role", required=True, choices=[role.value for role in StaffRole],
        help="ward: records patients' condition; admin: also accounts, disclosure, uploads and reports",
    )  # fmt: skip
    staff_add.add_argument(
        "--ward", action="append", default=[], metavar="W", help="a ward the account sees (repeat; none: every ward)"
    )

    command(
        commands, "demo", "load the fictional demo hospitals and patients",
        "Load the fictional demo hospitals and patients and print their API keys, registration numbers and "
        "numbers to try; a hospital already there is skipped.",
    )  # fmt: skip
    outbox = command(
        commands, "outbox", "alerts by status, the dead and cancelled ones with their reasons; --retry puts dead ones back",
        "Alerts by status; the dead and cancelled ones by hospital, channel and reason; the latest dead ones "
        "with their last error. --retry puts the dead ones back in the queue once their cause is fixed.",
    )  # fmt: skip
    outbox.add_argument("--retry", action="store_true", help="put the dead alerts back once their cause is fixed")
    outbox.add_argument("--hospital", metavar="CODE", help="with --retry: only alerts about its patients")
    outbox.add_argument(
        "--channel", choices=["telegram", "whatsapp", "console"], help="with --retry: only alerts to its chats"
    )

    command(
        commands, "backup", "copy the SQLite database, while the service runs, to FILE",
        "Copy the SQLite database, while the service runs, to FILE (written whole, readable by its owner only). "
        "For PostgreSQL use pg_dump.",
    ).add_argument("file", type=Path, help="where to write the copy")  # fmt: skip
    command(
        commands, "restore", "put a backup back as the SQLite database (service stopped)",
        "Put a backup back as the SQLite database; refused while a process of the service, or another "
        "command that uses the database (an import, say), runs. For PostgreSQL use pg_restore.",
    ).add_argument("file", type=Path, help="a backup written by `python -m bot backup`")  # fmt: skip
    return parser


async def _with_session(services: app.Services, work: Callable) -> int:
    try:
        async with services.database.session() as session:
            return await work(session)
    finally:
        await services.database.dispose()


HOSPITALS_HEADER = "code\tname\tdistrict\thelpline\trelatives see vitals\trelatives see remarks"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _hospital_row(hospital: Hospital) -> str:
    """One line of `hospitals list`, under `HOSPITALS_HEADER`."""
    return "\t".join(
        (hospital.code, hospital.name, hospital.district or "-", hospital.helpline,
         _yes(hospital.show_vitals), _yes(hospital.show_remarks))
    )  # fmt: skip


async def _change_hospital(services: app.Services, session, args: argparse.Namespace) -> int:
    """`hospitals set`: the hospital as it is now, and what changed."""
    wanted = (args.helpline, args.disclose_vitals, args.disclose_remarks)
    if all(value is None for value in wanted):
        print("error: nothing to set: give --helpline, --disclose-vitals or --disclose-remarks", file=sys.stderr)
        return 1
    try:
        hospital, changed = await change_hospital(session, services.settings, args.code, *wanted)
    except HospitalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    await session.commit()
    print(f"{hospital.code} {hospital.name}")
    print(f"helpline: {hospital.helpline}")
    print(f"relatives see vitals: {_yes(hospital.show_vitals)}")
    print(f"relatives see remarks: {_yes(hospital.show_remarks)}")
    print(f"changed: {', '.join(changed)}" if changed else "nothing changed: it was so already")
    return 0


async def _hospitals(services: app.Services, args: argparse.Namespace) -> int:
    async def work(session) -> int:
        if args.hospitals_command == "list":
            found = await list_hospitals(session)
            if not found:
                print("no hospitals yet: `python -m bot hospitals add CODE --name NAME --helpline PHONE` adds one")
                return 0
            print(HOSPITALS_HEADER)
            for hospital in found:
                print(_hospital_row(hospital))
            return 0
        if args.hospitals_command == "set":
            return await _change_hospital(services, session, args)
        try:
            if args.hospitals_command == "add":
                issued = await add_hospital(
                    session, services.settings, services.secret_key,
                    args.code, args.name, args.helpline, args.district,
                )  # fmt: skip
            else:
                issued = await rotate_key(session, services.secret_key, args.code)
        except HospitalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        await session.commit()
        print(f"{issued.hospital.code} {issued.hospital.name}")
        print(f"API key (shown once, keep it safe): {issued.api_key}")
        return 0

    return await _with_session(services, work)


async def _import(services: app.Services, args: argparse.Namespace) -> int:

    async def work(session) -> int:
        report = await services.import_csv(session, args.file, args.hospital, dry_run=args.dry_run)
        print(report.summary(), file=sys.stdout)
        for problem in report.problems:
            print(problem, file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0 if report.ok else 1

    return await _with_session(services, work)


async def _staff(services: app.Services, args: argparse.Namespace) -> int:
    async def work(session) -> int:
        hospital = await get_hospital(session, args.hospital)
        if hospital is None:
            print(f"error: no hospital {args.hospital.upper()}", file=sys.stderr)
            return 1
        try:
            issued = await add_account(session, hospital, args.username, args.role, args.ward, actor="cli")
        except StaffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        await session.commit()
        account = issued.account
        print(f"{account.username} ({account.role}) at {hospital.code}: {', '.join(account.wards) or 'every ward'}")
        print(f"One-time password (shown once, changed at the first login): {issued.password}")
        return 0

    return await _with_session(services, work)


async def _demo(services: app.Services, _args: argparse.Namespace) -> int:

    async def work(session) -> int:
        for line in await services.load_demo(session):
            print(line)
        return 0

    return await _with_session(services, work)


async def _outbox(services: app.Services, args: argparse.Namespace) -> int:
    from bot.outbox import report, requeue_dead

    async def work(session) -> int:
        if args.retry:
            count = await requeue_dead(session, args.hospital, args.channel)
            await session.commit()
            print(f"{count} dead alert{'' if count == 1 else 's'} put back in the queue")
            return 0
        if args.hospital or args.channel:
            print("error: --hospital and --channel go with --retry", file=sys.stderr)
            return 1
        found = await report(session)
        known = tuple(NotificationStatus)
        for status in (*known, *sorted(set(found.counts) - set(known))):
            print(f"{status}\t{found.counts.get(status, 0)}")
        if found.ended:
            print("\ndead and cancelled alerts by hospital and channel:")
            print("hospital\tchannel\tstatus\talerts\treason")
            for group in found.ended:
                print(f"{group.hospital}\t{group.channel}\t{group.status}\t{group.rows}\t{group.reason}")
        dead = found.dead
        if dead:
            print(f"\ndead alerts, newest first{' (the latest 100)' if len(dead) == 100 else ''}:")
            print("id\tchannel\thospital\tregistration\tattempts\terror")
            for alert in dead:
                error = " ".join((alert.error or "").split())
                print(
                    f"{alert.id}\t{alert.channel}\t{alert.hospital}\t{alert.registration_no}\t{alert.attempts}\t{error}"
                )
        return 0

    return await _with_session(services, work)


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "backup":
            size = backup.backup(settings.database_url, args.file)
            print(f"backed up to {args.file} ({size} bytes)")
        else:
            backup.restore(args.file, settings.database_url)
            print(f"restored from {args.file}: run `python -m bot db upgrade` before starting the service")
    except backup.BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(services: app.Services, coroutine: Coroutine[None, None, int | None]) -> int:
    async def checked() -> int | None:
        if await services.database.pending_migrations():
            print(
                "the database is not up to date: run `python -m bot db upgrade` (make run does)",
                file=sys.stderr,
            )
            await services.database.dispose()
            coroutine.close()
            return 2
        return await coroutine

    try:
        return asyncio.run(checked()) or 0
    except KeyboardInterrupt:
        return 0
    except app.CannotListen as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(logging.INFO)
    try:
        settings: Settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("backup", "restore"):
        return _backup(settings, args)
    # Every other command opens the database, the service's processes and one-off commands (an
    # import, a new key, a migration) alike: each holds the lock for its whole run, so that a restore
    # is refused meanwhile instead of replacing the database under it.
    with backup.ServiceLock(settings.database_url):
        return _command(settings, args)


def _command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "db":
            db.upgrade(settings.database_url)
            print("database is up to date")
            return 0
        services = app.Services.build(settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "hospitals":
        return _run(services, _hospitals(services, args))
    if args.command == "import":
        return _run(services, _import(services, args))
    if args.command == "staff":
        return _run(services, _staff(services, args))
    if args.command == "demo":
        return _run(services, _demo(services, args))
    if args.command == "outbox":
        return _run(services, _outbox(services, args))
    if args.command == "web":
        return _run(services, app.serve_web(services))
    if args.command == "chat":
        return _run(services, app.run_console(services))
    if args.command == "worker":
        return _run(services, app.run_worker(services))
    return _run(services, app.run_all(services))
