"""What the dialogue hears and says, independent of any channel.

A channel adapter turns its platform's message into an `Inbound` and renders each `Reply` its own
way: Telegram as HTML with inline buttons, WhatsApp as text with numbered choices, the console as
plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Inbound:
    channel: str
    chat_key: str
    text: str | None = None
    command: str | None = None  # "start", "status", ... without the slash
    argument: str | None = None  # what follows the command: "22-7" of "/quiet 22-7"
    button: str | None = None  # the payload of a pressed button
    contact: str | None = None  # a shared phone number, already checked to be the sender's own
    foreign_contact: bool = False  # a shared contact that is not the sender's
    unsupported: bool = False  # sticker, photo, voice, ...
    language_hint: str | None = None  # e.g. Telegram's language_code
    # A number that may pick one of the buttons last offered (channels without buttons); `text`
    # holds the same message, read as an answer when it picks none.
    choice: int | None = None
    # The platform's id of the message, when it may deliver one twice: handled once.
    message_id: str | None = None


@dataclass(frozen=True)
class Span:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Button:
    label: str
    payload: str


@dataclass(frozen=True)
class Reply:
    spans: tuple[Span, ...]
    buttons: tuple[Button, ...] = ()
    # The label of a "share my number" button, on channels that have one.
    share_contact: str | None = None

    @classmethod
    def text(cls, text: str, buttons: tuple[Button, ...] = (), share_contact: str | None = None) -> Reply:
        return cls((Span(text),), buttons, share_contact)

    @property
    def plain(self) -> str:
        return "".join(span.text for span in self.spans)


@dataclass
class RichText:
    """Builds the spans of one reply, line by line."""

    spans: list[Span] = field(default_factory=list)

    def line(self, text: str = "", bold: bool = False) -> RichText:
        if self.spans:
            self.spans.append(Span("\n"))
        if text:
            self.spans.append(Span(text, bold))
        return self

    def add(self, text: str, bold: bool = False) -> RichText:
        self.spans.append(Span(text, bold))
        return self

    def reply(self, buttons: tuple[Button, ...] = ()) -> Reply:
        return Reply(tuple(self.spans), buttons)
