"""Writing the audit trail: every disclosure and every change, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import AuditEvent, utcnow


def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    hospital_id: int | None,
    admission_id: int | None = None,
    channel: str | None = None,
    **detail: Any,
) -> None:
    session.add(AuditEvent(**audit_values(actor, action, hospital_id, admission_id, channel, **detail)))


def audit_values(
    actor: str,
    action: str,
    hospital_id: int | None,
    admission_id: int | None = None,
    channel: str | None = None,
    **detail: Any,
) -> dict[str, Any]:
    """The columns of one audit row, for a bulk insert (`audit` adds the same as an object)."""
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "hospital_id": hospital_id,
        "admission_id": admission_id,
        "channel": channel,
        "detail": detail,
    }
