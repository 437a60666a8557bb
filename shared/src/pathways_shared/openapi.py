"""The published contract: each service's OpenAPI document, shaped once for all four.

FastAPI derives the paths and schemas from the routes; this module makes the document say
what the server does: readable operation ids (`submitReferral`), the bearer scheme on every
protected operation (declared by `auth.current_principal`), every error a problem+json body
with the shared `Problem` schema for each status an operation can answer, servers, licence
and contact. Operator routes (health, metrics, dead letters) are kept out of the partner's
document and served apart at `/openapi-operator.json`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from pathways_shared.problems import PROBLEM_JSON, STATUS_MEANINGS, Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
OPERATOR_TAG = "operator"

INFO = {
    "contact": {"name": "Pathways partnership team", "email": "pathways@probation.example",
                "url": "https://pathways.example/support"},
    "license": {"name": "Open Government Licence v3.0",
                "url": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"},
}


# What each tag groups, for the documents' tag list (a tag a service uses and this does not
# name is described by its name).
TAG_DESCRIPTIONS = {
    "referrals": "Referrals of people on probation and their needs, as probation sees them",
    "catalogue": "Providers and their commissioned services",
    "routing": "Eligibility and how each need was routed",
    "inbox": "A provider's referrals and the actions it takes on them",
    "nominals": "People known to the IOM scheme and their offence histories",
    "policies": "Each area's selection policy",
    "selection": "Selection runs: the candidates for each cohort",
    "cohorts": "Cohort membership: adoption, deselection, moves and reviews",
    "subscriptions": "Webhook subscriptions to the partnership's events",
    "delivery log": "Every email and webhook delivery and its attempts",
    "figures": "The partnership's figures (no personal data)",
    "data protection": "Subject access requests (DPA 2018)",
    OPERATOR_TAG: "Health, metrics and dead letters, for the team running the service",
}


def operation_id(route: APIRoute) -> str:
    """`submit_referral` -> `submitReferral`: stable while the route's function keeps its name."""
    head, *rest = route.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": PROBLEM_REF}}


def _shape_operation(op: dict[str, Any], *, path: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    for created in ("201", "202"):
        if created in responses:
            responses[created].setdefault("headers", {})["Location"] = {
                "description": "The path of the record created (of the import, for a 202)",
                "schema": {"type": "string"},
            }
    statuses: set[int] = {int(s) for s in responses if s.isdigit() and int(s) >= 400}
    # an operation without the bearer scheme (health, metrics) says it needs no credentials
    op.setdefault("security", [])
    if op.get("security"):
        statuses |= {401, 403}
    has_input = bool(op.get("parameters") or op.get("requestBody"))
    if op.get("requestBody"):
        # a body the server cannot decode (not UTF-8) is a 400; one past the size limit a 413
        statuses |= {400, 413}
    if has_input:
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    for status in sorted(statuses):
        entry = responses.get(str(status)) or {}
        description = entry.get("description")
        if not description or description in ("Validation Error", "Unprocessable Entity"):
            description = STATUS_MEANINGS.get(status, "Error")
        shaped: dict[str, Any] = {"description": description, "content": _problem_content()}
        if status == 401:
            shaped["headers"] = {"WWW-Authenticate": {
                "description": 'RFC 6750: `Bearer realm="pathways", error="invalid_token", error_description="..."`',
                "schema": {"type": "string"}}}
        if status == 503:
            shaped["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[str(status)] = shaped


def shape_document(doc: dict[str, Any]) -> dict[str, Any]:
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                _shape_operation(op, path=path)
                if not op.get("tags"):
                    # untagged routes group by their collection: /provider-referrals/{id} -> provider-referrals
                    op["tags"] = [path.strip("/").split("/")[0].split(":")[0] or "service"]
    # every tag an operation uses is declared at the top (Redocly's operation-tag-defined)
    declared = doc.setdefault("tags", [])
    named = {tag["name"] for tag in declared}
    used = sorted({t for item in doc.get("paths", {}).values() for op in item.values()
                   if isinstance(op, dict) for t in op.get("tags", [])})
    declared.extend({"name": tag, "description": TAG_DESCRIPTIONS.get(tag, tag.capitalize())}
                    for tag in used if tag not in named)
    if not declared:
        doc.pop("tags")
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if "Problem" not in schemas:
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schemas["Problem"].pop("$defs", {}).items():
            schemas.setdefault(name, sub)
    return doc


def _document(app: FastAPI, routes: list[Any], *, title: str, description: str) -> dict[str, Any]:
    doc = get_openapi(
        title=title, version=app.version, description=description, routes=routes,
        tags=app.openapi_tags, servers=app.servers,
        contact=INFO["contact"], license_info=INFO["license"],
    )
    return shape_document(doc)


def install_openapi(app: FastAPI, operator_routes: list[Any]) -> None:
    """The partner document at `/openapi.json`; the operator one at `/openapi-operator.json`."""

    def partner() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app, app.routes, title=app.title, description=app.description)
        return app.openapi_schema

    operator_schema: dict[str, Any] = {}

    def operator() -> dict[str, Any]:
        if not operator_schema:
            operator_schema.update(_document(
                app, operator_routes, title=f"{app.title} (operator)",
                description="Health, metrics and dead letters: for the team running the service, not for partners.",
            ))
        return operator_schema

    app.openapi = partner  # type: ignore[method-assign]
    app.state.operator_openapi = operator

    @app.get("/openapi-operator.json", include_in_schema=False)
    async def operator_openapi() -> dict[str, Any]:
        return operator()


DOCS_ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc` with their assets served from an installed package
    (fastapi-offline's copy), not a CDN: the pages work offline and behind a strict firewall."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json", title=f"{app.title}: API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False,
        )
