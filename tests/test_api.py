"""The hospital API as a hospital information system sees it: what it sends, what it gets back,
and what is (or is not) stored. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from bot.app import Services, build_web_app
from bot.intake.hospitals import rotate_key
from bot.platform import db
from models import (
    Admission,
    AuditEvent,
    Chat,
    ConditionUpdate,
    Hospital,
    Notification,
    Subscription,
    Verification,
    queries,
)
from tests.conftest import FIXTURES, auth, make_settings, now_utc

ADMISSION: dict[str, Any] = json.loads((FIXTURES / "admission.json").read_text())
UPDATE: dict[str, Any] = json.loads((FIXTURES / "update.json").read_text())
DISCHARGE = {"status": "discharged", "at": "2024-07-05T11:00:00"}
REG = "R-2024-0001"
IST = ZoneInfo("Asia/Kolkata")
# Tomorrow, written in hospital time without an offset, as most hospital systems do.
TOMORROW = (datetime.now(IST) + timedelta(days=1)).replace(tzinfo=None).isoformat(timespec="seconds")

OMIT = object()


def body(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `base` with fields changed, added, or removed (`OMIT`)."""
    result = copy.deepcopy(base)
    for name, value in changes.items():
        if value is OMIT:
            result.pop(name, None)
        else:
            result[name] = value
    return result


# The four operations: method, path after the registration number, and a valid body.
ENDPOINTS = {
    "put": ("PUT", "", ADMISSION),
    "update": ("POST", "/updates", UPDATE),
    "status": ("POST", "/status", DISCHARGE),
    "get": ("GET", "", None),
}
VALID = object()


class Api:
    """One hospital's view of the API: every call carries its key."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.key = key

    def url(self, reg: str, tail: str = "") -> str:
        return f"/api/v1/admissions/{reg}{tail}"

    async def send(
        self, endpoint: str, data: Any = VALID, reg: str = REG, headers: dict | None = None, **raw: Any
    ) -> httpx.Response:
        """`endpoint` with `data` (by default a valid body), or with `content=` bytes."""
        method, tail, valid = ENDPOINTS[endpoint]
        headers = auth(self.key) if headers is None else headers
        if not raw:
            raw["json"] = valid if data is VALID else data
        return await self.client.request(method, self.url(reg, tail), headers=headers, **raw)

    async def put(self, data: dict = ADMISSION, reg: str = REG) -> httpx.Response:
        return await self.send("put", data, reg)

    async def update(self, data: dict = UPDATE, reg: str = REG) -> httpx.Response:
        return await self.send("update", data, reg)

    async def status(self, data: dict = DISCHARGE, reg: str = REG) -> httpx.Response:
        return await self.send("status", data, reg)

    async def get(self, reg: str = REG) -> httpx.Response:
        return await self.send("get", reg=reg)


@pytest.fixture
def mrb(client, keys) -> Api:
    return Api(client, keys["MRB"])


@pytest.fixture
def mck(client, keys) -> Api:
    return Api(client, keys["MCK"])


@pytest.fixture
async def admitted(mrb) -> Api:
    """MRB has admitted patient REG and sent one condition update."""
    assert (await mrb.put()).status_code == 201
    assert (await mrb.update()).status_code == 201
    return mrb


# --- reading the database ----------------------------------------------------------------------


async def row_counts(services: Services) -> dict[str, int]:
    async with services.database.engine.connect() as connection:
        return {
            table.name: (await connection.execute(sa_select(func.count()).select_from(table))).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


async def rows(services: Services, model, *where) -> list:
    async with services.database.session() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


async def api_audit(services: Services) -> list[AuditEvent]:
    """The audit rows written by the hospital API (the fixtures' own rows are the CLI's)."""
    return await rows(services, AuditEvent, col(AuditEvent.actor).startswith("api:"))


async def hospital_id(services: Services, code: str) -> int:
    (hospital,) = await rows(services, Hospital, Hospital.code == code)
    return hospital.id


async def follow(services: Services, code: str, reg: str = REG, chat_key: str | None = None) -> None:
    """A relative's chat, verified on the admission's number, follows it with alerts on."""
    async with services.database.session() as session:
        hospital = (await session.exec(select(Hospital).where(Hospital.code == code))).one()
        admission = await queries.find_admission(session, hospital, reg)
        chat = Chat(channel="console", chat_key=chat_key or f"{code}-{reg}", state="verified")
        session.add(chat)
        await session.flush()
        verification = Verification(
            chat_id=chat.id, mobile=admission.contact_mobile, expires_at=now_utc() + timedelta(days=30)
        )
        session.add(verification)
        await session.flush()
        session.add(Subscription(chat_id=chat.id, admission_id=admission.id, verification_id=verification.id))
        await session.commit()


@asynccontextmanager
async def writes_nothing(services: Services, api: Api, reg: str = REG):
    """No table gains or loses a row, and the admission reads the same afterwards."""
    counts, seen = await row_counts(services), (await api.get(reg)).json()
    yield
    assert await row_counts(services) == counts
    assert (await api.get(reg)).json() == seen


def assert_422(response: httpx.Response, loc: tuple, reason: str) -> None:
    """A 422 whose errors include one at `loc` whose message contains `reason`."""
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    at_loc = [error for error in errors if tuple(error["loc"]) == loc]
    assert at_loc, f"no error at {loc}: {errors}"
    assert any(reason.lower() in error["msg"].lower() for error in at_loc), errors


# --- creating and replacing admissions ---------------------------------------------------------


async def test_put_creates_the_admission(mrb, services):
    response = await mrb.put()

    assert response.status_code == 201, response.text
    assert response.json() == {
        "hospital": "MRB",
        "registration_no": REG,
        "patient_name": "Ratan Das",
        "age": 67,
        "sex": "M",
        "contact_mobile": "+919830012345",
        "alternate_mobiles": ["+919433055555"],
        "ward": "Covid Ward 2",
        "bed": "B-14",
        "admitted_at": "2024-07-01T10:00:00+05:30",
        "status": "admitted",
        "status_at": None,
        "transferred_to": None,
        "status_remarks": None,
        "latest_update": None,
        "warnings": [],
    }
    assert {**(await mrb.get()).json(), "warnings": []} == response.json()
    assert (await row_counts(services))["admission"] == 1


async def test_identical_put_is_200_and_changes_nothing(mrb, services):
    created = await mrb.put()
    (before,) = await rows(services, Admission)
    counts = await row_counts(services)

    again = await mrb.put()

    assert again.status_code == 200, again.text
    assert again.json() == created.json()
    assert await row_counts(services) == counts  # no audit row, no alternate re-inserted
    (after,) = await rows(services, Admission)
    assert after.updated_at == before.updated_at


async def test_same_details_written_differently_change_nothing(mrb, services):
    await mrb.put()
    (before,) = await rows(services, Admission)
    counts = await row_counts(services)

    again = await mrb.put(
        body(
            ADMISSION,
            contact_mobile="+91-98300-12345",
            alternate_mobiles=["09433055555", "९८३००१२३४५"],  # the contact number again: dropped
            sex="M",
            admitted_at="2024-07-01T04:30:00Z",
            patient_name="  Ratan Das ",
        )
    )

    assert again.status_code == 200, again.text
    assert await row_counts(services) == counts
    (after,) = await rows(services, Admission)
    assert after.updated_at == before.updated_at


async def test_put_with_changed_fields_updates_them(mrb, services):
    await mrb.put()
    (before,) = await rows(services, Admission)

    response = await mrb.put(body(ADMISSION, ward="HDU 1", bed="H-3", alternate_mobiles=["+91 70030 11111"]))

    assert response.status_code == 200, response.text
    shown = (await mrb.get()).json()
    assert {**shown, "warnings": []} == response.json()
    assert (shown["ward"], shown["bed"], shown["alternate_mobiles"]) == ("HDU 1", "H-3", ["+917003011111"])
    assert shown["patient_name"] == "Ratan Das"
    (after,) = await rows(services, Admission)
    assert after.id == before.id and after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    counts = await row_counts(services)
    assert (counts["admission"], counts["alternate_mobile"]) == (1, 1)


async def test_put_can_clear_optional_fields(mrb):
    await mrb.put()

    response = await mrb.put({"patient_name": "Ratan Das", "contact_mobile": "9830012345"})

    assert response.status_code == 200, response.text
    shown = (await mrb.get()).json()
    assert shown["alternate_mobiles"] == []
    assert [shown[name] for name in ("age", "sex", "ward", "bed", "admitted_at")] == [None] * 5


@pytest.mark.parametrize(
    "written",
    [
        "9830012345",
        "98300 12345",
        "98300-12345",
        "098300 12345",
        "+91 98300 12345",
        "+91-98300-12345",
        "(+91) 98300-12345",
        "0091 98300 12345",
        "৯৮৩০০১২৩৪৫",  # Bengali digits
        "০৯৮৩০০ ১২৩৪৫",
        "९८३००१२३४५",  # Devanagari digits
        "+९१ ९८३००-१२३४५",
    ],
)
async def test_mobile_numbers_in_any_common_format_are_stored_as_e164(mrb, services, written):
    response = await mrb.put(body(ADMISSION, contact_mobile=written, alternate_mobiles=[written]))

    assert response.status_code == 201, response.text
    assert response.json()["contact_mobile"] == "+919830012345"
    assert response.json()["alternate_mobiles"] == []  # the same number as the contact
    (admission,) = await rows(services, Admission)
    assert admission.contact_mobile == "+919830012345"


async def test_alternate_mobiles_are_normalised_and_deduplicated(mrb):
    response = await mrb.put(body(ADMISSION, alternate_mobiles=["94330 55555", "+91 94330-55555", "70030 11111"]))

    assert response.status_code == 201, response.text
    assert response.json()["alternate_mobiles"] == ["+919433055555", "+917003011111"]


@pytest.mark.parametrize("reg", ["A", "IPD.2024_0001-B", "r-7", "9" * 64, "SSK/2026/1001", "S/" * 31 + "12"])
async def test_registration_numbers_the_pattern_allows_are_accepted(mrb, reg):
    assert (await mrb.put(reg=reg)).status_code == 201
    assert (await mrb.get(reg=reg)).json()["registration_no"] == reg


async def test_two_first_puts_of_one_admission_at_once_create_it_once(mrb, services):
    responses = await asyncio.gather(mrb.put(), mrb.put(body(ADMISSION, ward="HDU 1")))

    assert sorted(response.status_code for response in responses) == [200, 201], [
        response.text for response in responses
    ]
    assert (await row_counts(services))["admission"] == 1


async def test_a_burst_of_updates_at_once_is_stored_whole(admitted, services, monkeypatch):
    """A hospital system posting many updates at once gets 201 for each. On SQLite, writers that
    poll for its one write lock can wait past the busy wait and fail under load; the API's
    writers take turns instead. With no busy wait at all here, any polling would fail."""
    if services.database.is_postgresql:
        pytest.skip("PostgreSQL has no single write lock")
    monkeypatch.setattr(db, "BUSY_WAIT_SECONDS", 0)
    start = datetime(2024, 7, 2, 6, 30, tzinfo=UTC)
    bodies = [body(UPDATE, recorded_at=(start + timedelta(minutes=n)).isoformat(), pulse=60 + n) for n in range(48)]
    responses = await asyncio.gather(*(admitted.update(data) for data in bodies))

    assert [response.status_code for response in responses] == [201] * 48
    assert (await row_counts(services))["condition_update"] == 49


async def test_put_that_loses_the_race_to_create_updates_instead(mrb, services, monkeypatch):
    """Another request creates the admission between this one's lookup and its insert."""
    await mrb.put()
    real_find = queries.find_admissions
    lookups = []

    async def find_too_early(session, hospital, registration_nos, lock=False):
        lookups.append(registration_nos)
        return {} if len(lookups) == 1 else await real_find(session, hospital, registration_nos, lock)

    monkeypatch.setattr(queries, "find_admissions", find_too_early)

    response = await mrb.put(body(ADMISSION, ward="HDU 1"))

    assert response.status_code == 200, response.text
    assert response.json()["ward"] == "HDU 1"
    assert (await row_counts(services))["admission"] == 1
    assert len(lookups) == 2  # looked up again after the clash
    # The failed attempt's audit row went with its rollback.
    assert [e.action for e in await api_audit(services)] == ["admission.created", "admission.updated"]


