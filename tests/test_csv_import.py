"""The CSV import: good files land and read back, every bad row is reported with its line and
kept out, a bad file changes nothing, and a second import of the same file changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from bot import cli
from bot.intake.csv_import import COLUMNS, parse_time
from bot.intake.hospitals import get_hospital
from bot.intake.schemas import TOO_EARLY
from models import Admission, AlternateMobile, AuditEvent, ConditionUpdate, queries
from tests.conftest import FIXTURES, PROJECT_ROOT, SECRET, auth

SAMPLE = PROJECT_ROOT / "samples" / "admissions.csv"
# Every fixture time is before this (12:00 in Kolkata); 29/11/2026 is "in the future".
NOW = datetime(2026, 11, 28, 6, 30, tzinfo=UTC)


@pytest.fixture
def fixed_clock(services):
    services.clock = lambda: NOW
    return NOW


def write(tmp_path: Path, text: str, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def run_import(services, path: Path, code: str = "MRB", dry_run: bool = False):
    async with services.database.session() as session:
        return await services.import_csv(session, path, code, dry_run=dry_run)


async def snapshot(services) -> dict[str, list]:
    """Every row of every table the import writes, to compare before and after."""
    async with services.database.session() as session:
        tables = {}
        for model in (Admission, AlternateMobile, ConditionUpdate, AuditEvent):
            rows = (await session.exec(select(model).order_by(col(model.id)))).all()
            tables[model.__tablename__] = [row.model_dump() for row in rows]
        return tables


async def counts(services) -> dict[str, int]:
    async with services.database.session() as session:
        return {
            table.name: (await session.exec(select(func.count()).select_from(table))).one()
            for table in SQLModel.metadata.sorted_tables
        }


async def get(client, keys, registration_no: str, code: str = "MRB"):
    return await client.get(f"/api/v1/admissions/{registration_no}", headers=auth(keys[code]))


# --- good files -------------------------------------------------------------------------------


async def test_sample_file_imports_and_reads_back(services, keys, client, fixed_clock):
    report = await run_import(services, SAMPLE)
    assert report.ok, report.problems
    assert report.problems == []
    assert (report.rows, report.admissions_created, report.rows_rejected) == (8, 8, 0)
    assert report.updates_recorded == 7  # one row is an admission without a condition
    assert report.status_changes == 2  # a discharge and a transfer; "admitted" is no change
    assert "8 admissions created" in report.summary()

    r = await get(client, keys, "MRB-2026-1001")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient_name"] == "রতন দাস"
    assert body["contact_mobile"] == "+919000021001"
    assert body["alternate_mobiles"] == ["+919000021011"]
    assert (body["age"], body["sex"], body["ward"], body["bed"]) == (64, "M", "Medicine 2", "14")
    assert body["admitted_at"] == "2026-11-20T09:30:00+05:30"  # day-first, hospital time
    latest = body["latest_update"]
    assert (latest["condition"], latest["care_area"], latest["respiratory_support"]) == (
        "critical", "icu", "oxygen",
    )  # fmt: skip
    assert (latest["spo2"], latest["pulse"], latest["bp_systolic"], latest["bp_diastolic"]) == (89, 112, 150, 95)
    assert (latest["temperature_c"], latest["resp_rate"], latest["blood_sugar"]) == (38.4, 26, 210)
    assert latest["remarks"] == "SpO2 below 90, on 6 L/min oxygen"
    assert latest["recorded_at"] == "2026-11-27T08:00:00+05:30"

    discharged = (await get(client, keys, "MRB-2026-1003")).json()
    assert discharged["status"] == "discharged"  # with its last condition, added before the discharge
    assert discharged["status_at"] == "2026-11-26T16:45:00+05:30"
    assert discharged["latest_update"]["condition"] == "stable"
    assert discharged["contact_mobile"] == "+919000021003"  # written in Bengali digits
    assert discharged["sex"] == "F"  # "female"

    transferred = (await get(client, keys, "MRB-2026-1004")).json()
    assert (transferred["status"], transferred["transferred_to"]) == ("transferred", "SSKM Hospital, Kolkata")
    assert transferred["admitted_at"] == "2026-11-21T22:05:00+05:30"  # DD-MM-YYYY HH:MM

    iso = (await get(client, keys, "MRB-2026-1005")).json()
    assert iso["latest_update"]["recorded_at"] == "2026-11-27T07:45:00+05:30"
    assert iso["alternate_mobiles"] == ["+919000021015"]

    two_alternates = (await get(client, keys, "MRB-2026-1002")).json()
    assert two_alternates["alternate_mobiles"] == ["+919000021012", "+919000021022"]

    admission_only = (await get(client, keys, "MRB-2026-1006")).json()
    assert admission_only["latest_update"] is None and admission_only["status"] == "admitted"

    # The other hospital sees none of it.
    assert (await get(client, keys, "MRB-2026-1001", code="MCK")).status_code == 404


async def test_the_sample_shows_every_column():
    header = SAMPLE.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == list(COLUMNS)


async def test_rows_are_stored_as_by_the_api_with_csv_audit(services, keys, fixed_clock):
    await run_import(services, SAMPLE)
    async with services.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        admission = await queries.find_admission(session, hospital, "MRB-2026-1003")
        update = await queries.latest_update(session, admission.id)
        assert update.source == "csv"
        events = (
            await session.exec(
                select(AuditEvent).where(AuditEvent.admission_id == admission.id).order_by(col(AuditEvent.id))
            )
        ).all()
        assert [(e.actor, e.action) for e in events] == [
            ("csv:MRB", "admission.created"),
            ("csv:MRB", "update.recorded"),
            ("csv:MRB", "status.changed"),
        ]
        assert events[1].detail == {"update_id": update.id, "is_latest": True}
        assert events[2].detail == {"previous": "admitted", "status": "discharged"}
        assert all(e.hospital_id == hospital.id for e in events)


async def test_bom_crlf_and_bengali(services, keys, client, fixed_clock):
    raw = (FIXTURES / "bengali_bom_crlf.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # what the fixture is for

    report = await run_import(services, FIXTURES / "bengali_bom_crlf.csv")
    assert report.ok, report.problems
    assert report.admissions_created == 3 and report.updates_recorded == 3

    body = (await get(client, keys, "BN-1")).json()
    assert body["patient_name"] == "রতন দাস"
    assert body["contact_mobile"] == "+919000021101"
    assert body["ward"] == "মেডিসিন ২"
    assert body["latest_update"]["remarks"] == "ভালো আছেন"
    assert (await get(client, keys, "BN-2")).json()["latest_update"]["remarks"] == "জ্বর, কাশি"
    assert (await get(client, keys, "BN-3")).json()["ward"] is None


# --- bad rows ---------------------------------------------------------------------------------

BAD_ROWS = {  # line: how the row is named, then what the problem must say
    3: ["line 3 (B-LANDLINE, Bina Roy): ", "contact_mobile: a landline, not a mobile number"],
    4: ["line 4 (B-SHORT, Chandan Pal): ", "contact_mobile: not a valid number"],
    5: ["line 5 (B-GARBLED, Dipa Saha): ", "contact_mobile: not a phone number"],
    6: ["line 6 (B-NONAME): ", "patient_name: is required"],
    7: ["line 7 (B-ENUM, Esha Bose): ", "condition: must be", "'stable'", '"serious"'],
    8: ["line 8 (B-SPO2, Farid Ali): ", 'spo2: must be at most 100, not "130"'],
    9: ["line 9 (B-BP, Gita Nath): ", "bp_diastolic", "must be below bp_systolic"],
    10: ["line 10 (B-FUTURE, Hari Dey): ", "recorded_at: is in the future"],
    11: ["line 11 (B-DATE, Indu Jana): ", "admitted_at:", '"yesterday"', "27/11/2026 09:30"],
    12: ["line 12 (G-1, Ratan Das again): ", "registration_no: G-1 is already on line 2"],
    13: ["line 13 (B-TRANSFER, Jaya Kar): ", "to_hospital", "required when status is transferred"],
    14: ["line 14 (B 14/X, Kamal Sen): ", "registration_no:", '"B 14/X" is not a registration number'],
    18: ["line 18 (B-FEB, Mohan Roy): ", "admitted_at:", '"31/02/2026" is not a date'],
    19: ["line 19 (Nita Paul): ", "registration_no: is required"],
}
# Line 17 gives a landline among its alternate numbers: the row is kept, without that number.
WARNINGS = [
    'line 17 (B-ALT, Lata Das): alternate_mobiles, number 2: "033 2241 4901" is a landline, not a mobile number; left out'
]


async def test_each_bad_row_is_reported_with_its_line_and_the_good_rows_are_kept(services, keys, client, fixed_clock):
    report = await run_import(services, FIXTURES / "bad_rows.csv")

    assert not report.ok
    assert report.rows == 17  # the blank line 15 is not a row
    assert report.rows_rejected == len(BAD_ROWS)
    assert report.admissions_created == 3 and report.updates_recorded == 2
    by_line = {int(p.split()[1]): p for p in report.problems}
    assert len(by_line) == len(report.problems), "one problem line per rejected row"
    assert set(by_line) == set(BAD_ROWS)
    for line, (named, *expected) in BAD_ROWS.items():
        assert by_line[line].startswith(named), (line, by_line[line])
        for words in expected:
            assert words in by_line[line], (line, by_line[line])
    assert "14 rows rejected" in report.summary()
    assert report.warnings == WARNINGS

    g1 = (await get(client, keys, "G-1")).json()
    assert g1["patient_name"] == "Ratan Das"  # line 12, its duplicate, changed nothing
    assert (g1["latest_update"]["spo2"], g1["latest_update"]["bp_diastolic"]) == (97, 80)
    g2 = (await get(client, keys, "G-2")).json()
    assert g2["patient_name"] == "সুমিতা মণ্ডল" and g2["alternate_mobiles"] == ["+919000021026"]

    async with services.database.session() as session:
        stored = set((await session.exec(select(Admission.registration_no))).all())
    assert stored == {"G-1", "G-2", "B-ALT"}
    assert (await get(client, keys, "B-ALT")).json()["alternate_mobiles"] == ["+919000021027"]


async def test_a_row_is_all_or_nothing(services, keys, client, fixed_clock, tmp_path):
    """A row whose condition is refused (the patient was discharged) keeps none of its changes."""
    header = "registration_no,patient_name,contact_mobile,ward,condition,recorded_at,status\n"
    first = write(tmp_path, header + "A-1,Ratan Das,090000 21001,Medicine 2,stable,26/11/2026 10:00,discharged\n")
    assert (await run_import(services, first)).ok
    before = await snapshot(services)

    second = write(tmp_path, header + "A-1,Ratan Das,090000 21001,ICU,critical,27/11/2026 10:00,\n", name="second.csv")
    report = await run_import(services, second)
    assert report.problems == [
        "line 2 (A-1, Ratan Das): condition: the admission is discharged; set status admitted first to add updates"
    ]
    assert report.rows_rejected == 1 and report.admissions_updated == 0
    assert await snapshot(services) == before  # not even the ward changed

    # Reopening in the same row is allowed: the status comes first, then the condition.
    third = write(
        tmp_path, header + "A-1,Ratan Das,090000 21001,ICU,critical,27/11/2026 10:00,admitted\n", name="third.csv"
    )
    report = await run_import(services, third)
    assert report.ok, report.problems
    assert (report.admissions_updated, report.updates_recorded, report.status_changes) == (1, 1, 1)
    body = (await get(client, keys, "A-1")).json()
    assert (body["status"], body["ward"], body["latest_update"]["condition"]) == ("admitted", "ICU", "critical")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("X-1,Ratan Das,090000 21001,,97,,", "condition: is blank, but the row gives spo2"),
        ("X-1,Ratan Das,090000 21001,,,,2026-11-27 10:00", "status: is blank, but the row gives status_at"),
        ("X-1,Ratan Das,090000 21001,stable,,discharged,,extra", "8 cells but the header names 7 columns"),
        ("X-1,Ratan Das,090000 21001,stable,ninety,,", 'spo2: must be a whole number, not "ninety"'),
        ("X-1,Ratan Das,090000 21001,stable,,deceased,31/11/2026", 'status_at: "31/11/2026" is not a date'),
        ("X-1,Ratan Das,090000 21001,stable,,gone home,", "status: must be 'admitted'"),
        ("X-1,Ratan Das,90000 21001 (son),stable,,,", "contact_mobile:"),
    ],
)
async def test_more_bad_rows(services, keys, fixed_clock, tmp_path, row, expected):
    header = "registration_no,patient_name,contact_mobile,condition,spo2,status,status_at\n"
    path = write(tmp_path, f"{header}{row}\n")
    report = await run_import(services, path)
    assert report.rows_rejected == 1 and len(report.problems) == 1
    assert report.problems[0].startswith("line 2 (X-1, Ratan Das): ")
    assert expected in report.problems[0]
    assert (await counts(services))["admission"] == 0


async def test_a_character_that_cannot_be_stored_rejects_its_row_only(services, keys, client, fixed_clock, tmp_path):
    """On PostgreSQL one NUL used to abort the whole import; now it is that row's problem."""
    header = "registration_no,patient_name,contact_mobile,ward,condition,spo2,remarks,status,to_hospital\n"
    rows = [
        "C-1,Ratan Das,090000 21001,Medicine 2,stable,97,fine,,",
        "C-2,Mitali\x00Ghosh,090000 21002,,stable,,,,",
        "C-3,Sumita Mondal,090000 21003,HDU\x00,stable,,,,",
        "C-4,Anil Roy,090000 21004,,stable,,SpO2\x00falling,,",
        "C-5,Rina Paul,090000 21005,,stable,,,transferred,SSKM\x00",
        "C-6,Gopal Sen,090000 21006,,stable,9\x007,,,",
        'C-7,Tapas Dey,090000 21007,,stable,,"two lines,\r\n\tindented",,',
        "C-8,Tuhin\x1bDas,090000 21008,,stable,,,,",
    ]
    path = write(tmp_path, header + "\n".join(rows) + "\n")

    report = await run_import(services, path)

    assert (report.admissions_created, report.rows_rejected) == (2, 6)
    assert report.problems == [
        "line 3 (C-2, Mitali\\u0000Ghosh): patient_name: contains a control character (U+0000)",
        "line 4 (C-3, Sumita Mondal): ward: contains a control character (U+0000)",
        "line 5 (C-4, Anil Roy): remarks: contains a control character (U+0000)",
        "line 6 (C-5, Rina Paul): to_hospital: contains a control character (U+0000)",
        'line 7 (C-6, Gopal Sen): spo2: must be a whole number, not "9\\u00007"',
        "line 9 (C-8, Tuhin\\u001bDas): patient_name: contains a control character (U+001B)",
    ]
    assert (await get(client, keys, "C-1")).json()["latest_update"]["remarks"] == "fine"
    assert (await get(client, keys, "C-7")).json()["latest_update"]["remarks"] == "two lines,\r\n\tindented"


