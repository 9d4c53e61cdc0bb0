"""One-time codes under the rules of docs/ARCHITECTURE.md, on a clock the tests move: 6 digits, 10 minutes,
used once, stored only as a keyed hash, bound to the chat, 5 wrong tries (not reset by a new code),
and the limits on sending. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, select

from bot.platform.security import pseudonym
from bot.relatives import otp as otp_module
from bot.relatives.otp import Checked, OtpService, Requested, read_code
from models.chat import OtpChallenge

START = datetime(2024, 7, 2, 3, 0, tzinfo=UTC)
A, B, C, D = "+919830012345", "+919433055555", "+919000000099", "+918017712345"
X, Y = "telegram:111", "telegram:222"


class Clock:
    """The time every part reads; a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **more: float) -> None:
        self.now += timedelta(seconds=seconds, **more)


class Inbox:
    """The SMS provider: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, mobile: str, body: str) -> None:
        self.sent.append((mobile, body))


CODE_IN_SMS = re.compile(r"^(\d+) is your Ward Watch code")


class Codes:
    """An OtpService on the test database with a movable clock; every call is one committed
    transaction, as in the conversation."""

    def __init__(self, services, clock: Clock | None = None) -> None:
        self.services = services
        self.clock = clock or Clock()
        self.inbox = Inbox()
        self.policy = services.settings.config.otp
        self.otp = OtpService(self.policy, services.secret_key, self.clock, sender=self.inbox)
        self.language = services.catalogues.get("en")
        # The newest code delivered to each (chat, number).
        self.codes: dict[tuple[str, str], str] = {}

    async def request(self, chat: str, mobile: str, registered: bool = True):
        async with self.services.database.session() as session:
            outcome = await self.otp.request(session, chat, mobile, registered, self.language)
            await session.commit()
        if outcome.delivery is not None:
            before = len(self.inbox.sent)
            await outcome.delivery()
            assert len(self.inbox.sent) == before + 1
            to, body = self.inbox.sent[-1]
            assert to == mobile
            self.codes[(chat, mobile)] = CODE_IN_SMS.match(body).group(1)
        return outcome

    async def check(self, chat: str, mobile: str, code: str):
        async with self.services.database.session() as session:
            outcome = await self.otp.check(session, chat, mobile, code)
            await session.commit()
        return outcome

    def code(self, chat: str, mobile: str) -> str:
        return self.codes[(chat, mobile)]

    def wrong(self, chat: str, mobile: str) -> str:
        right = self.codes.get((chat, mobile), "000000")
        return f"{(int(right) + 1) % 1_000_000:06d}"

    async def rows(self) -> list[OtpChallenge]:
        async with self.services.database.session() as session:
            return list((await session.exec(select(OtpChallenge).order_by(OtpChallenge.id))).all())


@pytest.fixture
def codes(services) -> Codes:
    return Codes(services)


async def empty_tables(services) -> None:
    async with services.database.engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            await connection.execute(table.delete())


# --- the code ----------------------------------------------------------------------------------


async def test_a_code_is_six_digits_and_arrives_by_sms(codes):
    outcome = await codes.request(X, A)
    assert outcome.result == Requested.ACCEPTED
    code = codes.code(X, A)
    assert re.fullmatch(r"\d{6}", code)
    ((to, body),) = codes.inbox.sent
    assert to == A
    assert "valid for 10 minutes" in body and "Never share it" in body


async def test_codes_come_from_secrets(codes, monkeypatch):
    drawn = []

    def choice(alphabet):
        drawn.append(alphabet)
        return "7"

    monkeypatch.setattr(otp_module.secrets, "choice", choice)
    await codes.request(X, A)
    assert codes.code(X, A) == "777777"
    assert drawn == ["0123456789"] * 6


async def test_codes_differ_between_requests(services):
    seen = set()
    for index in range(8):
        chat_codes = Codes(services)
        await chat_codes.request(f"console:{index}", A if index < 3 else f"+91983001{index:04d}")
        seen.add(next(iter(chat_codes.codes.values())))
    assert len(seen) > 1


async def test_the_code_is_stored_only_as_a_keyed_hash(codes, services, monkeypatch):
    digits = iter("481592")  # a fixed code, so that the search below cannot match by chance
    monkeypatch.setattr(otp_module.secrets, "choice", lambda alphabet: next(digits))
    await codes.request(X, A)
    code = codes.code(X, A)
    assert code == "481592"
    async with services.database.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await connection.execute(table.select())).all():
                assert all(code not in str(value) for value in row), (table.name, row)
    (row,) = await codes.rows()
    assert row.code_hash and len(row.code_hash) == 64
    # Keyed: the plain hash of the code (or of what it is bound to) is not what is stored.
    assert row.code_hash not in {
        hashlib.sha256(code.encode()).hexdigest(),
        hashlib.sha256(f"{X}|{A}|{code}".encode()).hexdigest(),
    }
    # Another key cannot recognise it, nor even find the request: it names the chat and the
    # number by pseudonyms under the key.
    other = OtpService(codes.policy, b"another-key", codes.clock, sender=Inbox())
    async with services.database.session() as session:
        assert (await other.check(session, X, A, code)).result == Checked.NO_CODE


async def test_a_code_is_valid_for_ten_minutes(codes):
    await codes.request(X, A)
    codes.clock.advance(minutes=9, seconds=59)
    assert (await codes.check(X, A, codes.code(X, A))).result == Checked.OK


async def test_a_code_has_expired_at_ten_minutes(codes):
    await codes.request(X, A)
    codes.clock.advance(minutes=10)
    assert (await codes.check(X, A, codes.code(X, A))).result == Checked.EXPIRED
    # An expired code is not a wrong try.
    (row,) = await codes.rows()
    assert row.wrong_tries == 0 and row.used_at is None


async def test_a_code_is_used_once(codes):
    await codes.request(X, A)
    code = codes.code(X, A)
    assert (await codes.check(X, A, code)).result == Checked.OK
    assert (await codes.check(X, A, code)).result == Checked.NO_CODE
    (row,) = await codes.rows()
    assert row.used_at == START


async def test_a_code_is_bound_to_the_chat_that_asked(codes):
    await codes.request(X, A)
    code = codes.code(X, A)
    assert (await codes.check(Y, A, code)).result == Checked.NO_CODE
    await codes.request(Y, A)
    assert (await codes.check(Y, A, code)).result in (Checked.WRONG, Checked.OK)
    if code != codes.code(Y, A):
        (row_x, row_y) = await codes.rows()
        assert row_y.wrong_tries == 1 and row_x.wrong_tries == 0
    # Still good in the chat that asked for it.
    assert (await codes.check(X, A, code)).result == Checked.OK


async def test_a_code_is_bound_to_the_number(codes):
    await codes.request(X, A)
    assert (await codes.check(X, B, codes.code(X, A))).result == Checked.NO_CODE


async def test_checking_without_a_code(codes):
    assert (await codes.check(X, A, "123456")).result == Checked.NO_CODE


async def test_five_wrong_tries_then_even_the_right_code_is_refused(codes):
    await codes.request(X, A)
    right, wrong = codes.code(X, A), codes.wrong(X, A)
    results = [await codes.check(X, A, wrong) for _ in range(5)]
    assert [(r.result, r.tries_left) for r in results] == [
        (Checked.WRONG, 4), (Checked.WRONG, 3), (Checked.WRONG, 2), (Checked.WRONG, 1), (Checked.LOCKED, 0),
    ]  # fmt: skip
    assert (await codes.check(X, A, right)).result == Checked.LOCKED
    (row,) = await codes.rows()
    assert row.wrong_tries == 5 and row.used_at is None


async def test_a_new_code_does_not_reset_the_wrong_tries(codes):
    await codes.request(X, A)
    for left in (4, 3, 2):
        outcome = await codes.check(X, A, codes.wrong(X, A))
        assert (outcome.result, outcome.tries_left) == (Checked.WRONG, left)
    codes.clock.advance(seconds=60)
    assert (await codes.request(X, A)).result == Requested.ACCEPTED
    outcome = await codes.check(X, A, codes.wrong(X, A))
    assert (outcome.result, outcome.tries_left) == (Checked.WRONG, 1)
    assert (await codes.check(X, A, codes.wrong(X, A))).result == Checked.LOCKED
    assert (await codes.check(X, A, codes.code(X, A))).result == Checked.LOCKED

    # Asking again is refused, whatever the wait for a resend, until the window has passed...
    for step in (0, 60, 3600, 23 * 3600):
        codes.clock.now = START + timedelta(seconds=60 + step)
        assert (await codes.request(X, A)).result == Requested.LOCKED
    # ...and the other chat and the other number are not locked.
    assert (await codes.request(Y, A)).result == Requested.ACCEPTED
    assert (await codes.request(X, B)).result == Requested.ACCEPTED
    # After the window (24 hours from the last code), a new code with a clean count.
    codes.clock.now = START + timedelta(seconds=60, hours=24)
    assert (await codes.request(X, A)).result == Requested.ACCEPTED
    outcome = await codes.check(X, A, codes.wrong(X, A))
    assert (outcome.result, outcome.tries_left) == (Checked.WRONG, 4)
    assert (await codes.check(X, A, codes.code(X, A))).result == Checked.OK


async def test_only_the_newest_code_counts(codes):
    await codes.request(X, A)
    old = codes.code(X, A)
    codes.clock.advance(seconds=60)
    await codes.request(X, A)
    new = codes.code(X, A)
    if old != new:
        assert (await codes.check(X, A, old)).result == Checked.WRONG
    assert (await codes.check(X, A, new)).result == Checked.OK


# --- sending limits ----------------------------------------------------------------------------


async def test_a_resend_waits_sixty_seconds(codes):
    assert codes.policy.resend_after_seconds == 60
    await codes.request(X, A)
    codes.clock.advance(seconds=20)
    outcome = await codes.request(X, A)
    assert (outcome.result, outcome.wait_seconds, outcome.delivery) == (Requested.TOO_SOON, 40, None)
    codes.clock.advance(seconds=39.5)
    outcome = await codes.request(X, A)
    assert (outcome.result, outcome.wait_seconds) == (Requested.TOO_SOON, 1)
    codes.clock.advance(seconds=0.5)
    assert (await codes.request(X, A)).result == Requested.ACCEPTED
    assert len(codes.inbox.sent) == 2
    # TOO_SOON stored nothing.
    assert len(await codes.rows()) == 2


async def test_the_resend_wait_is_per_chat_and_number(codes):
    await codes.request(X, A)
    assert (await codes.request(Y, A)).result == Requested.ACCEPTED
    assert (await codes.request(X, B)).result == Requested.ACCEPTED


async def test_sends_per_number_per_hour(codes):
    limit = codes.policy.max_sends_per_number_per_hour
    assert limit == 3
    chats = [f"telegram:{index}" for index in range(limit + 1)]
    for chat in chats[:limit]:
        assert (await codes.request(chat, A)).result == Requested.ACCEPTED
        codes.clock.advance(minutes=10)
    # The number has had its 3 codes this hour, whichever chat asks.
    assert (await codes.request(chats[limit], A)).result == Requested.LIMITED
    codes.clock.advance(minutes=10)
    assert (await codes.request(chats[0], A)).result == Requested.LIMITED
    assert len(codes.inbox.sent) == limit
    # One hour after the first code, one more is allowed.
    codes.clock.now = START + timedelta(hours=1, seconds=1)
    assert (await codes.request(chats[limit], A)).result == Requested.ACCEPTED
    assert (await codes.request(chats[0], A)).result == Requested.LIMITED


async def test_sends_per_chat_per_hour(codes):
    limit = codes.policy.max_sends_per_chat_per_hour
    assert limit == 5 and codes.policy.max_numbers_per_chat_per_day == 3
    # 3 numbers (the most a chat may try in a day), resent until the chat's hourly limit.
    plan = [A, B, D, A, B]
    for mobile in plan:
        assert (await codes.request(X, mobile)).result == Requested.ACCEPTED
        codes.clock.advance(seconds=61)
    assert (await codes.request(X, D)).result == Requested.LIMITED
    assert (await codes.request(Y, D)).result == Requested.ACCEPTED
    codes.clock.now = START + timedelta(hours=1, seconds=1)
    assert (await codes.request(X, D)).result == Requested.ACCEPTED


async def test_numbers_per_chat_per_day(codes):
    assert codes.policy.max_numbers_per_chat_per_day == 3
    for mobile in (A, B, D):
        assert (await codes.request(X, mobile)).result == Requested.ACCEPTED
    assert (await codes.request(X, C, registered=False)).result == Requested.LIMITED
    # The numbers already tried stay open (within the other limits).
    codes.clock.advance(hours=2)
    assert (await codes.request(X, A)).result == Requested.ACCEPTED
    assert (await codes.request(X, "+919830099999")).result == Requested.LIMITED
    codes.clock.now = START + timedelta(days=1, seconds=1)
    assert (await codes.request(X, "+919830099999")).result == Requested.ACCEPTED


async def test_sends_per_hour_overall(codes, services):
    limit = codes.policy.max_sends_per_hour
    assert limit == 1000
    async with services.database.session() as session:
        session.add_all(
            OtpChallenge(
                chat_pseudonym=pseudonym(services.secret_key, f"telegram:{index}"),
                mobile_pseudonym=pseudonym(services.secret_key, f"+9190000{index:05d}"),
                sent=True,
                created_at=START - timedelta(minutes=59),
                expires_at=START - timedelta(minutes=49),
            )  # fmt: skip
            for index in range(limit - 1)
        )
        await session.commit()
    assert (await codes.request(X, A)).result == Requested.ACCEPTED
    assert (await codes.request(Y, B)).result == Requested.LIMITED
    assert (await codes.request(Y, C, registered=False)).result == Requested.LIMITED
    assert len(codes.inbox.sent) == 1
    codes.clock.advance(minutes=1, seconds=1)
    assert (await codes.request(Y, B)).result == Requested.ACCEPTED


# --- an unregistered number --------------------------------------------------------------------


async def test_an_unregistered_number_gets_no_code_but_the_same_answers(services):
    """The same scenario for a registered and an unregistered number: every outcome the same,
    except that only the registered one is delivered a code."""

    async def scenario(codes: Codes, mobile: str, registered: bool) -> list:
        seen = []

        async def request(chat: str):
            outcome = await codes.request(chat, mobile, registered)
            seen.append(("request", outcome.result, outcome.wait_seconds))
            return outcome

        async def check(chat: str, code: str):
            outcome = await codes.check(chat, mobile, code)
            seen.append(("check", outcome.result, outcome.tries_left))

        first = await request(X)
        assert (first.delivery is not None) == registered
        await request(X)  # too soon
        for _ in range(3):
            await check(X, codes.wrong(X, mobile))
        codes.clock.advance(seconds=60)
        await request(X)  # a new code, with the 3 wrong tries carried over
        for _ in range(2):
            await check(X, codes.wrong(X, mobile))
        await check(X, codes.codes.get((X, mobile), "314159"))  # the right code, if there is one
        await request(X)  # locked
        await request(Y)
        await check(Y, codes.wrong(Y, mobile))
        codes.clock.advance(seconds=30)
        await request(Y)  # too soon
        codes.clock.advance(minutes=10)
        await request("telegram:333")  # the number's 4th code this hour
        await check(Y, codes.codes.get((Y, mobile), "314159"))  # expired
        return seen

    registered = Codes(services)
    with_code = await scenario(registered, A, True)
    await empty_tables(services)
    unregistered = Codes(services)
    without_code = await scenario(unregistered, C, False)

    assert len(registered.inbox.sent) == 3
    assert unregistered.inbox.sent == []
    # Even the registered number's right code was refused: it came after the 5th wrong try.
    assert with_code == without_code
    assert with_code == [
        ("request", Requested.ACCEPTED, 0),
        ("request", Requested.TOO_SOON, 60),
        ("check", Checked.WRONG, 4),
        ("check", Checked.WRONG, 3),
        ("check", Checked.WRONG, 2),
        ("request", Requested.ACCEPTED, 0),
        ("check", Checked.WRONG, 1),
        ("check", Checked.LOCKED, 0),
        ("check", Checked.LOCKED, 0),
        ("request", Requested.LOCKED, 0),
        ("request", Requested.ACCEPTED, 0),
        ("check", Checked.WRONG, 4),
        ("request", Requested.TOO_SOON, 30),
        ("request", Requested.LIMITED, 0),
        ("check", Checked.EXPIRED, 0),
    ]
    rows = await unregistered.rows()
    assert [row.sent for row in rows] == [False] * 3
    assert all(row.code_hash is None for row in rows)


async def test_any_code_is_wrong_for_an_unregistered_number(codes):
    outcome = await codes.request(X, C, registered=False)
    assert (outcome.result, outcome.delivery) == (Requested.ACCEPTED, None)
    tries = [await codes.check(X, C, f"{guess:06d}") for guess in range(5)]
    assert [t.result for t in tries] == [Checked.WRONG] * 4 + [Checked.LOCKED]
    assert codes.inbox.sent == []


class Verify:
    """A provider that makes, sends and checks its own codes (Twilio Verify's shape)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.checked: list[tuple[str, str]] = []

    async def start(self, mobile: str, locale: str) -> None:
        self.started.append((mobile, locale))

    async def check(self, mobile: str, code: str) -> bool:
        self.checked.append((mobile, code))
        return code == "424242"


async def test_a_provider_that_keeps_its_own_codes(services):
    clock, verify = Clock(), Verify()
    service = OtpService(services.settings.config.otp, services.secret_key, clock, verifier=verify)
    english = services.catalogues.get("en")

    async def call(method, *args):
        async with services.database.session() as session:
            outcome = await method(session, *args)
            await session.commit()
        return outcome

    outcome = await call(service.request, X, A, True, english)
    await outcome.delivery()
    assert verify.started == [(A, "en")]
    assert (await call(service.check, X, A, "111111")).result == Checked.WRONG
    assert (await call(service.check, Y, A, "424242")).result == Checked.NO_CODE
    assert (await call(service.check, X, A, "424242")).result == Checked.OK
    # An unregistered number: nothing started, nothing asked of the provider, every code wrong.
    outcome = await call(service.request, X, C, False, english)
    assert outcome.delivery is None and verify.started == [(A, "en")]
    assert (await call(service.check, X, C, "424242")).result == Checked.WRONG
    assert verify.checked == [(A, "111111"), (A, "424242")]

    # The operator moves from Verify to SMS while a code is out: that code is refused, not a crash.
    clock.advance(seconds=60)
    await call(service.request, Y, A, True, english)
    by_sms = OtpService(services.settings.config.otp, services.secret_key, clock, sender=Inbox())
    assert (await call(by_sms.check, Y, A, "424242")).result == Checked.WRONG


# --- reading what was typed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, read",
    [
        ("123456", "123456"),
        ("123 456", "123456"),
        (" 1 2 3 4 5 6 ", "123456"),
        ("123-456", "123456"),
        ("১২৩৪৫৬", "123456"),
        ("১২৩ ৪৫৬", "123456"),
        ("१२३४५६", "123456"),
        ("१२३-४५६", "123456"),
        ("000000", "000000"),
    ],
)
def test_read_code_accepts(typed, read):
    assert read_code(typed, 6) == read


