"""`python -m bot ...`: the commands the README lists. Each one is a thin call into a module."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path

from bot import app
from bot.intake.hospitals import HospitalError, add_hospital, get_hospital, list_hospitals, rotate_key
from bot.platform import backup, db
from bot.platform.logs import configure_logging
from bot.platform.settings import Settings, SettingsError, load_settings
from bot.staff.accounts import StaffError, add_account
from models.enums import NotificationStatus
from models.staff import StaffRole


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Ward Watch")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="everything configured in one process (the default)")
    commands.add_parser("web", help="only the web server: hospital API and webhooks (Procfile web)")
    commands.add_parser("worker", help="only the scheduler (Procfile worker)")
    commands.add_parser("chat", help="the relative's conversation in this terminal (demo data locally)")

    database = commands.add_parser("db", help="database maintenance")
    database.add_subparsers(dest="db_command", required=True, metavar="ACTION").add_parser(
        "upgrade", help="apply the database migrations"
    )

    hospitals = commands.add_parser("hospitals", help="register hospitals and their API keys")
    actions = hospitals.add_subparsers(dest="hospitals_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a hospital; prints its API key once")
    add.add_argument("code", help="short code, e.g. MRB")
    add.add_argument("--name", required=True)
    add.add_argument("--helpline", required=True, help="the number relatives should call")
    add.add_argument("--district")
    rotate = actions.add_parser("rotate-key", help="issue a new key; the old one stops working")
    rotate.add_argument("code")
    actions.add_parser("list", help="the registered hospitals")

    importer = commands.add_parser("import", help="bulk upsert admissions from a CSV file")
    importer.add_argument("file", type=Path)
    importer.add_argument("--hospital", required=True, metavar="CODE")
    importer.add_argument("--dry-run", action="store_true", help="check and report, change nothing")

    staff = commands.add_parser("staff", help="accounts of hospital staff for the ward's page")
    staff_actions = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    staff_add = staff_actions.add_parser("add", help="add an account; prints its one-time password")
    staff_add.add_argument("username")
    staff_add.add_argument("--hospital", required=True, metavar="CODE")
    staff_add.add_argument("--role", required=True, choices=[role.value for role in StaffRole])
    staff_add.add_argument(
        "--ward", action="append", default=[], metavar="W", help="a ward the account sees (repeat; none: every ward)"
    )

    commands.add_parser("demo", help="load the fictional demo hospitals and patients")
    outbox = commands.add_parser(
        "outbox", help="alerts by status, the dead and cancelled ones with their reasons; --retry puts dead ones back"
    )
    outbox.add_argument("--retry", action="store_true", help="put the dead alerts back once their cause is fixed")
    outbox.add_argument("--hospital", metavar="CODE", help="with --retry: only alerts about its patients")
    outbox.add_argument(
        "--channel", choices=["telegram", "whatsapp", "console"], help="with --retry: only alerts to its chats"
    )

    commands.add_parser("backup", help="copy the SQLite database, while the service runs, to FILE").add_argument(
        "file", type=Path
    )
    commands.add_parser("restore", help="put a backup back as the SQLite database (service stopped)").add_argument(
        "file", type=Path
    )
    return parser


async def _with_session(services: app.Services, work: Callable) -> int:
    try:
        async with services.database.session() as session:
            return await work(session)
    finally:
        await services.database.dispose()


async def _hospitals(services: app.Services, args: argparse.Namespace) -> int:
    async def work(session) -> int:
        if args.hospitals_command == "list":
            for hospital in await list_hospitals(session):
                print(f"{hospital.code}\t{hospital.name}\t{hospital.helpline}\t{hospital.district or ''}")
            return 0
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(logging.INFO)
    try:
        settings: Settings = load_settings()
        if args.command == "db":
            db.upgrade(settings.database_url)
            print("database is up to date")
            return 0
        if args.command in ("backup", "restore"):
            return _backup(settings, args)
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
    # Held while the service runs, so that a restore is refused meanwhile.
    with backup.ServiceLock(settings.database_url):
        if args.command == "web":
            return _run(services, app.serve_web(services))
        if args.command == "chat":
            return _run(services, app.run_console(services))
        if args.command == "worker":
            return _run(services, app.run_worker(services))
        return _run(services, app.run_all(services))
