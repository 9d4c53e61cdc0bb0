"""Admissions and their latest condition from a CSV file: `python -m bot import FILE.csv --hospital CODE`.

## The file

One row is one admission with its latest condition. The first line names the columns, in any
order; names are case-insensitive and spaces around them are ignored. Only the three columns
marked * are required. The file is UTF-8, with or without the byte order mark that a
spreadsheet's "CSV UTF-8" adds; LF or CRLF line ends; comma-separated, cells with commas or line
breaks in double quotes. Names may be in any script (Bengali, Hindi, English).

| column | what it holds |
| --- | --- |
| `registration_no` * | the hospital's registration number: letters, digits, `.`, `_`, `-`, up to 64, starting with a letter or digit; `/` between parts (`SSK/2026/1001`), each part starting with a letter or digit |
| `patient_name` * | up to 200 characters |
| `contact_mobile` * | the admission mobile number, in any common Indian format (`098300 12345`, `+91-98300-12345`, Bengali digits) |
| `alternate_mobiles` | up to 5 more mobile numbers, separated by `;`; a landline among them is left out with a warning, and the row is kept |
| `age` | 0–130 |
| `sex` | `M`, `F`, `O` (or `male`, `female`, `other`) |
| `ward`, `bed` | where the patient lies |
| `admitted_at` | when the patient was admitted |
| `condition` | `stable`, `moderate` or `critical`; blank: the row changes the admission only, and every other condition column must be blank too |
| `care_area` | `ward`, `hdu`, `icu`, `ccu`; blank: as before |
| `respiratory_support` | `none`, `oxygen`, `hfnc`, `niv`, `ventilator`; blank: as before |
| `spo2`, `pulse`, `bp_systolic`, `bp_diastolic`, `temperature_c`, `resp_rate`, `blood_sugar` | vitals, in the API's units and ranges: SpO2 0–100 % (`93` or `93%`), pulse 20–250/min, systolic 50–260 and diastolic 20–180 mmHg (diastolic below systolic), 30–45 °C (86–113 is refused as °F, the reason giving the °C value), 4–80 breaths/min, blood sugar 20–800 mg/dL |
| `remarks` | about the condition, up to 1000 characters |
| `recorded_at` | when the condition was recorded; blank: the time of the import |
| `status` | `admitted`, `discharged`, `transferred` or `deceased`; blank: as it is |
| `status_at` | when the status changed; blank: the time of the import |
| `to_hospital` | where the patient went: required with `transferred`, refused with any other status |

Times are ISO 8601 (`2026-11-27T09:30`, `2026-11-27 09:30`, `2026-11-27T04:00Z`,
`2026-11-27T09:30+05:30`) or day first, as spreadsheets in India write them: `27/11/2026 09:30`,
`27-11-2026 09:30`, `27/11/2026` (midnight); seconds may follow the minutes. A time without an
offset is the hospital's time (Asia/Kolkata). No time may be in the future, nor before 2000-01-01.

A cell with a NUL, another control character or a lone surrogate rejects its row (the other rows
are imported); tab and line breaks are allowed in `remarks` only.

## What a row does

- Every cell is checked exactly as the hospital API checks the same field. A blank cell is "not
  given": for the admission's details that means empty, since a row replaces them as the API's
  `PUT` does; but a column that is not in the file at all leaves that detail of an existing
  admission as it is (a file of only `registration_no`, `patient_name`, `contact_mobile`,
  `condition` does not erase wards and ages sent before).
- A row is applied as: the admission (created or updated), then the condition, then the status,
  so a row can carry a discharged patient's last condition. A new condition for a patient who is
  already discharged, transferred or deceased is refused (the row is rejected), unless the row's
  status is `admitted`: that reopens the admission before its condition is added.
- A condition without `recorded_at` is added only if it differs from the latest one stored; with
  `recorded_at`, a repeat of a stored update is recognised. A status equal to the current one
  changes nothing. Importing the same file twice therefore changes nothing the second time.
- A row is all or nothing. A bad row is reported with its line (the header is line 1, as in the
  spreadsheet), its registration number and patient's name as the row gives them, and every
  reason found, and skipped; the good rows are kept:
  `line 3 (B-1, Bina Roy): contact_mobile: a landline, not a mobile number`. A warning (a number
  left out) names its row the same way; the row is kept. A registration number
  that appears on two rows is refused on the later one. Blank lines are skipped.
- The whole file is one transaction. `--dry-run` checks and applies everything, reports what
  would happen, and saves nothing.
- A problem with the file itself (missing, not UTF-8, no header, an unknown, repeated or missing
  column, an unknown hospital) imports nothing.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.intake import rules
from bot.intake.hospitals import get_hospital
from bot.intake.schemas import (
    REGISTRATION_NO_RULE,
    AdmissionIn,
    ConditionUpdateIn,
    FieldErrors,
    IntakeContext,
    StatusIn,
    day_first_time,
    is_registration_no,
)
from bot.platform.text import printable
from models import Admission, Hospital

ADMISSION_COLUMNS = (
    "patient_name", "contact_mobile", "alternate_mobiles", "age", "sex", "ward", "bed", "admitted_at",
)  # fmt: skip
CONDITION_COLUMNS = (
    "condition", "care_area", "respiratory_support", "spo2", "pulse", "bp_systolic", "bp_diastolic",
    "temperature_c", "resp_rate", "blood_sugar", "remarks", "recorded_at",
)  # fmt: skip
STATUS_COLUMNS = ("status", "status_at", "to_hospital")
COLUMNS = ("registration_no", *ADMISSION_COLUMNS, *CONDITION_COLUMNS, *STATUS_COLUMNS)
REQUIRED_COLUMNS = ("registration_no", "patient_name", "contact_mobile")
# Admission details that a column left out of the file keeps for an existing admission.
_KEPT_WHEN_ABSENT = ("alternate_mobiles", "age", "sex", "ward", "bed", "admitted_at")
_TIME_COLUMNS = frozenset({"admitted_at", "recorded_at", "status_at"})
_TIME_HINT = "write it as 2026-11-27 09:30 or 27/11/2026 09:30"
SOURCE = "csv"


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would have done)."""

    file: str
    hospital: str
    dry_run: bool = False
    rows: int = 0  # data rows read, blank lines not counted
    admissions_created: int = 0
    admissions_updated: int = 0
    admissions_unchanged: int = 0
    updates_recorded: int = 0
    status_changes: int = 0
    rows_rejected: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # rows kept with something left out, and what
    file_error: bool = False  # the file itself was refused: nothing was imported
    lines: list[RowResult] = field(default_factory=list)  # each data row's result, in the file's order

    @property
    def ok(self) -> bool:
        return not self.file_error and self.rows_rejected == 0

    def summary(self) -> str:
        if self.file_error:
            first = f"{self.file}: not imported for {self.hospital}; nothing was saved."
        else:
            first = (
                f"{self.file} for {self.hospital}: {_count(self.rows, 'row')} read; "
                f"{_count(self.admissions_created, 'admission')} created, "
                f"{self.admissions_updated} updated, {self.admissions_unchanged} unchanged; "
                f"{_count(self.updates_recorded, 'condition update')} recorded; "
                f"{_count(self.status_changes, 'status change', 'status changes')}; "
                f"{_count(self.rows_rejected, 'row')} rejected."
            )
        if self.dry_run:
            return first + "\ndry run: nothing was saved."
        return first

    def _fail(self, problem: str) -> ImportReport:
        self.file_error = True
        self.problems = [problem]
        return self