# --- bad input: 422 naming the field, nothing written ------------------------------------------

BAD_INPUT = [
    # PUT /admissions/{registration_no}
    ("put", {"contact_mobile": "033 2473 2222"}, ("contact_mobile",), "landline"),
    ("put", {"contact_mobile": "98300"}, ("contact_mobile",), "too short"),
    ("put", {"contact_mobile": "98300 1234x"}, ("contact_mobile",), "not a valid number"),
    ("put", {"contact_mobile": "ring the ward"}, ("contact_mobile",), "not a phone number"),
    ("put", {"contact_mobile": "+44 7911 123456"}, ("contact_mobile",), "not a number of region IN"),
    ("put", {"contact_mobile": "+1 415 555 2671"}, ("contact_mobile",), "not a number of region IN"),
    ("put", {"contact_mobile": 9830012345}, ("contact_mobile",), "valid string"),
    ("put", {"contact_mobile": OMIT}, ("contact_mobile",), "field required"),
    ("put", {"alternate_mobiles": ["9433055555", "ring the ward"]}, ("alternate_mobiles", 1), "not a phone number"),
    ("put", {"alternate_mobiles": [f"94330 5555{i}" for i in range(6)]}, ("alternate_mobiles",), "at most 5"),
    ("put", {"patient_name": OMIT}, ("patient_name",), "field required"),
    ("put", {"patient_name": "   "}, ("patient_name",), "at least 1 character"),
    ("put", {"patient_name": "R" * 201}, ("patient_name",), "at most 200"),
    ("put", {"patient_nmae": "Ratan Das"}, ("patient_nmae",), "extra inputs are not permitted"),
    ("put", {"age": 131}, ("age",), "less than or equal to 130"),
    ("put", {"age": -1}, ("age",), "greater than or equal to 0"),
    ("put", {"age": True}, ("age",), "not true or false"),
    ("put", {"sex": "unknown"}, ("sex",), "input should be"),
    ("put", {"admitted_at": TOMORROW}, ("admitted_at",), "in the future"),
    ("put", {"admitted_at": "last tuesday"}, ("admitted_at",), "valid datetime"),
    ("put", {"admitted_at": "0001-01-01T00:00:00"}, ("admitted_at",), "before 2000-01-01"),
    ("put", {"admitted_at": "1999-12-31T23:59:59"}, ("admitted_at",), "before 2000-01-01"),
    ("put", {"admitted_at": "9999-12-31T23:00:00-05:00"}, ("admitted_at",), "out of range"),
    ("put", {"patient_name": "Ratan\u0000Das"}, ("patient_name",), "control character (U+0000)"),
    ("put", {"patient_name": "Ratan\nDas"}, ("patient_name",), "control character (U+000A)"),
    ("put", {"ward": "Covid\u0000Ward"}, ("ward",), "control character (U+0000)"),
    ("put", {"bed": "B\u001b14"}, ("bed",), "control character (U+001B)"),
    ("put", {"contact_mobile": "98300\u000012345"}, ("contact_mobile",), "control character"),
    ("put", {"alternate_mobiles": ["94330\u000755555"]}, ("alternate_mobiles", 0), "control character"),
    # POST /admissions/{registration_no}/updates
    ("update", {"condition": OMIT}, ("condition",), "field required"),
    ("update", {"condition": "good"}, ("condition",), "'stable', 'moderate' or 'critical'"),
    ("update", {"care_area": "ward 3"}, ("care_area",), "'ward', 'hdu', 'icu' or 'ccu'"),
    ("update", {"respiratory_support": "mask"}, ("respiratory_support",), "'oxygen'"),
    ("update", {"spo2": -1}, ("spo2",), "greater than or equal to 0"),
    ("update", {"spo2": 101}, ("spo2",), "less than or equal to 100"),
    ("update", {"spo2": True}, ("spo2",), "not true or false"),
    ("update", {"spo2": "ninety"}, ("spo2",), "valid integer"),
    ("update", {"pulse": 19}, ("pulse",), "greater than or equal to 20"),
    ("update", {"pulse": 251}, ("pulse",), "less than or equal to 250"),
    ("update", {"bp_systolic": 49}, ("bp_systolic",), "greater than or equal to 50"),
    ("update", {"bp_systolic": 261}, ("bp_systolic",), "less than or equal to 260"),
    ("update", {"bp_diastolic": 19}, ("bp_diastolic",), "greater than or equal to 20"),
    ("update", {"bp_diastolic": 181}, ("bp_diastolic",), "less than or equal to 180"),
    ("update", {"bp_diastolic": 130}, ("bp_diastolic",), "below bp_systolic"),  # = systolic
    ("update", {"bp_systolic": 90, "bp_diastolic": 110}, ("bp_diastolic",), "below bp_systolic"),
    ("update", {"temperature_c": 29.9}, ("temperature_c",), "greater than or equal to 30"),
    ("update", {"temperature_c": 45.1}, ("temperature_c",), "less than or equal to 45"),
    ("update", {"resp_rate": 3}, ("resp_rate",), "greater than or equal to 4"),
    ("update", {"resp_rate": 81}, ("resp_rate",), "less than or equal to 80"),
    ("update", {"blood_sugar": 19}, ("blood_sugar",), "greater than or equal to 20"),
    ("update", {"blood_sugar": 801}, ("blood_sugar",), "less than or equal to 800"),
    ("update", {"remarks": "x" * 1001}, ("remarks",), "at most 1000"),
    ("update", {"recorded_at": TOMORROW}, ("recorded_at",), "in the future"),
    ("update", {"recorded_at": "02/07/2024 8am"}, ("recorded_at",), "valid datetime"),
    ("update", {"recorded_at": "0001-01-01T03:00:00"}, ("recorded_at",), "before 2000-01-01"),
    ("update", {"recorded_at": "1999-12-31T18:29:59Z"}, ("recorded_at",), "before 2000-01-01"),
    ("update", {"remarks": "SpO2\u0000falling"}, ("remarks",), "control character (U+0000)"),
    ("update", {"remarks": "\u0008"}, ("remarks",), "control character (U+0008)"),
    ("update", {"spo_2": 95}, ("spo_2",), "extra inputs are not permitted"),
    # POST /admissions/{registration_no}/status
    ("status", {"status": OMIT}, ("status",), "field required"),
    ("status", {"status": "recovered"}, ("status",), "'admitted', 'discharged', 'transferred' or 'deceased'"),
    ("status", {"status": "transferred"}, ("to_hospital",), "required when status is transferred"),
    ("status", {"status": "transferred", "to_hospital": "  "}, ("to_hospital",), "at least 1 character"),
    ("status", {"to_hospital": "SSKM Hospital"}, ("to_hospital",), "only for status transferred"),
    ("status", {"at": TOMORROW}, ("at",), "in the future"),
    ("status", {"at": "0001-01-01T00:00:00+01:00"}, ("at",), "before 2000-01-01"),
    ("status", {"at": "1999-06-30T10:00:00"}, ("at",), "before 2000-01-01"),
    ("status", {"remarks": "Home\u0000isolation"}, ("remarks",), "control character (U+0000)"),
    ("status", {"status": "transferred", "to_hospital": "SSKM\u0000"}, ("to_hospital",), "control character"),
    ("status", {"reason": "recovered"}, ("reason",), "extra inputs are not permitted"),
]


