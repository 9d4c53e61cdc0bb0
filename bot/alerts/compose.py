"""What an alert says: what changed since the relative last heard, then the card as it is now.

Several pending changes for one chat and admission become one alert: it compares what the
relative knew before the first of them with the latest state, so a change the hospital corrected
back within the grace period says nothing at all. When what the relative knew was an update the
hospital withdrew later, the alert says so: the message they read was entered in error.
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
    corrected_at: datetime | None = None,
) -> Reply | None:
    """The alert for the changes since `before`, or None when, in the end, nothing changed.
    `corrected_at`: `before` is a withdrawn update, last shown to the relative at that time."""
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
    if corrected_at is not None:
        return _correction(card, language, corrected_at, current)
    changes = what_changed(language, before, after)
    header = _("Update on {name}").format(name=admission.patient_name)
    if changes:
        header += ": " + ", ".join(changes)
    return Reply((Span("🔔 " + header, bold=True), Span("\n\n"), *current.spans))


def _correction(card: CardData, language: Language, corrected_at: datetime, current: Reply) -> Reply:
    """Says that the message the relative read at `corrected_at` was wrong, before the card: told
    as a plain change, a withdrawn "Moderate → Stable" would read as a deterioration."""
    _ = language.gettext
    zone = ZoneInfo(card.hospital.time_zone)
    header = _("Correction: the message at {time} about {name} was entered in error.").format(
        time=language.time(corrected_at, zone), name=card.admission.patient_name
    )
    spans = [Span("⚠️ " + header, bold=True)]
    if card.latest is not None:
        condition = condition_name(language, card.latest.condition)
        spans.append(Span(" " + _("The current condition is {condition}.").format(condition=condition)))
    return Reply((*spans, Span("\n\n"), *current.spans))


def new_admission_notice(language: Language) -> Reply:
    """For a chat that confirmed a number under which a new admission was recorded. It names
    neither the patient nor the hospital: those are for whoever holds the number now, which only a
    new code proves."""
    _ = language.gettext
    return Reply(
        (
            Span("🔔 " + _("A new admission has been recorded under the mobile number you confirmed here."), bold=True),
            Span("\n"),
            Span(
                _(
                    "To see it, send me that number again and type the new code from the SMS: /status will "
                    "then show it too."
                )
            ),
        )
    )


def alert_kind(card: CardData, corrected_at: datetime | None = None) -> str:
    """Which of `bot.platform.settings.ALERT_KINDS` (but the digest) an alert about this card is;
    `corrected_at` as `compose_alert` takes it."""
    status = AdmissionStatus(card.admission.status)
    if status == AdmissionStatus.ADMITTED and corrected_at is not None:
        return "correction"
    return {
        AdmissionStatus.DISCHARGED: "discharge",
        AdmissionStatus.TRANSFERRED: "transfer",
        AdmissionStatus.DECEASED: "death",
    }.get(status, "update")


def template_fields(
    card: CardData,
    before: dict[str, Any],
    language: Language,
    destination: Hospital | None = None,
    corrected_at: datetime | None = None,
) -> dict[str, str]:
    """The values of `bot.platform.settings.TEMPLATE_FIELDS` for this alert, in the relative's language. `hospital` and
    `helpline` are whom to call: after a transfer, the new hospital when it is one of ours; `corrected_at`: when the
    relative read the message a correction takes back."""
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
        "corrected_at": language.time(corrected_at, zone) if corrected_at else NOTHING,
    }