@pytest.mark.parametrize(
    "typed",
    ["12345", "1234567", "12345a", "abcdef", "", "   ", "12.3456", "+123456", "123456!", "¹²³⁴⁵⁶", "12 34 5"],
)
def test_read_code_refuses(typed):
    assert read_code(typed, 6) is None


# --- the rules, for any sequence of operations ------------------------------------------------

NUMBERS = {A: True, B: True, C: False, D: True}  # number: registered
CHATS = (X, Y)


@dataclass
class ModelCode:
    chat: str
    mobile: str
    created: datetime
    code: str | None  # None: not delivered (unregistered)
    wrong: int = 0
    used: bool = False
    voided: bool = False

    @property
    def expires(self) -> datetime:
        return self.created + timedelta(minutes=10)


@dataclass
class Model:
    """The rules of docs/ARCHITECTURE.md and config.yaml, written as plainly as possible."""

    policy: object
    codes: list[ModelCode] = field(default_factory=list)

    def latest(self, chat: str, mobile: str) -> ModelCode | None:
        mine = [c for c in self.codes if (c.chat, c.mobile) == (chat, mobile)]
        return mine[-1] if mine else None

    def request(self, chat: str, mobile: str, now: datetime, code: str | None) -> tuple[Requested, int]:
        policy = self.policy
        previous = self.latest(chat, mobile)
        carried = 0
        if previous is not None and previous.created > now - timedelta(hours=policy.wrong_tries_window_hours):
            carried = previous.wrong
        if carried >= policy.max_wrong_tries:
            return Requested.LOCKED, 0
        if previous is not None:
            ready = previous.created + timedelta(seconds=policy.resend_after_seconds)
            if now < ready:
                return Requested.TOO_SOON, math.ceil((ready - now).total_seconds())
        hour = [c for c in self.codes if c.created > now - timedelta(hours=1)]
        day = [c for c in self.codes if c.created > now - timedelta(days=1)]
        if sum(c.mobile == mobile for c in hour) >= policy.max_sends_per_number_per_hour:
            return Requested.LIMITED, 0
        if sum(c.chat == chat for c in hour) >= policy.max_sends_per_chat_per_hour:
            return Requested.LIMITED, 0
        tried = {c.mobile for c in day if c.chat == chat}
        if mobile not in tried and len(tried) >= policy.max_numbers_per_chat_per_day:
            return Requested.LIMITED, 0
        if len(hour) >= policy.max_sends_per_hour:
            return Requested.LIMITED, 0
        if previous is not None:
            for old in self.codes:
                if (old.chat, old.mobile) == (chat, mobile):
                    old.voided = True
        self.codes.append(ModelCode(chat, mobile, now, code, wrong=carried))
        return Requested.ACCEPTED, 0

    def check(self, chat: str, mobile: str, typed: str, now: datetime) -> tuple[Checked, int]:
        limit = self.policy.max_wrong_tries
        newest = self.latest(chat, mobile)
        if newest is None or newest.used:
            return Checked.NO_CODE, 0
        if newest.voided or newest.wrong >= limit:
            return Checked.LOCKED, 0
        if now >= newest.expires:
            return Checked.EXPIRED, 0
        if newest.code is not None and typed == newest.code:
            newest.used = True
            return Checked.OK, 0
        newest.wrong += 1
        if newest.wrong >= limit:
            newest.voided = True
            return Checked.LOCKED, 0
        return Checked.WRONG, limit - newest.wrong


