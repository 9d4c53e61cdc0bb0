"""What an alert says: what changed since the relative last heard, then the card as it is now.

Several pending changes for one chat and admission become one alert: it compares what the
relative knew before the first of them with the latest state, so a change the hospital corrected
back within the grace period says nothing at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.outbox import snapshot
from bot.platform.i18n import Language
from bot.platform.settings import OverdueConfig
from bot.relatives.replies import Reply, RichText, Span
from bot.relatives.status_card import (
    CardData,
    care_area_name,
    condition_name,
    helpline_text,
    render_card,
    support_name,
)
from models import Hospital
from models.enums import AdmissionStatus

NOTHING = "-"  # WhatsApp refuses a template variable left empty


def what_changed(language: Language, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """`["Moderate → Critical", "moved to ICU (intensive care unit)", "now on oxygen"]`, in the
    relative's language."""
    parts = []
    if after["condition"] and before["condition"] != after["condition"]:
        if before["condition"]:
            parts.append(
                f"{condition_name(language, before['condition'])} → {condition_name(language, after['condition'])}"
            )
        else:
            parts.append(condition_name(language, after["condition"]))
    if after["care_area"] and before["care_area"] != after["care_area"]:
        parts.append(_moved_to(language, after["care_area"]))
    if after["respiratory_support"] and before["respiratory_support"] != after["respiratory_support"]:
        parts.append(_now_on(language, after["respiratory_support"]))
    return parts


# Phrases of their own rather than the card's names inside "moved to {area}": the card's "General
# ward" and "Oxygen" are headings, and a sentence needs "the general ward" and "oxygen".
def _moved_to(language: Language, area: str) -> str:
    _ = language.gettext
    return {
        "ward": _("moved to the general ward"),
        "hdu": _("moved to HDU (high dependency unit)"),
        "icu": _("moved to ICU (intensive care unit)"),
        "ccu": _("moved to CCU (coronary care unit)"),
    }[area]


def _now_on(language: Language, support: str) -> str:
    _ = language.gettext
    return {
        "none": _("no longer needs help to breathe"),
        "oxygen": _("now on oxygen"),
        "hfnc": _("now on high-flow oxygen (HFNC)"),
        "niv": _("now on BiPAP mask ventilation (NIV)"),
        "ventilator": _("now on a ventilator"),
    }[support]


def compose_alert(
    card: CardData,
    before: dict[str, Any],
    language: Language,
    now: datetime,
    limits: OverdueConfig,
    destination: Hospital | None = None,
) -> Reply | None:
    """The alert for the changes since `before`, or None when, in the end, nothing changed."""
    _ = language.gettext
    admission = card.admission
    after = snapshot(card.latest, admission.status)
    if after == before:
        return None
    current = render_card(card, language, now, limits, destination)
    if admission.status == AdmissionStatus.DECEASED:
        return current  # no details: only the request to contact the hospital
    text = RichText()
    if admission.status == AdmissionStatus.DISCHARGED:
        text.spans.extend(current.spans)
        text.line(_("This is the last message about this patient. We wish them well."))
        return text.reply()
    if admission.status == AdmissionStatus.TRANSFERRED:
        return current  # the card gives the helpline to call
    changes = what_changed(language, before, after)
    header = _("Update on {name}").format(name=admission.patient_name)
    if changes:
        header += ": " + ", ".join(changes)
    return Reply((Span("🔔 " + header, bold=True), Span("\n\n"), *current.spans))


def alert_kind(card: CardData) -> str:
    """Which of `bot.platform.settings.ALERT_KINDS` (but the digest) an alert about this card is."""
    return {
        AdmissionStatus.DISCHARGED: "discharge",
        AdmissionStatus.TRANSFERRED: "transfer",
        AdmissionStatus.DECEASED: "death",
    }.get(AdmissionStatus(card.admission.status), "update")


def template_fields(
    card: CardData, before: dict[str, Any], language: Language, destination: Hospital | None = None
) -> dict[str, str]:
    """The values of `bot.platform.settings.TEMPLATE_FIELDS` for this alert, in the relative's language. `hospital` and
    `helpline` are whom to call: after a transfer, the new hospital when it is one of ours."""
    admission, latest = card.admission, card.latest
    to_call = destination or card.hospital
    fields = {"patient": admission.patient_name, "hospital": to_call.name, "helpline": helpline_text(to_call)}
    if admission.status == AdmissionStatus.DECEASED:
        return fields
    zone = ZoneInfo(card.hospital.time_zone)
    after = snapshot(latest, admission.status)
    return fields | {
        "changes": ", ".join(what_changed(language, before, after)) or NOTHING,
        "condition": condition_name(language, latest.condition) if latest else NOTHING,
        "care_area": care_area_name(language, latest.care_area) if latest and latest.care_area else NOTHING,
        "support": support_name(language, latest.respiratory_support)
        if latest and latest.respiratory_support
        else NOTHING,
        "updated_at": language.time(latest.recorded_at, zone) if latest else NOTHING,
    }
