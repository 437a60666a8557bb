"""The providers service's errors: each a `PathwaysError` with its own status, code and title."""

from __future__ import annotations

from pathways_shared import errors
from pathways_shared.errors import FieldError, InvalidValue

__all__ = ["FieldError", "IllegalTransition", "InvalidService", "InvalidValue"]


class InvalidService(InvalidValue):
    """A catalogue entry that does not validate."""

    code = "invalid-service"
    title = "Invalid service"


class IllegalTransition(errors.IllegalTransition):
    """An action the provider-referral state machine does not allow from its current state."""

    title = "Action not allowed in the current state"

    def __init__(self, action: str, status_now: str) -> None:
        super().__init__(f"cannot {action} a referral that is {status_now}")
        self.action = action
        self.status_now = status_now
