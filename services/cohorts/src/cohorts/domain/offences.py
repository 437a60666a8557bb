"""Checking nominals and offence records, one by one or as rows of a police CSV extract.

A row either becomes a clean `OffenceRow` or a list of `RowError`s naming its line number
(1 is the header, so data starts at line 2), the column at fault and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from cohorts.errors import FieldError, InvalidValue
from pathways_shared.vocabulary import AREAS, CRN_PATTERN, PNC_PATTERN, OffenceCategory

CSV_COLUMNS: tuple[str, ...] = ("crn", "offence_date", "category", "description")
MAX_DESCRIPTION = 500
EARLIEST_DATE = date(1900, 1, 1)


@dataclass(frozen=True)
class OffenceRow:
    line: int
    crn: str
    offence_date: date
    category: OffenceCategory
    description: str | None


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.message}


def crn_problem(value: object) -> str | None:
    if not isinstance(value, str) or not CRN_PATTERN.fullmatch(value):
        return "must be one capital letter and six digits, e.g. X123456"
    return None


def date_problem(value: date, today: date, *, what: str = "date") -> str | None:
    if value > today:
        return f"{what} is in the future"
    if value < EARLIEST_DATE:
        return f"{what} is before {EARLIEST_DATE.isoformat()}"
    return None


def category_problem(value: object) -> str | None:
    try:
        OffenceCategory(value)
    except ValueError:
        return "is not an offence category"  # the value is not echoed: it may be personal
    return None


def description_problem(value: str) -> str | None:
    if len(value) > MAX_DESCRIPTION:
        return f"must be at most {MAX_DESCRIPTION} characters"
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        return "must not hold control characters"
    return None


def header_problems(header: Sequence[str] | None) -> list[RowError]:
    """The CSV must start with exactly `crn,offence_date,category,description`."""
    got = [h.strip().lower() for h in header or []]
    if got != list(CSV_COLUMNS):
        return [
            RowError(
                1,
                "header",
                # Not what it got: a file whose first line is data would be echoed (and stored).
                f"the first line must be the header {','.join(CSV_COLUMNS)}",
            )
        ]
    return []


def check_row(line: int, raw: Mapping[str, str | None], today: date) -> OffenceRow | list[RowError]:
    errors: list[RowError] = []
    if None in raw:  # csv.DictReader puts surplus cells under the key None
        errors.append(RowError(line, "row", f"has more than {len(CSV_COLUMNS)} columns"))
    crn = (raw.get("crn") or "").strip()
    if problem := crn_problem(crn):
        errors.append(RowError(line, "crn", problem))

    offence_date: date | None = None
    text = (raw.get("offence_date") or "").strip()
    try:
        offence_date = date.fromisoformat(text)
        if len(text) != 10:
            raise ValueError(text)
    except ValueError:
        errors.append(RowError(line, "offence_date", "is not a date (YYYY-MM-DD)"))
        offence_date = None
    if offence_date is not None and (problem := date_problem(offence_date, today)):
        errors.append(RowError(line, "offence_date", problem))

    category_text = (raw.get("category") or "").strip()
    if problem := category_problem(category_text):
        errors.append(RowError(line, "category", problem))

    description = (raw.get("description") or "").strip() or None
    if description is not None and (problem := description_problem(description)):
        errors.append(RowError(line, "description", problem))
    if errors or offence_date is None:
        return errors
    return OffenceRow(line, crn, offence_date, OffenceCategory(category_text), description)


def check_offence(
    offence_date: date,
    category: OffenceCategory,
    today: date,
    *,
    field_prefix: str,
    description: str | None = None,
) -> None:
    """One offence of `POST /nominals/{crn}/offences`; the path is e.g. `offences.2`."""
    if problem := date_problem(offence_date, today):
        raise InvalidValue.for_field(f"{field_prefix}.offence_date", problem)
    if description and (problem := description_problem(description)):
        raise InvalidValue.for_field(f"{field_prefix}.description", problem)


def check_nominal(
    *,
    crn: str,
    area: str,
    date_of_birth: date,
    mappa_level: int | None,
    pnc_number: str | None,
    today: date,
) -> None:
    """A nominal upsert, every problem at once."""
    errors: list[FieldError] = []
    if problem := crn_problem(crn):
        errors.append(FieldError("crn", problem))
    if area not in AREAS:
        errors.append(FieldError("area", f"{area!r} is not a known area (GSS code)"))
    if problem := date_problem(date_of_birth, today, what="date of birth"):
        errors.append(FieldError("date_of_birth", problem))
    if mappa_level is not None and mappa_level not in (1, 2, 3):
        errors.append(FieldError("mappa_level", "must be 1, 2, 3 or null"))
    if pnc_number is not None and not PNC_PATTERN.fullmatch(pnc_number):
        errors.append(FieldError("pnc_number", "must look like 2001/1234567A"))
    if errors:
        raise InvalidValue("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
