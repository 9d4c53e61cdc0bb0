"""The database tables. Every datetime is time-zone aware and stored in UTC.

Enumerated values (condition, care area, ...) are stored as short strings; their allowed values
live in `models.enums` and are enforced where input enters (the API and the CSV import).

Primary keys are typed `int` with a default of None: a row's id is None only between its creation
and the flush that stores it, and the code reads ids only of stored rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a table model, for multi-row INSERT and UPDATE statements."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass, not in its hints
    return table


class Hospital(SQLModel, table=True):
    __tablename__ = "hospital"

    id: int = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True, index=True)
    name: str = Field(max_length=200)
    district: str | None = Field(default=None, max_length=100)
    helpline: str = Field(max_length=20, description="E.164")
    time_zone: str = Field(max_length=64)
    # HMAC-SHA256 of the API key under SECRET_KEY, hex. The key itself is shown once.
    api_key_hash: str = Field(max_length=64)
    api_key_issued_at: datetime = Field(default_factory=utcnow)
    show_vitals: bool = True
    show_remarks: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Admission(SQLModel, table=True):
    __tablename__ = "admission"
    __table_args__ = (UniqueConstraint("hospital_id", "registration_no"),)

    id: int = Field(default=None, primary_key=True)
    hospital_id: int = Field(foreign_key="hospital.id", index=True)
    registration_no: str = Field(max_length=64)
    patient_name: str = Field(max_length=200)
    age: int | None = None
    sex: str | None = Field(default=None, max_length=1)
    contact_mobile: str = Field(max_length=20, index=True, description="E.164")
    ward: str | None = Field(default=None, max_length=100)
    bed: str | None = Field(default=None, max_length=50)
    admitted_at: datetime | None = None
    status: str = Field(default="admitted", max_length=16)
    status_at: datetime | None = None
    transferred_to: str | None = Field(default=None, max_length=200)
    status_remarks: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AlternateMobile(SQLModel, table=True):
    """Further numbers a relative may verify with, besides the admission's contact mobile."""

    __tablename__ = "alternate_mobile"
    __table_args__ = (UniqueConstraint("admission_id", "mobile"),)

    id: int = Field(default=None, primary_key=True)
    admission_id: int = Field(foreign_key="admission.id", index=True)
    mobile: str = Field(max_length=20, index=True, description="E.164")


class ConditionUpdate(SQLModel, table=True):
    """Append-only history of what the hospital recorded about a patient.

    The latest state is the update with the greatest `recorded_at` (then `id`): one that arrives
    late stays in the history without replacing it."""

    __tablename__ = "condition_update"
    __table_args__ = (Index("ix_condition_update_latest", "admission_id", "recorded_at", "id"),)

    id: int = Field(default=None, primary_key=True)
    admission_id: int = Field(foreign_key="admission.id")
    condition: str = Field(max_length=16)
    care_area: str | None = Field(default=None, max_length=8)
    respiratory_support: str | None = Field(default=None, max_length=16)
    spo2: int | None = None
    pulse: int | None = None
    bp_systolic: int | None = None
    bp_diastolic: int | None = None
    temperature_c: float | None = None
    resp_rate: int | None = None
    blood_sugar: int | None = None
    remarks: str | None = Field(default=None, max_length=1000)
    recorded_at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    source: str = Field(max_length=16, description="api or csv")
    # Withdrawn by the hospital (a correction): kept in the history, never shown.
    retracted_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Who disclosed or changed what, and when. Never deleted by housekeeping."""

    __tablename__ = "audit_event"

    id: int = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100, description="e.g. api:MRB, csv:MRB, cli")
    action: str = Field(max_length=40)
    hospital_id: int | None = Field(default=None, foreign_key="hospital.id", index=True)
    admission_id: int | None = Field(default=None, foreign_key="admission.id", index=True)
    channel: str | None = Field(default=None, max_length=16)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
