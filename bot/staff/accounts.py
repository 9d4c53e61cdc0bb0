"""Staff accounts: created with a one-time password, logging in, changing, resetting, disabling,
enabling again.

Passwords are kept only as Argon2 hashes (pwdlib). Five wrong passwords in a row lock an account
for 15 minutes; wrong passwords from one network address, whatever the account, make each further
attempt from it wait longer (a hospital's staff often share one address, so the first few are
free). Every account's sessions end when its `session_version` is raised: at logout, at a new
password, at a reset and when the account is disabled.

Refusals are `StaffError`s whose message is an English text marked for translation (`N_`) with
its values apart, so the page shows it in the staff member's language and the command line in
English. Nothing here commits, except `log_in`, which works on the database itself.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.db import Database
from bot.platform.security import keyed_hash
from models import Hospital, table_of
from models.audit import audit
from models.staff import StaffAccount, StaffLoginAddress, StaffRole

MAX_WRONG_PASSWORDS = 5
LOCK = timedelta(minutes=15)
# Wrong passwords from one address before its attempts must wait, and how long they are remembered.
ADDRESS_FREE_FAILURES = 5
ADDRESS_MEMORY = timedelta(minutes=15)
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
# One-time passwords are read off a screen and typed on a phone: no 0/o, 1/l/i.
_ONE_TIME_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

# The library's recommended Argon2id parameters (64 MiB, 3 passes). Tests replace it with a cheaper
# Argon2 so that hashing does not dominate their run.
password_hash = PasswordHash((Argon2Hasher(),))


def N_(message: str) -> str:
    """Marks a text for translation where it is defined; it is translated where it is shown."""
    return message


class StaffError(ValueError):
    """A refused request: `message` is the English text (translated where shown), `values` fill it."""

    def __init__(self, message: str, **values: Any) -> None:
        super().__init__(message.format(**values))
        self.message = message
        self.values = values


@dataclass
class IssuedPassword:
    account: StaffAccount
    password: str  # one-time: shown once, to be changed at the first login


def actor(account: StaffAccount, hospital: Hospital) -> str:
    """How the audit trail names a staff member: `staff:<username>@<HOSPITAL>`."""
    return f"staff:{account.username}@{hospital.code}"


def sees_every_ward(account: StaffAccount) -> bool:
    return not account.wards


def new_one_time_password() -> str:
    """`k7mq-2xhp-9wta`: 12 random characters, about 59 bits."""
    characters = "".join(secrets.choice(_ONE_TIME_ALPHABET) for _ in range(12))
    return "-".join(characters[start : start + 4] for start in range(0, 12, 4))


async def _hash(password: str) -> str:
    # Argon2 takes a quarter of a second of CPU: not on the event loop.
    return await asyncio.to_thread(password_hash.hash, password)


async def _verify(password: str, stored: str) -> tuple[bool, str | None]:
    return await asyncio.to_thread(password_hash.verify_and_update, password, stored)


_dummy_hash: str | None = None


async def _verify_nobody(password: str) -> None:
    """As long as checking a real account's password, so that the time taken does not tell
    whether a username exists."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await _hash(new_one_time_password())
    await _verify(password, _dummy_hash)


def clean_username(username: str) -> str:
    return username.strip().lower()


def _clean_wards(wards: list[str]) -> list[str]:
    cleaned: list[str] = []
    for ward in wards:
        name = " ".join(ward.split())
        if not name or len(name) > 100:
            raise StaffError(N_("A ward name must have 1 to 100 characters."))
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


async def find_account(session: AsyncSession, username: str) -> StaffAccount | None:
    result = await session.exec(select(StaffAccount).where(StaffAccount.username == clean_username(username)))
    return result.first()


