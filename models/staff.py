"""Hospital staff who use the ward's own page, and the addresses that guessed their passwords.

A staff member belongs to one hospital and, when `wards` names some, sees only those wards. Their
password is stored only as an Argon2 hash (`bot.staff.accounts`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class StaffRole(StrEnum):
    WARD = "ward"  # nurses, ward clerks, duty doctors: their wards' patients
    ADMIN = "admin"  # the superintendent's office: the whole hospital, and its staff accounts


class StaffAccount(SQLModel, table=True):
    __tablename__ = "staff_account"

    id: int = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True, description="lower case")
    hospital_id: int = Field(foreign_key="hospital.id", index=True)
    role: str = Field(max_length=8, description="ward or admin")
    # The wards (as admissions name them) this account sees; empty: every ward of the hospital.
    wards: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    password_hash: str = Field(max_length=200)
    # Set with a one-time password (a new account, a reset): the next login must choose a new one.
    must_change_password: bool = True
    # Wrong passwords since the last login or lock; at the limit the account is locked a while.
    failed_logins: int = 0
    locked_until: datetime | None = None
    disabled_at: datetime | None = None
    language: str = Field(default="en", max_length=8)
    # Part of every session cookie: raising it (logout, a new password, a reset, disabling) ends
    # every session issued before.
    session_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class StaffLoginAddress(SQLModel, table=True):
    """Wrong passwords from one network address, whatever the username: past a few, each further
    attempt from it must wait longer. The address is kept only as a keyed hash."""

    __tablename__ = "staff_login_address"

    id: int = Field(default=None, primary_key=True)
    address_hash: str = Field(max_length=64, unique=True, index=True)
    failures: int = 0
    last_failure_at: datetime
    # No attempt from this address is checked before this time.
    retry_at: datetime | None = None
