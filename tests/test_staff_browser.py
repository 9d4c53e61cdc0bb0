"""The ward's page in headless Chromium at 360×640, on the demo data: a ward clerk logs in, finds
the most overdue patient at the top of the list, records a change in three taps, and the relative
following that patient on (the fake) Telegram is told once the correction window has passed.
Screenshots of each page go to docs/screenshots/ with SAVE_SCREENSHOTS=1 (the README shows them)."""

from __future__ import annotations

import time

from bot.staff import accounts, wards
from tests.staff_browser import GRACE_SECONDS, Site, chromium, site  # noqa: F401

WARD_LOGIN, WARD_PASSWORD = "mrb.ward", "mrb-ward-demo"


async def most_overdue(site: Site) -> wards.WardPatient:
    """The patient the demo ward clerk should see first."""
    async with site.services.database.session() as session:
        clerk = await accounts.find_account(session, WARD_LOGIN)
        assert clerk is not None
        patients = await wards.ward_patients(session, clerk, site.services.settings.config.overdue_hours)
    return patients[0]


async def test_a_ward_clerk_records_a_change_in_three_taps_and_the_relative_is_told(site: Site):
    overdue = await most_overdue(site)
    admission = overdue.admission
    relative = await site.relative_following(admission.contact_mobile)
    told_before = len(site.fake.messages_to(relative.id))
    page = site.page

    await site.open("/staff/login")
    await page.get_by_label("Username").fill(WARD_LOGIN)
    await page.get_by_label("Password").fill(WARD_PASSWORD)
    await site.shot("login")
    await page.get_by_role("button", name="Log in").click()

    # The ward list: the most overdue patient first, in red.
    first = page.locator("ul.patients li").first
    await first.wait_for()
    assert admission.patient_name in await first.inner_text()
    assert "Update overdue" in await first.inner_text()
    assert await first.locator(".overdue").evaluate("e => getComputedStyle(e).color") == "rgb(179, 38, 30)"
    await site.shot("ward-list")
    await first.click()

    await page.get_by_role("button", name="No change").wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
    await site.shot("patient")
    latest = overdue.latest
    assert latest is not None
    condition = "Stable" if latest.condition != "stable" else "Moderate"
    area = "HDU" if latest.care_area != "hdu" else "ICU"

    # Three taps.
    await page.get_by_text(condition, exact=True).click()
    await page.get_by_text(area, exact=True).click()
    saved_at = time.monotonic()
    await page.get_by_role("button", name="Save", exact=True).click()

    status = page.get_by_role("status")
    await status.wait_for()
    assert f"Saved: {condition}" in await status.inner_text()
    told = page.get_by_text("Relatives will be told at")
    assert "(in 3 seconds)" in await told.inner_text()
    assert "Undo" in await page.content()
    await site.shot("recorded")

    (alert,) = (await site.fake.wait_messages(relative.id, told_before + 1, timeout=GRACE_SECONDS + 20))[told_before:]
    assert alert.plain.startswith(f"🔔 Update on {admission.patient_name}: ")
    assert condition in alert.plain.splitlines()[0]
    sent_at, status_code = site.fake.attempts_to(relative.id)[-1]
    assert status_code == 200 and sent_at - saved_at >= GRACE_SECONDS  # held for the correction window


async def test_the_other_pages_at_a_phones_width(site: Site):
    overdue = await most_overdue(site)
    registration_no = overdue.admission.registration_no
    page = site.page
    await site.log_in(WARD_LOGIN, WARD_PASSWORD)
    await page.locator("ul.patients li").first.wait_for()

    for path, name, ready in (
        ("/staff/admit", "admit", "Admit"),
        (f"/staff/patients/{registration_no}/discharge", "discharge", "Yes, record the discharge"),
        (f"/staff/patients/{registration_no}/death", "death", "Yes, record the death"),
    ):
        await site.open(path)
        await page.get_by_role("button", name=ready).wait_for()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360, path
        await site.shot(name)

    # A required field left empty: the browser itself asks for it, nothing is sent.
    await site.open("/staff/admit")
    await page.get_by_role("button", name="Admit").click()
    assert await page.evaluate("location.pathname") == "/staff/admit"


async def test_the_page_in_bengali(site: Site):
    page = site.page
    await site.log_in(WARD_LOGIN, WARD_PASSWORD, language="bn")
    await page.locator("ul.patients li").first.wait_for()
    assert await page.get_attribute("html", "lang") == "bn"
    assert site.text("bn", "Admit a patient") in await page.content()
    await site.shot("ward-list-bn")
    await page.locator("ul.patients li").first.click()
    await page.get_by_role("button", name=site.text("bn", "No change")).wait_for()
    await site.shot("patient-bn")
