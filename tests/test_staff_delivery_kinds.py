"""The admin's "who was told" page names every kind of alert in words, and says truthfully who a
new admission's notice went to: a chat that confirmed the number before the admission and cannot
read the patient yet. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import auth
from tests.test_staff_admin_pages import admin, plain  # noqa: F401
from tests.test_staff_admin_reports import CRITICAL_ICU, MOBILE, MODERATE, SMS, World, world  # noqa: F401

NOTICE_READER = "A chat told of a new admission under its number; not yet verified for this patient"


async def withdraw(world: World, update_id: int) -> None:
    response = await world.api.delete(f"/api/v1/admissions/R-1/updates/{update_id}", headers=auth(world.keys["MRB"]))
    assert response.status_code == 200, response.text


async def test_a_correction_is_named_as_one(world, admin):
    await world.admit("R-1")
    await world.record("R-1", "MRB", world.clock.now - timedelta(hours=1), **MODERATE)
    await world.relative("son", "98300 12345", MOBILE)
    wrong = await world.record("R-1", "MRB", world.clock.now, **CRITICAL_ICU)
    await world.dispatch()
    await withdraw(world, wrong["id"])
    await world.dispatch()

    text = plain(await admin.get("/staff/admin/patients/R-1"))
    assert "+91******2345 Console · Correction Sent at" in text
    assert "+91******2345 Console · Condition update Sent at" in text
    assert "correction" not in text


async def test_a_new_admissions_notice_is_named_with_the_chat_it_went_to(world, admin):
    await world.admit("R-1")
    son = await world.relative("son", "98300 12345", MOBILE)
    await world.admit("R-2", patient_name="Mina Das")
    await world.dispatch()

    text = plain(await admin.get("/staff/admin/patients/R-2"))
    assert f"{NOTICE_READER} Console · New admission notice Sent at" in text
    assert "A chat that no longer follows" not in text and "new_admission" not in text

    # Once the chat confirms the number again, it follows Mina: the notice shows its number.
    await son.say("98300 12345")
    codes = [found.group(2) for found in map(SMS.match, world.shown) if found and found.group(1) == MOBILE]
    assert (await son.say(codes[-1])).startswith("Thank you, your number is confirmed.")
    text = plain(await admin.get("/staff/admin/patients/R-2"))
    assert "+91******2345 Console · New admission notice Sent at" in text
    assert NOTICE_READER not in text
