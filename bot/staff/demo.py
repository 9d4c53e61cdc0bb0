"""Demo logins for the ward's page: a ward account and an admin account for each demo hospital
(`bot.intake.demo`), so that a newcomer running `make run` can log in at once.

Their passwords are public (printed at every local start) and need no change at first login; the
accounts exist only where the demo made the hospital. The hashes are Argon2 hashes of those
passwords made once with `accounts.password_hash`: loading the demo then costs no hashing time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.intake.demo import ACTOR, HOSPITALS
from models import AuditEvent, Hospital
from models.audit import audit
from models.staff import StaffAccount, StaffRole


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: StaffRole
    password_hash: str


DEMO_LOGINS = {
    "MRB": (
        DemoLogin("mrb.ward", "mrb-ward-demo", StaffRole.WARD, "$argon2id$v=19$m=65536,t=3,p=4$h15McItmkmuR3VcLVD9nPw$n1qptjqp+HLrz6LLJgZ+0hp/vcCKFKr5Z/S/EJmPrHE"),
        DemoLogin("mrb.admin", "mrb-admin-demo", StaffRole.ADMIN, "$argon2id$v=19$m=65536,t=3,p=4$jsr/x4mzxITYtYTX48IAhg$35Asb5dXtq+i01cCylUaff/UxPYTV/y/nOlB+ArDi4o"),
    ),
    "MCK": (
        DemoLogin("mck.ward", "mck-ward-demo", StaffRole.WARD, "$argon2id$v=19$m=65536,t=3,p=4$lDzETkXmmXJhA9bREsLfAA$kawsaoL1EiAC/tbfUfFue1wzHg5Uf9AV8dOyOEOirMI"),
        DemoLogin("mck.admin", "mck-admin-demo", StaffRole.ADMIN, "$argon2id$v=19$m=65536,t=3,p=4$UsX2WJSflDmPgYshPgOVAw$r3iJV11dyk4Vbo+FffK6C56IRYU3rf6XJgmICc5W4AQ"),
    ),
    "BID": (
        DemoLogin("bid.ward", "bid-ward-demo", StaffRole.WARD, "$argon2id$v=19$m=65536,t=3,p=4$S65/w2wM8VNs9ZPedQtj+w$QJm/51BChF0ldcCsbrd/kEzzJ/obx0QITdUHR10gb8A"),
        DemoLogin("bid.admin", "bid-admin-demo", StaffRole.ADMIN, "$argon2id$v=19$m=65536,t=3,p=4$BiFDcqgs26DKLEnbVg532w$1jUn2ma26AHdlyEknqJieuo7adM4BXaCzx9SX+8EYqs"),
    ),
}  # fmt: skip


async def add_demo_logins(session: AsyncSession, page_url: str) -> list[str]:
    """Add the demo logins that do not exist yet, for the demo hospitals the demo made, and commit.
    Returns the lines to show: where the page is, and each login."""
    made_by_demo = select(AuditEvent.hospital_id).where(
        AuditEvent.action == "hospital.added", AuditEvent.actor == ACTOR
    )
    hospitals = (
        await session.exec(
            select(Hospital).where(
                col(Hospital.code).in_([spec.code for spec in HOSPITALS]), col(Hospital.id).in_(made_by_demo)
            )
        )
    ).all()
    if not hospitals:
        return []
    existing = set((await session.exec(select(StaffAccount.username))).all())
    lines = [f"The ward's page: {page_url} (demo logins; ward staff see and update patients, the admin more):"]
    for hospital in sorted(hospitals, key=lambda hospital: hospital.code):
        logins = DEMO_LOGINS[hospital.code]
        for login in logins:
            if login.username not in existing:
                session.add(
                    StaffAccount(
                        username=login.username, hospital_id=hospital.id, role=login.role, wards=[],
                        password_hash=login.password_hash, must_change_password=False,
                    )
                )  # fmt: skip
                audit(session, ACTOR, "staff.added", hospital.id, username=login.username, role=login.role.value)
        lines.append(f"  {hospital.code}: " + ", ".join(f"{login.username} / {login.password}" for login in logins))
    await session.commit()
    return lines