_chat = st.sampled_from(CHATS)
_number = st.sampled_from(list(NUMBERS))
_check = st.sampled_from(["right", "wrong", "old"])
# Checks mostly go to the number the chat asked for last, as in the dialogue; sometimes to any.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), _chat, _number),
        st.tuples(st.just("request"), _chat, _number),
        st.tuples(st.just("resend"), _chat),
        st.tuples(st.just("right"), _chat),
        st.tuples(st.just("right"), _chat),
        st.tuples(st.just("wrong"), _chat),
        st.tuples(st.just("wrong"), _chat),
        st.tuples(st.just("wrong"), _chat),
        st.tuples(st.just("old"), _chat),
        st.tuples(_check, _chat, _number),
        st.tuples(st.just("wait"), st.integers(0, 90)),
        st.tuples(st.just("wait"), st.integers(0, 90)),
        st.tuples(
            st.just("wait"),
            st.one_of(st.integers(0, 1800), st.sampled_from([59, 60, 599, 600, 3599, 3600, 86400])),
        ),
    ),
    min_size=10,
    max_size=50,
)


# One chat and one number only: lockouts, carried wrong tries and resends, explored in depth.
ONE_CHAT_ONE_NUMBER = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.just(X), st.just(A)),
        st.tuples(st.just("right"), st.just(X)),
        st.tuples(st.just("wrong"), st.just(X)),
        st.tuples(st.just("wrong"), st.just(X)),
        st.tuples(st.just("old"), st.just(X)),
        st.tuples(st.just("wait"), st.integers(0, 120)),
        st.tuples(st.just("wait"), st.sampled_from([60, 600, 3600, 12 * 3600, 86400])),
    ),
    min_size=10,
    max_size=40,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(operations=OPERATIONS)
