"""Hospital systems that send the same thing several times at once, or several changes to one
patient at once, through the real API: each change is stored once, audited once and told once,
and every alert's "before" is the state the patient was really in before it. On PostgreSQL the
requests race on connections of their own; on SQLite the writers of a process take turns."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from itertools import product
from typing import Any

import pytest
from sqlmodel import col, select

from bot import outbox
from models import AuditEvent, ConditionUpdate, Notification
from tests.conftest import auth, now_utc
from tests.test_api import follow

REG = "R-1"
AT_ONCE = 8
ADMISSION = {"patient_name": "Ratan Das", "contact_mobile": "098300 12345", "ward": "Medicine 2"}


@pytest.fixture
async def admitted(services, client, keys):
    """Ratan Das, admitted at M.R. Bangur, followed by two relatives' chats with alerts on."""
    response = await client.put(f"/api/v1/admissions/{REG}", json=ADMISSION, headers=auth(keys["MRB"]))
    assert response.status_code == 201, response.text
    for relative in ("daughter", "son"):
        await follow(services, "MRB", REG, chat_key=relative)


async def at_once(client, key: str, tail: str, bodies: list[dict[str, Any]]) -> list[int]:
    """POST each body to the admission's `tail`, all at the same time; the statuses answered."""
    url, headers = f"/api/v1/admissions/{REG}{tail}", auth(key)
    responses = await asyncio.gather(*(client.post(url, json=body, headers=headers) for body in bodies))
    return [response.status_code for response in responses]


async def rows(services, model, *where) -> list:
    async with services.database.session() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


def alerts_by_chat(notifications: list[Notification]) -> dict[int, list[dict[str, Any]]]:
    """Each chat's alerts' "before", in the order they were added."""
    befores: dict[int, list[dict[str, Any]]] = {}
    for notification in notifications:
        befores.setdefault(notification.chat_id, []).append(notification.before)
    return befores


async def test_the_same_update_sent_eight_times_at_once_is_stored_once(services, client, keys, admitted):
    update = {"condition": "critical", "care_area": "icu", "spo2": 88, "recorded_at": now_utc().isoformat()}

    statuses = await at_once(client, keys["MRB"], "/updates", [update] * AT_ONCE)

    assert sorted(statuses) == [200] * (AT_ONCE - 1) + [201]  # one recorded, the repeats answered as such
    assert len(await rows(services, ConditionUpdate)) == 1
    assert len(await rows(services, AuditEvent, AuditEvent.action == "update.recorded")) == 1
    befores = alerts_by_chat(await rows(services, Notification))
    assert [len(chat_befores) for chat_befores in befores.values()] == [1, 1]


async def test_the_same_discharge_sent_eight_times_at_once_is_recorded_and_told_once(services, client, keys, admitted):
    discharge = {"status": "discharged", "at": now_utc().isoformat()}

    statuses = await at_once(client, keys["MRB"], "/status", [discharge] * AT_ONCE)

    assert statuses == [200] * AT_ONCE
    assert len(await rows(services, AuditEvent, AuditEvent.action == "status.changed")) == 1
    befores = alerts_by_chat(await rows(services, Notification))
    assert list(befores.values()) == [[outbox.snapshot(None, "admitted")]] * 2


async def test_updates_sent_at_once_each_tell_the_state_before_them(services, client, keys, admitted):
    """Eight different updates of one patient, sent together, recorded in whatever order they
    get in: the alert of each that becomes the latest says what the latest was just before it."""
    start = now_utc() - timedelta(hours=1)
    states = list(product(("stable", "moderate", "critical"), ("ward", "hdu", "icu")))[:AT_ONCE]
    updates = [
        {"condition": condition, "care_area": area, "recorded_at": (start + timedelta(minutes=n)).isoformat()}
        for n, (condition, area) in enumerate(states)
    ]

    statuses = await at_once(client, keys["MRB"], "/updates", updates)

    assert statuses == [201] * AT_ONCE
    stored = await rows(services, ConditionUpdate)  # in the order they were recorded
    assert len(stored) == AT_ONCE
    expected, latest = [], None
    for update in stored:
        if latest is None or update.recorded_at >= latest.recorded_at:  # it became the latest
            expected.append(outbox.snapshot(latest, "admitted"))
            latest = update
    assert list(alerts_by_chat(await rows(services, Notification)).values()) == [expected] * 2


async def test_a_withdrawal_and_a_new_update_at_once_each_tell_the_state_before_them(services, client, keys, admitted):
    """The hospital withdraws the latest update while another system records a newer one, five
    times over. Replayed in the order the audit trail recorded them, each alert says what the
    relatives knew just before it: the withdrawn update's state when it was the latest, else the
    latest update's."""
    headers, start = auth(keys["MRB"]), now_utc() - timedelta(hours=1)
    url = f"/api/v1/admissions/{REG}/updates"
    states = [("stable", "ward"), ("moderate", "hdu"), ("critical", "icu")]
    for n in range(5):
        condition, area = states[n % 3]
        body = {
            "condition": condition,
            "care_area": area,
            "recorded_at": (start + timedelta(minutes=2 * n)).isoformat(),
        }
        latest = (await client.post(url, json=body, headers=headers)).json()
        condition, area = states[(n + 1) % 3]
        newer = {**body, "condition": condition, "care_area": area,
                 "recorded_at": (start + timedelta(minutes=2 * n + 1)).isoformat()}  # fmt: skip
        withdrawn, recorded = await asyncio.gather(
            client.delete(f"{url}/{latest['id']}", headers=headers), client.post(url, json=newer, headers=headers)
        )
        assert (withdrawn.status_code, recorded.status_code) == (200, 201)

    updates = {update.id: update for update in await rows(services, ConditionUpdate)}
    live: dict[int, ConditionUpdate] = {}
    expected = []

    def latest_live() -> ConditionUpdate | None:
        return max(live.values(), key=lambda update: (update.recorded_at, update.id), default=None)

    for event in await rows(services, AuditEvent, col(AuditEvent.action).in_(["update.recorded", "update.retracted"])):
        update, before = updates[event.detail["update_id"]], latest_live()
        if event.action == "update.recorded":
            live[update.id] = update
            if latest_live() is update:
                expected.append(outbox.snapshot(before, "admitted"))
        else:
            del live[update.id]
            if before is update:
                expected.append(outbox.snapshot(update, "admitted"))
    assert list(alerts_by_chat(await rows(services, Notification)).values()) == [expected] * 2