@pytest.mark.parametrize(
    "endpoint, changes, field, reason",
    [pytest.param(*case, id=f"{case[0]}-{'-'.join(map(str, case[2]))}") for case in BAD_INPUT],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    admitted, services, endpoint, changes, field, reason
):
    _, _, valid = ENDPOINTS[endpoint]

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, body(valid, **changes))

    assert_422(response, ("body", *field), reason)


async def test_every_problem_in_a_body_is_reported_at_once(admitted, services):
    async with writes_nothing(services, admitted):
        response = await admitted.update(body(UPDATE, condition="fine", spo2=120, pulse=5))

    assert response.status_code == 422
    locs = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert locs == {("body", "condition"), ("body", "spo2"), ("body", "pulse")}


async def test_vitals_at_the_edges_of_their_ranges_are_accepted(admitted):
    low = {"spo2": 0, "pulse": 20, "bp_systolic": 50, "bp_diastolic": 20, "temperature_c": 30,
           "resp_rate": 4, "blood_sugar": 20}  # fmt: skip
    high = {"spo2": 100, "pulse": 250, "bp_systolic": 260, "bp_diastolic": 180, "temperature_c": 45,
            "resp_rate": 80, "blood_sugar": 800}  # fmt: skip

    for vitals, at in ((low, "2024-07-02T09:00:00"), (high, "2024-07-02T10:00:00")):
        response = await admitted.update(body(UPDATE, recorded_at=at, **vitals))
        assert response.status_code == 201, response.text
        assert {name: response.json()[name] for name in vitals} == vitals


async def test_numbers_sent_as_strings_are_read(admitted):
    response = await admitted.update(body(UPDATE, recorded_at="2024-07-02T09:00:00", spo2="95", temperature_c="37.4"))

    assert response.status_code == 201, response.text
    assert (response.json()["spo2"], response.json()["temperature_c"]) == (95, 37.4)


async def test_enum_values_are_read_in_any_case(admitted):
    response = await admitted.update(
        body(UPDATE, recorded_at="2024-07-02T09:00:00", condition=" Moderate", care_area="HDU",
             respiratory_support="NIV")
    )  # fmt: skip

    assert response.status_code == 201, response.text
    got = response.json()
    assert (got["condition"], got["care_area"], got["respiratory_support"]) == ("moderate", "hdu", "niv")


@pytest.mark.parametrize("endpoint", ["put", "update", "status"])
@pytest.mark.parametrize("raw", [b'{"condition": "stable", ', b"condition=stable", b"", b"[1, 2]", b'"stable"'])
async def test_a_body_that_is_not_a_json_object_is_refused(admitted, services, endpoint, raw):
    headers = {**auth(admitted.key), "Content-Type": "application/json"}

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers=headers, content=raw)

    assert response.status_code == 422, response.text
    (error, *_) = response.json()["detail"]
    assert error["loc"][0] == "body" and error["msg"]


