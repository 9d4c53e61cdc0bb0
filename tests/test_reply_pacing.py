"""Replies and alerts of one process (`python -m bot run`) share the bot's messages a second, and a
relative waiting for a reply goes ahead of the routine alerts queued: the real dispatcher and the
real python-telegram-bot against the fake Bot API, which answers 429 beyond its limits."""

from __future__ import annotations

from tests.test_dispatcher import MODERATE, fake, mobile, open_ward, twilio, until  # noqa: F401 - fixtures used below

ALERTS = 10
PER_SECOND = 2


async def test_a_reply_goes_ahead_of_queued_alerts_and_together_they_keep_the_limit(open_ward, fake):
    """Two messages a second in all (the fake refuses a third): ten routine alerts queue, then a
    relative writes. The reply goes at the next free place, before the alerts still waiting, and
    no message of either kind meets a 429."""
    ward = await open_ward(pacing={"messages_per_second": PER_SECOND}, polling=True)
    for n in range(ALERTS):
        await ward.admit(f"R-{n}", mobile(n))
        await ward.follow(mobile(n))
    fake.limits, fake.overall_per_second = True, PER_SECOND
    for n in range(ALERTS):
        await ward.update(f"R-{n}", **MODERATE)
    ward.run()
    relative = fake.user("en")
    await until(lambda: len(fake.sent) >= PER_SECOND, "the queue's first second")
    await fake.push(fake.updates.command(relative, "/help"))
    [reply] = await fake.wait_messages(relative.id, 1)
    await ward.settled()

    order = [message.chat_id for message in fake.sent]
    assert "/status" in reply.plain
    assert len(order) == ALERTS + 1
    assert order.index(relative.id) <= 4, order  # behind at most the alerts already under way
    assert fake.too_many_requests == 0, fake.throttled
    assert fake.rejected == []
