"""Languages: every text a relative reads is translated, keeps its placeholders and commands, and
numbers and times are written the way each language writes them.

The message ids are extracted from the code itself, with the same rules as `make messages`
(babel.cfg, `-k ngettext:1,2`): a new `_()`, `gettext()` or `ngettext()` text that nobody
translated fails here, even before `make messages` has been run.
"""

from __future__ import annotations

import gettext
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from string import Formatter
from zoneinfo import ZoneInfo

import pytest
import yaml
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.platform.i18n import LANGUAGE_NAMES, LOCALES_DIR, Catalogues
from bot.relatives.otp import sms_body

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The keywords of `make messages`: Babel's defaults plus `-k ngettext:1,2`.
KEYWORDS = {**DEFAULT_KEYWORDS, **parse_keywords(["ngettext:1,2"])}
SOURCE_LANGUAGE = "en"

_LANGUAGES = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))["languages"]
TRANSLATED = [code for code in _LANGUAGES["available"] if code != SOURCE_LANGUAGE]

MessageId = str | tuple[str, ...]


# --- helpers ------------------------------------------------------------------------------------


def extract_messages(root: Path) -> dict[tuple[MessageId, str | None], list[str]]:
    """(message id, context) -> where it is used, for the files babel.cfg under `root` covers."""
    with (root / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config, str(root / "babel.cfg"))
    found: dict[tuple[MessageId, str | None], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(root), method_map, options_map, keywords=KEYWORDS
    ):
        found.setdefault((message, context), []).append(f"{filename}:{lineno}")
    return found


def load_po(code: str) -> Catalog:
    with (LOCALES_DIR / code / "LC_MESSAGES" / "messages.po").open("rb") as po_file:
        return read_po(po_file, locale=code)


def forms(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def untranslated(catalogue: Catalog, found: dict[tuple[MessageId, str | None], list[str]]) -> list[str]:
    """Each extracted id without a usable translation: missing, fuzzy, or with an empty form."""
    problems = []
    for (message_id, context), places in sorted(found.items(), key=lambda item: str(item[0])):
        entry = catalogue.get(message_id, context)
        where = ", ".join(places)
        if entry is None:
            problems.append(f"not in the catalogue: {message_id!r} ({where})")
        elif entry.fuzzy:
            problems.append(f"fuzzy (not used): {message_id!r} ({where})")
        elif isinstance(message_id, tuple) != entry.pluralizable:
            problems.append(f"singular/plural mismatch, run `make messages`: {message_id!r} ({where})")
        elif entry.pluralizable and len(forms(entry)) != catalogue.num_plurals:
            problems.append(f"{len(forms(entry))} forms, not {catalogue.num_plurals}: {message_id!r}")
        elif not all(form.strip() for form in forms(entry)):
            problems.append(f"empty translation: {message_id!r} ({where})")
    return problems


def translated_messages(code: str) -> list[Message]:
    return [message for message in load_po(code) if message.id and not message.fuzzy and message.string]


def placeholders(text: str) -> set[str]:
    return {field for _literal, field, _spec, _conversion in Formatter().parse(text) if field is not None}


def commands(text: str) -> set[str]:
    return set(re.findall(r"(?<![^\s(\"])/[a-z]+\b", text))


def english_runs(text: str) -> list[str]:
    """Runs of four or more Latin-letter words: English left in a translation by accident."""
    text = re.sub(r"\{[^}]*\}|/[a-z]+", " ", text)
    return [run.group(0) for run in re.finditer(r"[A-Za-z']+(?:[\s,;:.-]+[A-Za-z']+){3,}", text)]


def sentence_words(text: str) -> int:
    return len(re.sub(r"\{[^}]*\}", " ", text).split())


# --- (a) every text in the code is translated ----------------------------------------------------


@pytest.fixture(scope="module")
def code_messages() -> dict[tuple[MessageId, str | None], list[str]]:
    found = extract_messages(PROJECT_ROOT)
    assert found, "no message ids found: is babel.cfg still pointing at the code?"
    return found


def test_the_languages_to_translate_are_configured():
    assert TRANSLATED, "config.yaml languages.available lists no language besides English"
    for code in TRANSLATED:
        assert (LOCALES_DIR / code / "LC_MESSAGES" / "messages.po").is_file(), f"run `make messages` for {code}"


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_text_in_the_code_is_translated(code, code_messages):
    problems = untranslated(load_po(code), code_messages)
    assert not problems, f"{code}: translate these in locales/{code}/LC_MESSAGES/messages.po:\n" + "\n".join(problems)


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_bot_speaks_the_translations_it_reads(code, code_messages):
    """The in-memory compiled catalogue (what relatives get) returns the `.po` file's words."""
    language = Catalogues(_LANGUAGES["available"], _LANGUAGES["default"]).get(code)
    assert language.code == code
    catalogue = load_po(code)
    plural = gettext.c2py(catalogue.plural_expr)
    for message_id, context in code_messages:
        entry = catalogue.get(message_id, context)
        if entry is None or entry.fuzzy:
            continue  # reported by test_every_text_in_the_code_is_translated
        if isinstance(message_id, tuple):
            for count in (1, 2, 5):
                expected = entry.string[plural(count)]
                assert language.ngettext(message_id[0], message_id[1], count) == expected
        else:
            assert language.gettext(message_id) == entry.string


def test_a_new_untranslated_text_is_caught(tmp_path, code_messages):
    """The check above sees a text added to the code and missing from a catalogue."""
    shutil.copy(PROJECT_ROOT / "babel.cfg", tmp_path / "babel.cfg")
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "new_step.py").write_text(
        "def step(turn, language, n):\n"
        "    _ = turn._\n"
        '    turn.say(_("A brand new sentence that nobody has translated yet."))\n'
        '    turn.say(language.gettext("Another new sentence, also not translated."))\n'
        '    turn.say(language.ngettext("{n} new bed", "{n} new beds", n).format(n=n))\n',
        encoding="utf-8",
    )
    found = extract_messages(tmp_path)
    assert set(found) == {
        ("A brand new sentence that nobody has translated yet.", None),
        ("Another new sentence, also not translated.", None),
        (("{n} new bed", "{n} new beds"), None),
    }
    for code in TRANSLATED:
        problems = untranslated(load_po(code), found)
        assert len(problems) == 3, problems
        assert untranslated(load_po(code), {next(iter(code_messages)): ["here"]}) == []