@pytest.mark.parametrize(
    "endpoint, raw, field",
    [
        ("update", b'{"condition": "stable", "temperature_c": NaN}', "temperature_c"),
        ("update", b'{"condition": "stable", "spo2": Infinity}', "spo2"),
        ("update", b'{"condition": -Infinity}', "condition"),
        ("put", b'{"patient_name": "Ratan Das", "contact_mobile": "9830012345", "age": NaN}', "age"),
        ("status", b'{"status": NaN}', "status"),
    ],
)
async def test_nan_and_infinity_are_refused_like_any_bad_value(admitted, services, endpoint, raw, field):
    """Not JSON, but Python's parser reads them; echoing them back must not fail."""
    headers = {**auth(admitted.key), "Content-Type": "application/json"}

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers=headers, content=raw)

    assert_422(response, ("body", field), "")


@pytest.mark.parametrize("endpoint", ["put", "update", "status", "get"])
@pytest.mark.parametrize(
    "reg, reason",
    [
        ("R 1", "should match pattern"),
        ("-R1", "should match pattern"),
        (".R1", "should match pattern"),
        ("R;1", "should match pattern"),
        ("R१", "should match pattern"),
        ("R" * 65, "at most 64 characters"),
        ("SSK/", "should match pattern"),
        ("SSK//1", "should match pattern"),
        ("SSK%2F%2F1", "should match pattern"),
        ("SSK%2F..%2F1", "should match pattern"),
        ("SSK/-1", "should match pattern"),
        ("S/" * 32 + "1", "at most 64 characters"),
    ],
)
async def test_a_bad_registration_number_in_the_path_is_refused(admitted, services, endpoint, reg, reason):
    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, reg=reg)

    assert_422(response, ("path", "registration_no"), reason)


# --- keys --------------------------------------------------------------------------------------

BAD_AUTHORIZATION = {
    "no header": lambda key: {},
    "another scheme": lambda key: {"Authorization": f"Basic {key}"},
    "no scheme": lambda key: {"Authorization": key},
    "scheme only": lambda key: {"Authorization": "Bearer"},
    "not a key": lambda key: {"Authorization": "Bearer letmein"},
    "wrong key": lambda key: {"Authorization": "Bearer MRB.not-the-right-key"},
    "one character off": lambda key: {"Authorization": f"Bearer {key[:-1]}{'AB'[key[-1] == 'A']}"},
    "unknown hospital": lambda key: {"Authorization": "Bearer XYZ." + key.partition(".")[2]},
    "another hospital's code": lambda key: {"Authorization": "Bearer MCK." + key.partition(".")[2]},
    "code in lower case": lambda key: {"Authorization": "Bearer " + key.replace("MRB.", "mrb.", 1)},
}


@pytest.mark.parametrize("endpoint", ["put", "update", "status", "get"])
@pytest.mark.parametrize("headers", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
async def test_requests_without_a_valid_key_get_401_and_write_nothing(admitted, services, endpoint, headers):
    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers=headers(admitted.key))

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing or invalid API key"}


async def test_a_rotated_away_key_stops_working_and_the_new_one_works(admitted, services, client):
    async with services.database.session() as session:
        issued = await rotate_key(session, services.secret_key, "MRB")
        await session.commit()
    old, new = admitted, Api(client, issued.api_key)

    assert (await old.get()).status_code == 401
    assert (await old.update(body(UPDATE, recorded_at="2024-07-02T09:00:00"))).status_code == 401
    assert (await new.get()).status_code == 200
    response = await new.update(body(UPDATE, recorded_at="2024-07-02T09:00:00"))
    assert response.status_code == 201, response.text
    assert (await api_audit(services))[-1].actor == "api:MRB"


# --- one hospital cannot see or change another's patients --------------------------------------


async def test_another_hospital_cannot_read_or_change_an_admission(admitted, mck, services):
    async with writes_nothing(services, admitted):
        assert (await mck.get()).status_code == 404
        assert (await mck.update(body(UPDATE, recorded_at="2024-07-02T09:00:00"))).status_code == 404
        assert (await mck.status()).status_code == 404
    assert (await mck.get()).json() == {"detail": "no such admission"}


async def test_another_hospital_answers_as_for_an_admission_that_does_not_exist(admitted, mck):
    theirs, nobodys = await mck.get(REG), await mck.get("NOBODY-1")

    assert (theirs.status_code, theirs.json()) == (nobodys.status_code, nobodys.json())


async def test_same_registration_number_at_another_hospital_is_a_separate_admission(admitted, mck, services):
    mrb_before = (await admitted.get()).json()

    response = await mck.put(body(ADMISSION, patient_name="Sabita Mondal", contact_mobile="70030 11111"))

    assert response.status_code == 201, response.text
    assert response.json()["hospital"] == "MCK"
    assert response.json()["latest_update"] is None
    assert (await admitted.get()).json() == mrb_before
    admissions = await rows(services, Admission)
    assert sorted(a.hospital_id for a in admissions) == sorted(
        [await hospital_id(services, "MRB"), await hospital_id(services, "MCK")]
    )
    update = await mck.update(body(UPDATE, condition="stable"))
    assert update.status_code == 201
    assert (await admitted.get()).json() == mrb_before


@pytest.mark.parametrize("endpoint", ["update", "status", "get"])
async def test_an_unknown_admission_is_404(admitted, services, endpoint):
    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, reg="NOBODY-1")

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "no such admission"}


# --- condition updates -------------------------------------------------------------------------


async def test_an_update_is_recorded_and_shown_as_latest(mrb):
    await mrb.put()

    response = await mrb.update()

    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["is_latest"] is True
    expected = body(UPDATE, recorded_at="2024-07-02T08:00:00+05:30")
    assert {name: recorded[name] for name in expected} == expected
    latest = (await mrb.get()).json()["latest_update"]
    assert latest == {name: value for name, value in recorded.items() if name != "is_latest"}


async def test_an_update_recorded_before_the_latest_is_kept_but_not_shown(admitted, services):
    older = body(UPDATE, condition="moderate", spo2=94, recorded_at="2024-07-02T06:00:00+05:30")

    response = await admitted.update(older)

    assert response.status_code == 201, response.text
    assert response.json()["is_latest"] is False
    assert (await row_counts(services))["condition_update"] == 2
    latest = (await admitted.get()).json()["latest_update"]
    assert (latest["condition"], latest["recorded_at"]) == ("critical", "2024-07-02T08:00:00+05:30")

    newer = await admitted.update(body(UPDATE, condition="moderate", recorded_at="2024-07-02T12:00:00"))
    assert newer.json()["is_latest"] is True
    assert (await admitted.get()).json()["latest_update"]["condition"] == "moderate"


