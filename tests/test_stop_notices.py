"""/stop means no more alerts: a chat that sent it is not told of a new admission under its number
either, until /start (or a new code). Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is
set."""

from __future__ import annotations

from models.chat import Notification
from tests.test_alerts import NEW_ADMISSION_NOTICE, world  # noqa: F401 (world: a fixture)


async def test_a_chat_that_sent_stop_is_not_told_of_a_new_admission_and_one_that_did_not_is(world):
    await world.admit()
    await world.relative("told")
    stopped = await world.relative("stopped")
    await stopped.say("/stop")

    await world.admit("R-2", patient_name="Mina Das")
    (notice,) = await world.dispatch()
    assert notice.strip().splitlines() == NEW_ADMISSION_NOTICE
    assert [key for key, _text in world.sender.sent] == ["told"]

    # /start turns the alerts on again, the notices among them.
    assert (await stopped.say("/start")).startswith("Alerts are on again")
    await world.admit("R-3", patient_name="Sunil Das")
    assert len(await world.dispatch()) == 2
    assert sorted(key for key, _text in world.sender.sent[1:]) == ["stopped", "told"]


async def test_a_notice_waiting_when_the_chat_sends_stop_is_not_sent(world):
    await world.admit()
    relative = await world.relative()
    await world.admit("R-2", patient_name="Mina Das")
    await relative.say("/stop")

    assert await world.dispatch() == []
    assert await world.dispatch(after=3600) == []
    assert [row.status for row in await world.rows(Notification)] == ["cancelled"]
