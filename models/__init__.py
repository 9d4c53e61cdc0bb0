"""SQLModel tables and the queries over them."""

from models.chat import Chat, Notification, OtpChallenge, Subscription, Verification
from models.tables import (
    Admission,
    AlternateMobile,
    AuditEvent,
    ConditionUpdate,
    Hospital,
    utcnow,
)

__all__ = [
    "Admission", "AlternateMobile", "AuditEvent", "Chat", "ConditionUpdate", "Hospital",
    "Notification", "OtpChallenge", "Subscription", "Verification", "utcnow",
]  # fmt: skip