@pytest.mark.parametrize("column", ["admitted_at", "recorded_at", "status_at"])
async def test_times_before_2000_are_refused_as_by_the_api(services, keys, fixed_clock, tmp_path, column):
    header = "registration_no,patient_name,contact_mobile,condition,status,admitted_at,recorded_at,status_at\n"
    times = {"admitted_at": "01/01/2000 00:00", "recorded_at": "2000-01-01T00:00", "status_at": "01-01-2000"}
    times[column] = "31/12/1999 23:59"
    path = write(tmp_path, f"{header}T-1,Ratan Das,090000 21001,stable,discharged,{','.join(times.values())}\n")

    report = await run_import(services, path)

    assert report.problems == [f"line 2 (T-1, Ratan Das): {column}: {TOO_EARLY}"]
    assert report.rows_rejected == 1


async def test_line_numbers_count_rows_as_a_spreadsheet_does(services, keys, fixed_clock, tmp_path):
    """A cell with a line break is one spreadsheet row, though two lines of text."""
    path = write(
        tmp_path,
        "registration_no,patient_name,contact_mobile,condition,remarks\r\n"
        'L-1,Ratan Das,090000 21001,stable,"first line\r\nsecond line"\r\n'
        "L-2,Mitali Ghosh,033 2473 2222,stable,\r\n",
    )
    report = await run_import(services, path)
    assert report.problems == ["line 3 (L-2, Mitali Ghosh): contact_mobile: a landline, not a mobile number"]


