"""How admissions, condition updates and status changes enter the database.

Shared by the hospital API (one record per request) and the CSV import (thousands per file):
the functions take already-loaded rows so that the import can load a whole file's admissions in a
few queries (`find_admissions`, `alternates_by_admission`, `latest_updates`), and they only add
to the session; the caller decides when to commit, so that one request or one file is one
transaction. Every change adds an audit row; a repeat of what is stored changes nothing and adds
nothing.

A request goes through `put_admission`, `record_update` and `change_status`, one ORM object at
a time. The import goes through `Batch`: the same decisions, row by row, but the new rows are
inserted with a few multi-row statements per file. (The ORM inserts one row per statement on
SQLite, to learn each new id: 10,000 new admissions with their updates took about 17 s that way,
about 2 s this way.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import outbox
from bot.intake.schemas import AdmissionIn, ConditionUpdateIn, StatusIn
from models import (
    Admission,
    AlternateMobile,
    AuditEvent,
    ConditionUpdate,
    Hospital,
    queries,
    utcnow,
)
from models.audit import audit, audit_values
from models.enums import AdmissionStatus
from models.queries import in_chunks


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


# --- writing -----------------------------------------------------------------------------------


@dataclass
class AdmissionResult:
    admission: Admission
    outcome: Outcome


def _admission_values(data: AdmissionIn) -> dict[str, Any]:
    values = data.model_dump(include=set(_ADMISSION_FIELDS))
    values["sex"] = data.sex.value if data.sex else None
    return values


def _changed_fields(
    existing: Admission, values: dict[str, Any], existing_alternates: list[str], data: AdmissionIn
) -> list[str]:
    changed = [name for name, value in values.items() if getattr(existing, name) != value]
    if existing_alternates != data.alternate_mobiles:
        changed.append("alternate_mobiles")
    return changed


def _replace_details(existing: Admission, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(existing, name, value)
    existing.updated_at = utcnow()


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
    values = _admission_values(data)
    if existing is None:
        admission = Admission(hospital_id=hospital.id, registration_no=registration_no, **values)
        session.add(admission)
        await session.flush()
        session.add_all(AlternateMobile(admission_id=admission.id, mobile=m) for m in data.alternate_mobiles)
        audit(session, actor, "admission.created", hospital.id, admission.id)
        return AdmissionResult(admission, Outcome.CREATED)

    changed = _changed_fields(existing, values, existing_alternates, data)
    if "alternate_mobiles" in changed:
        await session.exec(delete(AlternateMobile).where(col(AlternateMobile.admission_id) == existing.id))
        session.add_all(AlternateMobile(admission_id=existing.id, mobile=m) for m in data.alternate_mobiles)
    if not changed:
        return AdmissionResult(existing, Outcome.UNCHANGED)
    _replace_details(existing, values)
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


@dataclass
class _UpdateDecision:
    repeats: ConditionUpdate | None  # the stored update that the new one repeats, if any
    is_latest: bool
    values: dict[str, Any] | None  # the columns of the update to store, unless it repeats one


async def _decide_update(
    session: AsyncSession,
    admission_id: int | None,
    status: str,
    data: ConditionUpdateIn,
    latest: ConditionUpdate | None,
    only_if_changed: bool,
) -> _UpdateDecision:
    """Whether `data` repeats a stored update, and if not what to store. A repeat is recognised
    whatever the status; a new update for an admission that is not admitted raises
    AdmissionClosed. Reads the database only for an update recorded before the latest one."""
    recorded_at = data.recorded_at
    assert recorded_at is not None, "resolve() the update first"
    if latest is not None and _same_state(latest, data):
        if only_if_changed or latest.recorded_at == recorded_at:
            return _UpdateDecision(latest, True, None)

    is_latest = latest is None or recorded_at >= latest.recorded_at
    previous = latest
    if not is_latest and admission_id is not None:
        previous = await queries.latest_update(session, admission_id, recorded_at)
    if previous is not None and previous.recorded_at == recorded_at and _same_state(previous, data):
        return _UpdateDecision(previous, False, None)
    if status != AdmissionStatus.ADMITTED:
        raise AdmissionClosed(status)

    values = data.model_dump(include=set(UPDATE_STATE_FIELDS))
    for carried in ("care_area", "respiratory_support"):
        if values[carried] is None and previous is not None:
            values[carried] = getattr(previous, carried)
    values["recorded_at"] = recorded_at
    return _UpdateDecision(None, is_latest, values)


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
    decision = await _decide_update(session, admission.id, admission.status, data, latest, only_if_changed)
    if decision.repeats is not None:
        return UpdateResult(decision.repeats, Outcome.UNCHANGED, decision.is_latest)
    assert decision.values is not None
    update = ConditionUpdate(admission_id=admission.id, source=source, **decision.values)
    session.add(update)
    await session.flush()
    audit(
        session, actor, "update.recorded", hospital.id, admission.id,
        update_id=update.id, is_latest=decision.is_latest,
    )  # fmt: skip
    if decision.is_latest:
        await outbox.enqueue(
            session, [outbox.condition_change(admission.id, latest, admission.status, update.condition)]
        )
    return UpdateResult(update, Outcome.CREATED, decision.is_latest)


async def retract_update(
    session: AsyncSession, hospital: Hospital, admission: Admission, update: ConditionUpdate, actor: str, now: datetime
) -> Outcome:
    """Withdraw a wrong update: it stays in the history but is never shown and never the latest
    again. Withdrawing one already withdrawn changes nothing (UNCHANGED).

    When it was the latest, the chats following the admission get an alert whose `before` is
    what the withdrawn update said: they hear of the state it leaves only if that differs from
    what they were told. Within the grace period, before its own alert went out, the two alerts
    merge (the earliest `before` against the current state) and the relative hears nothing."""
    if update.retracted_at is not None:
        return Outcome.UNCHANGED
    latest = await queries.latest_update(session, admission.id)
    was_latest = latest is not None and latest.id == update.id
    update.retracted_at = now
    session.add(update)
    await session.flush()
    audit(
        session, actor, "update.retracted", hospital.id, admission.id,
        update_id=update.id, was_latest=was_latest,
    )  # fmt: skip
    if was_latest:
        current = await queries.latest_update(session, admission.id)
        await outbox.enqueue(
            session,
            [outbox.condition_change(admission.id, update, admission.status, current.condition if current else None)],
        )
    return Outcome.UPDATED


def _status_values(data: StatusIn) -> dict[str, Any]:
    at = data.at
    assert at is not None, "resolve() the status first"
    return {
        "status": data.status.value,
        "transferred_to": data.to_hospital,
        "status_remarks": data.remarks,
        "status_at": at,
    }


async def change_status(
    session: AsyncSession, hospital: Hospital, admission: Admission, data: StatusIn, actor: str
) -> Outcome:
    """Record admitted / discharged / transferred / deceased. Repeating the current one is a no-op."""
    values = _status_values(data)
    new = (values["status"], values["transferred_to"], values["status_remarks"])
    if (admission.status, admission.transferred_to, admission.status_remarks) == new:
        return Outcome.UNCHANGED
    previous_status = admission.status
    for name, value in values.items():
        setattr(admission, name, value)
    admission.updated_at = utcnow()
    session.add(admission)
    audit(
        session, actor, "status.changed", hospital.id, admission.id,
        previous=previous_status, status=data.status.value,
    )  # fmt: skip
    latest = await queries.latest_update(session, admission.id)
    await outbox.enqueue(session, [outbox.status_change(admission.id, latest, previous_status, data.status.value)])
    return Outcome.UPDATED


# --- many at once ------------------------------------------------------------------------------


@dataclass
class _NewAdmission:
    """An admission decided in a batch, inserted by `Batch.save`."""

    row: dict[str, Any]
    alternates: list[str]
    id: int | None = None

    @property
    def status(self) -> str:
        return self.row["status"]


@dataclass
class RowOutcome:
    """What `Batch.apply` did (or, before `save`, will do) with one admission."""

    admission: Outcome
    update: Outcome | None  # None: no condition given
    status: Outcome | None  # None: no status given


class Batch:
    """Admissions, each with its latest condition and status, for one hospital: decided one at a
    time by the rules of the calls above, then stored by `save()` with a few multi-row statements
    per table. Nothing is written before `save()`, and an admission refused by `apply` (its
    condition cannot be added) leaves no trace; the caller still commits or rolls back.

    Each registration number may be applied once per batch."""

    def __init__(self, session: AsyncSession, hospital: Hospital, actor: str, source: str) -> None:
        assert hospital.id is not None
        self.session = session
        self.hospital = hospital
        self.actor = actor
        self.source = source
        self._now = utcnow()
        self._applied: set[str] = set()
        self._new: dict[str, _NewAdmission] = {}
        self._alternates_replaced: dict[int, list[str]] = {}
        # (admission, columns, audit detail): at most one per admission, so admission_id names it.
        self._updates: list[tuple[Admission | _NewAdmission, dict[str, Any], dict[str, Any]]] = []
        self._audits: list[tuple[Admission | _NewAdmission, str, datetime, dict[str, Any]]] = []
        # Alerts for the chats following existing admissions (a new one has no followers yet).
        self._changes: list[outbox.Change] = []

    async def apply(
        self,
        registration_no: str,
        data: AdmissionIn,
        existing: Admission | None,
        existing_alternates: list[str],
        update: ConditionUpdateIn | None = None,
        latest: ConditionUpdate | None = None,
        status: StatusIn | None = None,
        only_if_changed: bool = False,
    ) -> RowOutcome:
        """Create or replace the admission's details, then add its condition, then set its status:
        a discharged patient's last condition is added before the discharge. A status `admitted`
        (reopening a closed admission) comes before the condition instead.

        `latest` is the existing admission's latest update. A status repeating the current status
        and destination changes nothing (remarks left out keep the stored ones). Raises
        AdmissionClosed, having changed nothing, for a new condition of a closed admission.
        All inputs must be resolved."""
        if registration_no in self._applied:
            raise ValueError(f"{registration_no} is already in this batch")
        reopening = status is not None and status.status == AdmissionStatus.ADMITTED
        decision = None
        if existing is not None and update is not None:
            current = AdmissionStatus.ADMITTED.value if reopening else existing.status
            decision = await _decide_update(
                self.session, existing.id, current, update, latest, only_if_changed
            )
        self._applied.add(registration_no)

        values = _admission_values(data)
        admission: Admission | _NewAdmission
        if existing is None:
            admission = _NewAdmission(
                row={
                    "hospital_id": self.hospital.id, "registration_no": registration_no, **values,
                    "status": AdmissionStatus.ADMITTED.value, "status_at": None,
                    "transferred_to": None, "status_remarks": None,
                    "created_at": self._now, "updated_at": self._now,
                },
                alternates=list(data.alternate_mobiles),
            )  # fmt: skip
            self._new[registration_no] = admission
            self._audit(admission, "admission.created", {})
            admission_outcome = Outcome.CREATED
        else:
            admission = existing
            changed = _changed_fields(existing, values, existing_alternates, data)
            if "alternate_mobiles" in changed:
                self._alternates_replaced[existing.id] = list(data.alternate_mobiles)
            if changed:
                _replace_details(existing, values)
                self.session.add(existing)
                self._audit(existing, "admission.updated", {"fields": changed})
                admission_outcome = Outcome.UPDATED
            else:
                admission_outcome = Outcome.UNCHANGED

        status_outcome = None
        if status is not None and reopening:
            status_outcome = self._set_status(admission, status, latest)
        update_outcome = None
        if update is not None:
            if decision is None:  # a new admission: admitted, without history
                decision = await _decide_update(
                    self.session, None, admission.status, update, None, only_if_changed
                )
            if decision.values is None:
                update_outcome = Outcome.UNCHANGED
            else:
                # Audited in the order of events; the update's id is filled in by save().
                detail = {"update_id": None, "is_latest": decision.is_latest}
                self._updates.append((admission, decision.values, detail))
                self._audit(admission, "update.recorded", detail)
                update_outcome = Outcome.CREATED
                if existing is not None and decision.is_latest:
                    self._changes.append(
                        outbox.condition_change(existing.id, latest, existing.status, decision.values["condition"])
                    )
        if status is not None and not reopening:
            status_outcome = self._set_status(admission, status, latest)
        return RowOutcome(admission_outcome, update_outcome, status_outcome)

    def _set_status(
        self, admission: Admission | _NewAdmission, data: StatusIn, latest: ConditionUpdate | None
    ) -> Outcome:
        values = _status_values(data)
        if isinstance(admission, _NewAdmission):
            current = admission.row
        else:
            current = {name: getattr(admission, name) for name in values}
        if (current["status"], current["transferred_to"]) == (values["status"], values["transferred_to"]):
            if values["status_remarks"] in (None, current["status_remarks"]):
                return Outcome.UNCHANGED
        previous_status = current["status"]
        if isinstance(admission, _NewAdmission):
            admission.row.update(values)
        else:
            for name, value in values.items():
                setattr(admission, name, value)
            admission.updated_at = utcnow()
            self.session.add(admission)
        self._audit(admission, "status.changed", {"previous": previous_status, "status": values["status"]})
        if isinstance(admission, Admission):
            self._changes.append(outbox.status_change(admission.id, latest, previous_status, values["status"]))
        return Outcome.UPDATED

    def _audit(self, admission: Admission | _NewAdmission, action: str, detail: dict[str, Any]) -> None:
        self._audits.append((admission, action, utcnow(), detail))

    async def save(self) -> None:
        """Write everything applied: changed admissions, new ones, alternate numbers, updates and
        audit rows, with one multi-row statement per table (per 1,000 rows)."""
        session = self.session
        await session.flush()  # existing admissions whose details or status changed
        if self._new:
            table = Admission.__table__
            result = await session.exec(
                insert(table).returning(table.c.id, table.c.registration_no),
                params=[new.row for new in self._new.values()],
            )
            # RETURNING comes in no promised order: match the rows by registration number.
            for admission_id, registration_no in result.all():
                self._new[registration_no].id = admission_id

        replaced = list(self._alternates_replaced)
        for chunk in in_chunks(replaced):
            await session.exec(delete(AlternateMobile).where(col(AlternateMobile.admission_id).in_(chunk)))
        alternates = [
            {"admission_id": admission_id, "mobile": mobile}
            for admission_id, mobiles in self._alternates_replaced.items()
            for mobile in mobiles
        ] + [
            {"admission_id": new.id, "mobile": mobile}
            for new in self._new.values()
            for mobile in new.alternates
        ]
        if alternates:
            await session.exec(insert(AlternateMobile.__table__), params=alternates)

        if self._updates:
            table = ConditionUpdate.__table__
            result = await session.exec(
                insert(table).returning(table.c.id, table.c.admission_id),
                params=[
                    {**values, "admission_id": admission.id, "received_at": self._now, "source": self.source}
                    for admission, values, _ in self._updates
                ],
            )
            update_ids = {admission_id: update_id for update_id, admission_id in result.all()}
            for admission, _, detail in self._updates:
                detail["update_id"] = update_ids[admission.id]

        if self._audits:
            rows = []
            for admission, action, at, detail in self._audits:
                row = audit_values(self.actor, action, self.hospital.id, admission.id, **detail)
                rows.append({**row, "at": at})
            await session.exec(insert(AuditEvent.__table__), params=rows)
        await outbox.enqueue(session, self._changes)
        self._changes.clear()
        self._new.clear()
        self._alternates_replaced.clear()
        self._updates.clear()
        self._audits.clear()
