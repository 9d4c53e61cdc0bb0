"""After a transfer, the card a relative asks for with /status gives the same number to call as the
alert of the move: the new hospital's helpline when it is on Ward Watch, else the sending
hospital's. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import pytest

from tests.test_alerts import MCK_HELPLINE, MRB_HELPLINE, followed, world  # noqa: F401 (world: a fixture)


@pytest.mark.parametrize(
    "destination, to_call",
    [
        ("Medical College Kolkata", f"You can call Medical College Kolkata at {MCK_HELPLINE}."),
        ("medical college kolkata ", f"You can call Medical College Kolkata at {MCK_HELPLINE}."),
        ("SSKM Hospital", f"You can call M.R. Bangur Hospital at {MRB_HELPLINE}."),
    ],
)
async def test_the_card_after_a_transfer_gives_the_number_the_alert_gave(world, destination, to_call):
    relative = await followed(world)
    await world.set_status("transferred", to_hospital=destination)
    (alert,) = await world.dispatch()
    card = await relative.say("/status")
    assert alert.strip().splitlines()[-1] == to_call
    assert card.strip().splitlines()[-1] == to_call
