"""RFC 9457 problem details: every 4xx/5xx body is `application/problem+json`.

Raise a `PathwaysError` (`pathways_shared.errors`; every service's errors subclass it) and the
handlers here shape it; `Problem` is the body's model for the OpenAPI documents. Validation
errors list each field at fault as a dotted path inside the body (`needs.1.pathway`) or the
parameter name.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from pathways_shared.errors import (  # noqa: F401  (re-exported: raised by the API layers)
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PathwaysError,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationProblem,
)
from pathways_shared.observability import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://pathways.example/problems/"


class FieldErrorPublic(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every 4xx/5xx body is (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldErrorPublic] | None = None


# What each status means when a route does not say more.
STATUS_MEANINGS = {
    400: "Bad request: the body cannot be decoded",
    401: "No bearer token, or one that is invalid or expired (see WWW-Authenticate)",
    403: "The token lacks the role, provider or area this needs",
    404: "No such record, or one the caller may not see",
    409: "The record's state does not allow this",
    413: "The request body is larger than the service takes",
    422: "The request is invalid; `errors` names each field at fault",
    503: "A dependency is unreachable; retry after Retry-After seconds",
}


def problem_responses(
    meanings: dict[int, str] | None = None, *statuses: int
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these statuses, each a problem+json body (the shared
    `Problem` schema) described by the service's own `meanings` or the shared ones. Routes
    declare the statuses only they know (404, 409); `pathways_shared.openapi` adds 401, 403
    and 422 wherever they apply."""
    meanings = {**STATUS_MEANINGS, **(meanings or {})}
    return {
        status: {
            "description": meanings.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: list[dict[str, str]] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (code or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "needs", 1, "pathway")` -> `needs.1.pathway`; `("query", "limit")` -> `limit`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where = parts.pop(0)
        if not parts:
            return "body" if where == "body" else where
    # pydantic adds validator names (`function-after[...]`) and union tags: not fields.
    kept = [str(p) for p in parts if isinstance(p, int) or ("[" not in str(p) and "-" not in str(p))]
    return ".".join(kept) or "body"


def validation_errors(raw: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for err in raw:
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            out.append({"field": "body", "message": "the body is not valid JSON"})
            continue
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        message = message.removeprefix("Value error, ")
        out.append({"field": field_path(err.get("loc", ())), "message": message})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        return problem_response(
            422, "Validation failed", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            code="validation", errors=errors, instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return problem_response(exc.status_code, title, detail, instance=request.url.path,
                                headers=headers or None)

    @app.exception_handler(PathwaysError)
    async def _problem(request: Request, exc: PathwaysError) -> JSONResponse:
        return exception_response(request, exc)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """RFC 9110 section 15.5.6: a 405's `Allow` lists every method the path takes. The router
    names only the first route whose path matched, though `GET` and `PUT /services/{code}`
    are routes of their own: each method is asked of every route (included routers nest)."""
    from starlette.routing import Match, Mount

    # asked as the app saw the request, before a mount moved `root_path` on
    scope = {**request.scope, "root_path": request.scope.get("app_root_path", request.scope.get("root_path", ""))}
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount):  # static files: read-only
            if route.matches(scope)[0] is not Match.NONE:
                methods |= {"GET", "HEAD"}
            continue
        for method in _METHODS:
            if route.matches({**scope, "method": method})[0] is Match.FULL:
                methods.add(method)
    return ", ".join(sorted(methods))


def _is_unavailable(exc: Exception) -> bool:
    """A full connection pool or an unreachable database: worth a retry, not a bug."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, (PoolTimeout, OperationalError, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _challenge(exc: PathwaysError) -> dict[str, str] | None:
    """RFC 6750 section 3: a 401 names the scheme and why the token was refused."""
    if exc.status != 401:
        return None
    description = exc.detail.replace("\\", "").replace('"', "'")
    description = "".join(c for c in description if 0x20 <= ord(c) < 0x7F)[:200]
    if exc.detail == "missing bearer token":
        # No credentials at all: RFC 6750 says no error code then.
        return {"WWW-Authenticate": 'Bearer realm="pathways"'}
    return {"WWW-Authenticate": f'Bearer realm="pathways", error="invalid_token", error_description="{description}"'}


def exception_response(request: Request, exc: Exception) -> JSONResponse:
    """Any exception as a problem: a `PathwaysError` keeps its status, the rest are a logged 500.

    Called by the request middleware, so errors from any layer are mapped in this one place.
    """
    if isinstance(exc, PathwaysError):
        return problem_response(
            exc.status, exc.title, exc.detail,
            code=exc.code, errors=exc.errors, instance=request.url.path,
            headers=_challenge(exc),
        )
    from sqlalchemy.exc import DataError

    if isinstance(exc, DataError):
        # The database refused a value the schema let through (a NUL character, a number out
        # of range): bad input, not a bug in the caller's eyes, though each one is worth a
        # validator of its own (logged to find them).
        # The driver's message may quote the value (personal data): its type only.
        log.warning("http.data_error", path=request.url.path, error=type(exc.orig).__name__)
        return problem_response(
            422, "Validation failed",
            "A value in the request cannot be stored (for example a NUL character or a number out of range).",
            code="validation", instance=request.url.path,
        )
    if _is_unavailable(exc):
        log.warning("http.unavailable", path=request.url.path, error=repr(exc))
        return problem_response(
            503, "Service unavailable",
            "The service is busy or its database is unreachable; try again shortly.",
            code="unavailable", instance=request.url.path, headers={"Retry-After": "2"},
        )
    log.error("http.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem_response(
        500, "Internal error", "An unexpected error occurred; it has been logged.",
        code="internal", instance=request.url.path,
    )
