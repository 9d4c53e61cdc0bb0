"""Registration numbers with '/' (`SSK/2026/1001`) on the ward's page, and the CSV upload's preview
as a clerk reads it: each row named by its registration number and patient's name, and what was
left out of a row that was kept. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import re

from models import Admission
from tests.staff_support import cheap_argon2  # noqa: F401
from tests.test_staff_admin_pages import plain, upload
from tests.test_staff_pages import ward  # noqa: F401

SLASHED = "SSK/2026/1001"


async def test_a_patient_whose_number_holds_slashes_is_cared_for_on_every_ward_page(ward):  # noqa: F811
    await ward.admit(SLASHED, patient_name="Ratan Das", ward="Medicine 2")
    browser = await ward.staff()

    listed = await browser.get("/staff/")
    assert f'<a href="/staff/patients/{SLASHED}">' in listed.text
    patient = await browser.get(f"/staff/patients/{SLASHED}")
    assert patient.status_code == 200 and "Ratan Das" in patient.text

    saved = await browser.submit(
        f"/staff/patients/{SLASHED}", f"/staff/patients/{SLASHED}/updates", condition="critical"
    )
    assert saved.status_code == 303 and re.fullmatch(
        rf"/staff/patients/{SLASHED}/updates/\d+", saved.headers["location"]
    )
    recorded = await browser.get(saved.headers["location"])
    assert recorded.status_code == 200 and "Ratan Das" in recorded.text
    undone = await browser.submit(saved.headers["location"], saved.headers["location"] + "/undo")
    assert undone.status_code == 303 and undone.headers["location"] == saved.headers["location"]

    confirm = await browser.get(f"/staff/patients/{SLASHED}/discharge")
    assert confirm.status_code == 200 and "Record that Ratan Das went home?" in plain(confirm)
    left = await browser.submit(f"/staff/patients/{SLASHED}/discharge", f"/staff/patients/{SLASHED}/discharge")
    assert left.status_code == 303 and left.headers["location"] == f"/staff/patients/{SLASHED}"
    (admission,) = await ward.rows(Admission)
    assert (admission.registration_no, admission.status) == (SLASHED, "discharged")

    admin = await ward.staff("anita", role="admin")
    told = await admin.get(f"/staff/admin/patients/{SLASHED}")
    assert told.status_code == 200 and "Ratan Das" in told.text
    found = await admin.get("/staff/admin/delivery", reg=SLASHED)
    assert found.status_code == 303 and found.headers["location"] == f"/staff/admin/patients/{SLASHED}"


async def test_a_patient_is_admitted_on_the_ward_page_under_a_number_with_slashes(ward):  # noqa: F811
    browser = await ward.staff()

    admitted = await browser.submit(
        "/staff/admit", "/staff/admit", registration_no="SSK/2026/1002", patient_name="Mitali Ghosh",
        contact_mobile="98300 12345",
    )  # fmt: skip

    assert admitted.status_code == 303 and admitted.headers["location"] == "/staff/patients/SSK/2026/1002"
    assert "Mitali Ghosh" in (await browser.get(admitted.headers["location"])).text


async def test_the_upload_preview_names_each_row_and_says_what_was_left_out(ward):  # noqa: F811
    admin = await ward.staff("anita", role="admin")
    content = (
        b"registration_no,patient_name,contact_mobile,alternate_mobiles,condition,spo2\n"
        b"SSK/2026/1001,Ratan Das,098300 12345,033 2473 2222; 98300 22222,critical,89%\n"
        b"SSK/2026/1002,Mitali Ghosh,033 2241 4901,,stable,98\n"
    )

    text = plain(await upload(admin, content))

    assert "3 SSK/2026/1002 Mitali Ghosh contact_mobile: a landline, not a mobile number" in text
    assert (
        '2 SSK/2026/1001 Ratan Das new admission, condition recorded; alternate_mobiles, number 1: "033 2473 2222" '
        "is a landline, not a mobile number; left out"
    ) in text