async def add_account(
    session: AsyncSession,
    hospital: Hospital,
    username: str,
    role: str,
    wards: list[str],
    actor: str,
    language: str = "en",
) -> IssuedPassword:
    """A new account with a one-time password. Raises StaffError for a username that is malformed
    or taken, or an unknown role."""
    username = clean_username(username)
    if not USERNAME_PATTERN.match(username):
        raise StaffError(
            N_("A username has 3 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit.")
        )
    if role not in tuple(StaffRole):
        raise StaffError(N_("The role must be ward or admin."))
    if await find_account(session, username) is not None:
        raise StaffError(N_("The username {username} is taken."), username=username)
    password = new_one_time_password()
    account = StaffAccount(
        username=username,
        hospital_id=hospital.id,
        role=role,
        wards=_clean_wards(wards),
        password_hash=await _hash(password),
        must_change_password=True,
        language=language,
    )
    session.add(account)
    await session.flush()
    audit(session, actor, "staff.added", hospital.id, username=username, role=role, wards=account.wards)
    return IssuedPassword(account, password)


# --- logging in ----------------------------------------------------------------------------------


class Refusal(StrEnum):
    WRONG = "wrong"  # unknown username or wrong password: the same answer for both
    LOCKED = "locked"  # too many wrong passwords for this account
    DISABLED = "disabled"  # the right password, for an account an admin disabled
    ADDRESS_WAITS = "address_waits"  # too many wrong passwords from this address


@dataclass(frozen=True)
class Login:
    account: StaffAccount | None  # the account logged in, or None
    refusal: Refusal | None = None
    until: datetime | None = None  # LOCKED, ADDRESS_WAITS: when to try again


def address_hash(secret_key: bytes, address: str) -> str:
    return keyed_hash(secret_key, f"staff-login-address|{address}")


async def log_in(
    database: Database, username: str, password: str, address_hash: str, now: datetime, language: str | None = None
) -> Login:
    """Check a username and password typed at `address_hash` (see `address_hash`), and count a
    wrong one. On success the account's count of wrong passwords starts again, and `language`,
    when given, becomes the account's. Commits."""
    async with database.session() as session:
        waiting = (
            await session.exec(select(StaffLoginAddress).where(StaffLoginAddress.address_hash == address_hash))
        ).first()
        if waiting is not None and waiting.retry_at is not None and waiting.retry_at > now:
            return Login(None, Refusal.ADDRESS_WAITS, waiting.retry_at)
        account = await find_account(session, username)
        if account is not None and account.locked_until is not None and account.locked_until > now:
            return Login(None, Refusal.LOCKED, account.locked_until)
        if account is None:
            await _verify_nobody(password)
            right, rehashed = False, None
        else:
            right, rehashed = await _verify(password, account.password_hash)

    # The password was checked outside the write: Argon2's quarter of a second holds no lock.
    async with database.writing(), database.session() as session:
        if not right:
            login = await _count_wrong(session, account.id if account else None, address_hash, now)
        else:
            assert account is not None
            login = await _logged_in(session, account.id, rehashed, now, language)
        await session.commit()
        return login


async def _count_wrong(session: AsyncSession, account_id: int | None, address: str, now: datetime) -> Login:
    failures = await _count_address_failure(session, address, now)
    if failures >= ADDRESS_FREE_FAILURES:
        wait = min(timedelta(seconds=2 ** (failures - ADDRESS_FREE_FAILURES)), LOCK)
        await session.exec(
            update(StaffLoginAddress).where(col(StaffLoginAddress.address_hash) == address).values(retry_at=now + wait)
        )
    if account_id is None:
        return Login(None, Refusal.WRONG)
    # Counted in the database, so that guesses sent at once are each counted.
    wrong = (
        await session.exec(
            update(StaffAccount)
            .where(col(StaffAccount.id) == account_id)
            .values(failed_logins=col(StaffAccount.failed_logins) + 1)
            .returning(col(StaffAccount.failed_logins), col(StaffAccount.hospital_id), col(StaffAccount.username))
        )
    ).one()
    if wrong[0] < MAX_WRONG_PASSWORDS:
        return Login(None, Refusal.WRONG)
    await session.exec(
        update(StaffAccount).where(col(StaffAccount.id) == account_id).values(failed_logins=0, locked_until=now + LOCK)
    )
    await _audit_by_account(session, wrong[2], wrong[1], "staff.locked", until=(now + LOCK).isoformat())
    return Login(None, Refusal.LOCKED, now + LOCK)


