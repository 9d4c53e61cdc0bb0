"""What Ward Watch counts for its operators, without knowing how the counts are read.

The core and the adapters call a `Metrics` (`metrics.alert("telegram", "update", SENT)`); the
composition root (bot/app.py) gives them the one of its process, which handlers/metrics.py
exposes at `/metrics` in Prometheus' format. `Metrics` itself records nothing: it is what a
command of `python -m bot` that serves no metrics, or a part built without one, is given.

Labels carry only the fixed values named here, a channel, an alert's kind or a route's
template: never a phone number, a name, a chat or a registration number.
"""

from __future__ import annotations

# What became of an alert in a dispatcher's pass (`wardwatch_alerts_total{outcome}`).
SENT = "sent"
RETRIED = "retried"  # a temporary failure: tried again after its backoff
HELD = "held"  # waits without an attempt counted: a 429's retry_after, the chat's quiet hours
DEAD = "dead"  # refused for good, or out of attempts: `python -m bot outbox` lists it
CANCELLED = "cancelled"  # nothing to tell any more, or nobody to tell it to
# The kind of an alert that was never composed (cancelled or failed before it was).
UNKNOWN_KIND = "unknown"

# A one-time code handed to its provider, or not (`wardwatch_codes_total{outcome}`).
CODE_SENT = "sent"
CODE_FAILED = "failed"

# A staff member's login on the ward's page (`wardwatch_staff_logins_total{outcome}`).
LOGIN_SUCCESS = "success"
LOGIN_FAILURE = "failure"
LOGIN_LOCKED = "locked"  # refused without looking at the password: the account or the address waits


class Metrics:
    """The events an operator's dashboards count. This one records nothing."""

    def message_received(self, channel: str) -> None:
        """A relative's message arrived on `channel`."""

    def replies_sent(self, channel: str, replies: int, seconds: float) -> None:
        """`replies` replies to one message were handed to the platform, `seconds` after it arrived."""

    def alert(self, channel: str, kind: str, outcome: str) -> None:
        """An alert of `kind` (`bot.alerts.compose.alert_kind`, or the digest) ended a pass as `outcome`."""

    def rate_limited(self, channel: str) -> None:
        """The platform of `channel` answered 429: too many requests."""

    def send_retry(self, channel: str) -> None:
        """An alert that could not go out on `channel` now will be tried again."""

    def code(self, provider: str, outcome: str) -> None:
        """A one-time code was handed to `provider` (console, twilio_sms, twilio_verify), or failed to be."""

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """The web server answered a request of `route` (its path template) with `status`."""

    def staff_login(self, outcome: str) -> None:
        """A login on the ward's page succeeded, failed, or was refused as locked."""
