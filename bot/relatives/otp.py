"""One-time codes: asking for one, sending it, checking it, under the limits that protect patients
(docs/ARCHITECTURE.md).

- 6 digits from `secrets`, valid `otp.valid_seconds`, used once, stored only as a keyed hash bound
  to the chat and the number, at most `otp.max_wrong_tries` wrong tries; a new code carries the
  wrong tries of the last one over (within `otp.wrong_tries_window_hours`).
- Requests are limited per number, per chat (also in how many numbers a chat may try) and
  overall; a resend waits `otp.resend_after_seconds`. The requests name the chat and the number
  only by pseudonyms: enough to count them, nothing to read back.
- An unregistered number is treated exactly like a registered one (a challenge row, the same
  limits, the same answers), except that no code is sent: nothing tells them apart.
- The code is sent after the request is committed, in the background: the relative's reply
  never waits for the SMS provider.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Protocol

from sqlalchemy import and_, bindparam, case, false, func, or_
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.i18n import Language
from bot.platform.phones import ascii_digits
from bot.platform.security import keyed_hash, pseudonym
from bot.platform.settings import OtpConfig
from models.chat import OtpChallenge

# The key of the PostgreSQL advisory lock that lets one code request run at a time.
_CODES_LOCK = 0x5757_4F54_5000  # "WWOTP"
# The first half of the two-part keys of the advisory locks of one chat's codes for one number
# (a key space apart from `_CODES_LOCK`'s); the second half is a hash of both pseudonyms.
_CHAT_NUMBER_LOCKS = 0x5757_4F54  # "WWOT"


class CheckUnavailable(Exception):
    """The code could not be checked now (the provider failed): neither right nor wrong."""


class CodeSender(Protocol):
    """Delivers a text made here, with our own code (the terminal, Twilio SMS)."""

    async def send(self, mobile: str, body: str) -> None: ...


class CodeVerifier(Protocol):
    """Makes, sends and checks its own codes (Twilio Verify)."""

    async def start(self, mobile: str, locale: str) -> None: ...

    async def check(self, mobile: str, code: str) -> bool: ...


# The SMS names the service, says never to share the code, and carries no patient data.
def sms_body(language: Language, code: str, valid_seconds: int) -> str:
    return language.gettext(
        "{code} is your Ward Watch code, valid for {minutes} minutes. Never share it with "
        "anyone: hospital staff will never ask for it."
    ).format(code=code, minutes=language.number(valid_seconds // 60))


class Requested(StrEnum):
    ACCEPTED = "accepted"
    TOO_SOON = "too_soon"  # resend asked before otp.resend_after_seconds
    LIMITED = "limited"  # a per-number, per-chat or overall limit
    LOCKED = "locked"  # too many wrong tries for this chat and number


class Limit(StrEnum):
    """The limit a refused request reached (`otp` in config.yaml)."""

    NUMBER_PER_HOUR = "number_per_hour"  # codes for this number, from any chat, in an hour
    CHAT_PER_HOUR = "chat_per_hour"  # codes asked for in this chat in an hour
    NUMBERS_PER_DAY = "numbers_per_day"  # different numbers this chat tried in a day
    OVERALL = "overall"  # codes asked for in all chats in an hour


@dataclass(frozen=True)
class RequestOutcome:
    result: Requested
    wait_seconds: int = 0
    # Sends the code; to be started in the background once the challenge is committed.
    delivery: Callable[[], Awaitable[None]] | None = None
    limit: Limit | None = None  # LIMITED: which limit
    until: datetime | None = None  # LIMITED, LOCKED: when a request can pass again


class Checked(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    LOCKED = "locked"
    NO_CODE = "no_code"
    UNAVAILABLE = "unavailable"  # the provider could not check it now: no try is counted


@dataclass(frozen=True)
class CheckOutcome:
    result: Checked
    tries_left: int = 0
    until: datetime | None = None  # LOCKED: when a new code can be asked for this number again


def read_code(text: str, digits: int) -> str | None:
    """`123 456`, `১২৩৪৫৬`, `१२३-४५६` -> `123456`; None if it is not a code of `digits` digits."""
    compact = "".join(ascii_digits(text).split()).replace("-", "")
    return compact if len(compact) == digits and compact.isascii() and compact.isdigit() else None


# The statements of every code request and check, built once (docs/ARCHITECTURE.md says why).


@cache
def _latest_query():
    return (
        select(OtpChallenge)
        .where(OtpChallenge.chat_pseudonym == bindparam("chat"), OtpChallenge.mobile_pseudonym == bindparam("number"))
        .order_by(col(OtpChallenge.created_at).desc(), col(OtpChallenge.id).desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )


@cache
def _counts_query():
    """`OtpService._any_limit_reached`'s four counts."""
    in_hour = col(OtpChallenge.created_at) > bindparam("hour_ago")
    of_chat = col(OtpChallenge.chat_pseudonym) == bindparam("chat")
    of_number = col(OtpChallenge.mobile_pseudonym) == bindparam("number")
    # The different numbers the chat tried in the day, or none if this is one of them: trying
    # a number again is not trying one more.
    tried_this = func.count().filter(of_chat, of_number) > 0
    numbers_if_new = case(
        (tried_this, 0), else_=func.count(col(OtpChallenge.mobile_pseudonym).distinct()).filter(of_chat)
    )
    return select(
        func.count().filter(in_hour, of_number),
        func.count().filter(in_hour, of_chat),
        func.count().filter(in_hour),
        numbers_if_new,
    ).where(or_(in_hour, and_(of_chat, col(OtpChallenge.created_at) > bindparam("day_ago"))))


