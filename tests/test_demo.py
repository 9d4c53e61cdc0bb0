"""The demo data: loads through the real intake, covers every value, loads only once."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from bot.intake.demo import HOSPITALS, PATIENTS, SHARED_MOBILE, demo_mobiles
from bot.intake.hospitals import add_hospital, get_hospital, hospital_for_key
from bot.intake.schemas import REGISTRATION_NO_PATTERN
from models import (
    Admission,
    AlternateMobile,
    AuditEvent,
    ConditionUpdate,
    Hospital,
    queries,
)
from models.enums import AdmissionStatus, CareArea, Condition, RespiratorySupport


async def _counts(session) -> dict[str, int]:
    counts = {}
    for table in SQLModel.metadata.sorted_tables:
        counts[table.name] = (await session.exec(select(func.count()).select_from(table))).one()
    return counts


async def test_demo_loads_every_value(services):
    async with services.database.session() as session:
        lines = await services.load_demo(session)

    async with services.database.session() as session:
        hospitals = {h.code: h for h in (await session.exec(select(Hospital))).all()}
        admissions = list((await session.exec(select(Admission))).all())
        updates = list((await session.exec(select(ConditionUpdate))).all())
        alternates = list((await session.exec(select(AlternateMobile))).all())
        actors = set((await session.exec(select(AuditEvent.actor).where(AuditEvent.admission_id != None))).all())  # noqa: E711 - SQL's IS NOT NULL

        assert set(hospitals) == {"MRB", "MCK", "BID"}
        assert {h.district for h in hospitals.values()} == {"Kolkata"}
        assert all(h.helpline.startswith("+9133") for h in hospitals.values())
        policies = {(h.show_vitals, h.show_remarks) for h in hospitals.values()}
        assert len(policies) == 3 and (False, False) in policies and (True, True) in policies

        assert 18 <= len(admissions) <= 25
        assert {u.condition for u in updates} == set(Condition)
        assert {u.care_area for u in updates} == set(CareArea)
        assert {u.respiratory_support for u in updates} == set(RespiratorySupport)
        assert {a.status for a in admissions} == set(AdmissionStatus)
        assert all(u.source == "demo" for u in updates)
        assert actors == {"demo"}
        for admission in admissions:
            assert re.match(REGISTRATION_NO_PATTERN, admission.registration_no)
            if admission.status == AdmissionStatus.TRANSFERRED:
                assert admission.transferred_to
        assert any(re.search(r"[\u0980-\u09ff]", a.patient_name) for a in admissions)
        assert any(re.fullmatch(r"[A-Za-z .']+", a.patient_name) for a in admissions)

        # Every number was normalised to E.164 in the fictional range.
        stored = {a.contact_mobile for a in admissions} | {m.mobile for m in alternates}
        assert stored == demo_mobiles()
        assert all(re.fullmatch(r"\+91900000\d{4}", number) for number in stored)
        assert len(alternates) == 1

        # One number, two patients, two hospitals.
        shared = [a for a in admissions if a.contact_mobile == SHARED_MOBILE]
        assert len({a.hospital_id for a in shared}) == 2
        others = [a.contact_mobile for a in admissions if a.contact_mobile != SHARED_MOBILE]
        assert len(others) == len(set(others))

        # Histories of several updates, and admitted patients whose last update is overdue.
        per_admission: dict[int, list[ConditionUpdate]] = {}
        for update in updates:
            per_admission.setdefault(update.admission_id, []).append(update)
        assert sum(len(history) >= 3 for history in per_admission.values()) >= 3
        now = services.clock()
        overdue = 0
        for admission in admissions:
            latest = await queries.latest_update(session, admission.id)
            assert latest is not None
            assert latest.recorded_at <= now
            if admission.status == AdmissionStatus.ADMITTED and now - latest.recorded_at > timedelta(hours=24):
                overdue += 1
        assert overdue >= 2

        # Each printed key opens its hospital, and only the new hospitals' keys are printed.
        keys = [line.split(": ", 1)[1] for line in lines if "API key" in line]
        assert len(keys) == 3
        for key in keys:
            hospital = await hospital_for_key(session, services.secret_key, key)
            assert hospital is not None and key.startswith(hospital.code + ".")
        assert any("+91 90000 00001" in line for line in lines)


async def test_second_load_adds_nothing(services):
    async with services.database.session() as session:
        await services.load_demo(session)
    async with services.database.session() as session:
        before = await _counts(session)
    async with services.database.session() as session:
        lines = await services.load_demo(session)
    async with services.database.session() as session:
        assert await _counts(session) == before
    assert not any("API key" in line for line in lines)
    assert sum("already exists" in line for line in lines) == len(HOSPITALS)


async def test_existing_hospital_is_left_alone(services):
    """A hospital registered by hand keeps its patients; the other demo hospitals still load."""
    async with services.database.session() as session:
        await add_hospital(session, services.settings, services.secret_key, "MCK", "Medical College", "033 2241 4901")
        await session.commit()
    async with services.database.session() as session:
        lines = await services.load_demo(session)
    async with services.database.session() as session:
        mck = await get_hospital(session, "MCK")
        count = (await session.exec(select(func.count()).where(col(Admission.hospital_id) == mck.id))).one()
        assert count == 0
        assert mck.name == "Medical College"
        total = (await session.exec(select(func.count()).select_from(Admission))).one()
        assert total == len(PATIENTS["MRB"]) + len(PATIENTS["BID"])
    assert sum("API key" in line for line in lines) == 2
    assert any(line.startswith("MCK") and "skipped" in line for line in lines)
