"""Who is looking at the dashboard: a signed session cookie holding the caller's `sub`, roles
and areas (nothing about any person), set by one of two sign-ins.

- Production: OpenID Connect authorization code flow against the configured identity
  provider (Authlib: discovery, state, nonce, the ID token checked against the provider's
  keys); roles and areas from the claims named in the settings.
- Development and tests only: a page to pick a role and areas. It is not routed at all in
  production (404).

Only the roles `partnership` and `admin` see the dashboard; areas are scoped as the API's.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from insights.web.config import DashboardSettings
from pathways_shared.auth import Principal
from pathways_shared.vocabulary import AREAS, expand_areas

DASHBOARD_ROLES = ("partnership", "admin")
SESSION_KEY = "user"


class SignInRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__("sign in")
        self.next_url = next_url


class PageError(Exception):
    """An error shown as a page (the dashboard's counterpart of problem+json)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def safe_next(raw: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`): never an open redirect."""
    if not raw:
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def remember(request: Request, *, sub: str, roles: list[str], areas: list[str] | None, via: str,
             settings: DashboardSettings) -> None:
    request.session.clear()
    request.session[SESSION_KEY] = {
        "sub": sub[:200],
        "roles": sorted({str(r) for r in roles}),
        "areas": sorted(expand_areas(areas)) if areas is not None else None,
        "via": via,
        "expires": int(time.time() + settings.session_hours * 3600),
    }


def principal_of(request: Request) -> Principal | None:
    user: dict[str, Any] | None = request.session.get(SESSION_KEY)
    if not user or user.get("expires", 0) < time.time():
        return None
    areas = user.get("areas")
    return Principal(
        sub=str(user["sub"]), roles=frozenset(user.get("roles") or ()),
        areas=frozenset(areas) if areas is not None else None,
    )


def dashboard_principal(request: Request) -> Principal:
    """The signed-in caller with a dashboard role; else sign in (303) or a 403 page."""
    principal = principal_of(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    if not principal.has(*DASHBOARD_ROLES):
        raise PageError(
            403, "You cannot see the partnership's figures",
            "The dashboard is for partnership analysts and administrators. Your sign-in "
            f"has the roles: {', '.join(sorted(principal.roles)) or 'none'}.",
        )
    return principal


def visible_areas(principal: Principal) -> list[str]:
    return sorted(principal.areas) if principal.areas is not None else sorted(AREAS)


def claims_to_user(claims: dict[str, Any], settings: DashboardSettings) -> tuple[str, list[str], list[str] | None]:
    """sub, roles and areas from the identity provider's claims (a string or a list each;
    no areas claim: every area, as for national roles in the API)."""
    sub = claims.get("sub")
    if not sub:
        raise PageError(401, "Sign-in failed", "The identity provider gave no subject.")
    roles = claims.get(settings.oidc_roles_claim) or []
    if isinstance(roles, str):
        roles = roles.replace(",", " ").split()
    areas = claims.get(settings.oidc_areas_claim)
    if isinstance(areas, str):
        areas = areas.replace(",", " ").split()
    if not isinstance(roles, list) or (areas is not None and not isinstance(areas, list)):
        raise PageError(401, "Sign-in failed", "The identity provider's roles or areas are not lists.")
    return str(sub), [str(r) for r in roles], [str(a) for a in areas] if areas is not None else None
