"""The dashboard's settings, mixed into the insights service's one settings class
(`class InsightsSettings(DashboardSettings)`), so every variable is `INSIGHTS_<NAME>`.

Production refuses to start without its own session secret (the cookie's signing key); in
development and tests a random one per process will do (sessions end with the process).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, model_validator

from pathways_shared.config import KNOWN_DEFAULT_SECRETS, ServiceSettings


def _find_node_modules() -> Path:
    """The repository's node_modules/ (npm ci at the root), found upwards from this file."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules"
        if (candidate / "govuk-frontend").is_dir():
            return candidate
    return here.parents[5] / "node_modules"


class DashboardSettings(ServiceSettings):
    # Signs the session cookie. Required in production (at least 32 characters).
    session_secret: str | None = None
    # Hours a sign-in lasts.
    session_hours: float = Field(default=8.0, gt=0, le=24)
    # OpenID Connect: the identity provider's discovery document, and this client.
    oidc_metadata_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scope: str = "openid profile"
    # The claims of the ID token (or userinfo) that carry the roles and the areas.
    oidc_roles_claim: str = "roles"
    oidc_areas_claim: str = "areas"
    # Where GOV.UK Frontend and axe-core are (npm ci puts them in the repository's node_modules).
    node_modules: Path = Field(default_factory=_find_node_modules)

    @model_validator(mode="after")
    def _session_secret_for_production(self) -> DashboardSettings:
        if self.environment == "production":
            if not self.session_secret or self.session_secret in KNOWN_DEFAULT_SECRETS:
                raise ValueError("production needs INSIGHTS_SESSION_SECRET (the dashboard's cookie key)")
            if len(self.session_secret) < 32:
                raise ValueError("INSIGHTS_SESSION_SECRET must be at least 32 characters in production")
        elif not self.session_secret:
            self.session_secret = secrets.token_urlsafe(32)
        return self

    @property
    def development_sign_in(self) -> bool:
        """The pick-a-role sign-in page: development and tests only, never production."""
        return self.environment in ("development", "test")

    @property
    def secure_cookie(self) -> bool:
        """Secure cookies everywhere but development (or tests) over plain http."""
        return not (self.development_sign_in and self.base_url.startswith("http://"))

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_metadata_url and self.oidc_client_id)
