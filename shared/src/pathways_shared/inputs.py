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

from pydantic import BeforeValidator, StrictBool

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

__all__ = ["InputBool", "InputDate", "InputDateTime"]
