"""Values the hospitals may send, as the API and the CSV spell them; the states of an outbox row."""

from enum import StrEnum


class Condition(StrEnum):
    STABLE = "stable"
    MODERATE = "moderate"
    CRITICAL = "critical"


class CareArea(StrEnum):
    WARD = "ward"
    HDU = "hdu"
    ICU = "icu"
    CCU = "ccu"


class RespiratorySupport(StrEnum):
    NONE = "none"
    OXYGEN = "oxygen"
    HFNC = "hfnc"
    NIV = "niv"
    VENTILATOR = "ventilator"


class AdmissionStatus(StrEnum):
    ADMITTED = "admitted"
    DISCHARGED = "discharged"
    TRANSFERRED = "transferred"
    DECEASED = "deceased"


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"
    OTHER = "O"


class NotificationStatus(StrEnum):
    """Where an outbox row (`models.chat.Notification`) stands; the database holds these words."""

    PENDING = "pending"  # waiting for its turn, a retry, or the end of quiet hours
    SENT = "sent"
    CANCELLED = "cancelled"  # nothing to tell any more, or no one to tell it to
    DEAD = "dead"  # refused for good, or out of attempts: `python -m bot outbox` lists it