# --- (b) placeholders, commands, no English left over --------------------------------------------


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_keep_the_placeholders_and_commands(code):
    problems = []
    for message in translated_messages(code):
        if message.pluralizable:
            singular, plural = message.id
            for index, form in enumerate(forms(message)):
                # The first form may name the count even where the English singular does not.
                allowed = [placeholders(plural)] + ([placeholders(singular)] if index == 0 else [])
                if form and placeholders(form) not in allowed:
                    problems.append(f"{message.id!r} form {index}: {sorted(placeholders(form))}")
                if form and commands(form) != commands(plural) | (commands(singular) if index == 0 else set()):
                    problems.append(f"{message.id!r} form {index}: commands {sorted(commands(form))}")
        else:
            if placeholders(message.string) != placeholders(message.id):
                problems.append(f"{message.id!r}: {sorted(placeholders(message.string))}")
            if commands(message.string) != commands(message.id):
                problems.append(f"{message.id!r}: commands {sorted(commands(message.string))}")
    assert not problems, f"{code}: placeholders or /commands differ from the English:\n" + "\n".join(problems)


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_are_not_english_left_in_place(code):
    problems = []
    for message in translated_messages(code):
        english = message.id if isinstance(message.id, tuple) else (message.id,)
        for form in forms(message):
            if form in english and sentence_words(form) > 3:
                problems.append(f"copied, not translated: {form!r}")
            for run in english_runs(form):
                problems.append(f"English words {run!r} in {form!r}")
    assert not problems, f"{code}:\n" + "\n".join(problems)