@dataclass(frozen=True)
class RowResult:
    """What became of one data row: its outcome, or the reasons it was rejected."""

    line: int
    registration_no: str  # as the row gives it; "" when it gives none
    outcome: rules.RowOutcome | None  # None: rejected
    problems: tuple[str, ...] = ()
    patient_name: str = ""  # as the row gives it
    warnings: tuple[str, ...] = ()  # what was left out of a row that was kept


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


class _FileProblem(Exception):
    """The file cannot be imported at all; the message says why."""


@dataclass
class _Row:
    line: int
    registration_no: str
    given: dict[str, str]  # column -> stripped, non-blank cell
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def named(self) -> str:
        """`line 3 (B-1, Bina Roy)`: the row as the clerk finds it in the spreadsheet."""
        names = [self.given.get("registration_no", ""), self.given.get("patient_name", "")]
        shown = ", ".join(printable(name) for name in names if name)
        return f"line {self.line} ({shown})" if shown else f"line {self.line}"


@dataclass
class _Checked:
    admission: AdmissionIn
    update: ConditionUpdateIn | None
    update_has_time: bool
    status: StatusIn | None


async def import_csv(
    session: AsyncSession,
    path: Path,
    hospital_code: str,
    region: str,
    now: datetime,
    dry_run: bool = False,
) -> ImportReport:
    """Import `path` for the hospital `hospital_code`, then commit (with `dry_run`: roll back).
    Mobile numbers are read as numbers of `region`; times may not be later than `now`."""
    path = Path(path)
    try:
        content = _read_file(path)
    except _FileProblem as problem:
        return ImportReport(file=path.name, hospital=hospital_code.strip().upper(), dry_run=dry_run)._fail(str(problem))
    return await import_content(session, content, path.name, hospital_code, region, now, dry_run)


