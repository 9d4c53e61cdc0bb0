"""SQLModel tables and the queries over them."""

from models.chat import (
    Chat,
    InboundMessage,
    Notification,
    OtpChallenge,
    Subscription,
    Verification,
)
from models.heartbeat import Heartbeat
from models.staff import StaffAccount, StaffLoginAddress
from models.tables import (
    Admission,
    AlternateMobile,
    AuditEvent,
    ConditionUpdate,
    Hospital,
    table_of,
    utcnow,
)
from models.uploads import StaffUpload

__all__ = [
    "Admission", "AlternateMobile", "AuditEvent", "Chat", "ConditionUpdate", "Heartbeat", "Hospital", "InboundMessage",
    "Notification", "OtpChallenge", "StaffAccount", "StaffLoginAddress", "StaffUpload", "Subscription", "Verification",
    "table_of", "utcnow",
]  # fmt: skip
