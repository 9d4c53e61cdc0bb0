"""Reading admissions and their history: the queries that intake, the relatives' side and the
alerts share. The `...s` variants read many admissions in a few statements (the CSV import, the
dispatcher)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import TypeVar

from sqlalchemy import bindparam, func, true
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import Admission, AlternateMobile, ConditionUpdate, Hospital

# Bound parameters per bulk query: well below the limits of SQLite (32766) and asyncpg (32767).
ROWS_PER_STATEMENT = 500
_T = TypeVar("_T")


def in_chunks(items: Sequence[_T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[_T]]:
    """`items` a statement's worth at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def find_admission(session: AsyncSession, hospital: Hospital, registration_no: str) -> Admission | None:
    result = await session.exec(
        select(Admission).where(Admission.hospital_id == hospital.id, Admission.registration_no == registration_no)
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
    """The update that describes the patient now (or, with `not_after`, at that time).
    Updates the hospital retracted do not count."""
    query = select(ConditionUpdate).where(
        ConditionUpdate.admission_id == admission_id, col(ConditionUpdate.retracted_at).is_(None)
    )
    if not_after is not None:
        query = query.where(ConditionUpdate.recorded_at <= not_after)
    result = await session.exec(
        query.order_by(col(ConditionUpdate.recorded_at).desc(), col(ConditionUpdate.id).desc()).limit(1)
    )
    return result.first()


async def find_admissions(
    session: AsyncSession, hospital: Hospital, registration_nos: Iterable[str], lock: bool = False
) -> dict[str, Admission]:
    """The hospital's admissions with these registration numbers, by registration number. With
    `lock`, on PostgreSQL, each row is locked against other writers until the transaction ends
    and read as it is once locked; rows are locked in order of registration number, so that two
    transactions locking some of the same rows wait for each other instead of deadlocking.
    (SQLite has no row locks: there, one writer at a time holds the whole database.)"""
    found: dict[str, Admission] = {}
    for chunk in in_chunks(sorted(set(registration_nos))):
        query = select(Admission).where(Admission.hospital_id == hospital.id, col(Admission.registration_no).in_(chunk))
        if lock:
            # FOR NO KEY UPDATE: rows that only refer to the admission (subscriptions, alerts) may
            # still be added meanwhile.
            query = (
                query.order_by(col(Admission.registration_no))
                .with_for_update(key_share=True)
                .execution_options(populate_existing=True)
            )
        result = await session.exec(query)
        found.update((admission.registration_no, admission) for admission in result.all())
    return found


async def alternates_by_admission(session: AsyncSession, admission_ids: Iterable[int]) -> dict[int, list[str]]:
    """`alternates_of` for many admissions at once; an admission without any is left out."""
    found: dict[int, list[str]] = {}
    for chunk in in_chunks(sorted(set(admission_ids))):
        result = await session.exec(
            select(AlternateMobile.admission_id, AlternateMobile.mobile)
            .where(col(AlternateMobile.admission_id).in_(chunk))
            .order_by(col(AlternateMobile.id))
        )
        for admission_id, mobile in result.all():
            found.setdefault(admission_id, []).append(mobile)
    return found


@cache
def _latest_query(before: bool):
    """`latest_updates`' statement, built once with and once without `before` (every card)."""
    rank = (
        func.row_number()
        .over(
            partition_by=col(ConditionUpdate.admission_id),
            order_by=(col(ConditionUpdate.recorded_at).desc(), col(ConditionUpdate.id).desc()),
        )
        .label("rank")
    )
    ranked = (
        select(col(ConditionUpdate.id).label("id"), rank)
        .where(
            col(ConditionUpdate.admission_id).in_(bindparam("admission_ids", expanding=True)),
            col(ConditionUpdate.retracted_at).is_(None),
            col(ConditionUpdate.recorded_at) < bindparam("before") if before else true(),
        )
        .subquery()
    )
    return select(ConditionUpdate).join(ranked, col(ConditionUpdate.id) == ranked.c.id).where(ranked.c.rank == 1)


async def latest_updates(
    session: AsyncSession, admission_ids: Iterable[int], before: datetime | None = None
) -> dict[int, ConditionUpdate]:
    """`latest_update` for many admissions at once (with `before`: the update in force just before
    that moment); an admission without any is left out."""
    found: dict[int, ConditionUpdate] = {}
    query = _latest_query(before is not None)
    for chunk in in_chunks(sorted(set(admission_ids))):
        result = await session.exec(query, params={"admission_ids": list(chunk), "before": before})
        found.update((update.admission_id, update) for update in result.all())
    return found
