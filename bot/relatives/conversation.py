"""The relative's conversation, written once for every channel.

    new ──/start or any text──▶ awaiting_number ──number──▶ awaiting_code ──right code──▶ verified
                                      ▲                          │
                                      └──── "Change number" ─────┘

Each step is one method. The state of every chat is in the database (`models.chat.Chat`), so a
restart or a second process continues the conversation. Nothing here knows Telegram or Twilio:
adapters give an `Inbound` and render the `Reply`s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import outbox
from bot.platform.background import Background
from bot.platform.db import Database
from bot.platform.i18n import LANGUAGE_NAMES, Catalogues, Language
from bot.platform.logs import log_context
from bot.platform.phones import (
    PhoneNumberError,
    ascii_digits,
    mask,
    national,
    normalise_mobile,
)
from bot.platform.settings import FileConfig
from bot.relatives import access, commands, quiet_hours
from bot.relatives.otp import Checked, Limit, OtpService, Requested, read_code
from bot.relatives.replies import Button, Inbound, Reply
from bot.relatives.status_card import destination_of, render_card, transfer_destinations
from models import table_of, utcnow
from models.chat import Chat, InboundMessage, KeptLanguage, Subscription
from models.enums import AdmissionStatus
from models.tables import Admission

log = logging.getLogger(__name__)

# The payloads of the buttons that answer "Delete everything about this chat?".
FORGET_YES, FORGET_NO = "forget:yes", "forget:no"

# Longer than any number or code: a pasted letter, not an answer.
LONGEST_ANSWER = 200


class State(StrEnum):
    NEW = "new"
    AWAITING_NUMBER = "awaiting_number"
    AWAITING_CODE = "awaiting_code"
    VERIFIED = "verified"


@dataclass
class Turn:
    """One inbound message being answered."""

    session: AsyncSession
    chat: Chat
    language: Language
    now: datetime
    replies: list[Reply] = field(default_factory=list)
    after_commit: list[tuple[Callable[[], Awaitable[None]], str]] = field(default_factory=list)
    forgotten: bool = False

    @property
    def _(self) -> Callable[[str], str]:
        return self.language.gettext

    def say(self, text: str, *buttons: Button, share_contact: str | None = None) -> None:
        self.replies.append(Reply.text(text, tuple(buttons), share_contact))


class Conversation:
    # What a chat's first message writes; the rest of the row is empty until the dialogue fills it.
    _NEW_CHAT_FIELDS = ("channel", "chat_key", "language", "state", "alerts_stopped", "created_at", "updated_at")

    def __init__(
        self,
        database: Database,
        config: FileConfig,
        otp: OtpService,
        catalogues: Catalogues,
        background: Background,
        clock: Callable[[], datetime],
        secret_key: bytes,
    ) -> None:
        self._database = database
        self._dialect = postgresql if database.is_postgresql else sqlite  # for the chat's INSERT .. ON CONFLICT
        # Every message runs these two; built once, they are neither built nor keyed for
        # SQLAlchemy's statement cache again (a tenth of a turn's CPU when built per message).
        messages = table_of(InboundMessage)
        self._claim_message = (
            self._dialect.insert(messages)
            .values(channel=bindparam("channel"), message_id=bindparam("message_id"), received_at=bindparam("at"))
            .on_conflict_do_nothing()
            .returning(messages.c.id)
        )
        self._locked_chat = (
            select(Chat)
            .where(Chat.channel == bindparam("channel"), Chat.chat_key == bindparam("chat_key"))
            .with_for_update()
        )
        # A chat's first message: the row made and read back in one statement (its maker holds
        # it until the turn commits), or nothing when another turn made it first.
        self._new_chat = (
            self._dialect.insert(Chat)
            .values({name: bindparam(name) for name in self._NEW_CHAT_FIELDS})
            .on_conflict_do_nothing()
            .returning(Chat)
        )
        self._config = config
        self._otp = otp
        self._catalogues = catalogues
        self._background = background
        self._clock = clock
        self._secret_key = secret_key  # names the chat in the audit trail (`access.chat_actor`)

    async def handle(self, inbound: Inbound) -> list[Reply]:
        """Answer one message: read the chat's state, take the step, save, reply. A message
        already handled (same `message_id`) gets no reply and changes nothing."""
        chat = access.chat_actor(self._secret_key, inbound.channel, inbound.chat_key)
        with log_context(channel=inbound.channel, chat=chat):
            return await self._handle(inbound)

    def failed(self, language_hint: str | None) -> list[Reply]:
        """What a relative reads when their message could not be answered (the database not
        answering, a fault): to send it again, rather than nothing. In the language their app
        names, as the chat's own could not be read."""
        language = self._catalogues.get(self._catalogues.match(language_hint) or self._catalogues.default)
        return [
            Reply.text(
                language.gettext("Sorry, something went wrong on our side. Please send your message again in a minute.")
            )
        ]

    async def _handle(self, inbound: Inbound) -> list[Reply]:
        # One transaction per message, holding the chat's row (`_chat`) until it commits. On SQLite
        # the turn also waits for this process's other writers (`Database.writing`): SQLite lets one
        # writer in at a time, and turns of many chats at once would otherwise poll for its lock
        # past the busy timeout ("database is locked").
        async with self._database.writing(), self._database.session() as session:
            if inbound.message_id is not None and not await self._first_delivery(
                session, inbound.channel, inbound.message_id
            ):
                log.info("%s message %s already handled", inbound.channel, inbound.message_id)
                return []
            chat = await self._chat(session, inbound)
            turn = Turn(session, chat, self._catalogues.get(chat.language), self._clock())
            await self._route(turn, inbound)
            if not turn.forgotten:
                chat.last_inbound_at = chat.updated_at = turn.now
                # Writing to us proves the chat reachable again (an unblocked bot): /start resumes alerts.
                chat.unreachable_at = None
                chat.choices = _offered(turn.replies)
                session.add(chat)
            await session.commit()
        for delivery, what in turn.after_commit:
            self._background.start(delivery(), what)
        return turn.replies

    async def _first_delivery(self, session: AsyncSession, channel: str, message_id: str) -> bool:
        """Claim the message id in this turn's transaction, in one statement that inserts nothing
        for an id already claimed. A second delivery handled at the same time (another process)
        waits on the unique key until the first commits, then claims nothing; if the first rolls
        back, the second is handled."""
        claimed = await session.exec(
            self._claim_message, params={"channel": channel, "message_id": message_id, "at": utcnow()}
        )
        return claimed.first() is not None

    async def _chat(self, session: AsyncSession, inbound: Inbound) -> Chat:
        """The chat's row, locked until the turn commits: on PostgreSQL another process's message
        of the same chat waits for it, so that two turns never interleave one dialogue. A chat's
        first message creates the row; two first messages at once create it once (the unique key
        of channel and chat key decides, and the second turn locks the row the first made)."""
        key = {"channel": inbound.channel, "chat_key": inbound.chat_key}
        chat = (await session.exec(self._locked_chat, params=key)).first()
        if chat is None:
            language = self._catalogues.match(inbound.language_hint) or self._catalogues.default
            new = Chat(channel=inbound.channel, chat_key=inbound.chat_key, language=language)
            row = new.model_dump(include=set(self._NEW_CHAT_FIELDS))
            chat = (await session.exec(self._new_chat, params=row)).scalars().first()
            if chat is None:
                chat = (await session.exec(self._locked_chat, params=key)).one()
        return chat

    @staticmethod
    def _chat_key(chat: Chat) -> str:
        return f"{chat.channel}:{chat.chat_key}"

    # --- routing -------------------------------------------------------------------------------

    async def _route(self, turn: Turn, inbound: Inbound) -> None:
        if turn.chat.last_inbound_at is None:  # the chat's first message, perhaps after a /forget
            await self._take_kept_language(turn)
        if inbound.unsupported:
            return self._unsupported(turn)
        offered = turn.chat.choices or []
        if inbound.choice is not None and 1 <= inbound.choice <= len(offered):
            return await self._button(turn, offered[inbound.choice - 1])
        if inbound.command is not None:
            return await self._command(turn, inbound.command, inbound.argument)
        if inbound.button is not None:
            return await self._button(turn, inbound.button)
        if inbound.foreign_contact:
            return self._foreign_contact(turn)
        if inbound.contact is not None:
            return await self._receive_number(turn, inbound.contact)
        text = (inbound.text or "").strip()
        if len(text) > LONGEST_ANSWER:
            return self._too_long(turn)
        state = State(turn.chat.state)
        if state == State.AWAITING_CODE and read_code(text, self._otp.policy.digits) is not None:
            return await self._receive_code(turn, text)
        if state == State.AWAITING_NUMBER or _looks_like_a_number(text):
            return await self._receive_number(turn, text)
        if state == State.NEW:  # any first message starts the conversation (WhatsApp has no /start)
            return await self._start(turn)
        return self._hint(turn)

    async def _command(self, turn: Turn, name: str, argument: str | None = None) -> None:
        """The step `commands.COMMANDS` names for the command; the hint for a command it lacks."""
        command = commands.named(name)
        if command is None:
            return self._unknown_command(turn)
        step = getattr(self, command.step)
        await (step(turn, argument) if command.takes_argument else step(turn))

    async def _button(self, turn: Turn, payload: str) -> None:
        if payload.startswith("lang:"):
            return await self._choose_language(turn, payload.removeprefix("lang:"))
        steps = {
            "resend": self._resend,
            "change_number": self._change_number,
            "status": self._status,
            FORGET_YES: self._forget_confirmed,
            FORGET_NO: self._keep,
        }
        step = steps.get(payload)
        if step is None:
            return self._hint(turn)
        await step(turn)

    # --- steps ---------------------------------------------------------------------------------

    async def _start(self, turn: Turn) -> None:
        """/start: a verified chat sees its patients again (and alerts resume); others are asked
        for the admission number."""
        cards = await access.readable_cards(turn.session, turn.chat, turn.now, self._config.verification)
        if cards:
            in_hospital = [card.admission.id for card in cards if card.admission.status == AdmissionStatus.ADMITTED]
            were_off = await self._alerts_were_off(turn, in_hospital)
            await access.resume_alerts(turn.session, turn.chat)
            turn.chat.state = State.VERIFIED
            if were_off:
                turn.say(
                    turn._(
                        "Alerts are on again: I will message you here whenever the hospital records a "
                        "change. Send /stop to stop them."
                    )
                )
            return await self._show_cards(turn, cards)
        self._ask_number(turn, self._welcome(turn))

    @staticmethod
    def _welcome(turn: Turn) -> str:
        return turn._(
            "Welcome to Ward Watch. I can tell you how your relative in hospital is doing, "
            "and message you whenever the hospital records a change."
        )

    @staticmethod
    async def _alerts_were_off(turn: Turn, admission_ids: list[int]) -> bool:
        """Were the alerts about any of these admissions off for this chat (/stop, or a chat that
        had blocked the bot)?"""
        stopped = await turn.session.exec(
            select(Subscription.id).where(
                Subscription.chat_id == turn.chat.id,
                col(Subscription.admission_id).in_(admission_ids),
                Subscription.alerts == False,  # noqa: E712 - SQL, not a truth test
            )
        )
        return stopped.first() is not None

    def _ask_number(self, turn: Turn, opening: str | None = None) -> None:
        turn.chat.state = State.AWAITING_NUMBER
        turn.chat.pending_mobile = None
        ask = turn._("Please send the mobile number that was written down at admission, for example 98300 12345.")
        turn.say(f"{opening}\n\n{ask}" if opening else ask, share_contact=turn._("Share my number"))

    async def _receive_number(self, turn: Turn, text: str) -> None:
        """A number: the same answer whether or not it is registered; a code only if it is."""
        try:
            mobile = normalise_mobile(text, self._config.phone_region)
        except PhoneNumberError as error:
            return self._bad_number(turn, error)
        await self._request_code(turn, mobile)

    async def _request_code(self, turn: Turn, mobile: str) -> None:
        session, chat, _ = turn.session, turn.chat, turn._
        registered = await access.registered(session, mobile)
        outcome = await self._otp.request(session, self._chat_key(chat), mobile, registered, turn.language)
        if outcome.result in (Requested.LIMITED, Requested.LOCKED):
            assert outcome.until is not None, "the OtpService says when a refusal ends"
            if outcome.limit is not None:
                return self._limited(turn, outcome.limit, outcome.until)
            return self._locked(turn, outcome.until)
        chat.state, chat.pending_mobile = State.AWAITING_CODE, mobile
        if outcome.result == Requested.TOO_SOON:
            return turn.say(
                _("Please wait {seconds} seconds before asking for a new code.").format(
                    seconds=turn.language.number(outcome.wait_seconds)
                ),
                *self._code_buttons(turn),
            )
        if outcome.delivery is not None:
            turn.after_commit.append((outcome.delivery, f"code to {mask(mobile)}"))
        turn.say(
            _(
                "If {number} is the number given at admission, a {digits}-digit code is on its way "
                "to it by SMS. Please type the code here. It is valid for {minutes} minutes."
            ).format(
                number=turn.language.digits(national(mobile)),
                digits=turn.language.number(self._otp.policy.digits),
                minutes=turn.language.number(self._otp.policy.valid_seconds // 60),
            ),
            *self._code_buttons(turn),
        )

    async def _receive_code(self, turn: Turn, text: str) -> None:
        session, chat, _ = turn.session, turn.chat, turn._
        code = read_code(text, self._otp.policy.digits)
        if chat.pending_mobile is None or code is None:
            return self._hint(turn)
        outcome = await self._otp.check(session, self._chat_key(chat), chat.pending_mobile, code)
        if outcome.result == Checked.WRONG:
            return turn.say(
                turn.language.ngettext(
                    "That code is not right. You can try {count} more time.",
                    "That code is not right. You can try {count} more times.",
                    outcome.tries_left,
                ).format(count=turn.language.number(outcome.tries_left)),
                *self._code_buttons(turn),
            )
        if outcome.result == Checked.EXPIRED:
            return turn.say(_("That code has expired. Please ask for a new one."), *self._code_buttons(turn))
        if outcome.result == Checked.LOCKED:
            assert outcome.until is not None, "the OtpService says when a lockout ends"
            return self._locked(turn, outcome.until)
        if outcome.result == Checked.NO_CODE:
            return self._ask_number(turn)
        if outcome.result == Checked.UNAVAILABLE:
            return turn.say(_("Sorry, the code could not be checked just now. Please type it again in a minute."))

        admissions = await access.verify(session, chat, chat.pending_mobile, turn.now, self._config.verification)
        chat.state, chat.pending_mobile = State.VERIFIED, None
        if not admissions:
            return turn.say(_("Your number is confirmed, but no patient is admitted under it now."))
        self._confirmed(turn, admissions)
        await session.flush()
        await self._show_cards(turn, await access.readable_cards(session, chat, turn.now, self._config.verification))

    @staticmethod
    def _confirmed(turn: Turn, admissions: list[Admission]) -> None:
        """The number is confirmed: alerts are promised only for the patients still in hospital (a
        discharge, a transfer or a death was the last news; their cards follow)."""
        in_hospital = sum(admission.status == AdmissionStatus.ADMITTED for admission in admissions)
        count = turn.language.number(in_hospital)
        if in_hospital == len(admissions):
            return turn.say(
                turn.language.ngettext(
                    "Thank you, your number is confirmed. I will message you here whenever the hospital "
                    "records a change for this patient. Send /stop to stop these messages.",
                    "Thank you, your number is confirmed. I will message you here whenever the hospital "
                    "records a change for these {count} patients. Send /stop to stop these messages.",
                    in_hospital,
                ).format(count=count)
            )
        if in_hospital:
            return turn.say(
                turn.language.ngettext(
                    "Thank you, your number is confirmed. I will message you here whenever the hospital "
                    "records a change for the patient still in hospital. Send /stop to stop these "
                    "messages.",
                    "Thank you, your number is confirmed. I will message you here whenever the hospital "
                    "records a change for the {count} patients still in hospital. Send /stop to stop "
                    "these messages.",
                    in_hospital,
                ).format(count=count)
            )
        turn.say(turn._("Thank you, your number is confirmed. This is what the hospital recorded last:"))

    async def _status(self, turn: Turn) -> None:
        """/status: a fresh card for every patient this chat follows; no new code while verified."""
        cards = await access.readable_cards(turn.session, turn.chat, turn.now, self._config.verification)
        if cards:
            return await self._show_cards(turn, cards)
        if turn.chat.state == State.VERIFIED:
            return self._ask_number(
                turn,
                turn._("To protect the patient's privacy, please confirm your number again to keep seeing updates."),
            )
        return self._hint(turn)

    async def _show_cards(self, turn: Turn, cards: list[access.CardData]) -> None:
        # A patient moved to a hospital on Ward Watch: its helpline, as the alert of the move gave.
        destinations = await transfer_destinations(turn.session, cards)
        for card in cards:
            destination = destination_of(card, destinations)
            turn.replies.append(render_card(card, turn.language, turn.now, self._config.overdue_hours, destination))
            access.record_disclosure(turn.session, turn.chat, card, turn.now, self._secret_key)

    async def _stop(self, turn: Turn) -> None:
        stopped = await access.stop_alerts(turn.session, turn.chat)
        if not stopped:
            return turn.say(turn._("You have no alerts to stop."))
        turn.say(
            turn._(
                "You will get no more alerts. You can still send /status to see the patient. "
                "Send /start to get alerts again."
            )
        )

    async def _forget(self, turn: Turn) -> None:
        """/forget: asks first; only "Yes, delete" (`_forget_confirmed`) deletes."""
        _ = turn._
        turn.say(
            _(
                "Delete everything about this chat: the number you confirmed, the patients you follow "
                "and their alerts? To see a patient again you would need a new code."
            ),
            Button(_("Yes, delete"), FORGET_YES),
            Button(_("No, keep"), FORGET_NO),
        )

    async def _forget_confirmed(self, turn: Turn) -> None:
        """Deletes the chat, keeping only the language it chose (`KeptLanguage`), so that the reply
        and the next welcome are in it."""
        chat = turn.chat
        if chat.language is not None:
            pseudonym = access.chat_actor(self._secret_key, chat.channel, chat.chat_key)
            await turn.session.merge(KeptLanguage(chat_pseudonym=pseudonym, language=chat.language, kept_at=turn.now))
        await access.forget(turn.session, chat)
        turn.forgotten = True
        turn.say(turn._("Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."))

    async def _keep(self, turn: Turn) -> None:
        turn.say(turn._("Nothing was deleted."))
        self._hint(turn)

    async def _take_kept_language(self, turn: Turn) -> None:
        """A chat that /forget deleted writes again: it gets back the language it had chosen."""
        pseudonym = access.chat_actor(self._secret_key, turn.chat.channel, turn.chat.chat_key)
        kept = await turn.session.get(KeptLanguage, pseudonym)
        if kept is None:
            return
        if kept.language in self._catalogues.codes:
            turn.chat.language = kept.language
            turn.language = self._catalogues.get(kept.language)
        await turn.session.delete(kept)

    async def _help(self, turn: Turn) -> None:
        """What the bot is for, then one line per command of `commands.COMMANDS`."""
        intro = turn._(
            "I tell you how a patient is doing, once you confirm the mobile number given at "
            "admission with a code sent to it by SMS."
        )
        turn.say(f"{intro}\n{self._command_lines(turn)}")

    @staticmethod
    def _command_lines(turn: Turn) -> str:
        """One line per command of `commands.COMMANDS`: "/stop: no more alerts"."""
        return "\n".join(f"/{command.name}: {turn._(command.help_line)}" for command in commands.COMMANDS)

    def _unknown_command(self, turn: Turn) -> None:
        """A command the table lacks: the commands there are, then, until the chat is verified,
        what to do next."""
        turn.say(f"{turn._('I do not know that command. These are the commands I know:')}\n{self._command_lines(turn)}")
        if turn.chat.state != State.VERIFIED:
            self._hint(turn)

    async def _quiet(self, turn: Turn, argument: str | None) -> None:
        """/quiet 22-7, /quiet off, or /quiet alone to see them: hours in hospital time during
        which routine news waits (critical news, transfers and deaths never wait)."""
        _, chat = turn._, turn.chat
        if not argument:
            return self._show_quiet(turn)
        try:
            hours = quiet_hours.parse(argument)
        except quiet_hours.QuietHoursError as error:
            reason = {
                "range": _("Hours go from 0 to 23."),
                "whole_hours": _("Quiet hours begin and end on the hour, such as 22:00."),
                "same": _("The start and the end must be different hours."),
            }.get(error.kind, _("I could not read those hours."))
            example = _("Please send it like this: /quiet 22-7 (from 22:00 to 07:00), or /quiet off.")
            return turn.say(f"{reason} {example}")
        chat.quiet_from, chat.quiet_until = hours or (None, None)
        await self._release_held_news(turn)
        if hours is None:
            return turn.say(_("Quiet hours are off: news comes at any time."))
        turn.say(
            _(
                "Quiet hours set: from {start} to {end}, hospital time. Routine news waits until "
                "{end}; urgent news always comes at once. Send /quiet off to end them."
            ).format(**self._quiet_times(turn))
        )

    def _show_quiet(self, turn: Turn) -> None:
        if turn.chat.quiet_from is None or turn.chat.quiet_until is None:
            return turn.say(
                turn._(
                    "You have no quiet hours: news comes at any time. To keep routine news until "
                    "morning, send for example /quiet 22-7 (from 22:00 to 07:00, hospital time). "
                    "Urgent news always comes at once."
                )
            )
        turn.say(
            turn._(
                "Quiet hours: from {start} to {end}, hospital time. Routine news waits until {end}; "
                "urgent news always comes at once. Send /quiet off to end them, or for example "
                "/quiet 23-6 to change them."
            ).format(**self._quiet_times(turn))
        )

    @staticmethod
    def _quiet_times(turn: Turn) -> dict[str, str]:
        chat, digits = turn.chat, turn.language.digits
        return {
            "start": digits(quiet_hours.shown(chat.quiet_from or 0)),
            "end": digits(quiet_hours.shown(chat.quiet_until or 0)),
        }

    @staticmethod
    async def _release_held_news(turn: Turn) -> None:
        """News held back by the old quiet hours is looked at again under the new ones (those
        waiting for a retry keep waiting: they have attempts)."""
        await outbox.release_held(turn.session, turn.chat.id, turn.now)

    async def _ask_language(self, turn: Turn) -> None:
        buttons = [Button(LANGUAGE_NAMES[code], f"lang:{code}") for code in self._catalogues.codes]
        turn.say(turn._("Choose your language:"), *buttons)

    async def _choose_language(self, turn: Turn, code: str) -> None:
        if code not in self._catalogues.codes:
            return await self._ask_language(turn)
        turn.chat.language = code
        turn.language = self._catalogues.get(code)
        turn.say(turn._("I will write to you in English."))
        if turn.chat.state == State.NEW:  # the conversation begins here, in the language chosen
            return await self._start(turn)
        self._hint(turn)

    async def _cancel(self, turn: Turn) -> None:
        """/cancel: gives up a number or a code being asked for; says so when nothing is."""
        if turn.chat.state not in (State.AWAITING_NUMBER, State.AWAITING_CODE):
            turn.say(turn._("There is nothing to cancel."))
            return self._hint(turn)
        cards = await access.readable_cards(turn.session, turn.chat, turn.now, self._config.verification)
        turn.chat.state = State.VERIFIED if cards else State.NEW
        turn.chat.pending_mobile = None
        if cards:  # a change of number given up: the patients already confirmed stay
            turn.say(turn._("Cancelled."))
            return self._hint(turn)
        turn.say(turn._("Cancelled. Send /start to begin again."))

    async def _resend(self, turn: Turn) -> None:
        if turn.chat.state != State.AWAITING_CODE or turn.chat.pending_mobile is None:
            return self._hint(turn)
        await self._request_code(turn, turn.chat.pending_mobile)

    async def _change_number(self, turn: Turn) -> None:
        self._ask_number(turn)

    # --- answers that keep the chat where it is --------------------------------------------------

    def _locked(self, turn: Turn, until: datetime) -> None:
        """Too many wrong codes for this number in this chat: until when, and what helps now. The
        same words for a registered and an unregistered number (their code requests are alike)."""
        locked = turn._(
            "Too many wrong codes were typed for this number. No new code can be asked for it in "
            "this chat until {time} (hospital time)."
        ).format(time=self._hospital_time(turn, until))
        turn.say(f"{locked}\n\n{self._meanwhile(turn)}", self._change_number_button(turn))

    def _limited(self, turn: Turn, limit: Limit, until: datetime) -> None:
        """A limit on sending codes: which one, when it ends, and what helps now."""
        _ = turn._
        reason = {
            Limit.NUMBER_PER_HOUR: _("Too many codes have been asked for this number in the last hour."),
            Limit.CHAT_PER_HOUR: _("Too many codes have been asked for in this chat in the last hour."),
            Limit.NUMBERS_PER_DAY: _("This chat has tried as many different numbers as it may in 24 hours."),
            Limit.OVERALL: _("Ward Watch has sent as many codes as it may in an hour."),
        }[limit]
        when = _("You can ask for a code for this number from {time} (hospital time).").format(
            time=self._hospital_time(turn, until)
        )
        turn.say(f"{reason} {when}\n\n{self._meanwhile(turn)}")

    @staticmethod
    def _meanwhile(turn: Turn) -> str:
        """What a relative can do while codes are refused; it names no hospital, as nothing may
        tell before the code whether or where the number is registered."""
        return turn._(
            "Meanwhile: if the number given at admission is not your own, ask the ward staff to add "
            "your mobile number to the patient's record as an alternate number, then confirm it "
            "here. Or call the hospital."
        )

    def _hospital_time(self, turn: Turn, moment: datetime) -> str:
        """`moment` in hospital time, rounded up to the minute: at the minute shown it has passed."""
        whole_minute = moment.replace(second=0, microsecond=0)
        if whole_minute < moment:
            whole_minute += timedelta(minutes=1)
        return turn.language.time(whole_minute, ZoneInfo(self._config.hospital_time_zone))

    def _bad_number(self, turn: Turn, error: PhoneNumberError) -> None:
        _ = turn._
        reason = {
            "landline": _("That is a landline number; please send a mobile number."),
            "foreign": _("That is not an Indian mobile number."),
        }.get(error.kind, _("That does not look like a mobile number."))
        if turn.chat.state == State.NEW:  # a first message that was a number: the next is an answer too
            turn.chat.state = State.AWAITING_NUMBER
        turn.say(f"{reason} " + _("Please type it like this: 98300 12345."), share_contact=_("Share my number"))

    def _foreign_contact(self, turn: Turn) -> None:
        turn.say(
            turn._("Please share your own number, or type the admission mobile number."),
            share_contact=turn._("Share my number"),
        )

    def _unsupported(self, turn: Turn) -> None:
        turn.say(turn._("Sorry, I can only read text messages."))
        self._hint(turn)

    def _too_long(self, turn: Turn) -> None:
        if turn.chat.state == State.VERIFIED:  # no number or code is awaited: commands are what helps
            return turn.say(
                turn._(
                    "I cannot read long messages: I only answer commands. Send /status to see the latest "
                    "condition, or /help for everything I can do. For anything else, please call the hospital."
                )
            )
        turn.say(turn._("That message is too long for me. Please send only the number or the code."))

    def _hint(self, turn: Turn) -> None:
        """What to do next, for the step the chat is in."""
        _ = turn._
        state = State(turn.chat.state)
        if state == State.AWAITING_CODE:
            return turn.say(
                _("Please type the {digits}-digit code from the SMS.").format(
                    digits=turn.language.number(self._otp.policy.digits)
                ),
                *self._code_buttons(turn),
            )
        if state == State.VERIFIED:
            return turn.say(_("Send /status to see the latest condition, or /help for everything I can do."))
        # A new chat is welcomed once, whatever its first message; the next is read as the answer.
        self._ask_number(turn, self._welcome(turn) if state == State.NEW else None)

    def _code_buttons(self, turn: Turn) -> tuple[Button, Button]:
        return Button(turn._("Send a new code"), "resend"), self._change_number_button(turn)

    @staticmethod
    def _change_number_button(turn: Turn) -> Button:
        return Button(turn._("Change number"), "change_number")


def _offered(replies: list[Reply]) -> list[str] | None:
    """The payloads of the last buttons offered (each reply numbers its own from 1, so the last
    ones are those a number answers), or None when this turn offered none."""
    offered = [reply.buttons for reply in replies if reply.buttons]
    return [button.payload for button in offered[-1]] if offered else None


def _looks_like_a_number(text: str) -> bool:
    """Ten or more digits: a phone number rather than a code or a question."""
    return sum(char.isdigit() for char in ascii_digits(text)) >= 10