async def test_care_area_and_breathing_support_are_carried_over_when_left_out(admitted):
    # UPDATE put the patient in the ICU on oxygen at 08:00.
    noon = await admitted.update({"condition": "critical", "spo2": 89, "recorded_at": "2024-07-02T12:00:00"})
    assert (noon.json()["care_area"], noon.json()["respiratory_support"]) == ("icu", "oxygen")
    latest = (await admitted.get()).json()["latest_update"]
    assert (latest["care_area"], latest["respiratory_support"], latest["spo2"]) == ("icu", "oxygen", 89)

    evening = await admitted.update(
        {"condition": "critical", "respiratory_support": "ventilator", "recorded_at": "2024-07-02T16:00:00"}
    )
    assert (evening.json()["care_area"], evening.json()["respiratory_support"]) == ("icu", "ventilator")

    # A late update is carried over from the one before it in time, not from the latest.
    late = await admitted.update({"condition": "critical", "recorded_at": "2024-07-02T14:00:00"})
    assert late.json()["is_latest"] is False
    assert (late.json()["care_area"], late.json()["respiratory_support"]) == ("icu", "oxygen")
    earliest = await admitted.update({"condition": "moderate", "recorded_at": "2024-07-02T06:00:00"})
    assert (earliest.json()["care_area"], earliest.json()["respiratory_support"]) == (None, None)


async def test_vitals_left_out_are_not_carried_over(admitted):
    response = await admitted.update({"condition": "critical", "recorded_at": "2024-07-02T12:00:00"})

    assert response.json()["spo2"] is None and response.json()["remarks"] is None


async def test_a_repeat_of_the_same_update_returns_200_and_stores_nothing(admitted, services):
    first = (await admitted.get()).json()["latest_update"]
    counts = await row_counts(services)

    again = await admitted.update()
    written_differently = await admitted.update(body(UPDATE, condition="CRITICAL", recorded_at="2024-07-02T02:30:00Z"))

    for response in (again, written_differently):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == first["id"]
        assert response.json()["is_latest"] is True
    assert await row_counts(services) == counts


async def test_a_repeat_of_a_late_update_stores_nothing(admitted, services):
    older = body(UPDATE, condition="moderate", recorded_at="2024-07-02T06:00:00")
    first = await admitted.update(older)
    counts = await row_counts(services)

    again = await admitted.update(older)

    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["is_latest"]) == (first.json()["id"], False)
    assert await row_counts(services) == counts


async def test_a_different_update_at_the_same_time_is_stored_and_shown(admitted, services):
    response = await admitted.update(body(UPDATE, spo2=93))

    assert response.status_code == 201, response.text
    assert response.json()["is_latest"] is True
    assert (await row_counts(services))["condition_update"] == 2
    assert (await admitted.get()).json()["latest_update"]["spo2"] == 93


async def test_an_update_without_a_time_is_recorded_now(admitted):
    before = now_utc()

    response = await admitted.update(body(UPDATE, recorded_at=OMIT))

    assert response.status_code == 201, response.text
    recorded_at = datetime.fromisoformat(response.json()["recorded_at"])
    assert recorded_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert before - timedelta(seconds=1) <= recorded_at <= now_utc()
    assert response.json()["is_latest"] is True


async def test_a_time_slightly_ahead_of_our_clock_is_accepted(admitted):
    ahead = (datetime.now(IST) + timedelta(minutes=2)).isoformat()

    response = await admitted.update(body(UPDATE, recorded_at=ahead))

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("status", ["discharged", "deceased", "transferred"])
async def test_updates_after_the_patient_has_left_get_409_and_store_nothing(admitted, services, status):
    change = {"status": status, **({"to_hospital": "SSKM Hospital"} if status == "transferred" else {})}
    assert (await admitted.status(change)).status_code == 200

    async with writes_nothing(services, admitted):
        response = await admitted.update(body(UPDATE, recorded_at="2024-07-02T12:00:00"))

    assert response.status_code == 409, response.text
    assert status in response.json()["detail"]


@pytest.mark.parametrize("late", [False, True], ids=["latest", "late"])
async def test_a_repeat_of_a_recorded_update_after_the_patient_has_left_is_200_and_stores_nothing(
    admitted, services, late
):
    """Sending again what was recorded before the discharge (a retry, a resent batch) is no
    new update: answered like any repeat, with the update already stored."""
    sent = body(UPDATE, condition="moderate", recorded_at="2024-07-02T06:00:00") if late else UPDATE
    recorded = await admitted.update(sent)
    await follow(services, "MRB")
    assert (await admitted.status()).status_code == 200

    async with writes_nothing(services, admitted):
        repeat = await admitted.update(sent)

    assert repeat.status_code == 200, repeat.text
    assert repeat.json() == recorded.json()
    assert repeat.json()["is_latest"] is not late


async def test_a_readmitted_patient_takes_updates_again(admitted):
    await admitted.status()
    assert (await admitted.status({"status": "admitted"})).status_code == 200

    response = await admitted.update(body(UPDATE, recorded_at="2024-07-06T09:00:00"))

    assert response.status_code == 201, response.text


# --- admission status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, shown",
    [
        (
            {"status": "discharged", "at": "2024-07-05T11:00:00", "remarks": "Home isolation, 7 days"},
            {"status": "discharged", "status_at": "2024-07-05T11:00:00+05:30",
             "transferred_to": None, "status_remarks": "Home isolation, 7 days"},
        ),
        (
            {"status": "transferred", "at": "2024-07-04T09:30:00+05:30", "to_hospital": "SSKM Hospital"},
            {"status": "transferred", "status_at": "2024-07-04T09:30:00+05:30",
             "transferred_to": "SSKM Hospital", "status_remarks": None},
        ),
        (
            {"status": "Deceased", "at": "2024-07-03T17:40:00Z"},
            {"status": "deceased", "status_at": "2024-07-03T23:10:00+05:30",
             "transferred_to": None, "status_remarks": None},
        ),
    ],
    ids=["discharged", "transferred", "deceased"],
)  # fmt: skip
async def test_a_status_change_is_readable_by_get(admitted, services, change, shown):
    response = await admitted.status(change)

    assert response.status_code == 200, response.text
    got = (await admitted.get()).json()
    assert got == response.json()
    assert {name: got[name] for name in shown} == shown
    assert got["latest_update"]["condition"] == "critical"  # the history stays
    (event,) = [e for e in await api_audit(services) if e.action == "status.changed"]
    assert event.detail == {"previous": "admitted", "status": shown["status"]}


async def test_a_status_without_a_time_is_dated_now(admitted):
    before = now_utc()

    response = await admitted.status({"status": "discharged"})

    status_at = datetime.fromisoformat(response.json()["status_at"])
    assert status_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert before - timedelta(seconds=1) <= status_at <= now_utc()


async def test_repeating_the_current_status_changes_nothing(admitted, services):
    first = await admitted.status()
    counts = await row_counts(services)

    again = await admitted.status()
    admitted_again = await admitted.status({"status": "admitted"})
    still = await admitted.status({"status": "admitted"})

    assert again.status_code == 200 and again.json() == first.json()
    assert admitted_again.json()["status"] == "admitted"
    assert still.json() == admitted_again.json()
    assert (await row_counts(services))["audit_event"] == counts["audit_event"] + 1


async def test_repeating_the_status_without_remarks_keeps_the_remarks_and_changes_nothing(admitted, services):
    await follow(services, "MRB")
    with_remarks = body(DISCHARGE, remarks="Home isolation, 7 days")
    first = await admitted.status(with_remarks)
    assert first.json()["status_remarks"] == "Home isolation, 7 days"

    async with writes_nothing(services, admitted):  # no audit row, no alert
        again = await admitted.status(DISCHARGE)

    assert again.status_code == 200, again.text
    assert again.json() == first.json()

    changed = await admitted.status(body(DISCHARGE, remarks="Home isolation, 14 days"))
    assert changed.json()["status_remarks"] == "Home isolation, 14 days"
    assert [e.action for e in await api_audit(services)][-2:] == ["status.changed", "status.changed"]
    assert [row.kind for row in await rows(services, Notification)] == ["status", "status"]