async def test_header_names_ignore_case_and_spaces_and_columns_may_come_in_any_order(
    services, keys, client, fixed_clock, tmp_path
):
    header = " Condition , CONTACT_MOBILE,Patient_Name, registration_no \n"
    path = write(tmp_path, header + "critical,090000 21001,Ratan Das,H-1\n")
    assert (await run_import(services, path)).ok
    assert (await get(client, keys, "H-1")).json()["latest_update"]["condition"] == "critical"


# --- bad files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("unknown_column.csv", "MRB", ['unknown column "spo_2"', 'did you mean "spo2"']),
        ("missing_column.csv", "MRB", ["line 1: missing column contact_mobile"]),
        ("not_utf8.csv", "MRB", ["line 2: the file is not UTF-8", "CSV UTF-8"]),
        ("no_such_file.csv", "MRB", ["no such file"]),
        ("bad_rows.csv", "XYZ", ["no hospital with code XYZ"]),
    ],
)
async def test_a_bad_file_changes_nothing(services, keys, fixed_clock, name, code, expected):
    await run_import(services, SAMPLE)
    before = await snapshot(services)

    report = await run_import(services, FIXTURES / name, code=code)
    assert not report.ok and report.file_error
    assert len(report.problems) == 1
    for words in expected:
        assert words in report.problems[0], report.problems
    assert "nothing was saved" in report.summary()
    assert report.admissions_created == report.updates_recorded == 0
    assert await snapshot(services) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "line 1: no header"),
        ("\n\nregistration_no,patient_name,contact_mobile\n", "line 1: no header"),
        ("registration_no;patient_name;contact_mobile\n", "separated by ';'"),
        ("registration_no,patient_name,contact_mobile,Ward,ward\n", 'column "ward" appears twice'),
        ("registration no,patient_name,contact_mobile\n", 'did you mean "registration_no"'),
    ],
)
async def test_bad_headers(services, keys, tmp_path, text, expected):
    report = await run_import(services, write(tmp_path, text))
    assert report.file_error and len(report.problems) == 1
    assert expected in report.problems[0]


