"""What a hospital's admin changes about their hospital on the staff page: what relatives are
shown (vitals, the doctor's remarks), the helpline relatives are asked to call, and the API key
(a new one, shown once, as `python -m bot hospitals rotate-key` issues it); and the CSV files they
upload, kept from the preview of their import until they apply it. Staff accounts themselves are
`bot.staff.accounts`.

Every change is audited with the admin who made it; nothing here commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.intake.hospitals import rotate_key
from bot.platform.db import Database
from bot.platform.phones import PhoneNumberError, normalise_phone
from bot.staff.accounts import N_, StaffError
from models import Admission, Hospital
from models.audit import audit
from models.enums import AdmissionStatus
from models.staff import StaffAccount
from models.uploads import StaffUpload

# An upload not applied within this time is gone: its preview may no longer say what it would do.
UPLOAD_KEPT = timedelta(days=1)


async def staff_of(session: AsyncSession, hospital: Hospital) -> list[StaffAccount]:
    """The hospital's staff accounts, disabled ones too, by username."""
    result = await session.exec(
        select(StaffAccount).where(StaffAccount.hospital_id == hospital.id).order_by(col(StaffAccount.username))
    )
    return list(result.all())


async def account_of(session: AsyncSession, hospital: Hospital, account_id: int) -> StaffAccount | None:
    """One of the hospital's accounts; None for an unknown one and for another hospital's alike."""
    account = await session.get(StaffAccount, account_id)
    if account is None or account.hospital_id != hospital.id:
        return None
    return account


async def known_wards(session: AsyncSession, hospital: Hospital) -> list[str]:
    """The wards an account may be limited to: those of the patients admitted now, and those
    accounts already name."""
    admitted = await session.exec(
        select(Admission.ward)
        .where(Admission.hospital_id == hospital.id, Admission.status == AdmissionStatus.ADMITTED)
        .distinct()
    )
    named = await session.exec(select(StaffAccount.wards).where(StaffAccount.hospital_id == hospital.id))
    wards = {ward for ward in admitted.all() if ward} | {ward for names in named.all() for ward in names}
    return sorted(wards)


async def set_disclosure(
    session: AsyncSession, hospital: Hospital, show_vitals: bool, show_remarks: bool, by: str
) -> bool:
    """Whether relatives see the vitals and the doctor's remarks from now on; False when that was
    already so."""
    if (hospital.show_vitals, hospital.show_remarks) == (show_vitals, show_remarks):
        return False
    hospital.show_vitals = show_vitals
    hospital.show_remarks = show_remarks
    session.add(hospital)
    audit(session, by, "hospital.disclosure_changed", hospital.id, show_vitals=show_vitals, show_remarks=show_remarks)
    return True


async def set_helpline(session: AsyncSession, hospital: Hospital, helpline: str, region: str, by: str) -> bool:
    """The number relatives are asked to call, checked as `python -m bot hospitals add` checks it
    (any valid number of `region`: a helpline may be a landline); False when it is the same one.
    Raises StaffError."""
    try:
        helpline_e164 = normalise_phone(helpline, region)
    except PhoneNumberError:
        raise StaffError(N_("The helpline is not a phone number; write it as 033 2473 2222.")) from None
    if helpline_e164 == hospital.helpline:
        return False
    previous, hospital.helpline = hospital.helpline, helpline_e164
    session.add(hospital)
    audit(session, by, "hospital.helpline_changed", hospital.id, previous=previous, helpline=helpline_e164)
    return True


async def new_api_key(session: AsyncSession, secret_key: bytes, hospital: Hospital, by: str) -> str:
    """A new API key for the hospital's systems, to be shown once; the old one stops working when
    the caller commits."""
    issued = await rotate_key(session, secret_key, hospital.code, actor=by)
    return issued.api_key


# --- CSV uploads ----------------------------------------------------------------------------------


async def keep_upload(
    session: AsyncSession, account: StaffAccount, file_name: str, content: bytes, now: datetime
) -> StaffUpload:
    """Keep an uploaded file until its admin applies it; their upload before it is deleted."""
    await session.exec(delete(StaffUpload).where(col(StaffUpload.account_id) == account.id))
    upload = StaffUpload(
        account_id=account.id, hospital_id=account.hospital_id, file_name=file_name[:200], content=content,
        created_at=now,
    )  # fmt: skip
    session.add(upload)
    await session.flush()
    return upload


async def take_upload(
    session: AsyncSession, account: StaffAccount, upload_id: int, now: datetime
) -> tuple[str, bytes] | None:
    """The name and bytes of the account's upload, deleted in the caller's transaction: of two
    requests applying it at once (a double tap), one gets it. None when it is unknown, another
    account's, already applied or too old."""
    taken = await session.exec(
        delete(StaffUpload)
        .where(
            col(StaffUpload.id) == upload_id,
            col(StaffUpload.account_id) == account.id,
            col(StaffUpload.created_at) >= now - UPLOAD_KEPT,
        )
        .returning(col(StaffUpload.file_name), col(StaffUpload.content))
    )
    found = taken.first()
    return (found[0], found[1]) if found is not None else None


async def delete_old_uploads(database: Database, now: datetime) -> int:
    """Uploads nobody applied within `UPLOAD_KEPT`, with the patients' names and numbers they hold
    (the scheduler runs it hourly); how many."""
    async with database.writing(), database.session() as session:
        result = await session.exec(delete(StaffUpload).where(col(StaffUpload.created_at) < now - UPLOAD_KEPT))
        await session.commit()
        return result.rowcount