async def _count_address_failure(session: AsyncSession, address: str, now: datetime) -> int:
    """One more wrong password from `address` (the count starts again after ADDRESS_MEMORY without
    one); the count. One statement, so that failures at once are each counted."""
    table = table_of(StaffLoginAddress)
    dialect = session.bind.dialect.name if session.bind is not None else ""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(address_hash=address, failures=1, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.address_hash],
            set_={
                "failures": case((table.c.last_failure_at < now - ADDRESS_MEMORY, 1), else_=table.c.failures + 1),
                "last_failure_at": now,
            },
        )
        .returning(table.c.failures)
    )
    failures = (await session.exec(statement)).scalar_one()
    # Addresses quiet for long enough are forgotten.
    await session.exec(table.delete().where(table.c.last_failure_at < now - ADDRESS_MEMORY))
    return failures


async def _logged_in(
    session: AsyncSession, account_id: int, rehashed: str | None, now: datetime, language: str | None
) -> Login:
    account = await session.get(StaffAccount, account_id)
    assert account is not None
    if account.disabled_at is not None:
        return Login(None, Refusal.DISABLED)
    account.failed_logins = 0
    account.locked_until = None
    if rehashed is not None:  # hashed with older parameters: kept with the current ones
        account.password_hash = rehashed
    if language is not None:
        account.language = language
    session.add(account)
    await _audit_by_account(session, account.username, account.hospital_id, "staff.logged_in")
    await session.flush()
    return Login(account)


async def _audit_by_account(session: AsyncSession, username: str, hospital_id: int, action: str, **detail: Any) -> None:
    code = (await session.exec(select(Hospital.code).where(Hospital.id == hospital_id))).one()
    audit(session, f"staff:{username}@{code}", action, hospital_id, **detail)


# --- passwords and sessions ----------------------------------------------------------------------


def check_new_password(account: StaffAccount, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(N_("The new password must have at least {count} characters."), count=MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffError(N_("The new password may have at most {count} characters."), count=MAX_PASSWORD_LENGTH)
    if password.strip().lower() == account.username:
        raise StaffError(N_("The new password must not be the username."))


async def change_password(
    session: AsyncSession, account: StaffAccount, hospital: Hospital, current: str, new: str
) -> None:
    """The staff member's own new password, after the current one. Ends every other session (the
    caller issues a new one for this browser). Raises StaffError."""
    right, _ = await _verify(current, account.password_hash)
    if not right:
        raise StaffError(N_("The current password is not right."))
    check_new_password(account, new)
    if new == current:
        raise StaffError(N_("The new password must differ from the current one."))
    account.password_hash = await _hash(new)
    account.must_change_password = False
    account.session_version += 1
    session.add(account)
    audit(session, actor(account, hospital), "staff.password_changed", hospital.id)


async def reset_password(session: AsyncSession, account: StaffAccount, hospital: Hospital, by: str) -> str:
    """A new one-time password (to be changed at the next login); unlocks the account and ends its
    sessions. Returns the password, to be shown once."""
    password = new_one_time_password()
    account.password_hash = await _hash(password)
    account.must_change_password = True
    account.failed_logins = 0
    account.locked_until = None
    account.session_version += 1
    session.add(account)
    audit(session, by, "staff.password_reset", hospital.id, username=account.username)
    return password


async def disable_account(
    session: AsyncSession, account: StaffAccount, hospital: Hospital, by: str, now: datetime
) -> None:
    """The account can no longer log in, and its sessions end."""
    account.disabled_at = now
    account.session_version += 1
    session.add(account)
    audit(session, by, "staff.disabled", hospital.id, username=account.username)


async def enable_account(session: AsyncSession, account: StaffAccount, hospital: Hospital, by: str) -> None:
    """A disabled account can log in again, with its own password. The sessions the disable ended
    stay ended: their version was left behind then, and no session was issued since. A lock from
    wrong passwords guessed meanwhile stays until it runs out: a reset is what unlocks, and says so."""
    account.disabled_at = None
    session.add(account)
    audit(session, by, "staff.enabled", hospital.id, username=account.username)


async def end_sessions(session: AsyncSession, account: StaffAccount) -> None:
    """Logout: every session of the account ends."""
    account.session_version += 1
    session.add(account)
