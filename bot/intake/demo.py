"""Demo data for local use (`python -m bot demo`, `make demo`).

Three Kolkata hospitals of West Bengal's 2020 Covid Patient Management System and twenty
admissions. Every person, registration number, bed and mobile number here is FICTIONAL: the
patients are made up, the mobile numbers come from the visibly fictional range
+91 90000 000NN (valid Indian mobiles for `phonenumbers`, but nobody's), and the helplines are
made-up Kolkata landlines.

The data goes in the way a hospital's does: hospitals through `bot.intake.hospitals.add_hospital`,
admissions, condition updates and status changes one at a time through `bot.intake.rules.apply_one`
after the same validation as the hospital API (actor "demo"). Mobile numbers are written in the formats
people use (leading 0, +91, 0091, Bengali digits) and normalised on the way in.

Times are relative to `now`, so the demo always looks current: a few patients have
several updates over the past days, a few have a last update more than 24 hours old (overdue).
Between them the admissions use every condition, care area, breathing support and status.
One mobile number (+91 90000 00001) belongs to two patients in two hospitals, a couple treated
at different places; one admission has an alternate mobile.

Loading is idempotent: a hospital that already exists is skipped with its patients, so a second
run adds nothing. Everything is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.intake import rules
from bot.intake.hospitals import add_hospital, get_hospital
from bot.intake.schemas import AdmissionIn, ConditionUpdateIn, IntakeContext, StatusIn
from bot.platform.phones import normalise_mobile
from bot.platform.settings import Settings
from models import Hospital

ACTOR = "demo"
SOURCE = "demo"


@dataclass(frozen=True)
class DemoHospital:
    code: str
    name: str
    helpline: str
    show_vitals: bool
    show_remarks: bool
    district: str = "Kolkata"


@dataclass(frozen=True)
class DemoPatient:
    registration_no: str
    admission: dict[str, Any]  # an AdmissionIn body, without admitted_at
    admitted_hours_ago: float
    # (hours ago, an update body without recorded_at), oldest first
    updates: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    # (hours ago, a status body without at), applied after the updates
    status: tuple[float, dict[str, Any]] | None = None


# Three disclosure policies: the configured default (vitals, no remarks), remarks shown, vitals hidden.
HOSPITALS = (
    DemoHospital("MRB", "M.R. Bangur Hospital", "033 2400 1000", show_vitals=True, show_remarks=False),
    DemoHospital("MCK", "Medical College Kolkata", "033 2200 2000", show_vitals=True, show_remarks=True),
    DemoHospital("BID", "Beliaghata ID Hospital", "033 2300 3000", show_vitals=False, show_remarks=False),
)

SHARED_MOBILE = "+919000000001"


def _patient(reg, name, age, sex, mobile, ward, bed, admitted, updates=(), status=None, alternates=()):
    body = {"patient_name": name, "contact_mobile": mobile, "age": age, "sex": sex, "ward": ward, "bed": bed}
    if alternates:
        body["alternate_mobiles"] = list(alternates)
    return DemoPatient(reg, body, admitted, list(updates), status)


def _u(condition, care_area=None, support=None, **vitals) -> dict[str, Any]:
    body: dict[str, Any] = {"condition": condition, **vitals}
    if care_area:
        body["care_area"] = care_area
    if support:
        body["respiratory_support"] = support
    return body


PATIENTS: dict[str, list[DemoPatient]] = {
    "MRB": [
        # Shares her mobile with her husband Bimal Pal at Medical College (MCK-20-1107).
        _patient(
            "MRB-20-0412",
            "সুমিত্রা পাল",
            58,
            "F",
            "090000 00001",
            "Ward 3 (Female)",
            "12",
            80,
            updates=[
                (72, _u("moderate", "ward", "oxygen", spo2=93, pulse=96, temperature_c=38.2)),
                (48, _u("moderate", "hdu", "oxygen", spo2=91, pulse=102, resp_rate=24)),
                (20, _u("critical", "icu", "hfnc", spo2=88, pulse=110, bp_systolic=100, bp_diastolic=64)),
                (4, _u("critical", "icu", "niv", spo2=90, pulse=104, bp_systolic=108, bp_diastolic=70)),
            ],
        ),
        # ICU on a ventilator, last update 30 hours ago: overdue.
        _patient(
            "MRB-20-0413",
            "Ratan Das",
            64,
            "M",
            "+91 90000 00002",
            "ICU 1",
            "4",
            100,
            updates=[
                (96, _u("critical", "icu", "ventilator", spo2=84, pulse=118)),
                (50, _u("critical", "icu", "ventilator", spo2=86, pulse=112, blood_sugar=210)),
                (30, _u("critical", "icu", "ventilator", spo2=89, pulse=106, blood_sugar=180)),
            ],
        ),
        _patient(
            "MRB-20-0414",
            "Anwar Hossain",
            45,
            "M",
            "+91-90000-00003",
            "Ward 5 (Male)",
            "22",
            66,
            updates=[
                (60, _u("moderate", "ward", "oxygen", spo2=92)),
                (36, _u("stable", "ward", "none", spo2=96)),
                (10, _u("stable", spo2=97, pulse=78)),
            ],
            status=(2, {"status": "discharged"}),
        ),
        _patient(
            "MRB-20-0415",
            "মিঠু ঘোষ",
            39,
            "F",
            "৯০০০০ ০০০০৪",
            "Ward 3 (Female)",
            "7",
            9,
            updates=[(8, _u("stable", "ward", "none", spo2=98, pulse=84, temperature_c=37.4))],
        ),
        _patient(
            "MRB-20-0416",
            "Gopal Chandra Mondal",
            71,
            "M",
            "9000000005",
            "CCU",
            "2",
            42,
            updates=[
                (40, _u("critical", "ccu", "oxygen", pulse=124, bp_systolic=168, bp_diastolic=98)),
                (18, _u("critical", "ccu", "niv", spo2=89, pulse=116, bp_systolic=150, bp_diastolic=92)),
                (5, _u("moderate", "ccu", "oxygen", spo2=93, pulse=98, bp_systolic=138, bp_diastolic=86)),
            ],
        ),
        _patient(
            "MRB-20-0417",
            "শেফালি বিশ্বাস",
            66,
            "F",
            "090000 00006",
            "ICU 2",
            "9",
            60,
            updates=[(50, _u("critical", "icu", "ventilator", spo2=78, pulse=130))],
            status=(26, {"status": "deceased"}),
        ),
        _patient(
            "MRB-20-0418",
            "Joseph D'Souza",
            52,
            "M",
            "+919000000007",
            "Ward 5 (Male)",
            "3",
            30,
            updates=[(28, _u("moderate", "ward", "oxygen", spo2=92, pulse=100))],
            status=(20, {"status": "transferred", "to_hospital": "SSKM Hospital, Kolkata"}),
        ),
        # Also reachable on her son's number, +91 90000 00018.
        _patient(
            "MRB-20-0419",
            "Farida Begum",
            34,
            "F",
            "090000 00008",
            "HDU",
            "5",
            4,
            updates=[(3, _u("moderate", "hdu", "oxygen", spo2=93, pulse=94, resp_rate=22))],
            alternates=["+91 90000 00018"],
        ),
    ],
    "MCK": [
        _patient(
            "MCK-20-1107",
            "বিমল পাল",
            61,
            "M",
            "0091 90000 00001",
            "Green Building Ward 2",
            "18",
            58,
            updates=[
                (55, _u("moderate", "ward", "oxygen", spo2=92, remarks="On 4 L/min oxygen, eating well.")),
                (31, _u("moderate", "ward", "oxygen", spo2=94, remarks="Oxygen reduced to 2 L/min.")),
                (7, _u("stable", "ward", "none", spo2=96, remarks="Off oxygen since this morning.")),
            ],
        ),
        _patient(
            "MCK-20-1108",
            "Priya Sharma",
            29,
            "F",
            "+91 90000 00009",
            "Green Building Ward 4",
            "6",
            14,
            updates=[(12, _u("stable", "ward", "none", spo2=98, remarks="Mild fever, under observation."))],
        ),
        _patient(
            "MCK-20-1109",
            "অমিত সেন",
            47,
            "M",
            "090000 00010",
            "CCU-ICU Block",
            "11",
            74,
            updates=[
                (70, _u("critical", "icu", "ventilator", spo2=82, pulse=122)),
                (45, _u("critical", "icu", "niv", spo2=87, pulse=110)),
                (22, _u("moderate", "hdu", "hfnc", spo2=91, pulse=100, remarks="Shifted from ICU to HDU.")),
                (6, _u("moderate", "hdu", "oxygen", spo2=94, pulse=92, remarks="Sitting up, talking.")),
            ],
        ),
        # Stable in the ward, last update 27 hours ago: overdue.
        _patient(
            "MCK-20-1110",
            "Rekha Gupta",
            55,
            "F",
            "+91 90000 00011",
            "Green Building Ward 1",
            "30",
            40,
            updates=[(27, _u("stable", "ward", "none", spo2=97, blood_sugar=160))],
        ),
        _patient(
            "MCK-20-1111",
            "সুব্রত মুখার্জি",
            68,
            "M",
            "9000000012",
            "Green Building Ward 2",
            "2",
            90,
            updates=[
                (80, _u("moderate", "ward", "oxygen", spo2=92)),
                (60, _u("stable", "ward", "none", spo2=96, remarks="Fit for discharge tomorrow.")),
            ],
            status=(40, {"status": "discharged", "remarks": "Home isolation for 7 days."}),
        ),
        _patient(
            "MCK-20-1112",
            "Mohammed Salim",
            59,
            "M",
            "+91 90000 00013",
            "HDU",
            "3",
            36,
            updates=[(34, _u("critical", "hdu", "hfnc", spo2=88, pulse=114))],
            status=(25, {"status": "transferred", "to_hospital": "Beliaghata ID Hospital"}),
        ),
        _patient(
            "MCK-20-1113",
            "Lakshmi Oraon",
            42,
            "F",
            "090000 00014",
            "CCU-ICU Block",
            "7",
            3,
            updates=[(2, _u("critical", "icu", "niv", spo2=86, pulse=120, resp_rate=32))],
        ),
    ],
    "BID": [
        _patient(
            "BID-20-0301",
            "তাপস দত্ত",
            50,
            "M",
            "+91 90000 00015",
            "Ward 7",
            "14",
            22,
            updates=[(20, _u("moderate", "ward", "oxygen", spo2=93, pulse=98))],
        ),
        # Stable, last update 26 hours ago: overdue.
        _patient(
            "BID-20-0302",
            "Sunita Roy",
            36,
            "F",
            "090000 00016",
            "Ward 2",
            "21",
            50,
            updates=[
                (48, _u("moderate", "ward", "oxygen", spo2=93)),
                (26, _u("stable", "ward", "none", spo2=97)),
            ],
        ),
        _patient(
            "BID-20-0303",
            "নাসরিন খাতুন",
            27,
            "F",
            "+91 90000 00017",
            "ICU",
            "6",
            46,
            updates=[
                (44, _u("critical", "icu", "ventilator", spo2=80, pulse=128)),
                (28, _u("critical", "icu", "ventilator", spo2=85, pulse=118)),
                (9, _u("critical", "icu", "ventilator", spo2=88, pulse=112)),
            ],
        ),
        _patient(
            "BID-20-0304",
            "Arjun Bose",
            73,
            "M",
            "090000 00019",
            "CCU",
            "1",
            110,
            updates=[(100, _u("critical", "ccu", "ventilator", spo2=76, pulse=134))],
            status=(50, {"status": "deceased"}),
        ),
        _patient(
            "BID-20-0305",
            "Kakali Saha",
            31,
            "F",
            "+91 90000 00020",
            "HDU",
            "2",
            16,
            updates=[
                (15, _u("moderate", "hdu", "niv", spo2=90, pulse=104)),
                (1, _u("stable", "ward", "oxygen", spo2=95, pulse=88)),
            ],
        ),
    ],
}

# Shown at the end of a load: numbers that are worth trying in the chat.
TRY_NUMBERS = (
    ("+91 90000 00001", "two patients in two hospitals (M.R. Bangur and Medical College)"),
    ("+91 90000 00002", "ICU on a ventilator, last update overdue"),
    ("+91 90000 00006", "deceased: the bot asks you to call the hospital"),
    ("+91 90000 00018", "an alternate number of a patient in the HDU"),
    ("+91 90000 00099", "not registered: the same neutral answer, no code"),
)


async def _load_patient(
    session: AsyncSession, hospital: Hospital, patient: DemoPatient, now: datetime, region: str
) -> int:
    """Admit one patient with their updates and status; return the number of updates stored."""
    ctx = IntakeContext(region=region, tz=ZoneInfo(hospital.time_zone), now=now)

    def ago(hours: float) -> datetime:
        return now - timedelta(hours=hours)

    async def apply(change: AdmissionIn | ConditionUpdateIn | StatusIn) -> rules.Outcome:
        applied = await rules.apply_one(session, hospital, patient.registration_no, change, ACTOR, SOURCE)
        return applied.outcome

    body = {**patient.admission, "admitted_at": ago(patient.admitted_hours_ago)}
    await apply(AdmissionIn.model_validate(body).resolve(ctx))

    stored = 0
    for hours, update_body in patient.updates:
        update = ConditionUpdateIn.model_validate({**update_body, "recorded_at": ago(hours)}).resolve(ctx)
        stored += await apply(update) == rules.Outcome.CREATED

    if patient.status is not None:
        hours, status_body = patient.status
        await apply(StatusIn.model_validate({**status_body, "at": ago(hours)}).resolve(ctx))
    return stored


async def load_demo(session: AsyncSession, settings: Settings, secret_key: bytes, now: datetime) -> list[str]:
    """Add the demo hospitals that do not exist yet, with their patients, and commit.

    Returns the lines to show the operator: each new hospital's API key (shown only here) and its
    patients' registration numbers, the hospitals skipped with how to get a key for them again,
    and a few mobile numbers to try."""
    region = settings.config.phone_region
    lines: list[str] = []
    added = admissions = updates = 0

    for spec in HOSPITALS:
        if await get_hospital(session, spec.code) is not None:
            lines.append(
                f"{spec.code} {spec.name}: already exists, skipped (no demo patients added); its key was shown "
                f"when it was added: `python -m bot hospitals rotate-key {spec.code}` issues a new one"
            )
            continue
        issued = await add_hospital(
            session,
            settings,
            secret_key,
            spec.code,
            spec.name,
            spec.helpline,
            spec.district,
            actor=ACTOR,
        )
        hospital = issued.hospital
        hospital.show_vitals = spec.show_vitals
        hospital.show_remarks = spec.show_remarks
        session.add(hospital)
        for patient in PATIENTS[spec.code]:
            updates += await _load_patient(session, hospital, patient, now, region)
        admissions += len(PATIENTS[spec.code])
        added += 1
        shown = [what for what, on in (("vitals", spec.show_vitals), ("remarks", spec.show_remarks)) if on]
        lines.append(
            f"{spec.code} {spec.name}: added with {len(PATIENTS[spec.code])} admissions "
            f"(relatives see {' and '.join(shown) or 'no vitals or remarks'}); helpline {hospital.helpline}"
        )
        lines.append(f"  API key (shown once, keep it safe): {issued.api_key}")
        lines.append(f"  registration numbers: {', '.join(p.registration_no for p in PATIENTS[spec.code])}")

    await session.commit()
    if added:
        lines.append(f"Demo data loaded: {added} hospitals, {admissions} admissions, {updates} condition updates.")
    else:
        lines.append("Nothing added: the demo hospitals are already there.")
    lines.append("Fictional mobile numbers to try in the chat:")
    lines.extend(f"  {number}  {what}" for number, what in TRY_NUMBERS)
    return lines


def demo_mobiles(region: str = "IN") -> set[str]:
    """Every contact and alternate mobile of the demo, in E.164 (for tests and the console chat)."""
    numbers = set()
    for patients in PATIENTS.values():
        for patient in patients:
            for text in [patient.admission["contact_mobile"], *patient.admission.get("alternate_mobiles", [])]:
                numbers.add(normalise_mobile(text, region))
    return numbers
