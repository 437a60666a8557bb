"""The cohorts service's errors: each a `PathwaysError` with its own status, code and title."""

from __future__ import annotations

from pathways_shared import errors
from pathways_shared.errors import FieldError, InvalidValue

__all__ = [
    "AlreadyMember", "FieldError", "IllegalTransition", "InvalidPolicy", "InvalidValue",
    "NotAMember", "NotForIom",
]


class InvalidPolicy(InvalidValue):
    """A selection policy that does not validate."""

    code = "invalid-policy"
    title = "Invalid selection policy"


class NotForIom(InvalidValue):
    """The person cannot be managed in an IOM cohort at all (under 18)."""

    code = "not-for-iom"
    title = "Person cannot join an IOM cohort"


class IllegalTransition(errors.IllegalTransition):
    """A panel decision the membership rules do not allow from the member's current state."""

    title = "Decision not allowed in the current state"


class AlreadyMember(IllegalTransition):
    code = "already-member"
    title = "Already a member"


class NotAMember(IllegalTransition):
    code = "not-a-member"
    title = "Not a current member"