async def test_a_details_put_does_not_change_the_status(admitted):
    await admitted.status()

    response = await admitted.put(body(ADMISSION, bed="B-15"))

    assert response.status_code == 200
    assert (await admitted.get()).json()["status"] == "discharged"


# --- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["2024-07-02T08:00:00", "2024-07-02T08:00", "2024-07-02T08:00:00+05:30", "2024-07-02T02:30:00Z",
     "2024-07-02T03:30:00+01:00"],
)  # fmt: skip
async def test_times_are_read_as_hospital_time_unless_they_say_otherwise(mrb, services, written):
    await mrb.put(body(ADMISSION, admitted_at=written))
    recorded = await mrb.update(body(UPDATE, recorded_at=written))
    status = await mrb.status({"status": "discharged", "at": written})

    ist = "2024-07-02T08:00:00+05:30"
    assert recorded.json()["recorded_at"] == ist
    shown = (await mrb.get()).json()
    assert (shown["admitted_at"], shown["status_at"], shown["latest_update"]["recorded_at"]) == (ist,) * 3
    assert status.json()["status_at"] == ist
    utc = datetime(2024, 7, 2, 2, 30, tzinfo=UTC)
    (admission,) = await rows(services, Admission)
    (update,) = await rows(services, ConditionUpdate)
    assert (admission.admitted_at, admission.status_at, update.recorded_at) == (utc, utc, utc)


# --- audit -------------------------------------------------------------------------------------


async def test_every_change_is_audited_and_repeats_are_not(mrb, services):
    await mrb.put()
    await mrb.put()  # identical
    await mrb.put(body(ADMISSION, ward="HDU 1", bed="H-3"))
    recorded = (await mrb.update()).json()
    await mrb.update()  # repeat
    late = (await mrb.update(body(UPDATE, recorded_at="2024-07-02T06:00:00"))).json()
    await mrb.status()
    await mrb.status()  # repeat
    await mrb.status(body(DISCHARGE, spo2=1))  # refused

    events = await api_audit(services)

    (admission,) = await rows(services, Admission)
    mrb_id = await hospital_id(services, "MRB")
    assert [(e.actor, e.action, e.hospital_id, e.admission_id) for e in events] == [
        ("api:MRB", action, mrb_id, admission.id)
        for action in ("admission.created", "admission.updated", "update.recorded", "update.recorded",
                       "status.changed")
    ]  # fmt: skip
    assert events[1].detail == {"fields": ["ward", "bed"]}
    assert events[2].detail == {"update_id": recorded["id"], "is_latest": True}
    assert events[3].detail == {"update_id": late["id"], "is_latest": False}
    assert events[4].detail == {"previous": "admitted", "status": "discharged"}
    assert all(e.at.tzinfo is not None for e in events)


async def test_each_hospital_is_audited_under_its_own_name(admitted, mck, services):
    await mck.put()

    assert [e.actor for e in await api_audit(services)][-1] == "api:MCK"


# --- operations and documentation --------------------------------------------------------------


async def test_healthz_answers_when_the_database_does(client):
    response = await client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_healthz_is_503_when_the_database_does_not_answer():
    # Nothing listens on the discard port: every connection is refused at once.
    services = Services.build(make_settings("postgresql://wardwatch@127.0.0.1:9/wardwatch"))
    transport = httpx.ASGITransport(app=build_web_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/healthz")
    finally:
        await services.database.dispose()

    assert response.status_code == 503


async def test_the_api_is_documented(client):
    docs = await client.get("/docs")
    spec = await client.get("/openapi.json")

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    operations = {(method.upper(), path) for path, item in paths.items() for method in item if path.startswith("/api/")}
    assert operations == {
        ("PUT", "/api/v1/admissions/{registration_no}"),
        ("GET", "/api/v1/admissions/{registration_no}"),
        ("POST", "/api/v1/admissions/{registration_no}/updates"),
        ("POST", "/api/v1/admissions/{registration_no}/status"),
        ("DELETE", "/api/v1/admissions/{registration_no}/updates/{update_id}"),
    }
    assert any(scheme["type"] == "http" for scheme in spec.json()["components"]["securitySchemes"].values())


# --- hardening: what an unauthenticated or careless client can make the server do --------------

MAX_BODY = 262144  # server.max_body_bytes in config.yaml


class CountedBody:
    """A request body sent in chunks (no Content-Length), counting what the server asked for."""

    def __init__(self, size: int, chunk: int = 65536) -> None:
        self.size, self.chunk, self.sent = size, chunk, 0

    async def __aiter__(self):
        while self.sent < self.size:
            self.sent += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("endpoint", ["put", "update", "status"])
async def test_a_huge_body_without_a_key_is_refused_before_it_is_read(admitted, services, endpoint):
    streamed = CountedBody(55 * 1024 * 1024)

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers={"Content-Type": "application/json"}, content=streamed)

    assert response.status_code == 401, response.text
    assert streamed.sent <= streamed.chunk  # at most what the transport had in hand


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(admitted, services):
    streamed = CountedBody(MAX_BODY + 1)
    headers = {**auth(admitted.key), "Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)}

    async with writes_nothing(services, admitted):
        response = await admitted.send("update", headers=headers, content=streamed)

    assert response.status_code == 413, response.text
    assert streamed.sent <= streamed.chunk


async def test_a_streamed_body_is_cut_at_the_limit(admitted, services):
    streamed = CountedBody(55 * 1024 * 1024)

    async with writes_nothing(services, admitted):
        response = await admitted.send(
            "update", headers={**auth(admitted.key), "Content-Type": "application/json"}, content=streamed
        )

    assert response.status_code == 413, response.text
    assert streamed.sent <= MAX_BODY + streamed.chunk


async def test_a_body_just_within_the_limit_is_read(admitted):
    raw = json.dumps(body(UPDATE, recorded_at="2024-07-02T09:00:00")).encode()
    padded = raw[:-1] + b" " * (MAX_BODY - len(raw)) + b"}"

    response = await admitted.send("update", headers={**auth(admitted.key), "Content-Type": "application/json"},
                                   content=padded)  # fmt: skip

    assert len(padded) == MAX_BODY
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("endpoint", ["put", "update", "status"])
async def test_a_request_without_a_valid_key_waits_for_no_lock(admitted, services, endpoint, monkeypatch):
    real_writing = services.database.writing
    turns = []

    def counted_writing():
        turns.append(endpoint)
        return real_writing()

    monkeypatch.setattr(services.database, "writing", counted_writing)

    response = await admitted.send(endpoint, headers=BAD_AUTHORIZATION["wrong key"](admitted.key))

    assert response.status_code == 401, response.text
    assert turns == []
    assert (await admitted.send(endpoint)).status_code in (200, 201)
    assert turns == [endpoint]


async def test_a_body_of_a_thousand_unknown_fields_gets_twenty_errors_and_no_echo(admitted, services):
    secrets = {f"field_{n}": f"secret-value-{n}" for n in range(1000)}

    async with writes_nothing(services, admitted):
        response = await admitted.update({"condition": "stable", **secrets})

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert len(errors) == 20
    assert all(set(error) == {"type", "loc", "msg"} for error in errors)
    assert [error["loc"] for error in errors] == [["body", f"field_{n}"] for n in range(20)]
    assert "secret-value" not in response.text


async def test_a_refused_value_is_not_echoed(admitted, services):
    async with writes_nothing(services, admitted):
        response = await admitted.put(body(ADMISSION, patient_name="Ratan Das", age="sixty-seven", sex="unknown"))

    assert response.status_code == 422, response.text
    assert "sixty-seven" not in response.text and "unknown" not in response.text
    assert "Ratan Das" not in response.text  # a missing or extra field used to echo the whole body


LONE_SURROGATE = "\ud800"
# Where a lone surrogate can arrive in each write: every text field, and a field's name.
SURROGATE_FIELDS = [
    ("put", ("patient_name",)),
    ("put", ("contact_mobile",)),
    ("put", ("alternate_mobiles", 0)),
    ("put", ("ward",)),
    ("put", ("bed",)),
    ("put", ("sex",)),
    ("put", ("admitted_at",)),
    ("update", ("condition",)),
    ("update", ("care_area",)),
    ("update", ("remarks",)),
    ("update", ("spo2",)),
    ("update", ("recorded_at",)),
    ("status", ("status",)),
    ("status", ("to_hospital",)),
    ("status", ("remarks",)),
    ("status", ("at",)),
]


@pytest.mark.parametrize("endpoint, field", SURROGATE_FIELDS, ids=[f"{e}-{f[0]}" for e, f in SURROGATE_FIELDS])
async def test_a_lone_surrogate_in_any_field_is_refused_naming_the_field(admitted, services, endpoint, field):
    _, _, valid = ENDPOINTS[endpoint]
    sent = body(valid, status="transferred") if field == ("to_hospital",) else body(valid)
    name, *index = field
    sent[name] = [f"94330{LONE_SURROGATE}55555"] if index else f"x{LONE_SURROGATE}"
    # httpx cannot encode a lone surrogate as UTF-8; JSON writes it as the escape \ud800.
    raw = json.dumps(sent).encode()
    headers = {**auth(admitted.key), "Content-Type": "application/json"}

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers=headers, content=raw)

    assert_422(response, ("body", *field), "")
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("endpoint", ["put", "update", "status"])
async def test_a_lone_surrogate_in_a_field_name_gets_a_422_that_can_be_sent(admitted, services, endpoint):
    _, _, valid = ENDPOINTS[endpoint]
    raw = json.dumps({**valid, f"x{LONE_SURROGATE}": 1}).encode()
    headers = {**auth(admitted.key), "Content-Type": "application/json"}

    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, headers=headers, content=raw)

    assert_422(response, ("body",), "unicode string")  # pydantic refuses the whole object


