"""The hospital API against requests generated from its own OpenAPI document (schemathesis): no
answer is a server error, and every answer is one the document describes (status, content type,
body), for every operation, with and without a valid key.

The requests reach the rules, not only the door: three in four carry a valid key, most name an
admission that exists (one admitted with an update, one discharged) and an update it has, and half
the bodies carry a string the default alphabet leaves out: NUL, another control character, a lone
surrogate. Bounded to about a minute; on its own:

    .venv/bin/python -m pytest tests/test_fuzz_api.py -p no:warnings

with FUZZ_EXAMPLES=2000 for a longer search.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.app import Services, build_web_app
from tests.conftest import auth, make_settings

# Each example is one request: 1,000 take about half a minute on a 2-core machine, per database.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMITTED, DISCHARGED = "FZ-ADMITTED", "FZ-DISCHARGED"

# The document is the app's own, as served; the database behind this app is never opened.
_OFFLINE = Services.build(make_settings("sqlite+aiosqlite:///:memory:"))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", build_web_app(_OFFLINE))
API = SCHEMA.include(path_regex="^/api/")
CASES = st.one_of(API.as_strategy(GenerationMode.POSITIVE), API.as_strategy(GenerationMode.NEGATIVE))
# Besides whatever the strategies make of a string: what the default alphabet leaves out.
UNUSUAL = st.sampled_from(["\x00", "\ud800", "\udfff", "\x1b[2J", "\x07", "\x7f", "\u2028", "a\x00b"])


@pytest.fixture
async def seeded(services, client, keys) -> dict[str, Any]:
    """An admitted patient with one update, and a discharged one; the valid key and the update's id."""
    headers = auth(keys["MRB"])
    for reg in (ADMITTED, DISCHARGED):
        admission = {"patient_name": "Ratan Das", "contact_mobile": "98300 12345", "admitted_at": "2024-07-01T10:00"}
        assert (await client.put(f"/api/v1/admissions/{reg}", json=admission, headers=headers)).status_code == 201
    update = {"condition": "critical", "care_area": "icu", "spo2": 89, "recorded_at": "2024-07-02T08:00"}
    recorded = await client.post(f"/api/v1/admissions/{ADMITTED}/updates", json=update, headers=headers)
    discharge = {"status": "discharged", "at": "2024-07-05T11:00"}
    assert (await client.post(f"/api/v1/admissions/{DISCHARGED}/status", json=discharge, headers=headers)).is_success
    return {"key": keys["MRB"], "update_id": recorded.json()["id"]}


def _aimed(case: schemathesis.Case, data: st.DataObject, seeded: dict[str, Any]) -> None:
    """Point most cases at what exists, and give most of them the key."""
    path = case.path_parameters or {}
    if "registration_no" in path:
        aimed = data.draw(st.sampled_from([ADMITTED, DISCHARGED, ADMITTED, None]), label="registration_no")
        path["registration_no"] = aimed or path["registration_no"]
    if "update_id" in path and data.draw(st.sampled_from([True, True, False]), label="existing update"):
        path["update_id"] = seeded["update_id"]
    headers = {name: value for name, value in (case.headers or {}).items() if name.lower() != "authorization"}
    if data.draw(st.sampled_from([True, True, True, False]), label="valid key"):
        headers.update(auth(seeded["key"]))
    case.headers = headers


def _request(case: schemathesis.Case, data: st.DataObject) -> dict[str, Any]:
    """The case as httpx takes it, with an unusual string in one field of half the bodies (put in
    after schemathesis is done with the case: its own validator cannot read a lone surrogate)."""
    sent = case.as_transport_kwargs(base_url="http://testserver")
    sent.pop("cookies", None)
    if isinstance(sent.get("data"), (bytes, str)):  # raw bytes, as requests takes them
        sent["content"] = sent.pop("data")
    if "json" in sent:
        body = copy.deepcopy(sent.pop("json"))  # the case's own body, which schemathesis reads again
        if isinstance(body, dict) and body and data.draw(st.booleans(), label="unusual string"):
            body[data.draw(st.sampled_from(sorted(body)), label="field")] = data.draw(UNUSUAL, label="value")
        # httpx writes JSON as UTF-8 text, which has no form for a lone surrogate; JSON's escape does.
        sent["content"] = json.dumps(body).encode()
    return sent


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # every run a fresh search, never a replay of files a former run left behind
    derandomize=False,
    # The app, its database and the seeded admissions are the same for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=CASES, data=st.data())
async def test_no_request_the_schema_describes_gets_a_server_error_or_an_undocumented_answer(
    client, seeded, case, data
):
    _aimed(case, data, seeded)
    sent = _request(case, data)

    response = await client.request(**sent)

    case.validate_response(response, checks=CHECKS, headers=sent.get("headers"))


def test_the_links_of_the_schema_lead_to_operations_and_their_parameters():
    document = SCHEMA.raw_schema
    operations = {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    links = [
        (name, link)
        for operation in operations.values()
        for response in operation["responses"].values()
        for name, link in response.get("links", {}).items()
    ]
    assert {name for name, _ in links} == {"get_admission", "post_update", "post_status", "delete_update"}
    for _, link in links:
        target = operations[link["operationId"]]
        path_parameters = {parameter["name"] for parameter in target["parameters"] if parameter["in"] == "path"}
        assert set(link["parameters"]) == path_parameters
