"""SQLModel tables and the queries over them."""

from models.chat import Chat, OtpChallenge, Subscription, Verification
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
    "OtpChallenge", "Subscription", "Verification", "utcnow",
]  # fmt: skip
