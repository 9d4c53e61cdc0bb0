"""Values the hospitals may send, as the API and the CSV spell them."""

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