async def test_tabs_and_line_breaks_are_kept_in_remarks(admitted):
    remarks = "SpO2 below 90\r\n\ton 6 L/min oxygen"

    response = await admitted.update(body(UPDATE, recorded_at="2024-07-02T09:00:00", remarks=remarks))

    assert response.status_code == 201, response.text
    assert (await admitted.get()).json()["latest_update"]["remarks"] == remarks


async def test_the_first_moment_of_2000_is_accepted(mrb):
    first = "2000-01-01T00:00:00"
    assert (await mrb.put(body(ADMISSION, admitted_at=first))).status_code == 201
    assert (await mrb.update(body(UPDATE, recorded_at=first))).status_code == 201
    assert (await mrb.status({"status": "discharged", "at": first})).status_code == 200
    shown = (await mrb.get()).json()
    assert (shown["admitted_at"], shown["status_at"]) == ("2000-01-01T00:00:00+05:30",) * 2


SAFE_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


async def test_api_answers_are_never_cached_nor_sniffed(admitted, client):
    answers = [
        await admitted.get(),
        await admitted.get(reg="R-UNKNOWN"),
        await admitted.update(body(UPDATE, spo2=101)),
        await admitted.send("get", headers={}),
        await admitted.send("update", headers={**auth(admitted.key), "Content-Length": str(MAX_BODY + 1)},
                            content=CountedBody(MAX_BODY + 1)),
        await client.get("/healthz"),
        await client.get("/openapi.json"),
    ]  # fmt: skip

    assert [answer.status_code for answer in answers] == [200, 404, 422, 401, 413, 200, 200]
    for answer in answers:
        assert {name: answer.headers.get(name) for name in SAFE_HEADERS} == SAFE_HEADERS, answer.request.url


async def test_the_interactive_documentation_loads_nothing_from_elsewhere(client):
    docs = await client.get("/docs")

    assert docs.status_code == 200
    assert docs.headers["x-content-type-options"] == "nosniff"
    referenced = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", docs.text)
    referenced += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", docs.text)
    assert len(referenced) >= 4, docs.text  # the script, the style sheet, the icon, the OpenAPI document
    assert not re.search(r"(?:https?:)?//", docs.text), "an address of another host"
    assert '"validatorUrl": null' in docs.text  # Swagger UI would send the document to validator.swagger.io
    for address in referenced:
        asset = await client.get(address)
        assert asset.status_code == 200, address
        assert asset.headers["x-content-type-options"] == "nosniff"
        kind = asset.headers["content-type"]
        assert kind.split(";")[0] in ("text/javascript", "application/javascript", "text/css", "image/png",
                                      "application/json"), (address, kind)  # fmt: skip
    assert (await client.get("/redoc")).status_code == 404  # ReDoc would load its script from a CDN


# --- registration numbers with '/' ---------------------------------------------------------------

SLASHED = "SSK/2026/1001"


async def follow_one_admission_through(http: httpx.AsyncClient, key: str, encoded: str, raw: str) -> list:
    """PUT, POST an update, POST a status and DELETE the update, each addressing the admission
    either with its '/' as they are (`raw`) or as %2F (`encoded`); each answer's status and the
    registration number it names."""
    headers = auth(key)
    base = "/api/v1/admissions/"
    put = await http.put(base + raw, json=ADMISSION, headers=headers)
    update = await http.post(base + encoded + "/updates", json=UPDATE, headers=headers)
    read = await http.get(base + encoded, headers=headers)
    withdrawn = await http.delete(f"{base}{raw}/updates/{update.json()['id']}", headers=headers)
    status = await http.post(base + encoded + "/status", json=DISCHARGE, headers=headers)
    return [
        (put.status_code, put.json()["registration_no"]),
        (update.status_code, update.json()["condition"]),
        (read.status_code, read.json()["registration_no"], read.json()["latest_update"]["id"]),
        (withdrawn.status_code, withdrawn.json()["latest_update"]),
        (status.status_code, status.json()["status"]),
    ]


EXPECTED_ROUND = [(201, SLASHED), (201, "critical"), (200, SLASHED, VALID), (200, None), (200, "discharged")]


def _matches(answers: list, expected: list) -> bool:
    return all(
        len(got) == len(want) and all(w is VALID or g == w for g, w in zip(got, want, strict=True))
        for got, want in zip(answers, expected, strict=True)
    )


async def test_a_registration_number_with_slashes_works_in_every_path_as_it_is_or_encoded(client, keys, services):
    answers = await follow_one_admission_through(client, keys["MRB"], "SSK%2F2026%2F1001", SLASHED)

    assert _matches(answers, EXPECTED_ROUND), answers
    async with services.database.session() as session:
        stored = (await session.exec(select(Admission.registration_no))).all()
    assert stored == [SLASHED]


