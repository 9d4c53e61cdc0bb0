"""SQLModel tables and the queries over them."""

from models.tables import (
    Admission,
    AlternateMobile,
    AuditEvent,
    ConditionUpdate,
    Hospital,
    utcnow,
)

__all__ = ["Admission", "AlternateMobile", "AuditEvent", "ConditionUpdate", "Hospital", "utcnow"]
