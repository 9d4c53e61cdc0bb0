"""What a staff member sees of their hospital: the patients of their wards, most overdue first.

An update is due by the `overdue_hours` rules relatives already see (`overdue_after`: ICU, HDU and
CCU, then critical, then the rest); a patient with no update yet is due from admission. A staff
member whose account names wards sees only the patients of those wards; another hospital's
patient, or another ward's, is not found at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.phones import ascii_digits
from bot.platform.settings import OverdueConfig
from bot.relatives.status_card import overdue_after
from models import Admission, AlternateMobile, Chat, ConditionUpdate, Subscription
from models.enums import AdmissionStatus
from models.queries import latest_updates
from models.staff import StaffAccount

# Fewer digits than this are not a mobile number's end but part of a registration number.
MOBILE_DIGITS_SEARCHED = 3
SEARCH_LENGTH = 100


@dataclass(frozen=True)
class WardPatient:
    admission: Admission
    latest: ConditionUpdate | None
    due_at: datetime  # when the next update is due

    def overdue(self, now: datetime) -> bool:
        return now > self.due_at

    @property
    def last_update_at(self) -> datetime | None:
        return self.latest.recorded_at if self.latest else None


def due_at(admission: Admission, latest: ConditionUpdate | None, limits: OverdueConfig) -> datetime:
    if latest is None:
        return admission.admitted_at or admission.created_at
    return latest.recorded_at + overdue_after(latest, limits)


def _in_wards(account: StaffAccount):
    return col(Admission.ward).in_(account.wards) if account.wards else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(text: str):
    """Name or registration number containing `text`, or a mobile number ending with its digits."""
    text = " ".join(text.split())[:SEARCH_LENGTH]
    if not text:
        return None
    matches = [
        col(Admission.patient_name).ilike(_like(text), escape="\\"),
        col(Admission.registration_no).ilike(_like(text), escape="\\"),
    ]
    digits = "".join(char for char in ascii_digits(text) if char.isdigit())
    if len(digits) >= MOBILE_DIGITS_SEARCHED and not any(char.isalpha() for char in text):
        ending = f"%{digits}"
        alternates = select(AlternateMobile.admission_id).where(col(AlternateMobile.mobile).like(ending))
        matches += [col(Admission.contact_mobile).like(ending), col(Admission.id).in_(alternates)]
    return or_(*matches)


async def ward_patients(
    session: AsyncSession,
    account: StaffAccount,
    limits: OverdueConfig,
    search: str = "",
) -> list[WardPatient]:
    """The admitted patients the account sees (matching `search`, when given), most overdue first."""
    query = select(Admission).where(
        Admission.hospital_id == account.hospital_id, Admission.status == AdmissionStatus.ADMITTED
    )
    for condition in (_in_wards(account), _search(search)):
        if condition is not None:
            query = query.where(condition)
    admissions = list((await session.exec(query)).all())
    latest = await latest_updates(session, [admission.id for admission in admissions])
    patients = [
        WardPatient(admission, latest.get(admission.id), due_at(admission, latest.get(admission.id), limits))
        for admission in admissions
    ]
    patients.sort(key=lambda patient: (patient.due_at, patient.admission.patient_name, patient.admission.id))
    return patients


async def find_patient(session: AsyncSession, account: StaffAccount, registration_no: str) -> Admission | None:
    """The admission if the account may see it: of its hospital and, if it names wards, of one of them."""
    query = select(Admission).where(
        Admission.hospital_id == account.hospital_id, Admission.registration_no == registration_no
    )
    in_wards = _in_wards(account)
    if in_wards is not None:
        query = query.where(in_wards)
    return (await session.exec(query)).first()


def may_admit_to(account: StaffAccount, ward: str | None) -> bool:
    return not account.wards or ward in account.wards


async def following(session: AsyncSession, admission_id: int) -> int:
    """How many chats would be told of a change to this admission now."""
    result = await session.exec(
        select(func.count())
        .select_from(Subscription)
        .join(Chat, col(Chat.id) == col(Subscription.chat_id))
        .where(
            Subscription.admission_id == admission_id,
            Subscription.alerts,
            col(Chat.unreachable_at).is_(None),
        )
    )
    return result.one()


async def update_before(session: AsyncSession, update: ConditionUpdate) -> ConditionUpdate | None:
    """The update that was the latest when `update` was recorded (withdrawn ones left out)."""
    result = await session.exec(
        select(ConditionUpdate)
        .where(
            ConditionUpdate.admission_id == update.admission_id,
            col(ConditionUpdate.retracted_at).is_(None),
            col(ConditionUpdate.id) != update.id,
            or_(
                col(ConditionUpdate.recorded_at) < update.recorded_at,
                and_(col(ConditionUpdate.recorded_at) == update.recorded_at, col(ConditionUpdate.id) < update.id),
            ),
        )
        .order_by(col(ConditionUpdate.recorded_at).desc(), col(ConditionUpdate.id).desc())
        .limit(1)
    )
    return result.first()


async def recent_updates(session: AsyncSession, admission_id: int, limit: int = 5) -> list[ConditionUpdate]:
    result = await session.exec(
        select(ConditionUpdate)
        .where(ConditionUpdate.admission_id == admission_id)
        .order_by(col(ConditionUpdate.recorded_at).desc(), col(ConditionUpdate.id).desc())
        .limit(limit)
    )
    return list(result.all())
