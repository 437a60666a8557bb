"""Keyset (cursor) pagination: `{"data": [...], "next_cursor": "..." | null}`.

A cursor is the opaque, URL-safe encoding of the sort key of the last row served; the next
page asks for rows strictly after it. No OFFSET, so deep pages cost what the first one does.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import tuple_

from pathways_shared.clock import in_utc_range
from pathways_shared.problems import ValidationProblem

T = TypeVar("T")

LimitParam = Annotated[int, Query(ge=1, le=200, description="Page size, at most 200")]
# A cursor is what `encode_cursor` writes (unpadded URL-safe base64): never empty. The first
# page is asked without one; the last page answers `next_cursor: null`.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
CursorParam = Annotated[
    str | None,
    Query(
        min_length=1, max_length=500, pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page, as it was given; left out for the first page",
    ),
]
NEXT_CURSOR_DESCRIPTION = "Ask for the next page with this as `cursor`; null on the last page"
NextCursor = Annotated[str | None, Field(description=NEXT_CURSOR_DESCRIPTION)]
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: NextCursor = None


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, size: int) -> list[Any] | None:
    """The key values in a cursor, or a 422 on `cursor` when it is not one of ours."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(
            base64.urlsafe_b64decode(padded.encode()), parse_constant=_refuse_constant
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationProblem("cursor is not valid", field="cursor") from exc
    if not isinstance(values, list) or len(values) != size or not all(map(_sound, values)):
        raise ValidationProblem("cursor is not valid", field="cursor")
    return values


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a cursor value")


def _sound(value: Any) -> bool:
    """A cursor holds what `encode_cursor` writes: strings (times, ids, codes) and integers the
    database can hold; never floats (1e30), Infinity/NaN, nested values or times that
    overflow when said in UTC."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if not isinstance(value, str) or len(value) > 200:
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return True  # not a time: the caller parses it
    return moment.tzinfo is None or in_utc_range(moment)


def page_of(rows: list[T], limit: int, key: Any) -> tuple[list[T], str | None]:
    """Given up to limit+1 rows, the page and the cursor for the next (if there is one)."""
    if len(rows) > limit:
        page = rows[:limit]
        return page, encode_cursor(key(page[-1]))
    return rows, None


def newest_first(query: Any, at: Any, key: Any, after: list[Any] | tuple[Any, ...] | None,
                 limit: int) -> Any:
    """`query` as a keyset page, newest first on (`at`, `key`) (a time column and a unique
    one, led by an index that ends with them): the rows strictly after the cursor's `after`
    = (time, key) of the last row served, `limit + 1` of them so `page_of` sees if more wait."""
    if after is not None:
        query = query.where(tuple_(at, key) < tuple_(*after))
    return query.order_by(at.desc(), key.desc()).limit(limit + 1)