def test_the_placeholder_and_english_checks_themselves():
    assert placeholders("If {number} is ... {digits}-digit ... {minutes}") == {"number", "digits", "minutes"}
    assert commands("Send /start, or /help. 98300/12345 mg/dL") == {"/start", "/help"}
    assert english_runs("আপনার Ward Watch কোড (HFNC), SMS-এ") == []
    assert english_runs("ধন্যবাদ. Please type the code here.") == ["Please type the code here"]


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_language_change_is_confirmed_in_the_new_language(code):
    language = Catalogues(_LANGUAGES["available"], _LANGUAGES["default"]).get(code)
    confirmation = language.gettext("I will write to you in English.")
    assert confirmation != "I will write to you in English."
    assert LANGUAGE_NAMES[code] in confirmation


@pytest.mark.parametrize("code", _LANGUAGES["available"])
def test_the_sms_names_the_service_and_warns_against_sharing(code):
    language = Catalogues(_LANGUAGES["available"], _LANGUAGES["default"]).get(code)
    body = sms_body(language, "493817", 600)
    assert "Ward Watch" in body
    assert "493817" in body  # the code itself stays in the digits people type
    assert language.number(10) in body


# --- (c) choosing a language from a hint ---------------------------------------------------------


@pytest.fixture(scope="module")
def catalogues() -> Catalogues:
    return Catalogues(["en", "bn", "hi"], "en")


@pytest.mark.parametrize(
    "hint, code",
    [("bn", "bn"), ("bn-IN", "bn"), ("BN_in", "bn"), ("hi_IN", "hi"), ("hi", "hi"), ("en-US", "en"), ("en", "en")],
)
def test_a_language_hint_picks_the_configured_language(catalogues, hint, code):
    assert catalogues.match(hint) == code
    assert catalogues.get(hint).code == code


@pytest.mark.parametrize("hint", ["fr", "fr-FR", "ta_IN", "", None])
def test_an_unknown_language_falls_back_to_the_default(catalogues, hint):
    assert catalogues.match(hint) is None
    assert catalogues.get(hint).code == "en"


def test_the_default_language_is_the_configured_one():
    catalogues = Catalogues(["en", "bn", "hi"], "bn")
    assert catalogues.get("fr").code == "bn"
    assert catalogues.get("fr").gettext("Stable") != "Stable"


# --- (d) numbers and times -----------------------------------------------------------------------

KOLKATA = ZoneInfo("Asia/Kolkata")
MORNING = datetime(2026, 1, 15, 3, 5, tzinfo=UTC)  # 8:35 in Kolkata
EVENING = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # 17:30 in Kolkata


def test_bengali_numbers_and_times_are_in_bengali_digits(catalogues):
    bengali = catalogues.get("bn")
    assert bengali.number(6) == "৬"
    assert bengali.number(98) == "৯৮"
    assert bengali.number(1234567.5) == "১২,৩৪,৫৬৭.৫"
    assert bengali.time(MORNING, KOLKATA) == "১৫ জানু, সকাল ৮:৩৫"
    assert bengali.time(EVENING, KOLKATA) == "২৮ নভে, বিকাল ৫:৩০"


def test_hindi_times_have_hindi_month_names(catalogues):
    hindi = catalogues.get("hi")
    assert hindi.number(6) == "6"
    assert hindi.number(1234567.5) == "12,34,567.5"
    assert hindi.time(MORNING, KOLKATA) == "15 जन॰, सुबह 8:35"
    assert hindi.time(EVENING, KOLKATA) == "28 नव॰, शाम 5:30"


def test_one_moment_reads_in_each_zone_and_language_it_is_shown_in(catalogues):
    """Formatted values are remembered: the same moment in another zone, or the same number in
    another language, is still written afresh."""
    english, bengali = catalogues.get("en"), catalogues.get("bn")
    assert english.time(MORNING, KOLKATA) == "15 Jan, 8:35 AM"
    assert english.time(MORNING, ZoneInfo("Asia/Kathmandu")) == "15 Jan, 8:50 AM"
    assert english.time(MORNING.astimezone(KOLKATA), UTC) == "15 Jan, 3:05 AM"
    assert (english.number(98), bengali.number(98), english.number(98.5)) == ("98", "৯৮", "98.5")


def test_english_numbers_and_times(catalogues):
    english = catalogues.get("en")
    assert english.number(1234567.5) == "12,34,567.5"
    assert english.time(MORNING, KOLKATA) == "15 Jan, 8:35 AM"
