"""How admissions, condition updates and status changes enter the database: the one place where
what a hospital sends is decided (create, update, repeat or refuse), for the hospital API, the CSV
import and the demo alike.

A `Batch` is what one hospital sends in one transaction: a CSV file (thousands of admissions), or
one API call (a batch of one: `apply_one`, `commit_one`). It loads what is stored about the
registration numbers it is given, a few queries whatever their number; its operations decide in
memory: `admission` (create, or replace the details), `condition` (add a condition update),
`status` (admitted, discharged, transferred, deceased), and `row`, the three in a CSV row's order.
Nothing is written before `save()`, which inserts the new rows with a few multi-row statements.
(The ORM inserts one row per statement on SQLite, to learn each new id: 10,000 new admissions with
their updates took about 17 s that way, about 2 s this way.) The caller commits or rolls back, so
that one request or one file is one transaction. Every change adds an audit row, and alerts for
the chats that follow the admission; a repeat of what is stored changes nothing and adds nothing.

`retract_update` withdraws one stored update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
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
    table_of,
    utcnow,
)
from models.audit import audit, audit_values
from models.enums import AdmissionStatus
from models.queries import in_chunks


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class NoSuchAdmission(LookupError):
    """A condition or status for a registration number the hospital has not admitted."""


class AdmissionClosed(Exception):
    """A new condition update for a patient who is no longer admitted here."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the admission is {status}; set status admitted first to add updates")
        self.status = status


_ADMISSION_FIELDS = ("patient_name", "contact_mobile", "age", "sex", "ward", "bed", "admitted_at")
# What a condition update says, apart from when it was said.
UPDATE_STATE_FIELDS = (
    "condition", "care_area", "respiratory_support", "spo2", "pulse", "bp_systolic",
    "bp_diastolic", "temperature_c", "resp_rate", "blood_sugar", "remarks",
)  # fmt: skip