async def test_a_header_alone_imports_nothing_and_is_fine(services, keys, tmp_path):
    report = await run_import(services, write(tmp_path, "registration_no,patient_name,contact_mobile\n"))
    assert report.ok and report.rows == 0


# --- importing again, dry runs ------------------------------------------------------------------


async def test_importing_the_same_file_again_changes_nothing(services, keys, fixed_clock):
    first = await run_import(services, SAMPLE)
    assert first.ok
    before = await snapshot(services)
    assert len(before["audit_event"]) == 2 + 8 + 7 + 2  # hospitals, admissions, updates, statuses

    again = await run_import(services, SAMPLE)
    assert again.ok, again.problems
    assert (again.admissions_created, again.admissions_updated, again.admissions_unchanged) == (0, 0, 8)
    assert (again.updates_recorded, again.status_changes) == (0, 0)
    assert await snapshot(services) == before


async def test_rows_without_times_are_not_added_again_later(services, keys, tmp_path):
    """Without recorded_at a condition is "now": the same condition an hour later is no news."""
    header = "registration_no,patient_name,contact_mobile,condition,spo2\n"
    path = write(tmp_path, header + "T-1,Ratan Das,090000 21001,stable,96\n")
    assert (await run_import(services, path)).updates_recorded == 1
    before = await snapshot(services)
    later = services.clock() + timedelta(hours=1)
    services.clock = lambda: later
    again = await run_import(services, path)
    assert again.updates_recorded == 0 and await snapshot(services) == before

    changed = write(tmp_path, header + "T-1,Ratan Das,090000 21001,stable,92\n")
    assert (await run_import(services, changed)).updates_recorded == 1


