"""Relatives' chats: where each conversation stands, codes asked for, verifications, subscriptions.

All of it lives in the database, per (channel, chat), so that a restart or a second process
continues every conversation where it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from models.enums import NotificationStatus
from models.tables import utcnow


class Chat(SQLModel, table=True):
    __tablename__ = "chat"
    __table_args__ = (UniqueConstraint("channel", "chat_key"),)

    id: int = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16, description="telegram, whatsapp or console")
    chat_key: str = Field(max_length=64, description="the channel's own id of the chat")
    language: str | None = Field(default=None, max_length=8)
    state: str = Field(default="new", max_length=24)
    # The number the relative typed, while a code is awaited. E.164.
    pending_mobile: str | None = Field(default=None, max_length=20)
    last_inbound_at: datetime | None = None
    # Quiet hours in hospital time, e.g. 22 and 7; routine news waits until they end.
    quiet_from: int | None = None
    quiet_until: int | None = None
    # The platform refused this chat for good (blocked the bot, chat gone): nothing more is sent.
    unreachable_at: datetime | None = None
    # No alerts at all, a new admission's notice included: the relative sent /stop, or the platform
    # refused the chat for good. Until /start or a new code.
    alerts_stopped: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Payloads of the buttons last offered, in order: on channels without buttons (WhatsApp) the
    # relative answers with the choice's number, which may arrive at another process.
    choices: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class InboundMessage(SQLModel, table=True):
    """A message id the platform gave, once handled. Inserted in the transaction of the turn it
    starts, so a message delivered twice (Twilio retries a webhook that timed out) is answered once,
    whichever process gets the second delivery; housekeeping purges old rows."""

    __tablename__ = "inbound_message"
    __table_args__ = (UniqueConstraint("channel", "message_id"),)

    id: int = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    message_id: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow, index=True)


class OtpChallenge(SQLModel, table=True):
    """One request for a code, whether or not a code was sent (only registered numbers get one).

    The chat and the number are kept only as pseudonyms (`bot.platform.security.pseudonym`): the
    limits must recognise them, nobody needs to read them. So the rows of a chat that /forget
    deleted name neither the chat nor the number, and still count: forgetting a chat cannot reset
    the limits on sending codes. Housekeeping purges them."""

    __tablename__ = "otp_challenge"
    __table_args__ = (
        Index("ix_otp_challenge_mobile_created", "mobile_pseudonym", "created_at"),
        Index("ix_otp_challenge_chat_created", "chat_pseudonym", "created_at"),
    )

    id: int = Field(default=None, primary_key=True)
    chat_pseudonym: str = Field(max_length=96, description="of channel:chat")
    mobile_pseudonym: str = Field(max_length=96, description="of the number in E.164")
    # Keyed hash bound to the chat and the number; None when the provider keeps the code
    # (Twilio Verify) or when nothing was sent because the number is not registered.
    code_hash: str | None = Field(default=None, max_length=64)
    sent: bool = False
    created_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime
    wrong_tries: int = 0
    used_at: datetime | None = None
    voided: bool = False


class Verification(SQLModel, table=True):
    """A chat proved it holds `mobile` at `verified_at`."""

    __tablename__ = "verification"

    id: int = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    mobile: str = Field(max_length=20)
    verified_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class Subscription(SQLModel, table=True):
    """A verified chat follows an admission: it may read its card and hears of its changes."""

    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("chat_id", "admission_id"),)

    id: int = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    admission_id: int = Field(foreign_key="admission.id", index=True)
    verification_id: int = Field(foreign_key="verification.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # /stop keeps the right to read the card but ends the alerts.
    alerts: bool = True


class Notification(SQLModel, table=True):
    """The outbox: one change to tell one chat about, added in the transaction that made the
    change. The dispatcher claims due rows, merges those of one chat and admission into one
    message with the latest state, sends, and marks them."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_due", "status", "priority", "created_at"),)

    id: int = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    admission_id: int = Field(foreign_key="admission.id", index=True)
    kind: str = Field(max_length=16, description="condition, status or digest")
    # 0: critical news, transfers and deaths (ahead in a queue, through quiet hours); 1: routine.
    priority: int = 1
    # What the relative knew before this change (condition, care area, support, status).
    before: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default=NotificationStatus.PENDING, max_length=12, description="pending, sent, dead, cancelled")
    attempts: int = 0
    # Not before this time: a retry's backoff, a 429's retry_after, the end of quiet hours.
    not_before: datetime | None = None
    claimed_until: datetime | None = None
    sent_at: datetime | None = None
    error: str | None = Field(default=None, max_length=300)
    # The platform's id of the message that carried it, and what the platform last reported of its
    # delivery (WhatsApp: "delivered", "read", "failed 63016"...).
    message_id: str | None = Field(default=None, max_length=64, index=True)
    delivery: str | None = Field(default=None, max_length=40)
    # WhatsApp refused the free text (63016, outside its 24-hour window): send the template.
    template_only: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class KeptLanguage(SQLModel, table=True):
    """The language a chat had chosen when /forget deleted it (`Chat`): the chat's next message is
    answered in it, and takes it back (the row is deleted then). Named only by the chat's
    pseudonym (`bot.relatives.access.chat_actor`), like the audit trail, never by its key."""

    __tablename__ = "kept_language"

    chat_pseudonym: str = Field(primary_key=True, max_length=96, description="of channel:chat")
    language: str = Field(max_length=8)
    kept_at: datetime = Field(default_factory=utcnow)
