from datetime import date

import pytest

from cohorts.domain.offences import (
    OffenceRow,
    RowError,
    check_nominal,
    check_offence,
    check_row,
    header_problems,
)
from cohorts.errors import InvalidValue
from pathways_shared.vocabulary import OffenceCategory

TODAY = date(2026, 11, 24)


def row(**overrides: str | None) -> dict[str | None, str | None]:
    base: dict[str | None, str | None] = {
        "crn": "X123456",
        "offence_date": "2026-01-31",
        "category": "burglary_domestic",
        "description": "Entered a house",
    }
    base.update(overrides)
    return base


def test_a_good_row() -> None:
    assert check_row(7, row(), TODAY) == OffenceRow(
        7, "X123456", date(2026, 1, 31), OffenceCategory.BURGLARY_DOMESTIC, "Entered a house"
    )


def test_cells_are_trimmed_and_a_blank_description_is_none() -> None:
    checked = check_row(2, row(crn=" X123456 ", category=" theft_other", description="  "), TODAY)
    assert isinstance(checked, OffenceRow)
    assert (checked.crn, checked.category, checked.description) == (
        "X123456",
        OffenceCategory.THEFT_OTHER,
        None,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"crn": "x123456"}, "crn"),
        ({"crn": "X12345"}, "crn"),
        ({"crn": "XX23456"}, "crn"),
        ({"crn": ""}, "crn"),
        ({"crn": None}, "crn"),
        ({"offence_date": "24/11/2026"}, "offence_date"),
        ({"offence_date": "2026-13-01"}, "offence_date"),
        ({"offence_date": "2026-02-30"}, "offence_date"),
        ({"offence_date": "20260101"}, "offence_date"),
        ({"offence_date": ""}, "offence_date"),
        ({"offence_date": "2026-11-25"}, "offence_date"),  # tomorrow
        ({"offence_date": "1899-12-31"}, "offence_date"),
        ({"category": "arson"}, "category"),
        ({"category": "Burglary_Domestic"}, "category"),
        ({"category": ""}, "category"),
        ({"description": "x" * 501}, "description"),
        ({"description": "nul\x00byte"}, "description"),
        ({None: "surplus"}, "row"),
    ],
)
def test_a_bad_row_says_which_column_and_line(overrides: dict, field: str) -> None:
    checked = check_row(
        42, row(**overrides) if None not in overrides else {**row(), **overrides}, TODAY
    )
    assert isinstance(checked, list)
    assert [(e.line, e.field) for e in checked] == [(42, field)]
    assert checked[0].message


@pytest.mark.parametrize("day", ["2026-11-24", "1900-01-01"])
def test_date_edges_that_are_fine(day: str) -> None:
    assert isinstance(check_row(2, row(offence_date=day), TODAY), OffenceRow)


def test_every_problem_of_a_row_is_reported() -> None:
    checked = check_row(3, row(crn="bad", offence_date="soon", category="arson"), TODAY)
    assert isinstance(checked, list)
    assert [e.field for e in checked] == ["crn", "offence_date", "category"]
    assert checked[0].as_dict() == {"line": 3, "field": "crn", "message": checked[0].message}


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (["crn", "offence_date", "category", "description"], True),
        (["CRN", " offence_date", "category", "description"], True),
        (["crn", "offence_date", "category"], False),
        (["crn", "category", "offence_date", "description"], False),
        ([], False),
        (None, False),
    ],
)
def test_the_header(header: list[str] | None, ok: bool) -> None:
    problems = header_problems(header)
    assert (problems == []) is ok
    if not ok:
        assert problems == [RowError(1, "header", problems[0].message)]


def test_a_single_offence_cannot_be_in_the_future() -> None:
    check_offence(TODAY, OffenceCategory.OTHER, TODAY, field_prefix="offences.0")
    with pytest.raises(InvalidValue) as caught:
        check_offence(date(2026, 11, 25), OffenceCategory.OTHER, TODAY, field_prefix="offences.2")
    assert [e.field for e in caught.value.field_errors] == ["offences.2.offence_date"]
    with pytest.raises(InvalidValue) as caught:
        check_offence(
            TODAY, OffenceCategory.OTHER, TODAY, field_prefix="offences.1", description="a\x01"
        )
    assert [e.field for e in caught.value.field_errors] == ["offences.1.description"]
    check_offence(TODAY, OffenceCategory.OTHER, TODAY, field_prefix="o", description="tab\tok")


GOOD_NOMINAL = {
    "crn": "X123456",
    "area": "E08000029",
    "date_of_birth": date(1990, 4, 1),
    "mappa_level": None,
    "pnc_number": "2001/1234567A",
}


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({}, []),
        ({"mappa_level": 1}, []),
        ({"mappa_level": 3}, []),
        ({"pnc_number": None}, []),
        ({"crn": "A12"}, ["crn"]),
        ({"area": "E08000099"}, ["area"]),
        ({"area": "west-midlands"}, ["area"]),
        ({"date_of_birth": date(2026, 11, 25)}, ["date_of_birth"]),
        ({"mappa_level": 0}, ["mappa_level"]),
        ({"mappa_level": 4}, ["mappa_level"]),
        ({"pnc_number": "01/123A"}, ["pnc_number"]),
        ({"crn": "bad", "mappa_level": 9}, ["crn", "mappa_level"]),
    ],
)
def test_check_nominal(overrides: dict, fields: list[str]) -> None:
    values = {**GOOD_NOMINAL, **overrides}
    if not fields:
        check_nominal(today=TODAY, **values)
        return
    with pytest.raises(InvalidValue) as caught:
        check_nominal(today=TODAY, **values)
    assert [e.field for e in caught.value.field_errors] == fields
