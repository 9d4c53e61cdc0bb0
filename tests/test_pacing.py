"""The pacer on its own: how many messages a second overall, one chat's interval, a pause after a
429, a deadline, and the order of one chat's messages.

Each scenario runs on an event loop whose clock moves only when every task waits, jumping straight
to the next timer: the times it reads are exactly those the pacer arranged, and a scenario of
seconds takes none."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from bot.alerts.pacing import Pacer


class _JumpingSelector(selectors.DefaultSelector):
    """Never waits: where the loop would wait for its next timer, its clock jumps there."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list:
        events = super().select(0)
        if not events and timeout:
            self._loop.now += timeout
        elif not events and timeout is None:
            raise RuntimeError("every task waits and no timer is set: the scenario can never end")
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(scenario)
    finally:
        loop.close()


@dataclass(frozen=True)
class Went:
    granted: bool
    at: float  # loop time: when the message went, or when the pacer said it would not


async def message(
    pacer: Pacer,
    chat_key: str,
    latency: float = 0.0,
    deadline: float | None = None,
    pause: float | None = None,
) -> Went:
    """One message through the pacer, answered `latency` seconds after it went; with `pause`, the
    answer is a 429 and the pacer is paused, as the dispatcher does."""
    loop = asyncio.get_running_loop()
    async with pacer.slot(chat_key, deadline) as granted:
        went = Went(granted, loop.time())
        if granted:
            await asyncio.sleep(latency)
            if pause is not None:
                pacer.pause(pause)
    return went


def times(went: list[Went]) -> list[float]:
    assert all(message.granted for message in went)
    return [message.at for message in went]


def exactly(expected: list[float]) -> Any:
    return pytest.approx(expected, abs=1e-9)


# --- overall rate ---------------------------------------------------------------------------------


def test_at_most_per_second_messages_go_in_any_second():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30)
        return await asyncio.gather(*(message(pacer, f"chat {n}") for n in range(75)))

    assert times(run(scenario())) == exactly([0.0] * 30 + [1.0] * 30 + [2.0] * 15)


def test_a_message_holds_its_place_until_a_second_after_its_answer():
    """The platform counts a message when it arrives, somewhere between our sending and its answer:
    the place is free again only a second after the answer, whatever the network did."""

    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30)
        return await asyncio.gather(*(message(pacer, f"chat {n}", latency=0.25) for n in range(60)))

    assert times(run(scenario())) == exactly([0.0] * 30 + [1.25] * 30)


def test_a_rate_below_one_a_second_or_between_whole_numbers_spaces_its_places():
    async def scenario(per_second: float) -> list[Went]:
        pacer = Pacer(per_second=per_second)
        return await asyncio.gather(*(message(pacer, f"chat {n}") for n in range(5)))

    assert times(run(scenario(2.5))) == exactly([0.0, 0.0, 0.8, 0.8, 1.6])  # 2 places per 0.8 s
    assert times(run(scenario(0.5))) == exactly([0.0, 2.0, 4.0, 6.0, 8.0])


# --- one chat --------------------------------------------------------------------------------------


def test_one_chat_gets_one_message_per_interval_after_the_answer_to_the_last():
    async def scenario(latency: float) -> tuple[list[Went], list[Went]]:
        pacer = Pacer(per_second=30, per_chat_per_second=1)
        first = [message(pacer, "a", latency) for _ in range(3)]
        other = [message(pacer, "b", latency)]
        went = await asyncio.gather(*first, *other)
        return went[:3], went[3:]

    to_a, to_b = run(scenario(latency=0.0))
    assert (times(to_a), times(to_b)) == (exactly([0.0, 1.0, 2.0]), exactly([0.0]))
    to_a, to_b = run(scenario(latency=0.25))
    assert (times(to_a), times(to_b)) == (exactly([0.0, 1.25, 2.5]), exactly([0.0]))