async def test_the_rules_hold_for_any_sequence(services, operations):
    await run_against_the_model(services, operations)


@settings(FAST, max_examples=40)
@given(operations=ONE_CHAT_ONE_NUMBER)
async def test_the_rules_hold_for_one_chat_and_number(services, operations):
    await run_against_the_model(services, operations)


async def run_against_the_model(services, operations) -> None:
    """Apply the operations to the service and to the model: every outcome must be the model's,
    and the invariants must hold throughout."""
    await empty_tables(services)
    codes = Codes(services)
    policy = codes.policy
    model = Model(policy)
    pending: dict[str, str] = {}  # chat: the number it asked for last (what "resend" resends)
    all_codes: dict[tuple[str, str], list[str]] = {}  # every code delivered, oldest first
    accepted_requests: list[tuple[datetime, str, str]] = []
    accepted_codes: set[tuple[str, str, datetime]] = set()

    for operation in operations:
        kind, *args = operation
        now = codes.clock.now
        if kind == "wait":
            codes.clock.advance(seconds=args[0])
            continue
        if kind in ("request", "resend"):
            chat = args[0]
            mobile = args[1] if kind == "request" else pending.get(chat)
            if mobile is None:
                continue
            pending[chat] = mobile
            registered = NUMBERS[mobile]
            outcome = await codes.request(chat, mobile, registered)
            delivered = codes.codes.get((chat, mobile)) if outcome.delivery is not None else None
            expected = model.request(chat, mobile, now, delivered)
            assert (outcome.result, outcome.wait_seconds) == expected, operation
            event(f"request {outcome.result}")
            assert (outcome.delivery is not None) == (outcome.result == Requested.ACCEPTED and registered)
            if outcome.result == Requested.ACCEPTED:
                accepted_requests.append((now, chat, mobile))
                if delivered is not None:
                    all_codes.setdefault((chat, mobile), []).append(delivered)
            continue

        chat, mobile = args if len(args) == 2 else (args[0], pending.get(args[0]))
        if mobile is None:
            continue
        sent = all_codes.get((chat, mobile), [])
        newest = model.latest(chat, mobile)
        if kind == "right":
            typed = sent[-1] if sent else "271828"
        elif kind == "wrong":
            typed = codes.wrong(chat, mobile)
        else:  # a code that was sent to this chat and number before the newest one
            older = [code for code in sent[:-1] if code != (newest.code if newest else None)]
            if not older:
                continue
            typed = older[-1]
        # The model decides from the state before the check.
        was = None if newest is None else (newest.created, newest.used, newest.voided, newest.wrong)
        outcome = await codes.check(chat, mobile, typed)
        expected = model.check(chat, mobile, typed, now)
        assert (outcome.result, outcome.tries_left) == expected, operation
        event(f"check {kind} {outcome.result}")
        if outcome.result == Checked.OK:
            # Accepted only if it is the newest code of this chat and number, unexpired, unused,
            # with fewer than the most wrong tries counted, and never twice.
            assert was is not None
            created, used, voided, wrong = was
            assert typed == newest.code == sent[-1]
            assert now < created + timedelta(seconds=policy.valid_seconds)
            assert not used and not voided and wrong < policy.max_wrong_tries
            key = (chat, mobile, created)
            assert key not in accepted_codes
            accepted_codes.add(key)
        if not NUMBERS[mobile]:
            assert outcome.result != Checked.OK

    # Never more codes in any hour than the limits, per number and per chat.
    for at, _chat_key, _mobile in accepted_requests:
        window = [r for r in accepted_requests if at - timedelta(hours=1) < r[0] <= at]
        for mobile in NUMBERS:
            assert sum(r[2] == mobile for r in window) <= policy.max_sends_per_number_per_hour
        for chat in CHATS:
            assert sum(r[1] == chat for r in window) <= policy.max_sends_per_chat_per_hour
    # The database agrees with the model.
    rows = await codes.rows()
    secret = services.secret_key
    assert [
        (row.chat_pseudonym, row.mobile_pseudonym, row.created_at, row.wrong_tries, row.used_at is not None)
        for row in rows
    ] == [(pseudonym(secret, c.chat), pseudonym(secret, c.mobile), c.created, c.wrong, c.used) for c in model.codes]
    assert [row.sent for row in rows] == [NUMBERS[c.mobile] for c in model.codes]


