"""The patients of the replies benchmark: what it seeds in our database, and all the minimal bot
(bench/minimal_bot.py) knows of them, so that both bots answer about the same people.

Admission `i` is registered under its own mobile number, so each relative's flow ends with one
status card; nothing here imports the project, which the minimal bot does without.
"""

from __future__ import annotations

from dataclasses import dataclass

HOSPITALS = 5
CONDITIONS = ("stable", "moderate", "critical")
CARE_AREAS = ("ward", "hdu", "icu", "ccu")
SUPPORTS = ("none", "oxygen", "hfnc", "niv", "ventilator")


@dataclass(frozen=True)
class Seeded:
    """An admission a benchmark writes in bulk, with its first condition update."""

    registration_no: str
    patient_name: str
    contact_mobile: str  # E.164
    hospital: int  # an index into the hospitals seeded with it
    ward: str
    bed: str
    condition: str
    care_area: str
    support: str
    spo2: int
    pulse: int
    age: int = 40
    sex: str = "F"


@dataclass(frozen=True, kw_only=True)
class Patient(Seeded):
    """A replies-benchmark patient, whose relative types the mobile number as `typed_mobile`."""

    typed_mobile: str


def hospital_code(h: int) -> str:
    return f"BR{h + 1}"


def hospital_name(h: int) -> str:
    return f"Replies Bench Hospital {h + 1}"


def patient(i: int) -> Patient:
    return Patient(
        registration_no=f"R{i:05d}",
        patient_name=f"Bench Patient {i}",
        contact_mobile=f"+9190002{i:05d}",
        typed_mobile=f"90002 {i:05d}",
        hospital=i % HOSPITALS,
        ward=f"Ward {i % 12 + 1}",
        bed=str(i % 40 + 1),
        condition=CONDITIONS[i % 3],
        care_area=CARE_AREAS[i % 4],
        support=SUPPORTS[i % 5],
        spo2=90 + i % 10,
        pulse=60 + i % 60,
    )


def by_mobile(count: int) -> dict[str, Patient]:
    """The first `count` patients by their mobile number."""
    return {p.contact_mobile: p for p in map(patient, range(count))}