# --- the rules ---------------------------------------------------------------------------------


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
    whatever the status, so that sending an update again is answered alike before and after a
    discharge; a new update for an admission that is not admitted raises AdmissionClosed. Reads
    the database only for an update recorded before the latest one."""
    recorded_at = data.recorded_at
    assert recorded_at is not None, "resolve() the update first"
    if latest is not None and _same_state(latest, data) and (only_if_changed or latest.recorded_at == recorded_at):
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


def _status_values(data: StatusIn) -> dict[str, Any]:
    at = data.at
    assert at is not None, "resolve() the status first"
    return {
        "status": data.status.value,
        "transferred_to": data.to_hospital,
        "status_remarks": data.remarks,
        "status_at": at,
    }


def _same_status(current: dict[str, Any], values: dict[str, Any]) -> bool:
    """A status repeating the current status and destination is no change; remarks left out
    keep the stored ones, different remarks are a change."""
    return (current["status"], current["transferred_to"]) == (values["status"], values["transferred_to"]) and (
        values["status_remarks"] in (None, current["status_remarks"])
    )


# --- a batch -----------------------------------------------------------------------------------


@dataclass
class _NewAdmission:
    """An admission created in a batch, inserted by `Batch.save`."""

    row: dict[str, Any]
    alternates: list[str]
    id: int | None = None

    @property
    def status(self) -> str:
        return self.row["status"]


@dataclass
class RecordedUpdate:
    """What `Batch.condition` did with a condition update."""

    outcome: Outcome  # CREATED, or UNCHANGED for a repeat of a stored update
    is_latest: bool  # False for an update recorded before the one already shown
    repeated: ConditionUpdate | None = None  # the stored update it repeats
    columns: dict[str, Any] | None = None  # the new update's row; `save()` adds its id

    @property
    def update(self) -> ConditionUpdate:
        """The stored update: the one repeated, or (after `save()`) the one added."""
        if self.repeated is not None:
            return self.repeated
        assert self.columns is not None and "id" in self.columns, "save() the batch first"
        return ConditionUpdate(**self.columns)


@dataclass
class RowOutcome:
    """What `Batch.row` did (or, before `save`, will do) with one admission."""

    admission: Outcome
    update: Outcome | None  # None: no condition given
    status: Outcome | None  # None: no status given


class Batch:
    """Admissions of one hospital, with their conditions and statuses, decided one at a time,
    then stored by `save()` with a few multi-row statements per table. Nothing is written before
    `save()`, and an operation that raises leaves no trace; the caller still commits or rolls
    back. Make one with `Batch.load`. What else is stored (alternate numbers, latest updates) is
    read when an operation first needs it, for all the batch's admissions in one query per table.

    Each operation may be applied once per registration number and batch."""

    def __init__(self, session: AsyncSession, hospital: Hospital, actor: str, source: str) -> None:
        assert hospital.id is not None
        self.session = session
        self.hospital = hospital
        self.actor = actor
        self.source = source
        self._now = utcnow()
        self._loaded: set[str] = set()
        self._stored: dict[str, Admission] = {}
        self._stored_alternates: dict[int, list[str]] | None = None  # read when first needed
        self._latest: dict[int, ConditionUpdate] | None = None  # read when first needed
        self._applied: set[tuple[str, str]] = set()  # (registration number, operation)
        self._new: dict[str, _NewAdmission] = {}
        self._alternates_replaced: dict[int, list[str]] = {}
        # (admission, columns, audit detail): at most one per admission, so admission_id names it.
        self._updates: list[tuple[Admission | _NewAdmission, dict[str, Any], dict[str, Any]]] = []
        self._audits: list[tuple[Admission | _NewAdmission, str, datetime, dict[str, Any]]] = []
        # Alerts for the chats following existing admissions (a new one has no followers yet).
        self._changes: list[outbox.Change] = []
        self._saved = False

    @classmethod
    async def load(
        cls, session: AsyncSession, hospital: Hospital, registration_nos: Iterable[str], actor: str, source: str
    ) -> Batch:
        """A batch for these registration numbers of `hospital`, with their stored admissions,
        locked until the transaction ends (PostgreSQL): another transaction writing to one of them
        waits, so that a repeat is recognised as one and each change is decided against the
        state the one before it left."""
        batch = cls(session, hospital, actor, source)
        batch._loaded = set(registration_nos)
        batch._stored = await queries.find_admissions(session, hospital, batch._loaded, lock=True)
        return batch

    def stored(self, registration_no: str) -> Admission | None:
        """The admission as stored before this batch, if any."""
        assert registration_no in self._loaded, f"{registration_no} was not loaded"
        return self._stored.get(registration_no)

    async def stored_alternates(self, admission: Admission) -> list[str]:
        """A stored admission's alternate numbers, as stored before this batch."""
        if self._stored_alternates is None:
            self._stored_alternates = await queries.alternates_by_admission(self.session, self._stored_ids())
        assert admission.id is not None
        return self._stored_alternates.get(admission.id, [])

    async def _stored_latest(self, admission: Admission) -> ConditionUpdate | None:
        if self._latest is None:
            self._latest = await queries.latest_updates(self.session, self._stored_ids())
        assert admission.id is not None
        return self._latest.get(admission.id)

    def _stored_ids(self) -> list[int]:
        return [admission.id for admission in self._stored.values() if admission.id is not None]

    def _begin(self, registration_no: str, operation: str) -> None:
        assert not self._saved, "the batch is saved"
        assert registration_no in self._loaded, f"{registration_no} was not loaded"
        if (registration_no, operation) in self._applied:
            raise ValueError(f"{registration_no}: {operation} is already in this batch")
        self._applied.add((registration_no, operation))

    def _admission(self, registration_no: str) -> Admission | _NewAdmission:
        admission = self._new.get(registration_no) or self._stored.get(registration_no)
        if admission is None:
            raise NoSuchAdmission(registration_no)
        return admission

    # --- operations ---

    async def admission(self, registration_no: str, data: AdmissionIn) -> Outcome:
        """Create the admission, or replace its details (not its status: see `status`). The same
        details again change nothing. `data` must be resolved (`AdmissionIn.resolve`)."""
        self._begin(registration_no, "admission")
        values = _admission_values(data)
        existing = self._stored.get(registration_no)
        if existing is None:
            new = _NewAdmission(
                row={
                    "hospital_id": self.hospital.id, "registration_no": registration_no, **values,
                    "status": AdmissionStatus.ADMITTED.value, "status_at": None,
                    "transferred_to": None, "status_remarks": None,
                    "created_at": self._now, "updated_at": self._now,
                },
                alternates=list(data.alternate_mobiles),
            )  # fmt: skip
            self._new[registration_no] = new
            self._audit(new, "admission.created", {})
            return Outcome.CREATED
        assert existing.id is not None
        changed = _changed_fields(existing, values, await self.stored_alternates(existing), data)
        if "alternate_mobiles" in changed:
            self._alternates_replaced[existing.id] = list(data.alternate_mobiles)
        if not changed:
            return Outcome.UNCHANGED
        for name, value in values.items():
            setattr(existing, name, value)
        existing.updated_at = utcnow()
        self.session.add(existing)
        self._audit(existing, "admission.updated", {"fields": changed})
        return Outcome.UPDATED

    async def condition(
        self, registration_no: str, data: ConditionUpdateIn, only_if_changed: bool = False
    ) -> RecordedUpdate:
        """Add a condition update. A repeat of an update already stored (same time, same content)
        is recognised and not stored again, whatever the admission's status; a new update for an
        admission that is not admitted raises AdmissionClosed. With `only_if_changed`, an update
        saying what the latest one says is not stored either: the CSV import uses it for rows
        without a time, so that importing a file twice changes nothing. Care area and breathing
        support left out are carried over from the update before it. `data` must be resolved.
        Raises NoSuchAdmission for an admission neither stored nor created in this batch."""
        admission = self._admission(registration_no)
        decision = await self._decide_condition(registration_no, admission, data, admission.status, only_if_changed)
        return await self._add_condition(admission, decision)

    async def status(self, registration_no: str, data: StatusIn) -> Outcome:
        """Record admitted / discharged / transferred / deceased; repeating the current one
        changes nothing. `data` must be resolved. Raises NoSuchAdmission as `condition` does."""
        admission = self._admission(registration_no)
        self._begin(registration_no, "status")
        values = _status_values(data)
        if isinstance(admission, _NewAdmission):
            current = admission.row
        else:
            current = {name: getattr(admission, name) for name in values}
        if _same_status(current, values):
            return Outcome.UNCHANGED
        previous_status = current["status"]
        if isinstance(admission, _NewAdmission):
            admission.row.update(values)
        else:
            for name, value in values.items():
                setattr(admission, name, value)
            admission.updated_at = utcnow()
            self.session.add(admission)
            assert admission.id is not None
            latest = await self._stored_latest(admission)
            self._changes.append(outbox.status_change(admission.id, latest, previous_status, values["status"]))
        self._audit(admission, "status.changed", {"previous": previous_status, "status": values["status"]})
        return Outcome.UPDATED

    async def row(
        self,
        registration_no: str,
        details: AdmissionIn,
        update: ConditionUpdateIn | None = None,
        status: StatusIn | None = None,
        only_if_changed: bool = False,
    ) -> RowOutcome:
        """A CSV row: the admission's details, then its condition, then its status, so that a
        discharged patient's last condition is added before the discharge; a status `admitted`
        (reopening a closed admission) comes before the condition instead. All or nothing:
        raises AdmissionClosed, having changed nothing, for a new condition of a closed admission."""
        reopening = status is not None and status.status == AdmissionStatus.ADMITTED
        existing = self._stored.get(registration_no)
        decision = None
        if update is not None and existing is not None:  # decided before anything changes
            current = AdmissionStatus.ADMITTED.value if reopening else existing.status
            decision = await self._decide_condition(registration_no, existing, update, current, only_if_changed)

        admission_outcome = await self.admission(registration_no, details)
        admission = self._admission(registration_no)
        status_outcome = None
        if status is not None and reopening:
            status_outcome = await self.status(registration_no, status)
        update_outcome = None
        if update is not None:
            if decision is None:  # a new admission: admitted, without history
                decision = await self._decide_condition(
                    registration_no, admission, update, admission.status, only_if_changed
                )
            update_outcome = (await self._add_condition(admission, decision)).outcome
        if status is not None and not reopening:
            status_outcome = await self.status(registration_no, status)
        return RowOutcome(admission_outcome, update_outcome, status_outcome)

    async def _decide_condition(
        self,
        registration_no: str,
        admission: Admission | _NewAdmission,
        data: ConditionUpdateIn,
        status: str,
        only_if_changed: bool,
    ) -> _UpdateDecision:
        self._begin(registration_no, "condition")
        if isinstance(admission, _NewAdmission):
            return await _decide_update(self.session, None, status, data, None, only_if_changed)
        latest = await self._stored_latest(admission)
        return await _decide_update(self.session, admission.id, status, data, latest, only_if_changed)

    async def _add_condition(self, admission: Admission | _NewAdmission, decision: _UpdateDecision) -> RecordedUpdate:
        if decision.values is None:
            return RecordedUpdate(Outcome.UNCHANGED, decision.is_latest, repeated=decision.repeats)
        columns = {**decision.values, "received_at": self._now, "source": self.source}
        # Audited in the order of events; the update's id is filled in by save().
        detail = {"update_id": None, "is_latest": decision.is_latest}
        self._updates.append((admission, columns, detail))
        self._audit(admission, "update.recorded", detail)
        if isinstance(admission, Admission) and decision.is_latest:
            assert admission.id is not None
            latest = await self._stored_latest(admission)
            self._changes.append(outbox.condition_change(admission.id, latest, admission.status, columns["condition"]))
        return RecordedUpdate(Outcome.CREATED, decision.is_latest, columns=columns)

    def _audit(self, admission: Admission | _NewAdmission, action: str, detail: dict[str, Any]) -> None:
        self._audits.append((admission, action, utcnow(), detail))

    # --- writing ---

    async def save(self) -> None:
        """Write everything applied: changed admissions, new ones, alternate numbers, updates,
        audit rows and alerts, with one multi-row statement per table (per 1,000 rows). Once."""
        assert not self._saved, "the batch is saved"
        self._saved = True
        session = self.session
        await session.flush()  # existing admissions whose details or status changed
        if self._new:
            table = table_of(Admission)
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
        ] + [{"admission_id": new.id, "mobile": mobile} for new in self._new.values() for mobile in new.alternates]
        if alternates:
            await session.exec(insert(table_of(AlternateMobile)), params=alternates)

        if self._updates:
            for admission, columns, _ in self._updates:
                columns["admission_id"] = admission.id
            table = table_of(ConditionUpdate)
            result = await session.exec(
                insert(table).returning(table.c.id, table.c.admission_id),
                params=[columns for _, columns, _ in self._updates],
            )
            update_ids = {admission_id: update_id for update_id, admission_id in result.all()}
            for admission, columns, detail in self._updates:
                columns["id"] = detail["update_id"] = update_ids[admission.id]

        if self._audits:
            rows = []
            for admission, action, at, detail in self._audits:
                row = audit_values(self.actor, action, self.hospital.id, admission.id, **detail)
                rows.append({**row, "at": at})
            await session.exec(insert(table_of(AuditEvent)), params=rows)
        await outbox.enqueue(session, self._changes)
        # A new admission has no followers yet, but chats that confirmed its number are told of it.
        numbers = {new.id: [new.row["contact_mobile"], *new.alternates] for new in self._new.values() if new.id}
        await outbox.tell_new_admissions(session, numbers)

    def saved_admission(self, registration_no: str) -> Admission:
        """The admission as `save()` left it."""
        assert self._saved, "save() the batch first"
        new = self._new.get(registration_no)
        if new is None:
            return self._stored[registration_no]
        assert new.id is not None, "save() gives every new admission its id"
        return Admission(id=new.id, **new.row)