async def test_changes_in_a_second_file_update_what_they_change(services, keys, client, fixed_clock, tmp_path):
    await run_import(services, SAMPLE)
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace("Medicine 2,14,", "Medicine 3,2,")  # MRB-2026-1001 moved
    text = text.replace("+91 90000 21011", "90000 21031;90000 21041")  # and has new alternates
    text = text.replace("On ventilator since 24/11,2026-11-27T07:45+05:30", "Weaning,2026-11-28T09:00+05:30")
    report = await run_import(services, write(tmp_path, text))
    assert report.ok, report.problems
    assert (report.admissions_updated, report.admissions_unchanged, report.updates_recorded) == (1, 7, 1)

    moved = (await get(client, keys, "MRB-2026-1001")).json()
    assert (moved["ward"], moved["bed"]) == ("Medicine 3", "2")
    assert moved["alternate_mobiles"] == ["+919000021031", "+919000021041"]
    weaning = (await get(client, keys, "MRB-2026-1005")).json()["latest_update"]
    assert (weaning["remarks"], weaning["recorded_at"]) == ("Weaning", "2026-11-28T09:00:00+05:30")
    async with services.database.session() as session:
        event = (await session.exec(select(AuditEvent).where(AuditEvent.action == "admission.updated"))).one()
    assert event.detail == {"fields": ["ward", "bed", "alternate_mobiles"]}


