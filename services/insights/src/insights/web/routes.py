"""The dashboard's routes: five pages of figures, a CSV of every table, and the sign-ins.

Routes parse, authorise, fetch the figures (through `insights.web.source`, the same
service function the `/figures/*` API answers from) and render; the rules live elsewhere:
`filters` (the GET form), `pages` (tables and charts), `signin` (who is looking).
`install(app, settings)` wires it all into the insights app.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from insights.web import source
from insights.web.config import DashboardSettings
from insights.web.filters import Filters, parse_filters
from insights.web.labels import PROVIDER_NAMES
from insights.web.pages import OVERVIEW, PAGES, TABLES, PageSpec, TableSpec, build_table
from insights.web.signin import (
    DASHBOARD_ROLES,
    PageError,
    SignInRequired,
    claims_to_user,
    dashboard_principal,
    principal_of,
    remember,
    safe_next,
    visible_areas,
)
from pathways_shared.auth import Principal
from pathways_shared.clock import london_today
from pathways_shared.runtime import FORM_PATHS
from pathways_shared.vocabulary import AREAS, PATHWAY_NAMES

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(
    PAGES=PAGES, AREAS=AREAS, PATHWAY_NAMES=PATHWAY_NAMES, PROVIDER_NAMES=PROVIDER_NAMES,
)
templates.env.filters["area_name"] = lambda code: AREAS.get(code, code)

# Pages load only this service's own styles and scripts (GOV.UK Frontend is served from here),
# never sit in another site's frame, and are not kept by caches: they show a signed-in view.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)
development_router = APIRouter(include_in_schema=False)
DashboardUser = Annotated[Principal, Depends(dashboard_principal)]


def _settings(request: Request) -> DashboardSettings:
    return request.app.state.settings


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    principal = principal_of(request)
    base = {"user": principal, "development": _settings(request).development_sign_in}
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


# --- pages ---------------------------------------------------------------------------------
def _applicable(spec: PageSpec, filters: Filters) -> Filters:
    """The filters a page's figures take (cohorts and Duty to Refer: no pathway or provider)."""
    if spec.uses_pathway_provider:
        return filters
    return dataclasses.replace(filters, pathway=None, provider=None)


async def _page(request: Request, spec: PageSpec, principal: Principal) -> HTMLResponse:
    filters, errors = parse_filters(
        request.query_params.multi_items(), allowed_areas=principal.areas, today=london_today()
    )
    if errors.forbidden_areas:
        names = ", ".join(AREAS.get(a, a) for a in errors.forbidden_areas)
        raise PageError(403, "You cannot see figures for that area",
                        f"Your sign-in does not cover {names}. Choose among your own areas.")
    tables = []
    threshold = None
    if not errors:
        wanted = {(t.kind, t.by) for t in spec.tables}
        answers = await source.answers(request, principal, _applicable(spec, filters), wanted)
        threshold = next(iter(answers.values()))["suppression"]["threshold"] if answers else None
        tables = [build_table(t, answers[(t.kind, t.by)], threshold=threshold or 5) for t in spec.tables]
    headline = None  # the overview's key figures: the total row of its first table
    if spec is OVERVIEW and tables:
        month = tables[0]
        if month.total is not None:
            headline = list(zip(month.spec.columns, month.total[1], strict=True))
    return _render(request, "page.html", {
        "page": spec, "filters": filters, "errors": errors, "tables": tables,
        "threshold": threshold, "headline": headline, "areas": visible_areas(principal),
        "csv_query": filters.query(),
    }, status=400 if errors else 200)


def _page_route(spec: PageSpec) -> None:
    async def handler(request: Request, principal: DashboardUser) -> HTMLResponse:
        return await _page(request, spec, principal)

    handler.__name__ = f"page_{spec.slug.replace('-', '_')}"
    router.add_api_route(spec.path, handler, methods=["GET"], response_class=HTMLResponse,
                         name=handler.__name__)


for _spec in PAGES:
    _page_route(_spec)


@router.get("/download/{table_id}.csv", name="download_csv")
async def download_csv(request: Request, table_id: str, principal: DashboardUser) -> Response:
    """A table's figures as CSV: the figures API's own CSV of the same answer."""
    found = TABLES.get(table_id)
    if found is None:
        raise PageError(404, "Page not found", "There is no table with that name.")
    table: TableSpec = found[1]
    filters, errors = parse_filters(
        request.query_params.multi_items(), allowed_areas=principal.areas, today=london_today()
    )
    if errors.forbidden_areas:
        raise PageError(403, "You cannot see figures for that area", "Choose among your own areas.")
    if errors:
        raise PageError(400, "There is a problem with the filters", " ".join(errors.messages.values()))
    body = await source.csv(request, principal, _applicable(found[0], filters), table.kind, table.by)
    name = f"pathways-{table_id}-{filters.date_from}-to-{filters.date_to}.csv"
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })


# --- sign-in and sign-out ------------------------------------------------------------------
@router.get("/login", name="login")
async def login(request: Request, next: str = "/") -> Response:
    settings = _settings(request)
    target = safe_next(next)
    oauth = getattr(request.app.state, "oauth", None)
    if oauth is None:
        if settings.development_sign_in:
            return RedirectResponse(f"/dev/sign-in?{urlencode({'next': target})}", status_code=303)
        raise PageError(503, "Sign-in is not available",
                        "The identity provider is not configured for this service.")
    request.session["next"] = target
    redirect_uri = f"{settings.base_url.rstrip('/')}/auth/callback"
    return await oauth.idp.authorize_redirect(request, redirect_uri)


