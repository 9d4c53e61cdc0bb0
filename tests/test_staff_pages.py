"""The ward's pages over HTTP: the ward list (most overdue first, search, only one's own wards and
hospital), a patient's update in a few taps with No change and Undo, admitting, and discharge,
transfer and death behind a confirmation. Every write goes through the API's intake rules: the
same checks and messages, the same audit (naming the staff member), the same alerts, which the
console relatives here receive from one dispatcher pass on the test's clock."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.app import Services, build_web_app
from bot.intake.hospitals import get_hospital
from handlers.console import CHANNEL, ConsoleSender
from models import Admission, AuditEvent, ConditionUpdate
from models.chat import Notification
from tests.staff_support import NEW_PASSWORD, StaffBrowser, add_staff, cheap_argon2, csrf_of  # noqa: F401
from tests.support import Clock, ConsoleRelative, HospitalDesk, auth

START = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)  # 12:00 in Kolkata
GRACE = 120  # config.yaml: notifications.grace_seconds
SMS = re.compile(r"^\[SMS to (\+\d+)\] (\d{6}) is your Ward Watch code")
PAGE_LIMIT = 50 * 1024


class RecordingSender(ConsoleSender):
    def __init__(self, write) -> None:
        super().__init__(write)
        self.sent: list[tuple[str, str]] = []

    async def send(self, alert) -> None:
        await super().send(alert)
        self.sent.append((alert.chat_key, alert.reply.plain))


@dataclass
class Ward(HospitalDesk):
    bot: Services
    api: httpx.AsyncClient
    keys: dict[str, str]
    clock: Clock
    shown: list[str]
    sender: RecordingSender
    app: Any
    browsers: list[StaffBrowser] = field(default_factory=list)

    def browser(self) -> StaffBrowser:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")
        browser = StaffBrowser(client)
        self.browsers.append(browser)
        return browser

    async def staff(self, username: str = "rina", hospital: str = "MRB", role: str = "ward", wards=()) -> StaffBrowser:
        """A staff member logged in with their own password."""
        one_time = await add_staff(self.bot, username, hospital, role, tuple(wards))
        browser = self.browser()
        await browser.log_in_for_good(username, one_time)
        return browser

    async def relative(self, mobile: str, key: str) -> ConsoleRelative:
        relative = ConsoleRelative(self, key)
        await relative.say(mobile)
        codes = [match.group(2) for line in self.shown if (match := SMS.match(line)) and match.group(1) == mobile]
        answer = await relative.say(codes[-1])
        assert answer.startswith("Thank you, your number is confirmed."), answer
        return relative

    async def update_via_api(self, reg: str = "R-1", hospital: str = "MRB", minutes_ago: float = 0, **fields) -> dict:
        return await self.record(reg, hospital, self.clock.now - timedelta(minutes=minutes_ago), **fields)

    async def dispatch(self, after: float = GRACE + 1) -> list[tuple[str, str]]:
        self.clock.advance(seconds=after)
        start = len(self.sender.sent)
        await self.bot.dispatcher.dispatch_once()
        return self.sender.sent[start:]

    async def rows(self, model, *where) -> list:
        async with self.bot.database.session() as session:
            return list((await session.exec(select(model).where(*where).order_by(model.id))).all())


@pytest.fixture
async def ward(services, keys):
    clock = Clock(START)
    services.clock = clock
    shown: list[str] = []
    bot = Services.build(services.settings, show=shown.append)
    bot.clock = clock
    sender = RecordingSender(shown.append)
    bot.senders[CHANNEL] = sender
    app = build_web_app(services)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    ward = Ward(bot, api, keys, clock, shown, sender, app)
    yield ward
    for browser in ward.browsers:
        await browser.http.aclose()
    await api.aclose()
    await bot.close()


def patient_order(page: httpx.Response) -> list[str]:
    return re.findall(r'<a href="/staff/patients/([^"]+)">', page.text)


MODERATE = {"condition": "moderate", "care_area": "ward", "respiratory_support": "none"}


# --- the ward list -----------------------------------------------------------------------------------


async def test_the_ward_list_puts_the_most_overdue_first(ward):
    # Due: ICU after 6 h, critical after 12 h, the rest after 24 h; no update yet: due at admission.
    await ward.admit("ICU-7H", patient_name="A", ward="ICU")
    await ward.record("ICU-7H", "MRB", ward.clock.now - timedelta(hours=7), condition="moderate", care_area="icu")
    await ward.admit("CRIT-10H", patient_name="B")
    await ward.record("CRIT-10H", "MRB", ward.clock.now - timedelta(hours=10), condition="critical", care_area="ward")
    await ward.admit("STABLE-20H", patient_name="C")
    await ward.record("STABLE-20H", "MRB", ward.clock.now - timedelta(hours=20), condition="stable")
    await ward.admit("STABLE-30H", patient_name="D")
    await ward.record("STABLE-30H", "MRB", ward.clock.now - timedelta(hours=30), condition="stable")
    await ward.admit("NEW", patient_name="E", admitted_at=(ward.clock.now - timedelta(hours=2)).isoformat())
    await ward.admit("GONE", patient_name="F")
    await ward.set_status("discharged", "GONE")
    await ward.admit("MCK-1", hospital="MCK")
    browser = await ward.staff()

    page = await browser.get("/staff/")

    assert page.status_code == 200
    # Overdue by 6 h, 2 h, 1 h; then due in 2 h and in 4 h. No discharged patient, no other hospital.
    assert patient_order(page) == ["STABLE-30H", "NEW", "ICU-7H", "CRIT-10H", "STABLE-20H"]
    cards = page.text.split('<li class="card">')[1:]
    assert "Update overdue: last update 1 day ago" in cards[0]
    assert "Update overdue" in cards[1] and "No update yet" in cards[1]
    assert "Update overdue: last update 7 hours ago" in cards[2]
    assert "Update overdue" not in cards[3] and "last update 10 hours ago" in cards[3]
    assert '<span class="badge critical">Critical</span>' in cards[3]
    assert "ICU (intensive care unit)" in cards[2]


async def test_search_by_name_registration_number_or_last_digits_of_a_mobile(ward):
    await ward.admit("MRB-0412", patient_name="Sumitra Pal", contact_mobile="98300 11111")
    await ward.admit("MRB-0413", patient_name="Ratan Das", contact_mobile="98300 22222",
                     alternate_mobiles=["98300 54321"])  # fmt: skip
    await ward.admit("MRB-0500", patient_name="বিমল পাল", contact_mobile="98300 33333")
    browser = await ward.staff()

    async def found(text: str) -> list[str]:
        return patient_order(await browser.get("/staff/", q=text))

    assert await found("ratan") == ["MRB-0413"]
    assert await found("0412") == ["MRB-0412"]
    assert sorted(await found("pal")) == ["MRB-0412"]
    assert await found("পাল") == ["MRB-0500"]
    assert await found("11111") == ["MRB-0412"]
    assert await found("54321") == ["MRB-0413"]  # an alternate number
    assert await found("৫৪৩২১") == ["MRB-0413"]  # Bengali digits
    assert await found("nobody") == []
    assert await found("50%") == []  # wildcards are just characters
    assert len(await found("")) == 3


async def test_a_ward_account_sees_only_its_wards(ward):
    await ward.admit("ICU-1", ward="ICU 1")
    await ward.admit("GEN-1", ward="Ward 3")
    await ward.admit("NOWARD")
    icu_nurse = await ward.staff("icu.nurse", wards=["ICU 1"])
    everyone = await ward.staff("clerk")

    assert patient_order(await icu_nurse.get("/staff/")) == ["ICU-1"]
    assert sorted(patient_order(await everyone.get("/staff/"))) == ["GEN-1", "ICU-1", "NOWARD"]
    # Another ward's patient is not found, exactly like an unknown one.
    other, unknown = await icu_nurse.get("/staff/patients/GEN-1"), await icu_nurse.get("/staff/patients/NOBODY")
    assert other.status_code == unknown.status_code == 404
    assert other.text == unknown.text
    refused = await icu_nurse.submit("/staff/patients/ICU-1", "/staff/patients/GEN-1/updates", condition="critical")
    assert refused.status_code == 404
    assert await ward.rows(ConditionUpdate) == []


async def test_another_hospitals_patient_is_not_found(ward):
    await ward.admit("R-1", hospital="MCK")
    await ward.update_via_api("R-1", "MCK", condition="stable")
    browser = await ward.staff()

    for path in ("/staff/patients/R-1", "/staff/patients/R-1/discharge", "/staff/patients/R-1/updates/1"):
        assert (await browser.get(path)).status_code == 404, path
    for action, fields in (
        ("/staff/patients/R-1/updates", {"condition": "critical"}),
        ("/staff/patients/R-1/no-change", {}),
        ("/staff/patients/R-1/discharge", {}),
        ("/staff/patients/R-1/updates/1/undo", {}),
    ):
        assert (await browser.submit("/staff/", action, **fields)).status_code == 404, action
    (admission,) = await ward.rows(Admission)
    assert admission.status == "admitted"
    assert len(await ward.rows(ConditionUpdate)) == 1


# --- recording an update --------------------------------------------------------------------------------


async def test_a_change_tells_the_relative_after_the_window_and_the_audit_names_the_staff_member(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    relative = await ward.relative("+919830012345", "family")
    assert await ward.dispatch() == []
    browser = await ward.staff()

    saved = await browser.submit(
        "/staff/patients/R-1", "/staff/patients/R-1/updates", condition="critical", care_area="icu",
        respiratory_support="oxygen",
    )  # fmt: skip
    assert saved.status_code == 303
    recorded = await browser.get(saved.headers["location"])

    assert "Saved: Critical" in recorded.text
    assert "Relatives will be told at 2 Jul, 12:04 PM (in 2 minutes)." in recorded.text
    assert "1 chat follows this patient. They will read:" in recorded.text
    assert "🔔 Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit), now on oxygen" in (
        recorded.text
    )
    assert await ward.dispatch(after=GRACE - 1) == []
    ((chat, alert),) = await ward.dispatch(after=2)
    assert chat == relative.key
    assert alert.startswith(
        "🔔 Update on Ratan Das: Moderate → Critical, moved to ICU (intensive care unit), now on oxygen"
    )
    (audited,) = await ward.rows(AuditEvent, AuditEvent.action == "update.recorded", AuditEvent.actor != "api:MRB")
    assert audited.actor == "staff:rina@MRB"
    update = (await ward.rows(ConditionUpdate))[-1]
    assert update.source == "staff"


async def test_the_same_update_from_the_page_and_from_the_api_gives_the_same_alert(ward):
    for reg, mobile in (("PAGE", "98300 11111"), ("API", "98300 22222")):
        await ward.admit(reg, contact_mobile=mobile)
        await ward.update_via_api(reg, minutes_ago=60, **MODERATE)
    page_relative = await ward.relative("+919830011111", "page")
    api_relative = await ward.relative("+919830022222", "api")
    await ward.dispatch()
    browser = await ward.staff()
    change = {"condition": "critical", "care_area": "hdu", "respiratory_support": "niv", "spo2": "88", "pulse": "120"}

    await browser.submit("/staff/patients/PAGE", "/staff/patients/PAGE/updates", **change)
    await ward.update_via_api("API", **change)

    alerts = dict(await ward.dispatch())
    assert set(alerts) == {page_relative.key, api_relative.key}
    assert alerts[page_relative.key] == alerts[api_relative.key]
    assert alerts[page_relative.key].startswith("🔔 Update on Ratan Das: Moderate → Critical")
    page_update, api_update = (await ward.rows(ConditionUpdate))[-2:]
    columns = ("condition", "care_area", "respiratory_support", "spo2", "pulse", "remarks", "recorded_at")
    assert [getattr(page_update, name) for name in columns] == [getattr(api_update, name) for name in columns]


async def test_no_change_is_one_tap_moves_the_clock_and_sends_nothing(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=30 * 60, **MODERATE, spo2=95, remarks="Doctor's round done")
    relative = await ward.relative("+919830012345", "family")
    await ward.dispatch()
    browser = await ward.staff()
    assert "Update overdue" in (await browser.get("/staff/")).text

    seen_at = ward.clock.now
    answer = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/no-change")

    assert answer.status_code == 303
    recorded = await browser.get(answer.headers["location"])
    assert "nobody gets a message" in recorded.text
    assert await ward.dispatch() == []
    assert await ward.dispatch(after=3600) == []
    latest = (await ward.rows(ConditionUpdate))[-1]
    assert (latest.condition, latest.care_area, latest.respiratory_support) == ("moderate", "ward", "none")
    assert latest.recorded_at == seen_at
    # Older readings are not repeated as if taken now.
    assert (latest.spo2, latest.remarks) == (None, None)
    assert "Update overdue" not in (await browser.get("/staff/")).text
    card = await relative.say("/status")
    assert "Last updated 2 Jul, 12:02 PM" in card


async def test_undo_within_the_window_means_nobody_hears_anything(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    await ward.relative("+919830012345", "family")
    await ward.dispatch()
    browser = await ward.staff()
    saved = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", condition="critical")
    ward.clock.advance(seconds=GRACE - 10)

    undone = await browser.submit(saved.headers["location"], saved.headers["location"] + "/undo")

    assert undone.status_code == 303
    page = await browser.get(undone.headers["location"])
    assert "Undone. Relatives hear nothing of it." in page.text
    assert await ward.dispatch() == []
    assert await ward.dispatch(after=3600) == []
    assert [row.status for row in await ward.rows(Notification)] == ["cancelled", "cancelled"]
    (retracted,) = await ward.rows(AuditEvent, AuditEvent.action == "update.retracted")
    assert retracted.actor == "staff:rina@MRB"


async def test_undo_after_the_window_tells_the_corrected_state(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    relative = await ward.relative("+919830012345", "family")
    await ward.dispatch()
    browser = await ward.staff()
    saved = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", condition="critical")
    ((_, told),) = await ward.dispatch()
    assert "Moderate → Critical" in told
    assert "Relatives were told at" in (await browser.get(saved.headers["location"])).text

    await browser.submit(saved.headers["location"], saved.headers["location"] + "/undo")

    ((chat, corrected),) = await ward.dispatch()
    assert chat == relative.key and "Critical → Moderate" not in corrected
    assert corrected.startswith("⚠️ Correction: the message at ") and "The current condition is Moderate." in corrected


async def test_an_update_form_is_checked_as_the_api_checks_it_with_the_same_messages(ward):
    await ward.admit()
    browser = await ward.staff()
    bad = {"condition": "critical", "spo2": "101", "bp_systolic": "120", "bp_diastolic": "130", "pulse": "abc"}

    page = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", **bad)
    api = await ward.api.post("/api/v1/admissions/R-1/updates", json=bad, headers=auth(ward.keys["MRB"]))

    assert page.status_code == 422 and api.status_code == 422
    for error in api.json()["detail"]:
        assert error["msg"] in page.text, error
    assert "SpO2 (%): Input should be less than or equal to 100" in page.text
    assert "BP diastolic (mmHg): Value error, bp_diastolic must be below bp_systolic" in page.text
    assert 'value="101"' in page.text  # what was typed stays in the form
    assert await ward.rows(ConditionUpdate) == []

    no_condition = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", care_area="icu")
    assert no_condition.status_code == 422 and "Condition: Field required" in no_condition.text
    both = await browser.submit(
        "/staff/patients/R-1", "/staff/patients/R-1/updates", condition="stable", remark="Resting comfortably.",
        remarks="and more",
    )  # fmt: skip
    assert both.status_code == 422 and "not both" in both.text
    too_long = await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", condition="stable",
                                    remarks="x" * 201)  # fmt: skip
    assert too_long.status_code == 422
    assert await ward.rows(ConditionUpdate) == []


async def test_a_ready_phrase_reaches_each_relative_in_their_language(ward):
    async with ward.bot.database.session() as session:
        mrb = await get_hospital(session, "MRB")
        assert mrb is not None
        mrb.show_remarks = True
        session.add(mrb)
        await session.commit()
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    english = await ward.relative("+919830012345", "english")
    bengali = await ward.relative("+919830012345", "bengali")
    await bengali.say("/language")
    await bengali.say("2")
    await ward.dispatch()
    browser = await ward.staff()

    await browser.submit("/staff/patients/R-1", "/staff/patients/R-1/updates", condition="stable",
                         remark="Eating and drinking well.")  # fmt: skip

    alerts = dict(await ward.dispatch())
    assert "Doctor's note: Eating and drinking well." in alerts[english.key]
    translated = ward.bot.catalogues.get("bn").gettext("Eating and drinking well.")
    assert translated != "Eating and drinking well." and translated in alerts[bengali.key]
    assert (await ward.rows(ConditionUpdate))[-1].remarks == "Eating and drinking well."


async def test_no_update_to_a_patient_who_left(ward):
    await ward.admit()
    await ward.update_via_api(**MODERATE)
    await ward.set_status("discharged")
    browser = await ward.staff()
    page = await browser.get("/staff/patients/R-1")
    assert "No change" not in page.text and "Discharged on 2 Jul 2024." in page.text

    refused = await browser.submit("/staff/", "/staff/patients/R-1/updates", condition="critical")

    assert refused.status_code == 409
    assert len(await ward.rows(ConditionUpdate)) == 1


# --- admitting --------------------------------------------------------------------------------------------


async def test_admitting_a_patient_checks_the_fields_as_the_api_does(ward):
    browser = await ward.staff()
    # As in the API, the shape is checked first, then the numbers.
    for fields in (
        {"registration_no": "MRB-9", "patient_name": "Ratan Das", "contact_mobile": "98300 12345", "age": "200"},
        {"registration_no": "MRB-9", "patient_name": "Ratan Das", "contact_mobile": "033 2473 2222",
         "alternate_mobiles": "98300 12345, 12345"},
    ):  # fmt: skip
        page = await browser.submit("/staff/admit", "/staff/admit", **fields)
        body = {name: value for name, value in fields.items() if name != "registration_no"}
        if "alternate_mobiles" in body:
            body["alternate_mobiles"] = [number.strip() for number in body["alternate_mobiles"].split(",")]
        api = await ward.api.put("/api/v1/admissions/MRB-9", headers=auth(ward.keys["MRB"]), json=body)
        assert page.status_code == 422 and api.status_code == 422
        for error in api.json()["detail"]:
            assert error["msg"] in page.text, error
    assert "Age: Input should be less than or equal to 130" not in page.text
    assert "Mobile number for relatives: " in page.text and "Other mobile numbers: " in page.text
    assert 'value="033 2473 2222"' in page.text  # what was typed stays in the form
    bad_number = await browser.submit("/staff/admit", "/staff/admit", registration_no="bad number",
                                      patient_name="A", contact_mobile="98300 12345")  # fmt: skip
    assert bad_number.status_code == 422 and "Registration number: String should match pattern" in bad_number.text
    assert await ward.rows(Admission) == []


async def test_admitting_a_patient_makes_the_same_admission_as_the_api(ward):
    browser = await ward.staff()
    answer = await browser.submit(
        "/staff/admit", "/staff/admit", registration_no="MRB-10", patient_name=" সুমিত্রা পাল ",
        contact_mobile="০৯৮৩০০ ১২৩৪৫", alternate_mobiles="+91 98300 54321", age="58", sex="F", ward="Ward 3",
        bed="12", admitted_at="2024-07-02T11:30",
    )  # fmt: skip

    assert answer.status_code == 303 and answer.headers["location"] == "/staff/patients/MRB-10"
    api = (await ward.api.get("/api/v1/admissions/MRB-10", headers=auth(ward.keys["MRB"]))).json()
    assert api["patient_name"] == "সুমিত্রা পাল" and api["contact_mobile"] == "+919830012345"
    assert api["alternate_mobiles"] == ["+919830054321"] and api["admitted_at"] == "2024-07-02T11:30:00+05:30"
    assert (api["age"], api["sex"], api["ward"], api["bed"], api["status"]) == (58, "F", "Ward 3", "12", "admitted")
    (created,) = await ward.rows(AuditEvent, AuditEvent.action == "admission.created")
    assert created.actor == "staff:rina@MRB"

    again = await browser.submit("/staff/admit", "/staff/admit", registration_no="MRB-10", patient_name="Other",
                                 contact_mobile="98300 99999")  # fmt: skip
    assert again.status_code == 422 and "already in use" in again.text
    assert (await ward.rows(Admission))[0].patient_name == "সুমিত্রা পাল"


async def test_a_ward_account_admits_only_to_its_wards(ward):
    browser = await ward.staff("icu.nurse", wards=["ICU 1"])
    form = await browser.get("/staff/admit")
    assert '<option value="ICU 1" selected>' in form.text

    refused = await browser.submit("/staff/admit", "/staff/admit", registration_no="R-2", patient_name="A",
                                   contact_mobile="98300 12345", ward="Ward 3")  # fmt: skip
    assert refused.status_code == 422 and "only to your own wards" in refused.text
    admitted = await browser.submit("/staff/admit", "/staff/admit", registration_no="R-2", patient_name="A",
                                    contact_mobile="98300 12345", ward="ICU 1")  # fmt: skip
    assert admitted.status_code == 303


# --- discharge, transfer, death ---------------------------------------------------------------------------------


async def test_a_discharge_needs_its_own_confirmation_and_is_the_last_message(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    await ward.relative("+919830012345", "family")
    await ward.dispatch()
    browser = await ward.staff()

    patient = await browser.get("/staff/patients/R-1")
    assert 'href="/staff/patients/R-1/discharge"' in patient.text  # a link to the confirmation, not a form
    confirm = await browser.get("/staff/patients/R-1/discharge")
    assert "Record that Ratan Das went home?" in confirm.text and "Yes, record the discharge" in confirm.text
    assert (await ward.rows(Admission))[0].status == "admitted"  # opening it changed nothing

    done = await browser.submit("/staff/patients/R-1/discharge", "/staff/patients/R-1/discharge")

    assert done.status_code == 303
    assert (await ward.rows(Admission))[0].status == "discharged"
    ((_, alert),) = await ward.dispatch()
    assert "This is the last message about this patient." in alert
    (changed,) = await ward.rows(AuditEvent, AuditEvent.action == "status.changed")
    assert changed.actor == "staff:rina@MRB"


async def test_a_transfer_names_where_as_the_api_requires(ward):
    await ward.admit()
    browser = await ward.staff()

    refused = await browser.submit("/staff/patients/R-1/transfer", "/staff/patients/R-1/transfer")
    api = await ward.api.post("/api/v1/admissions/R-1/status", json={"status": "transferred"},
                              headers=auth(ward.keys["MRB"]))  # fmt: skip
    assert refused.status_code == 422 and api.status_code == 422
    assert api.json()["detail"][0]["msg"] in refused.text
    assert (await ward.rows(Admission))[0].status == "admitted"

    done = await browser.submit("/staff/patients/R-1/transfer", "/staff/patients/R-1/transfer",
                                to_hospital="SSKM Hospital")  # fmt: skip
    assert done.status_code == 303
    (admission,) = await ward.rows(Admission)
    assert (admission.status, admission.transferred_to) == ("transferred", "SSKM Hospital")


async def test_a_death_is_never_told_by_the_bot(ward):
    await ward.admit()
    await ward.update_via_api(minutes_ago=60, **MODERATE)
    await ward.relative("+919830012345", "family")
    await ward.dispatch()
    browser = await ward.staff()
    confirm = await browser.get("/staff/patients/R-1/death")
    assert "The bot never tells of a death" in confirm.text and "033 2473 2222" in confirm.text

    await browser.submit("/staff/patients/R-1/death", "/staff/patients/R-1/death")

    ((_, alert),) = await ward.dispatch()
    assert "please contact M.R. Bangur Hospital at 033 2473 2222" in alert
    assert "died" not in alert.lower() and "death" not in alert.lower()


# --- built for the ward ----------------------------------------------------------------------------------------


async def test_every_page_is_light(ward):
    async with ward.bot.database.session() as session:
        await ward.bot.load_demo(session)
    browser = ward.browser()
    await browser.log_in("bid.ward", "bid-ward-demo")  # MRB and MCK are `keys`' own, not the demo's
    ward_list = await browser.get("/staff/")
    first = patient_order(ward_list)[0]
    pages = [ward_list, await browser.get(f"/staff/patients/{first}"), await browser.get("/staff/admit"),
             await browser.get(f"/staff/patients/{first}/transfer"), await browser.get("/staff/login")]  # fmt: skip
    saved = await browser.submit(f"/staff/patients/{first}", f"/staff/patients/{first}/no-change")
    pages.append(await browser.get(saved.headers["location"]))
    css = await browser.get(re.search(r'href="(/staff/static/[^"]+)"', ward_list.text).group(1))

    for page in pages:
        assert page.status_code == 200, page.url
        assert len(page.content) + len(css.content) < PAGE_LIMIT, page.url
        assert "<script" not in page.text


async def test_the_pages_speak_the_staff_members_language(ward):
    await ward.admit()
    await ward.update_via_api(**MODERATE)
    one_time = await add_staff(ward.bot, "rina")
    browser = ward.browser()
    await browser.log_in("rina", one_time, language="hi")
    await browser.submit("/staff/password", "/staff/password", current=one_time, new=NEW_PASSWORD)
    hindi = ward.bot.catalogues.get("hi").gettext

    page = await browser.get("/staff/patients/R-1")

    assert '<html lang="hi">' in page.text
    for text in ("No change", "Record a change", "Moderate", "Save"):
        assert hindi(text) != text and hindi(text) in page.text, text


@pytest.mark.parametrize("path", ["/staff/", "/staff/patients/R-1", "/staff/admit", "/staff/patients/R-1/death"])
async def test_every_page_needs_a_login(ward, path):
    browser = ward.browser()
    answer = await browser.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == "/staff/login"
