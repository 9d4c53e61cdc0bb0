"""Files an admin uploaded on the staff page, kept from the preview of their import to its
application: "apply" imports the very bytes that were previewed, whichever web process answers it.
`bot.staff.admin` deletes each when it is applied, when its admin uploads another, and a day after."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class StaffUpload(SQLModel, table=True):
    __tablename__ = "staff_upload"

    id: int = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="staff_account.id", index=True)
    hospital_id: int = Field(foreign_key="hospital.id")
    file_name: str = Field(max_length=200)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)