@router.get("/auth/callback", name="auth_callback")
async def auth_callback(request: Request) -> Response:
    from authlib.integrations.base_client.errors import OAuthError

    settings = _settings(request)
    oauth = getattr(request.app.state, "oauth", None)
    if oauth is None:
        raise PageError(404, "Page not found", "Sign-in with an identity provider is not configured.")
    try:
        token = await oauth.idp.authorize_access_token(request)
    except OAuthError as exc:
        raise PageError(401, "Sign-in failed", f"The identity provider said: {exc.error}.") from exc
    claims = dict(token.get("userinfo") or {})
    if not claims:
        raise PageError(401, "Sign-in failed", "The identity provider gave no ID token.")
    sub, roles, areas = claims_to_user(claims, settings)
    target = safe_next(request.session.get("next"))
    remember(request, sub=sub, roles=roles, areas=areas, via="oidc", settings=settings)
    return RedirectResponse(target, status_code=303)


@router.post("/sign-out", name="sign_out")
async def sign_out(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/signed-out", status_code=303)


@router.get("/signed-out", name="signed_out", response_class=HTMLResponse)
async def signed_out(request: Request) -> HTMLResponse:
    return _render(request, "signed_out.html", {})


@development_router.get("/dev/sign-in", name="development_sign_in", response_class=HTMLResponse)
async def development_sign_in_page(request: Request, next: str = "/") -> HTMLResponse:
    return _render(request, "sign_in.html", {
        "next": safe_next(next), "roles": DASHBOARD_ROLES, "errors": {}, "chosen": {},
    })


@development_router.post("/dev/sign-in", name="development_sign_in_submit")
async def development_sign_in(request: Request) -> Response:
    """Development only: sign in as any dashboard role for any areas (no password)."""
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(key, []).append(value)
    role = (form.get("role") or [""])[0]
    areas = [a for a in form.get("areas", []) if a in AREAS]
    errors: dict[str, str] = {}
    if role not in DASHBOARD_ROLES:
        errors["role"] = "Choose a role"
    if role == "partnership" and not areas:
        errors["areas"] = "Choose at least one area for a partnership analyst"
    target = safe_next((form.get("next") or ["/"])[0])
    if errors:
        return _render(request, "sign_in.html", {
            "next": target, "roles": DASHBOARD_ROLES, "errors": errors,
            "chosen": {"role": role, "areas": areas},
        }, status=400)
    remember(
        request, sub=f"dev-{role}", roles=[role],
        areas=areas if role == "partnership" or areas else None, via="development",
        settings=_settings(request),
    )
    return RedirectResponse(target, status_code=303)


# --- wiring --------------------------------------------------------------------------------
async def _sign_in_required(request: Request, exc: SignInRequired) -> Response:
    return RedirectResponse(f"/login?{urlencode({'next': safe_next(exc.next_url)})}", status_code=303)


async def _page_error(request: Request, exc: PageError) -> Response:
    return _render(request, "error.html", {"title": exc.title, "detail": exc.detail, "status": exc.status},
                   status=exc.status)


def install(app: FastAPI, settings: DashboardSettings) -> None:
    """The dashboard on the insights app: pages, static files (GOV.UK Frontend from its npm
    package, never a CDN), the session cookie, and the sign-in the environment allows."""
    govuk = settings.node_modules / "govuk-frontend" / "dist" / "govuk"
    app.mount("/assets", StaticFiles(directory=govuk / "assets", check_dir=False), name="govuk-assets")
    app.mount("/govuk", _GovukFiles(directory=govuk, check_dir=False), name="govuk")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.add_middleware(
        SessionMiddleware, secret_key=settings.session_secret or "", session_cookie="insights_session",
        max_age=int(settings.session_hours * 3600), same_site="lax",
        https_only=settings.secure_cookie,
    )
    app.include_router(router)
    form_paths = {"/sign-out"}
    if settings.development_sign_in:
        app.include_router(development_router)
        form_paths.add("/dev/sign-in")
    setattr(app.state, FORM_PATHS, frozenset(form_paths))
    if settings.oidc_configured:
        from authlib.integrations.starlette_client import OAuth

        oauth = OAuth()
        oauth.register(
            "idp", server_metadata_url=settings.oidc_metadata_url,
            client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
            client_kwargs={"scope": settings.oidc_scope},
        )
        app.state.oauth = oauth
    app.add_exception_handler(SignInRequired, _sign_in_required)  # type: ignore[arg-type]
    app.add_exception_handler(PageError, _page_error)  # type: ignore[arg-type]


class _GovukFiles(StaticFiles):
    """Only the built stylesheet and script of GOV.UK Frontend (and their maps)."""

    ALLOWED = frozenset({
        "govuk-frontend.min.css", "govuk-frontend.min.css.map",
        "govuk-frontend.min.js", "govuk-frontend.min.js.map",
    })

    async def get_response(self, path: str, scope: Any) -> Response:
        if path not in self.ALLOWED:
            return Response("Not found", status_code=404, media_type="text/plain")
        return await super().get_response(path, scope)


