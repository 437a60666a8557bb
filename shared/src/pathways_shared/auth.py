"""Bearer JWT authentication and role checks, as in the contract.

Production verifies RS256 tokens against `PATHWAYS_JWKS_URL`. HS256 tokens signed with
`PATHWAYS_JWT_SECRET` are accepted only when that variable is set (local running and tests).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import jwt
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pathways_shared.config import ServiceSettings
from pathways_shared.problems import Forbidden, NotFound, Unauthorized
from pathways_shared.vocabulary import Role

# A service calling a peer for one of its own users names that user here (the peer's access log
# then says who the data went to); honoured only from a `service` token.
ON_BEHALF_OF_HEADER = "X-On-Behalf-Of"


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: frozenset[str] = field(default_factory=frozenset)
    provider: str | None = None
    areas: frozenset[str] | None = None  # None: every area (national roles)
    on_behalf_of: str | None = None  # the calling service's user (`ON_BEHALF_OF_HEADER`)

    def has(self, *roles: str | Role) -> bool:
        return any(str(r) in self.roles for r in roles)

    def may_see_area(self, area: str | None) -> bool:
        return self.areas is None or (area is not None and area in self.areas)

    def require_area(self, area: str | None, *, hide: bool = True) -> None:
        """404 (hide=True) or 403 when the caller's areas do not include `area`."""
        if not self.may_see_area(area):
            if hide:
                raise NotFound("no such record")
            raise Forbidden(f"area {area} is not among the caller's areas")

    @property
    def national(self) -> bool:
        return self.areas is None

    def require_national(self, what: str) -> None:
        """The one rule for area-limited tokens: they see and change their areas only, so work
        whose answer spans every area (subject access, delivery logs, dead letters) needs a
        national token (no `areas` claim); an area-limited one gets 403."""
        if not self.national:
            raise Forbidden(f"{what} needs a national token (no areas claim)")

    @property
    def client(self) -> str:
        """The client the request comes from, which owns the keys it chooses (a referral's
        `source_reference`, an `Idempotency-Key`): the token's subject (a client-credentials
        token's subject is its client id), with its provider when it has one."""
        return f"{self.sub}" + (f"@{self.provider}" if self.provider else "")

    @property
    def actor(self) -> str:
        """Who acts, as the access log and history record it: "providers-service for
        nacro-user@NACRO" when a service calls for one of its users."""
        return self.client + (f" for {self.on_behalf_of}" if self.on_behalf_of else "")


class Authenticator:
    # A client sends the same token with every request until it expires: the signature is
    # checked once, and the answer kept (bounded) until the token's `exp`.
    CACHE_SIZE = 1024

    def __init__(self, settings: ServiceSettings) -> None:
        self.secret = settings.jwt_secret
        self.audience = settings.jwt_audience
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            self._verified.move_to_end(token)
            return cached[0]
        self._verified.pop(token, None)
        principal, expires = self._verify(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            options = {"require": ["sub", "exp"], "verify_aud": self.audience is not None}
            if alg == "HS256" and self.secret:
                claims = jwt.decode(token, self.secret, algorithms=["HS256"],
                                    audience=self.audience, options=options)
            elif alg == "RS256" and self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(token, key, algorithms=["RS256"],
                                    audience=self.audience, options=options)
            else:
                raise Unauthorized("token algorithm not accepted here")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        return principal_from_claims(claims), float(claims["exp"])


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Claims of the wrong type are an invalid token (401), never a crash."""
    sub = claims.get("sub")
    roles = claims.get("roles", [])
    areas = claims.get("areas")
    provider = claims.get("provider")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("invalid token: sub must be a string")
    if not _strings(roles) or (areas is not None and not _strings(areas)):
        raise Unauthorized("invalid token: roles and areas must be lists of strings")
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise Unauthorized("invalid token: provider must be a string")
    return Principal(
        sub=sub,
        roles=frozenset(roles),
        provider=provider,
        areas=frozenset(areas) if areas is not None else None,
    )


def mint_token(
    secret: str,
    *,
    sub: str = "local-user",
    roles: list[str] | tuple[str, ...] = ("probation",),
    provider: str | None = None,
    areas: list[str] | None = None,
    ttl_seconds: int = 3600,
    audience: str | None = None,
) -> str:
    """An HS256 token for local running and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub, "roles": list(roles), "iat": now, "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if provider:
        claims["provider"] = provider
    if areas is not None:
        claims["areas"] = list(areas)
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


# Declares the `bearerAuth` scheme (a JWT) in the OpenAPI document and puts it on every
# operation that depends on `current_principal`: the document says what the server enforces.
# `auto_error=False`: a missing token is answered by us, as problem+json with WWW-Authenticate.
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth", bearerFormat="JWT", auto_error=False,
    description="A JWT: RS256 verified against the identity provider's JWKS (HS256 locally).",
)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    principal = request.app.state.authenticator.verify(token.strip())
    on_behalf_of = request.headers.get(ON_BEHALF_OF_HEADER, "").strip()
    if on_behalf_of and principal.has(Role.SERVICE):
        principal = replace(principal, on_behalf_of=on_behalf_of[:100])
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def on_behalf_of_header(
    on_behalf_of: Annotated[
        str | None,
        Header(
            alias=ON_BEHALF_OF_HEADER,
            description="For a `service` token only (ignored from any other): the calling "
            "service's own user this read is made for (as `<user>@<provider>`, at most 100 "
            "characters kept); written to the access log as the actor (`<client> for <user>`), "
            "with the caller's `X-Correlation-ID`, so the read joins the user's request.",
        ),
    ] = None,
) -> None:
    """Declares X-On-Behalf-Of on a route that honours it (`dependencies=[...]`), for its
    OpenAPI document; `current_principal` is what reads it. Async, though it does nothing:
    FastAPI runs a plain `def` dependency on a worker thread, a thread hop per request."""


# On a route's `dependencies`: it documents X-On-Behalf-Of.
HONOURS_ON_BEHALF_OF = [Depends(on_behalf_of_header)]


def require_roles(*roles: str | Role, national: str | None = None):
    """A dependency answering the principal when it holds any of `roles`, else 403. With
    `national` (what the route does), an area-limited token is refused too (403)."""
    allowed = tuple(str(r) for r in roles)

    async def _check(principal: CurrentPrincipal) -> Principal:
        if not principal.has(*allowed):
            raise Forbidden(f"requires one of the roles: {', '.join(allowed)}")
        if national is not None:
            principal.require_national(national)
        return principal

    return _check
