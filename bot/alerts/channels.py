"""What the dispatcher asks of a channel: an `Alert` to send, a `Sender` that sends it at its
`Pacer`'s pace, and the four ways a send can fail, in the dispatcher's terms. Each channel's
adapter (handlers/) turns its platform's refusals into these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.alerts.pacing import Pacer
from bot.relatives.replies import Reply


class RetryLater(Exception):
    """The platform asked us to slow down (HTTP 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


class TemporaryFailure(Exception):
    """A timeout, a network error or a server error: worth another try later."""


class PermanentFailure(Exception):
    """The chat can never receive messages again (blocked, deactivated, not found, opted out)."""


class NotConfigured(Exception):
    """This alert needs what the channel lacks in this configuration (a WhatsApp template): kept
    as dead with the reason, the chat still reachable, until the operator configures it and puts
    it back (`python -m bot outbox --retry`)."""


@dataclass(frozen=True)
class Alert:
    """One alert for one chat: its text, and what fills a template in its stead on a channel that
    needs one (WhatsApp, more than 24 hours after the relative's last message)."""

    chat_key: str
    reply: Reply
    kind: str  # bot.platform.settings.ALERT_KINDS
    language: str
    fields: dict[str, str]  # bot.alerts.compose.template_fields; empty for a sender without templates
    last_inbound_at: datetime | None = None  # when the relative last wrote to us
    template_only: bool = False  # the platform refused the text outside its window: resent


class Sender(Protocol):
    channel: str
    pacer: Pacer
    # Whether `Alert.fields` may be read (a template in the text's stead): only then does the
    # dispatcher compose them, a sixth of its work per alert.
    uses_templates: bool

    async def send(self, alert: Alert) -> str | None:
        """Send it; the platform's id of the message when its delivery is reported later."""
