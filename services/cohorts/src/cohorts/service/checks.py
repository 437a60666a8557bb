"""Checks every use case makes of its arguments: a known area, a well-formed CRN, a date not in
the future."""

from __future__ import annotations

from datetime import date, datetime

from cohorts.domain.offences import (
    EARLIEST_DATE,
)
from pathways_shared.clock import london_today
from pathways_shared.problems import ValidationProblem
from pathways_shared.vocabulary import (
    AREAS,
    CRN_PATTERN,
)


def known_area(area: str, field: str = "area") -> str:
    if area not in AREAS:
        raise ValidationProblem(f"{area!r} is not a known area (GSS code)", field=field)
    return area


def checked_crn(crn: str, field: str = "crn") -> str:
    if not CRN_PATTERN.fullmatch(crn):
        raise ValidationProblem(
            "must be one capital letter and six digits, e.g. X123456", field=field
        )
    return crn


def check_as_of(as_of: date, now: datetime) -> None:
    if as_of > london_today(now):
        raise ValidationProblem("as_of is in the future", field="as_of")
    if as_of < EARLIEST_DATE:
        raise ValidationProblem(f"as_of is before {EARLIEST_DATE.isoformat()}", field="as_of")
