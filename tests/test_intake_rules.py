"""The hospital API and the CSV import decide alike: the same changes sent through each leave the
same admission, history, audit trail and alerts, step by step. Runs on SQLite, and on PostgreSQL
when TEST_DATABASE_URL is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import col, select

from models import AuditEvent, ConditionUpdate, Hospital, Notification, queries
from tests.conftest import auth
from tests.test_api import follow

REG = "R-1"
ADMISSION = {"patient_name": "Ratan Das", "contact_mobile": "098300 12345", "ward": "Medicine 2"}
MODERATE = {"condition": "moderate", "care_area": "hdu", "recorded_at": "2024-07-02T08:00:00+05:30"}
CRITICAL = {"condition": "critical", "care_area": "icu", "recorded_at": "2024-07-03T09:00:00+05:30"}
DISCHARGED = {"status": "discharged", "at": "2024-07-02T18:00:00+05:30"}
READMITTED = {"status": "admitted", "at": "2024-07-03T08:00:00+05:30"}
CSV_COLUMNS = ("registration_no", *ADMISSION, "condition", "care_area", "recorded_at", "status", "status_at")


def csv_status(status: dict[str, str]) -> dict[str, str]:
    return {"status": status["status"], "status_at": status["at"]}


# (what the hospital does, the API call, the same as a CSV row or None when a row cannot say it,
# whether it is refused). A CSV row always carries the admission's details too, unchanged.
STEPS: list[tuple[str, tuple[str, str, dict[str, Any]], dict[str, str] | None, bool]] = [
    ("admits the patient", ("PUT", "", ADMISSION), {}, False),
    ("records a condition", ("POST", "/updates", MODERATE), MODERATE, False),
    ("sends the same condition again", ("POST", "/updates", MODERATE), MODERATE, False),
    # The CSV has no column for a status's remarks: both hospitals send this one through the API.
    ("discharges, with remarks", ("POST", "/status", {**DISCHARGED, "remarks": "Home isolation"}), None, False),
    ("sends the discharge again, without remarks", ("POST", "/status", DISCHARGED), csv_status(DISCHARGED), False),
    ("sends the condition of before the discharge again", ("POST", "/updates", MODERATE), MODERATE, False),
    ("sends a new condition after the discharge", ("POST", "/updates", CRITICAL), CRITICAL, True),
    ("readmits the patient", ("POST", "/status", READMITTED), csv_status(READMITTED), False),
    ("records the new condition", ("POST", "/updates", CRITICAL), CRITICAL, False),
]


async def through_api(client, key: str, call: tuple[str, str, dict[str, Any]]) -> bool:
    """Whether the API refused the call."""
    method, tail, body = call
    response = await client.request(method, f"/api/v1/admissions/{REG}{tail}", json=body, headers=auth(key))
    assert response.status_code in (200, 201, 409), response.text
    return response.status_code == 409


async def through_csv(services, tmp_path: Path, row: dict[str, str]) -> bool:
    """Whether the import rejected the row."""
    cells = {"registration_no": REG, **ADMISSION, **row}
    path = tmp_path / "ward_round.csv"
    path.write_text(
        ",".join(CSV_COLUMNS) + "\n" + ",".join(cells.get(column, "") for column in CSV_COLUMNS) + "\n",
        encoding="utf-8",
    )
    async with services.database.session() as session:
        report = await services.import_csv(session, path, "MCK")
    assert report.rows == 1 and not report.file_error, report.problems
    return report.rows_rejected == 1


async def state(services, client, key: str, code: str) -> dict[str, Any]:
    """What a hospital and the relatives following its admission can tell of it, without what
    differs by hospital (its code, the rows' ids, the time of receipt)."""
    shown = (await client.get(f"/api/v1/admissions/{REG}", headers=auth(key))).json()
    shown.pop("hospital")
    if shown["latest_update"] is not None:
        shown["latest_update"] = {
            name: value for name, value in shown["latest_update"].items() if name not in ("id", "received_at")
        }
    async with services.database.session() as session:
        hospital = (await session.exec(select(Hospital).where(Hospital.code == code))).one()
        admission = await queries.find_admission(session, hospital, REG)
        history = (
            await session.exec(
                select(ConditionUpdate.condition, ConditionUpdate.care_area, ConditionUpdate.recorded_at)
                .where(ConditionUpdate.admission_id == admission.id)
                .order_by(col(ConditionUpdate.id))
            )
        ).all()
        audited = (
            await session.exec(
                select(AuditEvent).where(AuditEvent.admission_id == admission.id).order_by(col(AuditEvent.id))
            )
        ).all()
        alerts = (
            await session.exec(
                select(Notification.kind, Notification.priority, Notification.before)
                .where(Notification.admission_id == admission.id)
                .order_by(col(Notification.id))
            )
        ).all()
    return {
        "shown": shown,
        "history": [tuple(update) for update in history],
        "audit": [
            (event.action, {name: value for name, value in event.detail.items() if name != "update_id"})
            for event in audited
        ],
        "alerts": [tuple(alert) for alert in alerts],
    }


async def test_the_api_and_the_csv_import_decide_alike(services, client, keys, tmp_path):
    after: dict[str, dict[str, Any]] = {}
    for number, (what, call, row, refused) in enumerate(STEPS):
        assert await through_api(client, keys["MRB"], call) == refused, what
        if row is None:
            assert await through_api(client, keys["MCK"], call) == refused, what
        else:
            assert await through_csv(services, tmp_path, row) == refused, what
        if number == 0:
            await follow(services, "MRB", REG)
            await follow(services, "MCK", REG)

        by_api = await state(services, client, keys["MRB"], "MRB")
        by_csv = await state(services, client, keys["MCK"], "MCK")
        assert by_api == by_csv, f"after the hospital {what}"
        after[what] = by_api

    assert after["sends the discharge again, without remarks"]["shown"]["status_remarks"] == "Home isolation"
    assert [action for action, _ in by_api["audit"]] == [
        "admission.created", "update.recorded", "status.changed", "status.changed", "update.recorded",
    ]  # fmt: skip
    assert [kind for kind, _, _ in by_api["alerts"]] == ["condition", "status", "status", "condition"]
