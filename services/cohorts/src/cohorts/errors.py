"""Domain errors of the cohorts service.

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
        # As the problem-details handler puts them in the body: [{"field", "message"}].
        self.errors: list[dict[str, str]] = [e.as_dict() for e in self.field_errors]


class InvalidValue(DomainError):
    """A value the rules refuse (422), with the fields at fault."""

    status = 422
    code = "invalid-value"
    title = "Invalid value"

    @classmethod
    def for_field(cls, field: str, message: str) -> InvalidValue:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class InvalidPolicy(InvalidValue):
    """A selection policy that does not validate."""

    code = "invalid-policy"
    title = "Invalid selection policy"


class NotForIom(InvalidValue):
    """The person cannot be managed in an IOM cohort at all (under 18)."""

    code = "not-for-iom"
    title = "Person cannot join an IOM cohort"


class IllegalTransition(DomainError):
    """A panel decision the membership rules do not allow from the member's current state."""

    status = 409
    code = "illegal-transition"
    title = "Decision not allowed in the current state"


class AlreadyMember(IllegalTransition):
    code = "already-member"
    title = "Already a member"


class NotAMember(IllegalTransition):
    code = "not-a-member"
    title = "Not a current member"