# --- at the same time ---------------------------------------------------------------------------
# Two web instances, or one instance answering several messages at once: each call below is its
# own session and transaction, all started together.


async def test_wrong_tries_typed_at_the_same_time_are_all_counted(codes):
    await codes.request(X, A)
    right = codes.code(X, A)
    guesses = [f"{(int(right) + step) % 1_000_000:06d}" for step in range(1, 11)]
    outcomes = await asyncio.gather(*(codes.check(X, A, guess) for guess in guesses))
    wrong = [outcome.tries_left for outcome in outcomes if outcome.result == Checked.WRONG]
    # Each guess compared used up one try of its own: 4, 3, 2, 1 at most, then locked.
    assert sorted(wrong, reverse=True) == [4, 3, 2, 1][: len(wrong)]
    assert len(set(wrong)) == len(wrong)
    (row,) = await codes.rows()
    assert row.wrong_tries == codes.policy.max_wrong_tries
    assert (await codes.check(X, A, right)).result == Checked.LOCKED


async def test_the_right_code_typed_twice_at_the_same_time_is_accepted_once(codes):
    await codes.request(X, A)
    right = codes.code(X, A)
    outcomes = await asyncio.gather(*(codes.check(X, A, right) for _ in range(6)))
    assert [outcome.result for outcome in outcomes].count(Checked.OK) == 1


