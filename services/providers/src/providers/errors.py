"""Domain errors of the providers service.

Each carries an HTTP-ish `status`, a stable `code` and a `title`, so one problem-details
handler can map every one of them; validation errors also carry the fields at fault.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One field at fault: `field` is the dotted path inside the request body."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class DomainError(Exception):
    status: int = 400
    code: str = "domain-error"
    title: str = "The request breaks a rule of the domain"

    def __init__(self, detail: str, errors: tuple[FieldError, ...] | list[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field_errors: tuple[FieldError, ...] = tuple(errors)
        # the shape the shared problem-details handler serialises
        self.errors: list[dict[str, str]] | None = [e.as_dict() for e in errors] or None


class InvalidValue(DomainError):
    """A value the rules refuse (422), with the fields at fault."""

    status = 422
    code = "invalid-value"
    title = "Invalid value"

    @classmethod
    def for_field(cls, field: str, message: str) -> InvalidValue:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class InvalidService(InvalidValue):
    """A catalogue entry that does not validate."""

    code = "invalid-service"
    title = "Invalid service"


class IllegalTransition(DomainError):
    """An action the provider-referral state machine does not allow from its current state."""

    status = 409
    code = "illegal-transition"
    title = "Action not allowed in the current state"

    def __init__(self, action: str, status_now: str) -> None:
        super().__init__(f"cannot {action} a referral that is {status_now}")
        self.action = action
        self.status_now = status_now
