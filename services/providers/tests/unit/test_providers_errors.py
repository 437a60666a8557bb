"""Domain errors carry what the shared problem-details handler reads."""

from __future__ import annotations

import pytest

from pathways_shared.errors import FieldError
from pathways_shared.errors import PathwaysError as DomainError
from providers.errors import (
    IllegalTransition,
    InvalidService,
    InvalidValue,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidValue.for_field("reason_code", "must be one of capacity"), 422, "invalid-value"),
        (InvalidService("bad", [FieldError("priority", "too low")]), 422, "invalid-service"),
        (IllegalTransition("accept", "completed"), 409, "illegal-transition"),
    ],
)
def test_errors_carry_status_code_and_title(error: DomainError, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)
    assert error.title and error.detail


def test_field_errors_are_also_plain_dicts() -> None:
    error = InvalidValue.for_field("comments", "required when the reason is other")
    assert error.errors == [{"field": "comments", "message": "required when the reason is other"}]
    assert error.field_errors == (FieldError("comments", "required when the reason is other"),)


def test_an_error_without_fields_has_no_errors_list() -> None:
    error = IllegalTransition("start", "allocated")
    assert error.errors is None and error.field_errors == ()
    assert error.detail == "cannot start a referral that is allocated"