@asynccontextmanager
async def served(services: Services):
    """The web app under a real uvicorn on a free loopback port: uvicorn, not httpx, decodes the path."""

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # the test runner owns the signals
            yield

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    server = Server(uvicorn.Config(build_web_app(services), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            yield http
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_registration_number_with_slashes_works_through_a_real_server(keys, services):
    async with served(services) as http:
        answers = await follow_one_admission_through(http, keys["MRB"], "SSK%2F2026%2F1001", SLASHED)
        unknown = await http.get("/api/v1/admissions/SSK%2F2026%2F1002", headers=auth(keys["MRB"]))
        climbing = await http.get("/api/v1/admissions/SSK%2F..%2F1001", headers=auth(keys["MRB"]))

    assert _matches(answers, EXPECTED_ROUND), answers
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no such admission"})
    assert climbing.status_code == 422 and climbing.json()["detail"][0]["loc"] == ["path", "registration_no"]


# --- values as people type them --------------------------------------------------------------------


@pytest.mark.parametrize("written", ["93%", "93 %", " 93% "])
async def test_spo2_with_a_percent_sign_is_read_as_the_number(admitted, written):
    response = await admitted.update(body(UPDATE, spo2=written, recorded_at=OMIT))

    assert response.status_code == 201, response.text
    assert response.json()["spo2"] == 93
    assert (await admitted.get()).json()["latest_update"]["spo2"] == 93


@pytest.mark.parametrize(("fahrenheit", "celsius"), [(98.6, "37.0"), ("101.3", "38.5"), (86, "30.0"), (113, "45.0")])
async def test_a_temperature_in_fahrenheit_is_refused_with_its_celsius_value(admitted, services, fahrenheit, celsius):
    async with writes_nothing(services, admitted):
        response = await admitted.update(body(UPDATE, temperature_c=fahrenheit, recorded_at=OMIT))

    shown = float(fahrenheit)
    assert_422(response, ("body", "temperature_c"), f"{shown:g} looks like °F; temperature_c is in °C")
    assert_422(response, ("body", "temperature_c"), f"{shown:g} °F is {celsius} °C")


async def test_a_landline_among_the_alternate_numbers_is_left_out_and_the_answer_says_so(mrb):
    sent = body(ADMISSION, alternate_mobiles=["94330 55555", "033 2473 2222"])

    response = await mrb.put(sent)

    assert response.status_code == 201, response.text
    assert response.json()["alternate_mobiles"] == ["+919433055555"]
    assert response.json()["warnings"] == [
        {
            "field": "alternate_mobiles.1",
            "value": "033 2473 2222",
            "reason": "a landline, not a mobile number; left out",
        }
    ]
    assert (await mrb.get()).json()["alternate_mobiles"] == ["+919433055555"]
    again = await mrb.put(sent)  # the same body again: unchanged, and the same warning
    assert again.status_code == 200 and again.json()["warnings"] == response.json()["warnings"]


# --- day-first times, as the CSV takes them --------------------------------------------------------


async def test_times_written_day_first_are_read_as_the_csv_reads_them(mrb):
    assert (await mrb.put(body(ADMISSION, admitted_at="01/07/2024 10:00"))).json()["admitted_at"] == (
        "2024-07-01T10:00:00+05:30"
    )
    recorded = await mrb.update(body(UPDATE, recorded_at="02-07-2024 08:00:30"))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["recorded_at"] == "2024-07-02T08:00:30+05:30"
    iso = await mrb.update(body(UPDATE, spo2=95, recorded_at="2024-07-02T09:00:00+05:30"))
    assert iso.json()["recorded_at"] == "2024-07-02T09:00:00+05:30"
    status = await mrb.status({"status": "discharged", "at": "5/7/2024"})
    assert status.json()["status_at"] == "2024-07-05T00:00:00+05:30"


@pytest.mark.parametrize(
    ("endpoint", "field", "written", "reason"),
    [
        ("put", "admitted_at", "31/02/2024 10:00", "31/02/2024 10:00 is not a date (day/month/year)"),
        ("update", "recorded_at", "02/07/2024 8am", "valid datetime"),
        ("status", "at", "1/1/1999", "before 2000-01-01"),
        (
            "update",
            "recorded_at",
            TOMORROW[8:10] + "/" + TOMORROW[5:7] + "/" + TOMORROW[:4] + " 23:59",
            "in the future",
        ),
    ],
)
async def test_day_first_times_are_checked_as_iso_ones(admitted, services, endpoint, field, written, reason):
    _, _, valid = ENDPOINTS[endpoint]
    async with writes_nothing(services, admitted):
        response = await admitted.send(endpoint, body(valid, **{field: written}))

    assert_422(response, ("body", field), reason)


# --- the OpenAPI document an integrator reads ------------------------------------------------------


def _document(services: Services) -> dict[str, Any]:
    return build_web_app(services).openapi()


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for path, item in document["paths"].items()
        if path.startswith("/api/")
        for operation in item.values()
    }


def _schema(document: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def test_every_request_body_has_an_example(services):
    document = _document(services)
    bodies = {
        name: _schema(document, operation["requestBody"]["content"]["application/json"]["schema"])
        for name, operation in _operations(document).items()
        if "requestBody" in operation
    }

    assert set(bodies) == {"put_admission", "post_update", "post_status"}
    for name, schema in bodies.items():
        assert schema.get("examples"), name


def test_every_field_of_every_schema_is_described(services):
    document = _document(services)
    undescribed = [
        f"{name}.{field}"
        for name, schema in document["components"]["schemas"].items()
        for field, definition in schema.get("properties", {}).items()
        if not definition.get("description")
    ]

    assert undescribed == []
    for field in ("ward", "bed"):
        assert document["components"]["schemas"]["AdmissionIn"]["properties"][field]["description"]
    assert document["components"]["schemas"]["ConditionUpdateIn"]["properties"]["remarks"]["description"]
    assert "latest" in document["components"]["schemas"]["RecordedUpdateOut"]["properties"]["is_latest"]["description"]


def test_401_404_and_409_are_documented_with_their_bodies_where_they_can_happen(services):
    operations = _operations(_document(services))
    expected_bodies = {
        "401": {"detail": "missing or invalid API key"},
        "404": {"detail": "no such admission"},
        "409": {"detail": "the admission is discharged; set status admitted first to add updates"},
    }

    for name, operation in operations.items():
        answers = operation["responses"]
        codes = {"401", "404", "409"} if name == "post_update" else {"401", "404"}
        assert codes <= set(answers), name
        for code in codes:
            content = answers[code]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (name, code)
            if name != "delete_update" or code != "404":
                assert content["example"] == expected_bodies[code], (name, code)
    assert "409" not in operations["put_admission"]["responses"]
    assert "409" not in operations["post_status"]["responses"]


async def test_the_documented_examples_are_accepted(client, keys, services):
    document = _document(services)
    operations = _operations(document)
    examples = {
        name: _schema(document, operations[name]["requestBody"]["content"]["application/json"]["schema"])["examples"][0]
        for name in ("put_admission", "post_update", "post_status")
    }
    headers = auth(keys["MRB"])
    base = f"/api/v1/admissions/{SLASHED}"

    put = await client.put(base, json=examples["put_admission"], headers=headers)
    update = await client.post(base + "/updates", json=examples["post_update"], headers=headers)
    status = await client.post(base + "/status", json=examples["post_status"], headers=headers)
    after = await client.post(base + "/updates", json=examples["post_update"], headers=headers)

    assert (put.status_code, update.status_code, status.status_code) == (201, 201, 200), (put.text, update.text)
    assert put.json()["registration_no"] == "SSK/2026/1001"
    assert update.json()["spo2"] == 91 and update.json()["is_latest"] is True
    assert status.json()["transferred_to"] == "SSKM Hospital, Kolkata"
    # The same update again is a repeat (200) even now that the patient has left.
    assert after.status_code == 200, after.text