async def test_codes_asked_for_at_the_same_time_keep_to_the_limits(codes):
    # Eight chats ask for a code for one number at once: three codes this hour, no more.
    outcomes = await asyncio.gather(*(codes.request(f"telegram:{index}", A) for index in range(8)))
    assert [outcome.result for outcome in outcomes].count(Requested.ACCEPTED) == 3
    assert len(codes.inbox.sent) == 3
    # One chat asks for one number several times at once: one code, the rest too soon.
    outcomes = await asyncio.gather(*(codes.request(Y, B) for _ in range(5)))
    assert [outcome.result for outcome in outcomes].count(Requested.ACCEPTED) == 1


# --- what a refusal tells --------------------------------------------------------------------------


async def test_each_refusal_names_its_limit_and_when_it_ends(codes, services):
    # Wrong tries: locked until the window has passed since the code was asked for.
    await codes.request(X, A)
    codes.clock.advance(minutes=3)
    for _ in range(5):
        outcome = await codes.check(X, A, codes.wrong(X, A))
    window = timedelta(hours=codes.policy.wrong_tries_window_hours)
    assert (outcome.result, outcome.until) == (Checked.LOCKED, START + window)
    outcome = await codes.request(X, A)
    assert (outcome.result, outcome.limit, outcome.until) == (Requested.LOCKED, None, START + window)

    # This number's codes in an hour, from any chat: until the oldest of the last three is an hour old.
    for chat in ("telegram:1", "telegram:2"):
        codes.clock.advance(minutes=10)
        await codes.request(chat, A)
    outcome = await codes.request(Y, A)
    assert (outcome.result, outcome.limit) == (Requested.LIMITED, otp_module.Limit.NUMBER_PER_HOUR)
    assert outcome.until == START + timedelta(hours=1)

    # Numbers a chat tried in a day: until the third newest of them was last asked a day ago.
    for mobile in (B, D):
        await codes.request(Y, mobile)
    codes.clock.advance(minutes=5)
    await codes.request(Y, C)
    outcome = await codes.request(Y, "+919830099999")
    assert (outcome.result, outcome.limit) == (Requested.LIMITED, otp_module.Limit.NUMBERS_PER_DAY)
    assert outcome.until == START + timedelta(minutes=23, days=1)

    # A chat's codes in an hour.
    for _ in range(2):
        codes.clock.advance(seconds=61)
        await codes.request(Y, B)
    outcome = await codes.request(Y, D)
    assert (outcome.result, outcome.limit) == (Requested.LIMITED, otp_module.Limit.CHAT_PER_HOUR)
    assert outcome.until == START + timedelta(minutes=23, hours=1)

    # All codes in an hour: the one that ends last of the limits reached is told.
    async with services.database.session() as session:
        session.add_all(
            OtpChallenge(
                chat_pseudonym=pseudonym(services.secret_key, f"telegram:many{index}"),
                mobile_pseudonym=pseudonym(services.secret_key, f"+9190000{index:05d}"),
                sent=True,
                created_at=codes.clock.now,
                expires_at=codes.clock.now,
            )  # fmt: skip
            for index in range(codes.policy.max_sends_per_hour)
        )
        await session.commit()
    outcome = await codes.request(Y, D)
    assert (outcome.result, outcome.limit) == (Requested.LIMITED, otp_module.Limit.OVERALL)
    assert outcome.until == codes.clock.now + timedelta(hours=1)