@cache
def _void_query():
    """Only the newest code of a chat and number is valid."""
    return (
        update(OtpChallenge)
        .where(
            col(OtpChallenge.chat_pseudonym) == bindparam("chat"),
            col(OtpChallenge.mobile_pseudonym) == bindparam("number"),
        )
        .values(voided=True)
    )


@cache
def _codes_lock_query():
    """PostgreSQL: the lock of all codes, until the transaction ends."""
    return select(func.pg_advisory_xact_lock(_CODES_LOCK))


@cache
def _chat_number_lock_query():
    """PostgreSQL: the lock of one chat's codes for one number, until the transaction ends."""
    return select(func.pg_advisory_xact_lock(_CHAT_NUMBER_LOCKS, bindparam("chat_number")))


@cache
def _write_lock_query():
    """A write that changes nothing: on SQLite it takes the single write lock."""
    return update(OtpChallenge).where(false()).values(voided=True)


class OtpService:
    def __init__(
        self,
        policy: OtpConfig,
        secret_key: bytes,
        clock: Callable[[], datetime],
        sender: CodeSender | None = None,
        verifier: CodeVerifier | None = None,
    ) -> None:
        if (sender is None) == (verifier is None):
            raise ValueError("give exactly one of sender and verifier")
        self.policy = policy
        self._secret_key = secret_key
        self._sender = sender
        self._verifier = verifier
        self._clock = clock

    def _hash(self, chat_key: str, mobile: str, code: str) -> str:
        return keyed_hash(self._secret_key, f"{chat_key}|{mobile}|{code}")

    def _pseudonyms(self, chat_key: str, mobile: str) -> tuple[str, str]:
        """How the code requests name this chat and this number."""
        return pseudonym(self._secret_key, chat_key), pseudonym(self._secret_key, mobile)

    @staticmethod
    async def _one_at_a_time(session: AsyncSession, chat: str, number: str, request: bool) -> None:
        """Hold the codes for this transaction: until the caller commits, no other request, and no
        check of this chat's code for this number (another web instance, another message answered
        at the same time), reads or changes them. Without it, guesses typed at once each saw the
        same count of wrong tries, a right code typed twice at once was accepted twice, and
        requests at once all passed the limits. A check reads and changes only its own chat's
        code for its number, so on PostgreSQL checks of other chats go on meanwhile: a check holds
        the codes until the turn commits, a whole verification and its cards later, and with one
        lock for all codes the checks of a busy hour queued behind each other (two web
        processes at 120 messages a second: seconds). A request takes the lock of all codes
        first, then its chat's and number's, always in that order."""
        dialect = session.bind.dialect.name if session.bind is not None else ""
        if dialect == "postgresql":
            if request:
                await session.exec(_codes_lock_query())
            chat_number = int.from_bytes(
                hashlib.blake2b(f"{chat}|{number}".encode(), digest_size=4).digest(), signed=True
            )
            await session.exec(_chat_number_lock_query(), params={"chat_number": chat_number})
        elif dialect == "sqlite":
            # A write, even one that changes nothing, takes SQLite's single write lock now rather
            # than at the first real write, after the counts were read.
            await session.exec(_write_lock_query())

    async def _latest(self, session: AsyncSession, chat: str, number: str) -> OtpChallenge | None:
        """The newest request of this chat for this number (both pseudonyms)."""
        return (await session.exec(_latest_query(), params={"chat": chat, "number": number})).first()

    @staticmethod
    async def _ends(
        session: AsyncSession, now: datetime, window: timedelta, allowed: int, *conditions
    ) -> datetime | None:
        """When fewer than `allowed` requests matching `conditions` will be left in the last
        `window` (the `allowed`-th newest leaves it); None while fewer already are."""
        query = (
            select(OtpChallenge.created_at)
            .where(OtpChallenge.created_at > now - window, *conditions)
            .order_by(col(OtpChallenge.created_at).desc())
            .offset(allowed - 1)
            .limit(1)
        )
        counted_last = (await session.exec(query)).first()
        return None if counted_last is None else counted_last + window

    async def _numbers_end(self, session: AsyncSession, chat: str, number: str, now: datetime) -> datetime | None:
        """When this chat may try one more number (`number` is not among those it tried in the
        last day); None if it may now."""
        day = timedelta(days=1)
        latest = func.max(OtpChallenge.created_at)
        tried = (
            await session.exec(
                select(OtpChallenge.mobile_pseudonym, latest)
                .where(OtpChallenge.chat_pseudonym == chat, OtpChallenge.created_at > now - day)
                .group_by(OtpChallenge.mobile_pseudonym)
                .order_by(latest.desc())
            )
        ).all()
        allowed = self.policy.max_numbers_per_chat_per_day
        if number in {tried_number for tried_number, _ in tried} or len(tried) < allowed:
            return None
        return tried[allowed - 1][1] + day

    async def _any_limit_reached(self, session: AsyncSession, chat: str, number: str, now: datetime) -> bool:
        """Would one more request pass a limit? All four counted in one statement: nearly every
        request passes none, and then `_limit`'s four statements, one per limit, would be spent
        on the reply path for nothing."""
        counting = {
            "chat": chat,
            "number": number,
            "hour_ago": now - timedelta(hours=1),
            "day_ago": now - timedelta(days=1),
        }
        number_hour, chat_hour, overall, chat_numbers = (await session.exec(_counts_query(), params=counting)).one()
        policy = self.policy
        return (
            number_hour >= policy.max_sends_per_number_per_hour
            or chat_hour >= policy.max_sends_per_chat_per_hour
            or overall >= policy.max_sends_per_hour
            or chat_numbers >= policy.max_numbers_per_chat_per_day
        )

    async def _limit(
        self, session: AsyncSession, chat: str, number: str, now: datetime
    ) -> tuple[Limit, datetime] | None:
        """The limit one more request of this chat for this number (both pseudonyms) would pass,
        and when it ends; of several, the one that ends last (the relative waits for all)."""
        if not await self._any_limit_reached(session, chat, number, now):
            return None
        hour, policy = timedelta(hours=1), self.policy
        ends = {
            Limit.NUMBER_PER_HOUR: await self._ends(
                session, now, hour, policy.max_sends_per_number_per_hour, OtpChallenge.mobile_pseudonym == number
            ),
            Limit.CHAT_PER_HOUR: await self._ends(
                session, now, hour, policy.max_sends_per_chat_per_hour, OtpChallenge.chat_pseudonym == chat
            ),
            Limit.NUMBERS_PER_DAY: await self._numbers_end(session, chat, number, now),
            Limit.OVERALL: await self._ends(session, now, hour, policy.max_sends_per_hour),
        }
        reached = [(until, limit) for limit, until in ends.items() if until is not None]
        if not reached:
            return None
        until, limit = max(reached)
        return limit, until

    async def request(
        self, session: AsyncSession, chat_key: str, mobile: str, registered: bool, language: Language
    ) -> RequestOutcome:
        """Ask for a code for `mobile` in this chat. The caller commits."""
        chat, number = self._pseudonyms(chat_key, mobile)
        await self._one_at_a_time(session, chat, number, request=True)
        now = self._clock()
        policy = self.policy
        previous = await self._latest(session, chat, number)
        carried_tries = 0
        if previous is not None and previous.created_at > now - timedelta(hours=policy.wrong_tries_window_hours):
            carried_tries = previous.wrong_tries
        # Locked first: waiting the resend delay would only lead to "locked" anyway.
        if previous is not None and carried_tries >= policy.max_wrong_tries:
            until = previous.created_at + timedelta(hours=policy.wrong_tries_window_hours)
            return RequestOutcome(Requested.LOCKED, until=until)
        if previous is not None:
            ready_at = previous.created_at + timedelta(seconds=policy.resend_after_seconds)
            if now < ready_at:
                return RequestOutcome(Requested.TOO_SOON, math.ceil((ready_at - now).total_seconds()))
        reached = await self._limit(session, chat, number, now)
        if reached is not None:
            limit, until = reached
            return RequestOutcome(Requested.LIMITED, limit=limit, until=until)

        # Only the newest code of a chat and number is valid.
        await session.exec(_void_query(), params={"chat": chat, "number": number})
        code = "".join(secrets.choice("0123456789") for _ in range(policy.digits))
        own_code = registered and self._verifier is None
        session.add(
            OtpChallenge(
                chat_pseudonym=chat,
                mobile_pseudonym=number,
                code_hash=self._hash(chat_key, mobile, code) if own_code else None,
                sent=registered,
                created_at=now,
                expires_at=now + timedelta(seconds=policy.valid_seconds),
                wrong_tries=carried_tries,
            )
        )
        if not registered:
            return RequestOutcome(Requested.ACCEPTED)
        sender, verifier = self._sender, self._verifier
        if sender is not None:
            body = sms_body(language, code, policy.valid_seconds)
            return RequestOutcome(Requested.ACCEPTED, delivery=lambda: sender.send(mobile, body))
        assert verifier is not None, "an OtpService has a sender or a verifier"
        return RequestOutcome(Requested.ACCEPTED, delivery=lambda: verifier.start(mobile, language.code))

    async def check(self, session: AsyncSession, chat_key: str, mobile: str, typed: str) -> CheckOutcome:
        """Check a typed code (already read with `read_code`). The caller commits."""
        chat, number = self._pseudonyms(chat_key, mobile)
        await self._one_at_a_time(session, chat, number, request=False)
        now = self._clock()
        challenge = await self._latest(session, chat, number)
        if challenge is None or challenge.used_at is not None:
            return CheckOutcome(Checked.NO_CODE)
        max_tries = self.policy.max_wrong_tries
        locked_until = challenge.created_at + timedelta(hours=self.policy.wrong_tries_window_hours)
        if challenge.voided or challenge.wrong_tries >= max_tries:
            return CheckOutcome(Checked.LOCKED, until=locked_until)
        if now >= challenge.expires_at:
            return CheckOutcome(Checked.EXPIRED)

        if not challenge.sent:
            right = False
        elif challenge.code_hash is not None:
            right = hmac.compare_digest(challenge.code_hash, self._hash(chat_key, mobile, typed))
        elif self._verifier is not None:
            try:
                right = await self._verifier.check(mobile, typed)
            except CheckUnavailable:
                return CheckOutcome(Checked.UNAVAILABLE)
        else:  # made by a provider that is no longer configured: it cannot be checked here
            right = False
        if right:
            challenge.used_at = now
            session.add(challenge)
            return CheckOutcome(Checked.OK)
        challenge.wrong_tries += 1
        session.add(challenge)
        if challenge.wrong_tries >= max_tries:
            challenge.voided = True
            return CheckOutcome(Checked.LOCKED, until=locked_until)
        return CheckOutcome(Checked.WRONG, max_tries - challenge.wrong_tries)