async def import_content(
    session: AsyncSession,
    content: bytes,
    file_name: str,
    hospital_code: str,
    region: str,
    now: datetime,
    dry_run: bool = False,
    actor: str | None = None,
) -> ImportReport:
    """`import_csv` of a file's bytes (a file uploaded on the staff page), audited as `actor`
    (by default `csv:<HOSPITAL>`)."""
    report = ImportReport(file=file_name, hospital=hospital_code.strip().upper(), dry_run=dry_run)
    try:
        header, records = _parse(content)
        columns = _columns(header)
    except _FileProblem as problem:
        return report._fail(str(problem))
    hospital = await get_hospital(session, hospital_code.strip())
    if hospital is None:
        return report._fail(f"no hospital with code {report.hospital} (see: python -m bot hospitals list)")

    rows = _rows(records, columns, len(header))
    report.rows = len(rows)
    importer = _Importer(session, hospital, report, region, now, actor or f"csv:{hospital.code}")
    try:
        await importer.run(rows, present=set(columns.values()))
        if dry_run:
            await session.rollback()
        else:
            await session.commit()
    except SQLAlchemyError as exc:
        # Another writer got in between (e.g. the API created one of these admissions meanwhile).
        await session.rollback()
        cause = getattr(exc, "orig", None) or exc
        reason = (str(cause).strip().splitlines() or [""])[0]  # no SQL, no parameters: no patient data
        failed = ImportReport(file=report.file, hospital=report.hospital, dry_run=dry_run, rows=report.rows)
        return failed._fail(f"the database refused the import ({type(cause).__name__}: {reason}); try again")
    return report


