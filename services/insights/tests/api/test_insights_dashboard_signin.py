"""Sign-in to the dashboard, over HTTP against the app (no browser): the development page
exists only outside production, the cookie's attributes, who may see the pages, and the
OpenID Connect authorization-code flow against a real (local) identity provider."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from insights.app import create_app
from insights.config import InsightsSettings
from pathways_shared.testing import TEST_JWT_SECRET, free_port

SESSION_SECRET = "a-session-secret-for-tests-0123456789abcdef"


def make_settings(**values: Any) -> InsightsSettings:
    base = {"environment": "test", "jwt_secret": TEST_JWT_SECRET, "log_json": False,
            "database_url": "sqlite+aiosqlite:///:memory:", "run_workers": False}
    return InsightsSettings(**{**base, **values})


@contextlib.asynccontextmanager
async def browserless(settings: InsightsSettings, base_url: str = "http://testserver"):
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


async def test_production_has_no_development_sign_in_and_sends_everyone_to_the_identity_provider():
    settings = make_settings(environment="production", session_secret=SESSION_SECRET,
                             public_url="https://insights.example")
    async with browserless(settings, "https://insights.example") as client:
        assert (await client.get("/dev/sign-in")).status_code == 404
        assert (await client.post("/dev/sign-in", content="role=admin")).status_code in (404, 405)
        page = await client.get("/providers?area=E08000029")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fproviders%3Farea%3DE08000029"
        # No identity provider configured here: a clear page, never a 500.
        login = await client.get("/login")
        assert login.status_code == 503 and "Sign-in is not available" in login.text


async def test_development_sign_in_sets_a_signed_httponly_lax_cookie_and_returns_where_you_were():
    async with browserless(make_settings(environment="development")) as client:
        page = await client.get("/dev/sign-in?next=/equality")
        assert page.status_code == 200 and "Partnership analyst" in page.text
        refused = await client.post("/dev/sign-in", content="role=probation&next=/",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 400 and "Choose a role" in refused.text
        no_area = await client.post("/dev/sign-in", content="role=partnership",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert no_area.status_code == 400 and "at least one area" in no_area.text
        signed = await client.post(
            "/dev/sign-in", content=urlencode({"role": "partnership", "areas": "E08000029",
                                               "next": "https://evil.example/"}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"].lower()
        assert "insights_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # development over plain http only
        out = await client.post("/sign-out")
        assert out.status_code == 303 and out.headers["location"] == "/signed-out"
        assert (await client.get("/")).status_code == 303  # signed out: sign in again


async def test_outside_development_over_https_the_cookie_is_secure():
    settings = make_settings(environment="test", public_url="https://insights.example")
    async with browserless(settings, "https://insights.example") as client:
        signed = await client.post("/dev/sign-in", content="role=admin",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert "secure" in signed.headers["set-cookie"].lower()


async def test_bad_requests_get_a_page_or_problem_never_a_500():
    async with browserless(make_settings()) as client:
        await client.post("/dev/sign-in", content="role=partnership&areas=E08000029",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        outside = await client.get("/?area=E08000025")
        assert outside.status_code == 403 and "You cannot see figures for that area" in outside.text
        unknown = await client.get("/download/no-such-table.csv")
        assert unknown.status_code == 404
        bad_csv = await client.get("/download/needs-by-month.csv?from=2026-02-31")
        assert bad_csv.status_code == 400
        for path in ("/?from=31/12/2026", "/?to=2026-13-01", "/providers?pathway=x&provider=%3Cb%3E",
                     "/?from=2026-06-01&to=2026-01-01", "/?area=nowhere"):
            page = await client.get(path)
            assert page.status_code == 400, path
            assert "There is a problem" in page.text and "<b>" not in page.text


# --- OpenID Connect against a real identity provider on loopback ---------------------------
class IdentityProvider:
    """A small but real OpenID Connect provider: discovery, authorize (code), token (RS256
    ID token with the nonce), JWKS. The claims it gives are set per test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.app = self._app()

    def _app(self) -> FastAPI:
        app = FastAPI()
        idp = self

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {
                "issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize",
                "token_endpoint": f"{idp.url}/token", "jwks_uri": f"{idp.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }

        @app.get("/authorize")
        async def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            code = secrets.token_urlsafe(16)
            idp.codes[code] = {"nonce": q.get("nonce"), "client_id": q["client_id"]}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            grant = idp.codes.pop(form["code"][0])
            now = int(time.time())
            claims = {"iss": idp.url, "aud": grant["client_id"], "iat": now, "exp": now + 300,
                      "nonce": grant["nonce"], **idp.claims}
            id_token = jwt.encode(claims, idp.key, algorithm="RS256", headers={"kid": "k1"})
            return JSONResponse({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                                 "id_token": id_token})

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}

        return app


@pytest.fixture
def identity_provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    server = uvicorn.Server(uvicorn.Config(idp.app, host="127.0.0.1", port=idp.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield idp
    server.should_exit = True
    thread.join(10)


async def _sign_in_with(idp: IdentityProvider, client: httpx.AsyncClient, claims: dict[str, Any]) -> httpx.Response:
    idp.claims = claims
    start = await client.get("/login?next=/cohorts")
    assert start.status_code == 302
    authorize = start.headers["location"]
    assert authorize.startswith(f"{idp.url}/authorize?")
    params = parse_qs(urlsplit(authorize).query)
    assert params["response_type"] == ["code"] and "nonce" in params and "state" in params
    async with httpx.AsyncClient() as outside:  # the browser's trip to the identity provider
        back = await outside.get(authorize)
    assert back.status_code in (302, 307)
    callback = urlsplit(back.headers["location"])
    return await client.get(f"{callback.path}?{callback.query}")


async def test_openid_connect_sign_in_takes_roles_and_areas_from_the_claims(identity_provider):
    idp = identity_provider
    settings = make_settings(
        environment="production", session_secret=SESSION_SECRET, public_url="https://testserver",
        oidc_metadata_url=f"{idp.url}/.well-known/openid-configuration",
        oidc_client_id="insights-dashboard", oidc_client_secret="client-secret",
    )
    async with browserless(settings, "https://testserver") as client:
        done = await _sign_in_with(idp, client, {"sub": "analyst-7", "roles": ["partnership"],
                                                  "areas": ["E08000029"]})
        assert done.status_code == 303 and done.headers["location"] == "/cohorts", done.text
        forbidden = await client.get("/cohorts?area=E08000026")
        assert forbidden.status_code == 403  # signed in, but Coventry is not theirs

    async with browserless(settings, "https://testserver") as client:
        done = await _sign_in_with(idp, client, {"sub": "officer-1", "roles": ["probation"]})
        assert done.status_code == 303
        page = await client.get("/cohorts")
        assert page.status_code == 403 and "partnership analysts and administrators" in page.text

    async with browserless(settings, "https://testserver") as client:
        idp.claims = {"sub": "x", "roles": ["admin"]}
        start = await client.get("/login")
        tampered = await client.get("/auth/callback?code=nothing&state=not-the-state")
        assert tampered.status_code in (400, 401) and start.status_code == 302

