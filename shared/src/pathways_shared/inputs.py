"""Request field types that accept exactly what the published schema says (issue 15).

Pydantic's lax mode turns `0` into 1970-01-01, `"yes"` or `1` into true and a Unix number into
a time: a partner's bug becomes a stored record. These refuse anything but the JSON the schema
names (a `YYYY-MM-DD` string, an RFC 3339 string, `true`/`false`), with a 422 naming the field.
The JSON Schema is unchanged (`format: date`, `format: date-time`, `boolean`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field, StrictBool

from pathways_shared.vocabulary import AREAS

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_string(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


def _date_time_string(value: Any) -> Any:
    if isinstance(value, (datetime, str)):
        return value
    raise ValueError("must be a date-time string (RFC 3339, for example 2026-11-20T10:00:00Z)")


InputDate = Annotated[date, BeforeValidator(_date_string)]
InputDateTime = Annotated[datetime, BeforeValidator(_date_time_string)]
InputBool = StrictBool


# Identifiers as the published schema states them. The services check each one in their own
# rules (every error of a body at once, with a message a person can act on); these types only
# make the schema say what those rules refuse, so a partner's validator and generator know it.
CRN_JSON_PATTERN = r"^[A-Z][0-9]{6}$"
NOMS_JSON_PATTERN = r"^[A-Z][0-9]{4}[A-Z]{2}$"
PNC_JSON_PATTERN = r"^[0-9]{4}/[0-9]{7}[A-Z]$"

AreaCode = Annotated[str, Field(
    max_length=20, description="A local authority area, by its ONS GSS code",
    json_schema_extra={"enum": sorted(AREAS)},
)]
Crn = Annotated[str, Field(
    max_length=20, description="Case reference number (nDelius): a capital letter and six digits",
    json_schema_extra={"pattern": CRN_JSON_PATTERN, "examples": ["X123456"]},
)]
NomsNumber = Annotated[str, Field(
    max_length=20, description="Prison number: a letter, four digits, two letters",
    json_schema_extra={"pattern": NOMS_JSON_PATTERN, "examples": ["A1234BC"]},
)]
PncNumber = Annotated[str, Field(
    max_length=20, description="Police National Computer number: YYYY/NNNNNNNL",
    json_schema_extra={"pattern": PNC_JSON_PATTERN, "examples": ["2010/1234567A"]},
)]


# Path parameters: checked before the route runs, a 422 naming the parameter (`crn`, `area`, ...)
# when they do not match. Pydantic's `pattern` runs in Rust's regex engine, where `$` is the end
# of the text, so "X123456\n" does not match (identifiers are matched whole).
def _known_area(value: str) -> str:
    if value not in AREAS:
        raise ValueError("is not a known area (a GSS code of a local authority area we cover)")
    return value


def _known_area_if_given(value: str | None) -> str | None:
    return None if value is None else _known_area(value)


CrnPath = Annotated[str, Path(
    max_length=7, pattern=CRN_JSON_PATTERN, examples=["X123456"],
    description="Case reference number (nDelius): a capital letter and six digits",
)]
AreaPath = Annotated[str, AfterValidator(_known_area), Path(
    max_length=20, description="A local authority area, by its ONS GSS code",
    json_schema_extra={"enum": sorted(AREAS)},
)]
IdPath = Annotated[UUID, Path(description="The record's id (a UUID)")]
# The same, asked as query parameters.
CrnQuery = Annotated[str, Query(
    max_length=7, pattern=CRN_JSON_PATTERN, examples=["X123456"],
    description="Case reference number (nDelius): a capital letter and six digits",
)]
AreaQuery = Annotated[str | None, AfterValidator(_known_area_if_given), Query(
    max_length=20, description="A local authority area, by its ONS GSS code",
    json_schema_extra={"enum": sorted(AREAS)},
)]


def not_blank(max_length: int, description: str | None = None) -> Any:
    """A text the server refuses blank (its own rule, with its own message), stated in the
    schema as a pattern: at least one character that is not white space."""
    return Field(max_length=max_length, description=description,
                 json_schema_extra={"pattern": r"\S"})


def code_of(values: Any, description: str) -> Any:
    """A code the service parses in its own rules (a 422 naming the field), stated in the
    schema as the enum it is."""
    return Field(max_length=40, description=description,
                 json_schema_extra={"enum": [getattr(v, "value", v) for v in values]})


def comments_required_when_other(reason_field: str) -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.1) for "`comments` is required, not blank, when the reason is
    `other`": the rule the server enforces, as a model's `json_schema_extra`."""
    return {
        "if": {"properties": {reason_field: {"const": "other"}}, "required": [reason_field]},
        "then": {"required": ["comments"],
                 "properties": {"comments": {"type": "string", "pattern": r"\S"}}},
        "description": f"`comments` is required (not blank) when `{reason_field}` is `other`.",
    }


__all__ = [
    "AreaCode",
    "AreaPath",
    "AreaQuery",
    "Crn",
    "CrnPath",
    "CrnQuery",
    "IdPath",
    "InputBool",
    "InputDate",
    "InputDateTime",
    "NomsNumber",
    "PncNumber",
    "code_of",
    "comments_required_when_other",
    "not_blank",
]