async def test_columns_left_out_keep_what_the_api_stored(services, keys, client, fixed_clock, tmp_path):
    body = {"patient_name": "Ratan Das", "contact_mobile": "090000 21001", "age": 64, "ward": "Medicine 2",
            "alternate_mobiles": ["90000 21011"]}  # fmt: skip
    assert (await client.put("/api/v1/admissions/K-1", json=body, headers=auth(keys["MRB"]))).status_code == 201

    header = "registration_no,patient_name,contact_mobile,condition\n"
    path = write(tmp_path, header + "K-1,Ratan Das,090000 21001,stable\n")
    report = await run_import(services, path)
    assert report.ok and report.admissions_unchanged == 1 and report.updates_recorded == 1
    stored = (await get(client, keys, "K-1")).json()
    assert (stored["age"], stored["ward"], stored["alternate_mobiles"]) == (64, "Medicine 2", ["+919000021011"])

    # A column that is there but blank clears the detail, as the API's PUT does.
    path = write(tmp_path, "registration_no,patient_name,contact_mobile,ward\nK-1,Ratan Das,090000 21001,\n")
    assert (await run_import(services, path)).admissions_updated == 1
    assert (await get(client, keys, "K-1")).json()["ward"] is None


async def test_the_same_registration_number_at_another_hospital_is_another_patient(
    services, keys, client, fixed_clock, tmp_path
):
    body = {"patient_name": "Someone Else", "contact_mobile": "090000 29999"}
    await client.put("/api/v1/admissions/MRB-2026-1001", json=body, headers=auth(keys["MCK"]))
    assert (await run_import(services, SAMPLE)).admissions_created == 8
    assert (await get(client, keys, "MRB-2026-1001", code="MCK")).json()["patient_name"] == "Someone Else"


async def test_dry_run_reports_and_changes_nothing(services, keys, fixed_clock):
    before = await snapshot(services)
    report = await run_import(services, FIXTURES / "bad_rows.csv", dry_run=True)
    assert (report.admissions_created, report.updates_recorded, report.rows_rejected) == (3, 2, len(BAD_ROWS))
    assert "dry run: nothing was saved" in report.summary()
    assert await snapshot(services) == before

    report = await run_import(services, SAMPLE, dry_run=True)
    assert report.ok and report.admissions_created == 8
    assert await snapshot(services) == before
    assert (await run_import(services, SAMPLE)).admissions_created == 8  # and the real one still works


# --- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("27/11/2026 09:30", datetime(2026, 11, 27, 9, 30)),
        ("27-11-2026 09:30", datetime(2026, 11, 27, 9, 30)),
        ("7/1/2026 9:05", datetime(2026, 1, 7, 9, 5)),
        ("27/11/2026", datetime(2026, 11, 27)),
        ("27/11/2026 09:30:15", datetime(2026, 11, 27, 9, 30, 15)),
        ("2026-11-27T09:30", datetime(2026, 11, 27, 9, 30)),
        ("2026-11-27 09:30", datetime(2026, 11, 27, 9, 30)),
        ("2026-11-27T04:00Z", datetime(2026, 11, 27, 4, 0, tzinfo=UTC)),
    ],
)
def test_times_as_spreadsheets_write_them(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["31/02/2026", "27/13/2026", "11/27/2026 25:00", "yesterday", "27.11.2026", "27/11/26"]
)
def test_times_that_are_refused(text):
    with pytest.raises(ValueError):
        parse_time(text)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, migrated_url):
    monkeypatch.setenv("BOT_CONFIG", str(PROJECT_ROOT / "config.yaml"))
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)