# --- reading the file ----------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    """The bytes of the file; raises _FileProblem."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _FileProblem(f"{path}: no such file") from None
    except OSError as exc:
        raise _FileProblem(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _parse(raw: bytes) -> tuple[list[str], list[list[str]]]:
    """The header and the data records of a CSV file's bytes; raises _FileProblem."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _FileProblem(
            f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            'in the spreadsheet, save it as "CSV UTF-8"'
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise _FileProblem(f"line {reader.line_num}: not readable as CSV: {exc}") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise _FileProblem(
            "line 1: no header; the first line must name the columns, e.g. " + ",".join(REQUIRED_COLUMNS)
        )
    return records[0], records[1:]


def _columns(header: list[str]) -> dict[int, str]:
    """Column position -> known column name; raises _FileProblem for a bad header."""
    names = [cell.strip().lower() for cell in header]
    if len(names) == 1 and ";" in names[0]:
        raise _FileProblem("line 1: the columns are separated by ';'; save the file with commas (CSV)")
    unknown = [name for name in names if name and name not in COLUMNS]
    if unknown:
        described = ", ".join(f"{_shown(name)}{_did_you_mean(name)}" for name in unknown)
        raise _FileProblem(
            f"line 1: unknown column{'s' if len(unknown) > 1 else ''} {described}; "
            f"the columns are: {', '.join(COLUMNS)}"
        )
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise _FileProblem(f'line 1: column "{name}" appears twice')
        seen.add(name)
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise _FileProblem(
            f"line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )
    return {position: name for position, name in enumerate(names) if name}


def _did_you_mean(name: str) -> str:
    guess = name.replace(" ", "_").replace("-", "_")
    if guess not in COLUMNS:
        close = difflib.get_close_matches(guess, COLUMNS, n=1, cutoff=0.6)
        guess = close[0] if close else ""
    return f' (did you mean "{guess}"?)' if guess else ""


def _column_letter(position: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how a spreadsheet names the column."""
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _rows(records: list[list[str]], columns: dict[int, str], width: int) -> list[_Row]:
    """Data rows with their line numbers, blank ones left out; checks what needs no database:
    the shape of the row, the registration number and its repetition."""
    rows: list[_Row] = []
    first_line: dict[str, int] = {}
    for line, cells in enumerate(records, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        row = _Row(line=line, registration_no="", given={})
        for position, cell in enumerate(cells):
            value = cell.strip()
            if not value:
                continue
            name = columns.get(position)
            if name is not None:
                row.given[name] = value
            elif position >= width:
                row.problems.append(
                    f"{len(cells)} cells but the header names {width} columns "
                    "(a comma that should be in double quotes?)"
                )
                break
            else:
                letter = _column_letter(position)
                row.problems.append(f"a value in column {letter}, which has no name on line 1")
        number = row.given.get("registration_no")
        if number is None:
            row.problems.insert(0, "registration_no: is required")
        elif not is_registration_no(number):
            row.problems.insert(
                0, f"registration_no: {_shown(number)} is not a registration number ({REGISTRATION_NO_RULE})"
            )
        elif number in first_line:
            row.problems.insert(0, f"registration_no: {number} is already on line {first_line[number]}")
        else:
            first_line[number] = line
            row.registration_no = number
        rows.append(row)
    return rows


def parse_time(text: str) -> datetime:
    """A time as the file gives it: ISO 8601, or day-first `DD/MM/YYYY[ HH:MM[:SS]]` (also with
    `-`), as the API reads it too. Naive unless it carries an offset. Raises ValueError with the reason."""
    try:
        day_first = day_first_time(text)
    except ValueError:
        raise ValueError(f"{_shown(text)} is not a date (day/month/year)") from None
    if day_first is not None:
        return day_first
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_shown(text)} is not a date and time I can read; {_TIME_HINT}") from None


# --- checking and applying rows -------------------------------------------------------------


class _Importer:
    def __init__(
        self, session: AsyncSession, hospital: Hospital, report: ImportReport, region: str, now: datetime, actor: str
    ):
        self.session = session
        self.hospital = hospital
        self.report = report
        self.actor = actor
        self.context = IntakeContext(
            region=region,
            tz=ZoneInfo(hospital.time_zone),
            now=now,
        )

    async def run(self, rows: list[_Row], present: set[str]) -> None:
        batch = await rules.Batch.load(
            self.session,
            self.hospital,
            [row.registration_no for row in rows if row.registration_no],
            actor=self.actor,
            source=SOURCE,
        )
        for row in rows:
            existing = batch.stored(row.registration_no) if row.registration_no else None
            kept = await batch.stored_alternates(existing) if existing is not None else []
            checked = self._check(row, existing, kept, present)
            outcome = await self._apply(batch, row, checked) if checked is not None else None
            given = row.given.get("registration_no", "")
            name = row.given.get("patient_name", "")
            if outcome is not None:
                self.report.warnings.extend(f"{row.named}: {warning}" for warning in row.warnings)
                self.report.lines.append(RowResult(row.line, given, outcome, (), name, tuple(row.warnings)))
                continue
            self.report.rows_rejected += 1
            self.report.problems.append(f"{row.named}: {'; '.join(row.problems)}")
            self.report.lines.append(RowResult(row.line, given, None, tuple(row.problems), name))
        await batch.save()

    def _check(
        self, row: _Row, existing: Admission | None, existing_alternates: list[str], present: set[str]
    ) -> _Checked | None:
        """Validate a row through the API's models and their `resolve`; None if it has problems
        (added to `row.problems`)."""
        given = row.given
        values: dict[str, Any] = {}
        for name, value in given.items():
            if name in _TIME_COLUMNS:
                try:
                    values[name] = parse_time(value)
                except ValueError as exc:
                    row.problems.append(f"{name}: {exc}")
            elif name == "alternate_mobiles":
                values[name] = [part.strip() for part in value.split(";") if part.strip()]
            else:
                values[name] = value

        admission_in = {name: values[name] for name in ADMISSION_COLUMNS if name in values}
        if existing is not None:
            kept = {
                "alternate_mobiles": existing_alternates,
                "age": existing.age,
                "sex": existing.sex,
                "ward": existing.ward,
                "bed": existing.bed,
                "admitted_at": existing.admitted_at,
            }
            for name in _KEPT_WHEN_ABSENT:
                if name not in present and kept[name] is not None:
                    admission_in[name] = kept[name]
        admission = self._validate(AdmissionIn, admission_in, row)

        update = None
        condition_in = {name: values[name] for name in CONDITION_COLUMNS if name in values}
        if "condition" in given:
            update = self._validate(ConditionUpdateIn, condition_in, row)
        elif condition_in:
            row.problems.append(
                f"condition: is blank, but the row gives {', '.join(condition_in)}; "
                "give the condition too, or leave those cells blank"
            )

        status = None
        status_in = {name: values[name] for name in STATUS_COLUMNS if name in values}
        if "status" in given:
            status_in["at"] = status_in.pop("status_at", None)
            status = self._validate(StatusIn, status_in, row)
        elif status_in:
            row.problems.append(
                f"status: is blank, but the row gives {', '.join(status_in)}; "
                "give the status too, or leave those cells blank"
            )

        if row.problems or admission is None:
            return None
        row.warnings.extend(
            f"{_column_name(left.field.split('.'))}: {_shown(left.value)} is {left.reason}"
            for left in admission.left_out
        )
        return _Checked(admission, update, "recorded_at" in given, status)

    def _validate(
        self, model: type[AdmissionIn] | type[ConditionUpdateIn] | type[StatusIn], values: dict[str, Any], row: _Row
    ) -> Any:
        """The model resolved for this hospital, or None with the reasons added to the row. (A
        time that could not be read is already reported and left out of `values`.)"""
        try:
            checked = model.model_validate(values)
        except ValidationError as exc:
            row.problems.extend(_describe(error) for error in exc.errors(include_url=False))
            return None
        try:
            return checked.resolve(self.context)
        except FieldErrors as exc:
            row.problems.extend(f"{_column_name(field.split('.'))}: {reason}" for field, reason in exc.errors)
            return None

    async def _apply(self, batch: rules.Batch, row: _Row, checked: _Checked) -> rules.RowOutcome | None:
        """Apply a valid row; None, with the reason in `row.problems`, if it is refused (then
        nothing of it is kept)."""
        try:
            outcome = await batch.row(
                row.registration_no,
                checked.admission,
                update=checked.update,
                status=checked.status,
                only_if_changed=not checked.update_has_time,
            )
        except rules.AdmissionClosed as exc:
            row.problems.append(f"condition: {exc}")
            return None
        report = self.report
        if outcome.admission == rules.Outcome.CREATED:
            report.admissions_created += 1
        elif outcome.admission == rules.Outcome.UPDATED:
            report.admissions_updated += 1
        else:
            report.admissions_unchanged += 1
        report.updates_recorded += outcome.update == rules.Outcome.CREATED
        report.status_changes += outcome.status == rules.Outcome.UPDATED
        return outcome


# --- wording of problems ---------------------------------------------------------------------


def _column_name(loc: list[str] | tuple) -> str:
    """The CSV column (and which number of a list) that a model's error location means."""
    parts = [str(part) for part in loc]
    if not parts:
        return ""
    name = "status_at" if parts[0] == "at" else parts[0]
    if len(parts) > 1 and parts[1].isdigit():
        return f"{name}, number {int(parts[1]) + 1}"
    return name


def _shown(value: Any) -> str:
    """A cell's value quoted in a problem, a character that is not text as its escape (`\\u0000`)."""
    return f'"{printable(value)}"' if isinstance(value, str) else str(value)


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as `column: reason`, worded for someone fixing a spreadsheet."""
    column = _column_name(error["loc"])
    kind, context, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        reason = "is required"
    elif kind == "less_than_equal":
        reason = f"must be at most {context['le']}, not {_shown(value)}"
    elif kind == "greater_than_equal":
        reason = f"must be at least {context['ge']}, not {_shown(value)}"
    elif kind in ("int_parsing", "int_from_float", "int_type"):
        reason = f"must be a whole number, not {_shown(value)}"
    elif kind in ("float_parsing", "float_type"):
        reason = f"must be a number, not {_shown(value)}"
    elif kind == "enum":
        also = " (or male, female, other)" if column == "sex" else ""
        reason = f"must be {context['expected']}{also}, not {_shown(value)}"
    elif kind == "string_too_long":
        reason = f"is longer than {context['max_length']} characters"
    elif kind == "too_long":
        reason = f"more than {context['max_length']} numbers"
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
        if column and reason.startswith(column + " "):
            reason = reason[len(column) + 1 :]
    return f"{column}: {reason}" if column else reason