def test_one_chats_messages_go_in_the_order_they_asked():
    """Each message carries its number: the chat receives 1, 2, 3... whatever else waits for a place
    and however long each answer takes."""

    async def numbered(pacer: Pacer, chat_key: str, number: int, received: list[int]) -> None:
        async with pacer.slot(chat_key) as granted:
            assert granted
            received.append(number)
            await asyncio.sleep(0.3 if number % 2 else 0.0)  # answers of uneven latency

    async def scenario() -> list[int]:
        pacer = Pacer(per_second=3, per_chat_per_second=1)
        received: list[int] = []
        others = [message(pacer, f"other {n}") for n in range(6)]
        await asyncio.gather(*(numbered(pacer, "a", number, received) for number in range(1, 6)), *others)
        return received

    assert run(scenario()) == [1, 2, 3, 4, 5]


# --- pause (a 429) -------------------------------------------------------------------------------------


def test_a_pause_holds_every_message_until_it_ends():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30, per_chat_per_second=1)
        pacer.pause(2.0)
        return await asyncio.gather(*(message(pacer, chat) for chat in ("a", "b", "c", "a")))

    assert times(run(scenario())) == exactly([2.0, 2.0, 2.0, 3.0])


def test_a_pause_during_a_send_holds_the_messages_already_waiting():
    """The answer to the first message, half a second after it went, is a 429 asking for 5 seconds:
    the message already waiting for the next place does not take it when it comes free (1.5 s), and
    a message asked for during the pause waits as well."""

    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=1)
        first = asyncio.ensure_future(message(pacer, "a", latency=0.5, pause=5.0))
        waiting = asyncio.ensure_future(message(pacer, "b"))
        await asyncio.sleep(3.0)
        later = asyncio.ensure_future(message(pacer, "c"))
        return await asyncio.gather(first, waiting, later)

    assert times(run(scenario())) == exactly([0.0, 5.5, 6.5])


def test_a_longer_pause_is_not_shortened_by_a_shorter_one():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30)
        pacer.pause(4.0)
        pacer.pause(1.0)
        return [await message(pacer, "a")]

    assert times(run(scenario())) == exactly([4.0])


# --- deadline ------------------------------------------------------------------------------------------


def test_a_message_whose_place_comes_after_its_deadline_gets_false_and_takes_no_place():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=1)
        return await asyncio.gather(message(pacer, "a"), message(pacer, "b", deadline=0.5), message(pacer, "c"))

    first, late, next_one = run(scenario())
    assert (first.granted, first.at) == (True, 0.0)
    assert (late.granted, late.at) == (False, exactly(0.5))  # gave up when its deadline came
    assert (next_one.granted, next_one.at) == (True, exactly(1.0))  # the place `late` did not take


def test_a_message_whose_chats_turn_comes_after_its_deadline_gets_false_at_once():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30, per_chat_per_second=1)
        return await asyncio.gather(message(pacer, "a"), message(pacer, "a", deadline=0.5), message(pacer, "a"))

    first, late, next_one = run(scenario())
    assert (first.granted, late.granted, next_one.granted) == (True, False, True)
    assert late.at == exactly(0.0)  # the chat's next turn (1 s) is known to be too late
    assert next_one.at == exactly(1.0)  # the turn `late` did not take


def test_a_message_whose_deadline_falls_in_a_pause_gets_false_at_once():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=30)
        pacer.pause(3.0)
        return await asyncio.gather(message(pacer, "a", deadline=2.0), message(pacer, "b", deadline=3.5))

    too_late, in_time = run(scenario())
    assert (too_late.granted, too_late.at) == (False, 0.0)
    assert (in_time.granted, in_time.at) == (True, exactly(3.0))


def test_a_message_within_its_deadline_goes_as_without_one():
    async def scenario() -> list[Went]:
        pacer = Pacer(per_second=2)
        return await asyncio.gather(*(message(pacer, f"chat {n}", deadline=10.0) for n in range(5)))

    assert times(run(scenario())) == exactly([0.0, 0.0, 1.0, 1.0, 2.0])
