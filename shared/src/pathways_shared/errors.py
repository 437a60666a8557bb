"""The one error base of every service: what a refusal says over HTTP, without HTTP.

A service's errors subclass `PathwaysError` and carry their own `status`, a stable `code` (the
problem `type` suffix) and a `title`; a validation error also carries the fields at fault.
`pathways_shared.problems` maps them to `application/problem+json` in one place. Pure: a
domain module may raise these without importing the web framework.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One field at fault: `field` is the dotted path inside the request body (`needs.1.pathway`)
    or the parameter's name."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class PathwaysError(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        errors: Iterable[FieldError] = (),
        *,
        field: str | None = None,
        status: int | None = None,
        title: str | None = None,
        code: str | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        if code is not None:
            self.code = code
        self.detail = detail or self.title
        super().__init__(self.detail)
        field_errors = tuple(errors)
        if field is not None:
            field_errors = (*field_errors, FieldError(field, self.detail))
        self.field_errors: tuple[FieldError, ...] = field_errors

    @property
    def errors(self) -> list[dict[str, str]] | None:
        """The fields at fault as the problem body lists them; None when no field is."""
        return [e.as_dict() for e in self.field_errors] or None

    @property
    def field(self) -> str | None:
        """The field at fault when there is exactly one."""
        return self.field_errors[0].field if len(self.field_errors) == 1 else None


class InvalidValue(PathwaysError):
    """A value the rules refuse (422), with the fields at fault."""

    status = 422
    code = "invalid-value"
    title = "Invalid value"

    @classmethod
    def for_field(cls, field: str, message: str) -> InvalidValue:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class ValidationProblem(PathwaysError):
    status = 422
    title = "Validation failed"
    code = "validation"


class NotFound(PathwaysError):
    status = 404
    title = "Not found"
    code = "not-found"


class Conflict(PathwaysError):
    status = 409
    title = "Conflict"
    code = "conflict"


class IllegalTransition(Conflict):
    """An action a state machine does not allow from the current state (each service names
    its own in `title`)."""

    code = "illegal-transition"
    title = "Not allowed in the current state"


class Unauthorized(PathwaysError):
    status = 401
    title = "Unauthorized"
    code = "unauthorized"


class Forbidden(PathwaysError):
    status = 403
    title = "Forbidden"
    code = "forbidden"


class PayloadTooLarge(PathwaysError):
    status = 413
    title = "Payload too large"
    code = "too-large"


class RequestTimeout(PathwaysError):
    status = 408
    title = "Request timeout"
    code = "timeout"


class HeadersTooLarge(PathwaysError):
    status = 431
    title = "Request header fields too large"
    code = "headers-too-large"


class ServiceUnavailable(PathwaysError):
    status = 503
    title = "Service unavailable"
    code = "unavailable"
