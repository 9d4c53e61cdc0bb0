"""How admissions, condition updates and status changes enter the database.

Shared by the hospital API (one record per request) and the CSV import (thousands per file):
the functions take already-loaded rows so that the import can load a whole hospital at once,
and they only add to the session; the caller decides when to commit, so that one request or one
file is one transaction. Every change adds an audit row; a repeat of what is stored changes
nothing and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.schemas import AdmissionIn, ConditionUpdateIn, StatusIn
from models import Admission, AlternateMobile, ConditionUpdate, Hospital, utcnow
from models.audit import audit
from models.enums import AdmissionStatus


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class AdmissionClosed(Exception):
    """A condition update for a patient who is no longer admitted here."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the admission is {status}; set status admitted first to add updates")
        self.status = status


_ADMISSION_FIELDS = ("patient_name", "contact_mobile", "age", "sex", "ward", "bed", "admitted_at")
# What a condition update says, apart from when it was said.
UPDATE_STATE_FIELDS = (
    "condition", "care_area", "respiratory_support", "spo2", "pulse", "bp_systolic",
    "bp_diastolic", "temperature_c", "resp_rate", "blood_sugar", "remarks",
)  # fmt: skip


# --- reading -----------------------------------------------------------------------------------


async def find_admission(session: AsyncSession, hospital: Hospital, registration_no: str) -> Admission | None:
    result = await session.exec(
        select(Admission).where(
            Admission.hospital_id == hospital.id, Admission.registration_no == registration_no
        )
    )
    return result.first()


async def alternates_of(session: AsyncSession, admission_id: int) -> list[str]:
    result = await session.exec(
        select(AlternateMobile.mobile)
        .where(AlternateMobile.admission_id == admission_id)
        .order_by(col(AlternateMobile.id))
    )
    return list(result.all())


async def latest_update(
    session: AsyncSession, admission_id: int, not_after: datetime | None = None
) -> ConditionUpdate | None:
    """The update that describes the patient now (or, with `not_after`, at that time)."""
    query = select(ConditionUpdate).where(ConditionUpdate.admission_id == admission_id)
    if not_after is not None:
        query = query.where(ConditionUpdate.recorded_at <= not_after)
    result = await session.exec(
        query.order_by(col(ConditionUpdate.recorded_at).desc(), col(ConditionUpdate.id).desc()).limit(1)
    )
    return result.first()


# --- writing -----------------------------------------------------------------------------------


@dataclass
class AdmissionResult:
    admission: Admission
    outcome: Outcome


async def put_admission(
    session: AsyncSession,
    hospital: Hospital,
    registration_no: str,
    data: AdmissionIn,
    existing: Admission | None,
    existing_alternates: list[str],
    actor: str,
) -> AdmissionResult:
    """Create or replace an admission's details (not its status: that has its own call).

    `data` must be resolved (`AdmissionIn.resolve`)."""
    values = data.model_dump(include=set(_ADMISSION_FIELDS))
    values["sex"] = data.sex.value if data.sex else None
    if existing is None:
        admission = Admission(hospital_id=hospital.id, registration_no=registration_no, **values)
        session.add(admission)
        await session.flush()
        session.add_all(AlternateMobile(admission_id=admission.id, mobile=m) for m in data.alternate_mobiles)
        audit(session, actor, "admission.created", hospital.id, admission.id)
        return AdmissionResult(admission, Outcome.CREATED)

    changed = [name for name, value in values.items() if getattr(existing, name) != value]
    if existing_alternates != data.alternate_mobiles:
        changed.append("alternate_mobiles")
        await session.exec(delete(AlternateMobile).where(col(AlternateMobile.admission_id) == existing.id))
        session.add_all(AlternateMobile(admission_id=existing.id, mobile=m) for m in data.alternate_mobiles)
    if not changed:
        return AdmissionResult(existing, Outcome.UNCHANGED)
    for name, value in values.items():
        setattr(existing, name, value)
    existing.updated_at = utcnow()
    session.add(existing)
    audit(session, actor, "admission.updated", hospital.id, existing.id, fields=changed)
    return AdmissionResult(existing, Outcome.UPDATED)


@dataclass
class UpdateResult:
    update: ConditionUpdate
    outcome: Outcome  # CREATED, or UNCHANGED for a repeat of a stored update
    is_latest: bool  # False for an update recorded before the one already shown


def _same_state(update: ConditionUpdate, data: ConditionUpdateIn) -> bool:
    return all(
        getattr(data, name) is None or getattr(update, name) == getattr(data, name)
        for name in ("care_area", "respiratory_support")
    ) and all(
        getattr(update, name) == getattr(data, name)
        for name in UPDATE_STATE_FIELDS
        if name not in ("care_area", "respiratory_support")
    )


async def record_update(
    session: AsyncSession,
    hospital: Hospital,
    admission: Admission,
    data: ConditionUpdateIn,
    latest: ConditionUpdate | None,
    actor: str,
    source: str,
    only_if_changed: bool = False,
) -> UpdateResult:
    """Append a condition update. `latest` is the admission's current latest update.

    A repeat of an update already stored (same time, same content) is recognised and not stored
    again. With `only_if_changed`, an update saying what the latest one says is not stored either:
    the CSV import uses it for rows without a time, so that importing a file twice changes nothing.
    Care area and breathing support left out are carried over from the update before it.
    """
    if admission.status != AdmissionStatus.ADMITTED:
        raise AdmissionClosed(admission.status)
    recorded_at = data.recorded_at
    assert recorded_at is not None, "resolve() the update first"
    if latest is not None and _same_state(latest, data):
        if only_if_changed or latest.recorded_at == recorded_at:
            return UpdateResult(latest, Outcome.UNCHANGED, True)

    is_latest = latest is None or recorded_at >= latest.recorded_at
    previous = latest if is_latest else await latest_update(session, admission.id, recorded_at)
    if previous is not None and previous.recorded_at == recorded_at and _same_state(previous, data):
        return UpdateResult(previous, Outcome.UNCHANGED, False)

    values = data.model_dump(include=set(UPDATE_STATE_FIELDS))
    for carried in ("care_area", "respiratory_support"):
        if values[carried] is None and previous is not None:
            values[carried] = getattr(previous, carried)
    update = ConditionUpdate(admission_id=admission.id, recorded_at=recorded_at, source=source, **values)
    session.add(update)
    await session.flush()
    audit(
        session, actor, "update.recorded", hospital.id, admission.id,
        update_id=update.id, is_latest=is_latest,
    )  # fmt: skip
    return UpdateResult(update, Outcome.CREATED, is_latest)


async def change_status(
    session: AsyncSession, hospital: Hospital, admission: Admission, data: StatusIn, actor: str
) -> Outcome:
    """Record admitted / discharged / transferred / deceased. Repeating the current one is a no-op."""
    at = data.at
    assert at is not None, "resolve() the status first"
    new = (data.status.value, data.to_hospital, data.remarks)
    if (admission.status, admission.transferred_to, admission.status_remarks) == new:
        return Outcome.UNCHANGED
    previous_status = admission.status
    admission.status, admission.transferred_to, admission.status_remarks = new
    admission.status_at = at
    admission.updated_at = utcnow()
    session.add(admission)
    audit(
        session, actor, "status.changed", hospital.id, admission.id,
        previous=previous_status, status=data.status.value,
    )  # fmt: skip
    return Outcome.UPDATED

