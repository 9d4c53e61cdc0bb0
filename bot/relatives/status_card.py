"""The status card: what a verified relative reads about one admission.

Only the minimum: condition, care area, breathing support, vitals and the doctor's remarks only
where the hospital allows them, and when the hospital last updated. A death is never announced
here: the card asks the relative to contact the hospital, with its helpline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.platform.i18n import Language
from bot.platform.phones import national
from bot.platform.settings import OverdueConfig
from bot.relatives.remarks import remark_text
from bot.relatives.replies import Reply, RichText
from models import Admission, ConditionUpdate, Hospital
from models.enums import AdmissionStatus, CareArea, Condition

MARKERS = {Condition.STABLE: "🟢", Condition.MODERATE: "🟡", Condition.CRITICAL: "🔴"}
INTENSIVE_CARE = {CareArea.HDU, CareArea.ICU, CareArea.CCU}
# The least time shown as passed since the last update.
MOMENT = timedelta(seconds=1)


def condition_name(language: Language, condition: str) -> str:
    _ = language.gettext
    return {
        Condition.STABLE: _("Stable"),
        Condition.MODERATE: _("Moderate"),
        Condition.CRITICAL: _("Critical"),
    }[Condition(condition)]


def care_area_name(language: Language, area: str) -> str:
    _ = language.gettext
    return {
        "ward": _("General ward"),
        "hdu": _("HDU (high dependency unit)"),
        "icu": _("ICU (intensive care unit)"),
        "ccu": _("CCU (coronary care unit)"),
    }[area]


def support_name(language: Language, support: str) -> str:
    _ = language.gettext
    return {
        "none": _("None, breathing without help"),
        "oxygen": _("Oxygen"),
        "hfnc": _("High-flow oxygen (HFNC)"),
        "niv": _("BiPAP, mask ventilation (NIV)"),
        "ventilator": _("Ventilator"),
    }[support]


def helpline_text(hospital: Hospital) -> str:
    """As people in India dial it: `033 2241 4901`."""
    return national(hospital.helpline)


def overdue_after(update: ConditionUpdate, limits: OverdueConfig) -> timedelta:
    if update.care_area in INTENSIVE_CARE:
        return timedelta(hours=limits.intensive_care)
    if update.condition == Condition.CRITICAL:
        return timedelta(hours=limits.critical)
    return timedelta(hours=limits.other)


@dataclass(frozen=True)
class CardData:
    hospital: Hospital
    admission: Admission
    latest: ConditionUpdate | None


def _name_key(name: str | None) -> str:
    """A hospital's name as a transfer's destination is matched to it: case and spaces around aside."""
    return (name or "").strip().lower()


async def transfer_destinations(session: AsyncSession, cards: Iterable[CardData]) -> dict[str, Hospital]:
    """The hospitals on Ward Watch that the transferred patients of `cards` were moved to, found
    by the name the sending hospital gave (`destination_of` picks a card's)."""
    names = {
        _name_key(card.admission.transferred_to)
        for card in cards
        if card.admission.status == AdmissionStatus.TRANSFERRED and card.admission.transferred_to
    }
    if not names:
        return {}
    result = await session.exec(select(Hospital).where(func.lower(Hospital.name).in_(names)))
    return {_name_key(hospital.name): hospital for hospital in result.all()}


def destination_of(card: CardData, destinations: dict[str, Hospital]) -> Hospital | None:
    """The hospital on Ward Watch the card's patient was moved to, among `transfer_destinations`."""
    return destinations.get(_name_key(card.admission.transferred_to))


def render_card(
    card: CardData, language: Language, now: datetime, limits: OverdueConfig, destination: Hospital | None = None
) -> Reply:
    """The card in `language` as of `now`. `destination`: the hospital a transferred patient went
    to, when it is on Ward Watch (whom to call then); otherwise the hospital that sent them away
    knows where they are, and its helpline is given."""
    _ = language.gettext
    hospital, admission, latest = card.hospital, card.admission, card.latest
    zone = ZoneInfo(hospital.time_zone)
    text = RichText()
    name = admission.patient_name

    if admission.status == AdmissionStatus.DECEASED:
        text.line(name, bold=True)
        text.line(
            _("For news of this patient, please contact {hospital} at {helpline}.").format(
                hospital=hospital.name, helpline=helpline_text(hospital)
            )
        )
        return text.reply()
    when = language.date(admission.status_at, zone) if admission.status_at else ""
    if admission.status == AdmissionStatus.DISCHARGED:
        text.line(name, bold=True)
        text.line("✅ " + _("Discharged from {hospital} on {date}.").format(hospital=hospital.name, date=when))
        return text.reply()
    if admission.status == AdmissionStatus.TRANSFERRED:
        text.line(name, bold=True)
        text.line(
            "➡️ "
            + _("Moved from {hospital} to {destination} on {date}.").format(
                hospital=hospital.name, destination=admission.transferred_to, date=when
            )
        )
        to_call = destination or hospital
        text.line(
            _("You can call {hospital} at {helpline}.").format(hospital=to_call.name, helpline=helpline_text(to_call))
        )
        return text.reply()

    if latest is None:
        text.line(name, bold=True)
        text.line(_where(language, hospital, admission))
        text.line(_("No condition update has been recorded yet."))
        return text.reply()

    text.line(f"{MARKERS[Condition(latest.condition)]} {name}: {condition_name(language, latest.condition)}", bold=True)
    text.line(_where(language, hospital, admission))
    if latest.care_area:
        text.line(_("Being treated in: {area}").format(area=care_area_name(language, latest.care_area)))
    if latest.respiratory_support:
        text.line(_("Breathing support: {support}").format(support=support_name(language, latest.respiratory_support)))
    if hospital.show_vitals:
        vitals = _vitals(language, latest)
        if vitals:
            text.line(vitals)
    if hospital.show_remarks and latest.remarks:
        text.line(_("Doctor's note: {remarks}").format(remarks=remark_text(language, latest.remarks)))
    elapsed = now - latest.recorded_at
    # Recorded this very second, or a little ahead by the hospital's clock (the API allows a few
    # minutes): "1 second ago", not "in 0 seconds" or "in 2 minutes".
    shown_elapsed = max(elapsed, MOMENT)
    text.line(
        _("Last updated {time} ({ago})").format(
            time=language.time(latest.recorded_at, zone), ago=language.ago(shown_elapsed)
        )
    )
    limit = overdue_after(latest, limits)
    if elapsed > limit:
        text.line(
            "⚠️ "
            + _(
                "The hospital has not sent a new update for a while (they usually update every "
                "{hours} hours). You can call {hospital} at {helpline}."
            ).format(
                hours=language.number(limit.total_seconds() / 3600),
                hospital=hospital.name,
                helpline=helpline_text(hospital),
            )
        )
    return text.reply()


def _where(language: Language, hospital: Hospital, admission: Admission) -> str:
    _ = language.gettext
    parts = [hospital.name]
    if admission.ward:
        parts.append(admission.ward)
    if admission.bed:
        parts.append(_("bed {bed}").format(bed=admission.bed))
    return ", ".join(parts)


def _vitals(language: Language, update: ConditionUpdate) -> str:
    _ = language.gettext
    n = language.number
    parts = []
    if update.spo2 is not None:
        parts.append(_("SpO2 {value}%").format(value=n(update.spo2)))
    if update.pulse is not None:
        parts.append(_("pulse {value}/min").format(value=n(update.pulse)))
    if update.bp_systolic is not None and update.bp_diastolic is not None:
        parts.append(
            _("BP {systolic}/{diastolic}").format(systolic=n(update.bp_systolic), diastolic=n(update.bp_diastolic))
        )
    if update.temperature_c is not None:
        fahrenheit = round(update.temperature_c * 9 / 5 + 32, 1)
        parts.append(
            _("temperature {value} °C ({fahrenheit} °F)").format(
                value=n(update.temperature_c), fahrenheit=n(fahrenheit)
            )
        )
    if update.resp_rate is not None:
        parts.append(_("breathing rate {value}/min").format(value=n(update.resp_rate)))
    if update.blood_sugar is not None:
        parts.append(_("blood sugar {value} mg/dL").format(value=n(update.blood_sugar)))
    return " · ".join(parts)
