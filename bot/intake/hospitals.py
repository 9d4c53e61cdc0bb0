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