def test_command_exit_codes(services, keys, cli_env, tmp_path, capsys):
    # The command uses the real clock: these rows carry no times.
    header = "registration_no,patient_name,contact_mobile,condition\n"
    good = write(tmp_path, header + "C-1,Ratan Das,090000 21001,stable\n")
    bad = write(
        tmp_path,
        header + "C-2,Mitali Ghosh,090000 21002,stable\nC-3,Amal Biswas,033 2473 2222,stable\n",
        name="bad.csv",
    )
    assert cli.main(["import", str(good), "--hospital", "MRB", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "1 admission created" in out.out and "dry run: nothing was saved" in out.out

    assert cli.main(["import", str(good), "--hospital", "MRB"]) == 0
    assert cli.main(["import", str(good), "--hospital", "MRB"]) == 0
    assert "0 admissions created, 0 updated, 1 unchanged" in capsys.readouterr().out

    assert cli.main(["import", str(bad), "--hospital", "MRB"]) == 1
    out = capsys.readouterr()
    assert "1 row rejected" in out.out
    assert "line 3 (C-3, Amal Biswas): contact_mobile: a landline, not a mobile number" in out.err

    assert cli.main(["import", str(good), "--hospital", "NOPE"]) == 1
    assert "no hospital with code NOPE" in capsys.readouterr().err
    assert cli.main(["import", str(FIXTURES / "unknown_column.csv"), "--hospital", "MRB"]) == 1


async def test_columns_without_a_name(services, keys, fixed_clock, tmp_path):
    """Spreadsheets often export a trailing column with no name: harmless while it is empty."""
    path = write(
        tmp_path,
        "registration_no,patient_name,contact_mobile,,\n"
        "U-1,Ratan Das,090000 21001,,\n"
        "U-2,Mitali Ghosh,090000 21002,,note\n"
        "U-3,Amal Biswas,090000 21003,,,,\n",
    )
    report = await run_import(services, path)
    assert report.admissions_created == 2
    assert report.problems == ["line 3 (U-2, Mitali Ghosh): a value in column E, which has no name on line 1"]


# --- what a clerk types -----------------------------------------------------------------------


async def test_registration_numbers_with_slashes_and_spo2_with_a_percent_sign(
    services, keys, client, fixed_clock, tmp_path
):
    path = write(
        tmp_path,
        "registration_no,patient_name,contact_mobile,condition,spo2\n"
        "SSK/2026/1001,Ratan Das,090000 21001,critical,93%\n"
        "SSK/2026/1002,Mitali Ghosh,090000 21002,stable,97 %\n"
        "SSK//1003,Amal Biswas,090000 21003,stable,98\n"
        "SSK/2026/,Rina Paul,090000 21004,stable,98\n",
    )

    report = await run_import(services, path)

    assert report.admissions_created == 2
    rule = (
        "letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit; "
        "'/' between parts, each starting with a letter or digit (SSK/2026/1001)"
    )
    assert report.problems == [
        f'line 4 (SSK//1003, Amal Biswas): registration_no: "SSK//1003" is not a registration number ({rule})',
        f'line 5 (SSK/2026/, Rina Paul): registration_no: "SSK/2026/" is not a registration number ({rule})',
    ]
    first = (await get(client, keys, "SSK%2F2026%2F1001")).json()
    assert (first["registration_no"], first["latest_update"]["spo2"]) == ("SSK/2026/1001", 93)
    assert (await get(client, keys, "SSK/2026/1002")).json()["latest_update"]["spo2"] == 97


async def test_a_temperature_in_fahrenheit_is_refused_with_its_celsius_value(services, keys, fixed_clock, tmp_path):
    path = write(
        tmp_path,
        "registration_no,patient_name,contact_mobile,condition,temperature_c\n"
        "F-1,Ratan Das,090000 21001,stable,98.6\n"
        "F-2,Mitali Ghosh,090000 21002,stable,37.2\n"
        "F-3,Amal Biswas,090000 21003,stable,120\n",
    )

    report = await run_import(services, path)

    assert report.problems == [
        "line 2 (F-1, Ratan Das): temperature_c: 98.6 looks like °F; temperature_c is in °C: 98.6 °F is 37.0 °C",
        'line 4 (F-3, Amal Biswas): temperature_c: must be at most 45.0, not "120"',
    ]
    assert report.admissions_created == 1


def test_a_landline_among_the_alternate_numbers_is_a_warning_and_the_row_is_kept(
    services, keys, cli_env, tmp_path, capsys
):
    path = write(
        tmp_path,
        "registration_no,patient_name,contact_mobile,alternate_mobiles,condition\n"
        "W-1,Ratan Das,090000 21001,033 2473 2222; 90000 21011,stable\n"
        "W-2,Mitali Ghosh,033 2241 4901,,stable\n",
    )

    assert cli.main(["import", str(path), "--hospital", "MRB"]) == 1

    out = capsys.readouterr()
    assert "1 admission created" in out.out and "1 row rejected" in out.out
    assert out.err.splitlines() == [
        "line 3 (W-2, Mitali Ghosh): contact_mobile: a landline, not a mobile number",
        'warning: line 2 (W-1, Ratan Das): alternate_mobiles, number 1: "033 2473 2222" is a landline, '
        "not a mobile number; left out",
    ]
