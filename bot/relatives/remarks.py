"""Ready phrases a ward may send as an update's remark (the ward's page offers them). A remark is
stored as the hospital wrote it; one of these phrases is stored in English and each relative reads
it in their own language, since the catalogues translate it."""

from __future__ import annotations

from bot.platform.i18n import Language


def N_(message: str) -> str:
    """Marks a phrase for translation here; it is translated where a relative reads it."""
    return message


PRESET_REMARKS = (
    N_("Resting comfortably."),
    N_("Eating and drinking well."),
    N_("The fever has come down."),
    N_("Breathing more easily."),
    N_("Needs more oxygen than before."),
    N_("Tests done; waiting for the results."),
    N_("The doctor will speak to the family at visiting time."),
    N_("Getting ready to go home."),
)


def remark_text(language: Language, remarks: str) -> str:
    """The remark as `language` reads it: a ready phrase translated, anything else as written."""
    return language.gettext(remarks) if remarks in PRESET_REMARKS else remarks
