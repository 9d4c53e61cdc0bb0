"""The admin's pages in a real browser at a phone's 360×640 (`tests.staff_browser`): log in, read
the day's figures, add a ward account, change what relatives are shown, upload a CSV file, see its
preview row by row and apply it, and see in the delivery view that the relative following a patient
it changed was told on Telegram. Screenshots of each page: docs/screenshots/admin-*.png with
SAVE_SCREENSHOTS=1."""

from __future__ import annotations

import re

from bot.intake.hospitals import get_hospital
from bot.staff import accounts
from tests.staff_browser import Site, chromium, site  # noqa: F401
from tests.staff_support import NEW_PASSWORD, cheap_argon2  # noqa: F401

PAGE_LIMIT = 50_000  # bytes of HTML, before images
UPLOAD = (
    "registration_no,patient_name,contact_mobile,ward,condition,care_area,respiratory_support,spo2\n"
    "MRB-20-0415,মিঠু ঘোষ,090000 00004,Ward 3 (Female),moderate,ward,oxygen,93\n"
    "MRB-20-0498,Rekha Saha,090000 00031,Ward 3 (Female),stable,ward,none,98\n"
    "MRB-20-0499,Tapas Roy,12345,Ward 3 (Female),stable,ward,none,101\n"
).encode()


async def light(site: Site) -> None:
    html = await site.page.content()
    assert len(html.encode()) < PAGE_LIMIT, site.page.url


async def test_an_admin_manages_staff_and_disclosure_uploads_a_file_and_sees_who_was_told(site):
    page = site.page
    async with site.services.database.session() as session:
        hospital = await get_hospital(session, "MRB")
        assert hospital is not None
        issued = await accounts.add_account(session, hospital, "anita", "admin", [], actor="cli")
        await session.commit()
    relative = await site.relative_following("+919000000004")

    await site.log_in("anita", issued.password)
    await page.get_by_label("Current password").fill(issued.password)
    await page.get_by_label("New password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Save the new password").click()

    await page.get_by_role("link", name="Today").click()
    await page.get_by_role("heading", name="Today at M.R. Bangur Hospital").wait_for()
    assert await page.get_by_text("Relatives verified").is_visible()
    await light(site)
    await site.shot("admin-today")

    # A ward account, limited to one ward: its one-time password is shown once.
    await page.get_by_role("link", name="Staff", exact=True).click()
    await page.get_by_label("Username").fill("rina")
    await page.get_by_text("Ward staff", exact=True).click()
    await page.get_by_text("Ward 3 (Female)", exact=True).click()
    await light(site)
    await site.shot("admin-staff")
    await page.get_by_role("button", name="Add the account").click()
    await page.get_by_role("heading", name="Account created").wait_for()
    assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", await page.locator(".secret").inner_text())
    await site.shot("admin-staff-password")

    # Rina leaves, then comes back: disabled behind a second tap, enabled again the same way.
    await page.get_by_role("link", name="All staff accounts").click()
    await page.get_by_role("link", name="rina").click()
    await page.get_by_text("Disable the account").click()
    await page.get_by_role("button", name="Yes, disable rina").click()
    await page.get_by_text("The account is disabled: it can no longer log in.").wait_for()
    await page.get_by_text("Enable the account again").click()
    await light(site)
    await site.shot("admin-account-disabled")
    await page.get_by_role("button", name="Yes, enable rina again").click()
    await page.get_by_text("The account is enabled again: it can log in with its own password.").wait_for()

    # Relatives of this hospital no longer see vitals.
    await page.get_by_role("link", name="Hospital", exact=True).click()
    await page.get_by_text("Vitals", exact=True).click()
    await page.get_by_role("button", name="Save what relatives are shown").click()
    await page.get_by_text("Saved.").wait_for()
    assert not await page.get_by_label("Vitals").is_checked()
    await light(site)
    await site.shot("admin-hospital")

    # The upload: a preview row by row, problems first, then apply.
    await page.get_by_role("link", name="CSV upload").click()
    assert await page.get_by_text("A file may be up to 8 MB.").is_visible()
    await light(site)
    await site.shot("admin-upload")
    await page.get_by_label("CSV file").set_input_files(
        files=[{"name": "ward3.csv", "mimeType": "text/csv", "buffer": UPLOAD}]
    )
    await page.get_by_role("button", name="Check the file").click()
    await page.get_by_role("heading", name="What this file would do").wait_for()
    first_row = await page.locator("table.rows tbody tr").first.inner_text()
    assert "MRB-20-0499" in first_row and "contact_mobile" in first_row and "spo2" in first_row
    await light(site)
    await site.shot("admin-upload-preview")
    await page.get_by_role("button", name="Apply").click()
    await page.get_by_role("heading", name="What the import did").wait_for()
    await site.shot("admin-upload-applied")

    # After the correction window the relative is told, without vitals; the delivery view says so.
    before = len(site.fake.messages_to(relative.id))
    (alert,) = (await site.fake.wait_messages(relative.id, before + 1))[before:]
    assert "Stable → Moderate" in alert.plain and "SpO2" not in alert.plain
    await page.get_by_role("link", name="Today").click()
    await page.get_by_label("Registration number").fill("MRB-20-0415")
    await page.get_by_role("button", name="Show the alerts").click()
    await page.get_by_role("heading", name="মিঠু ঘোষ").wait_for()
    assert await page.get_by_text("+91******0004").first.is_visible()
    assert await page.get_by_text(re.compile(r"^Sent at ")).first.is_visible()
    await light(site)
    await site.shot("admin-delivery")
