"""Hospitals: registering them, their API keys, and recognising a key on a request."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.phones import PhoneNumberError, normalise_phone
from bot.platform.security import hospital_code_of, key_matches, keyed_hash, new_api_key
from bot.platform.settings import Settings
from models import Hospital, utcnow
from models.audit import audit

CODE_PATTERN = re.compile(r"^[A-Z0-9-]{2,16}$")


class HospitalError(ValueError):
    """A refused admin request; the message says why."""


@dataclass
class IssuedKey:
    hospital: Hospital
    api_key: str  # shown once, never stored


async def get_hospital(session: AsyncSession, code: str) -> Hospital | None:
    result = await session.exec(select(Hospital).where(Hospital.code == code.upper()))
    return result.first()


async def list_hospitals(session: AsyncSession) -> list[Hospital]:
    return list((await session.exec(select(Hospital).order_by(col(Hospital.code)))).all())


async def add_hospital(
    session: AsyncSession,
    settings: Settings,
    secret_key: bytes,
    code: str,
    name: str,
    helpline: str,
    district: str | None = None,
    actor: str = "cli",
) -> IssuedKey:
    code = code.strip().upper()
    if not CODE_PATTERN.match(code):
        raise HospitalError("code: 2-16 letters, digits or dashes, e.g. MRB")
    if not name.strip():
        raise HospitalError("name: must not be empty")
    try:
        helpline_e164 = normalise_phone(helpline, settings.config.phone_region)
    except PhoneNumberError as exc:
        raise HospitalError(f"helpline: {exc}") from None
    if await get_hospital(session, code) is not None:
        raise HospitalError(f"code: hospital {code} already exists (use rotate-key for a new key)")
    api_key = new_api_key(code)
    policy = settings.config.disclosure_defaults
    hospital = Hospital(
        code=code,
        name=name.strip(),
        district=(district or "").strip() or None,
        helpline=helpline_e164,
        time_zone=settings.config.hospital_time_zone,
        api_key_hash=keyed_hash(secret_key, api_key),
        show_vitals=policy.show_vitals,
        show_remarks=policy.show_remarks,
    )
    session.add(hospital)
    await session.flush()
    audit(session, actor, "hospital.added", hospital.id)
    return IssuedKey(hospital, api_key)


async def rotate_key(session: AsyncSession, secret_key: bytes, code: str, actor: str = "cli") -> IssuedKey:
    hospital = await get_hospital(session, code)
    if hospital is None:
        raise HospitalError(f"code: no hospital {code.upper()}")
    api_key = new_api_key(hospital.code)
    hospital.api_key_hash = keyed_hash(secret_key, api_key)
    hospital.api_key_issued_at = utcnow()
    session.add(hospital)
    audit(session, actor, "hospital.key_rotated", hospital.id)
    return IssuedKey(hospital, api_key)


async def change_hospital(
    session: AsyncSession,
    settings: Settings,
    code: str,
    helpline: str | None = None,
    show_vitals: bool | None = None,
    show_remarks: bool | None = None,
    actor: str = "cli",
) -> tuple[Hospital, list[str]]:
    """Set what a hospital's relatives see (vitals, the doctor's remarks) and the helpline they are
    asked to call; None leaves that one as it is. The hospital and what changed ("helpline",
    "vitals", "remarks"). Each change is audited as the admin's page audits it."""
    hospital = await get_hospital(session, code)
    if hospital is None:
        raise HospitalError(f"code: no hospital {code.strip().upper()}")
    changed: list[str] = []
    if helpline is not None:
        try:
            helpline_e164 = normalise_phone(helpline, settings.config.phone_region)
        except PhoneNumberError as exc:
            raise HospitalError(f"helpline: {exc}") from None
        if helpline_e164 != hospital.helpline:
            previous, hospital.helpline = hospital.helpline, helpline_e164
            audit(session, actor, "hospital.helpline_changed", hospital.id, previous=previous, helpline=helpline_e164)
            changed.append("helpline")
    before = {"vitals": hospital.show_vitals, "remarks": hospital.show_remarks}
    after = {
        "vitals": before["vitals"] if show_vitals is None else show_vitals,
        "remarks": before["remarks"] if show_remarks is None else show_remarks,
    }
    if after != before:
        changed += [name for name in before if after[name] != before[name]]
        hospital.show_vitals, hospital.show_remarks = after["vitals"], after["remarks"]
        audit(
            session, actor, "hospital.disclosure_changed", hospital.id,
            show_vitals=hospital.show_vitals, show_remarks=hospital.show_remarks,
        )  # fmt: skip
    session.add(hospital)
    return hospital, changed


async def hospital_for_key(session: AsyncSession, secret_key: bytes, api_key: str) -> Hospital | None:
    """The hospital this key belongs to, or None. The key names its hospital; the stored hash is
    compared in constant time so that a wrong key teaches nothing about the right one."""
    code = hospital_code_of(api_key)
    if code is None or not CODE_PATTERN.match(code):
        return None
    hospital = await get_hospital(session, code)
    if hospital is None or not key_matches(secret_key, api_key, hospital.api_key_hash):
        return None
    return hospital