# --- one at a time -----------------------------------------------------------------------------


@dataclass
class Applied:
    """What `apply_one` did."""

    outcome: Outcome
    admission: Admission  # as saved
    recorded: RecordedUpdate | None = None  # for a condition update


async def apply_one(
    session: AsyncSession,
    hospital: Hospital,
    registration_no: str,
    change: AdmissionIn | ConditionUpdateIn | StatusIn,
    actor: str,
    source: str,
) -> Applied:
    """A batch of one change, saved but not committed: the admission's details, a condition
    update or a status, by the type of `change` (resolved). Raises NoSuchAdmission (a condition
    or status for an unknown admission) and AdmissionClosed, having written nothing."""
    batch = await Batch.load(session, hospital, [registration_no], actor=actor, source=source)
    recorded = None
    if isinstance(change, AdmissionIn):
        outcome = await batch.admission(registration_no, change)
    elif isinstance(change, ConditionUpdateIn):
        recorded = await batch.condition(registration_no, change)
        outcome = recorded.outcome
    else:
        outcome = await batch.status(registration_no, change)
    await batch.save()
    return Applied(outcome, batch.saved_admission(registration_no), recorded)


async def commit_one(
    session: AsyncSession,
    hospital: Hospital,
    registration_no: str,
    change: AdmissionIn | ConditionUpdateIn | StatusIn,
    actor: str,
    source: str,
) -> Applied:
    """`apply_one`, committed."""
    try:
        applied = await apply_one(session, hospital, registration_no, change, actor, source)
        await session.commit()
    except IntegrityError:
        # Another transaction created the same admission between this one's lookup and its insert
        # (two first PUTs at once): start again, and find it this time.
        await session.rollback()
        await session.refresh(hospital)  # the rollback expired it
        applied = await apply_one(session, hospital, registration_no, change, actor, source)
        await session.commit()
    return applied


# --- withdrawing -------------------------------------------------------------------------------


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
    # Locked as `Batch.load` locks it (PostgreSQL): no update is recorded meanwhile, so the latest
    # read here is the latest when this commits, and the status read is the current one.
    await session.refresh(admission, with_for_update={"key_share": True})
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
            [outbox.correction(admission.id, update, admission.status, current.condition if current else None)],
        )
    return Outcome.UPDATED
