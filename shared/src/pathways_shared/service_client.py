"""Service-to-service HTTP: one client for every call a service makes to a peer.

The bearer token comes from whatever the deployment configures, in this order:
- `<SERVICE>_SERVICE_TOKEN`: a fixed token (handed out by hand, e.g. from a secret);
- the identity provider: an OAuth2 client-credentials grant against its token endpoint,
  `PATHWAYS_CLIENT_CREDENTIALS_URL`, with `<SERVICE>_CLIENT_ID` and `<SERVICE>_CLIENT_SECRET`, kept until shortly before it expires
  (production, where tokens are RS256 and verified against `PATHWAYS_JWKS_URL`);
- `PATHWAYS_JWT_SECRET`: a short-lived HS256 token minted here (local running and tests).

Calls time out, and transport errors and 502/503/504 answers are retried a few times with
backoff; after that the caller gets `PeerUnavailable` and decides what "later" means.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from pathways_shared.auth import ON_BEHALF_OF_HEADER, mint_token
from pathways_shared.config import ServiceSettings
from pathways_shared.observability import CORRELATION_HEADER, current_correlation_id, get_logger

log = get_logger(__name__)

RETRYABLE_STATUS = frozenset({502, 503, 504})
# A token from the identity provider is renewed this long before it expires.
TOKEN_RENEWAL_MARGIN_SECONDS = 60.0
MINTED_TOKEN_TTL_SECONDS = 300


class PeerUnavailable(Exception):
    """The peer (or the identity provider) could not answer now: down, slow or 5xx. The
    message reads after the peer's name: "answered HTTP 503", "unreachable: ConnectError"."""


class ServiceTokens:
    """The bearer token this service presents to its peers (see the module's docstring)."""

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self._http = http
        self._issued: tuple[str, float] | None = None  # (token, renew after: monotonic)
        self._lock = asyncio.Lock()

    async def token(self) -> str | None:
        settings = self.settings
        if settings.service_token:
            return settings.service_token
        if settings.uses_identity_provider:
            return await self._from_identity_provider()
        if settings.jwt_secret:
            return mint_token(
                settings.jwt_secret,
                sub=settings.service_name,
                roles=["service"],
                ttl_seconds=MINTED_TOKEN_TTL_SECONDS,
                audience=settings.jwt_audience,
            )
        return None

    async def _from_identity_provider(self) -> str:
        async with self._lock:
            if self._issued is not None and time.monotonic() < self._issued[1]:
                return self._issued[0]
            token, lifetime = await self._request_token()
            renew_after = max(lifetime - TOKEN_RENEWAL_MARGIN_SECONDS, lifetime / 2)
            self._issued = (token, time.monotonic() + renew_after)
            return token

    async def _request_token(self) -> tuple[str, float]:
        settings = self.settings
        assert settings.client_credentials_url and settings.client_id and settings.client_secret
        try:
            response = await self._http.post(
                settings.client_credentials_url,
                data={"grant_type": "client_credentials"},
                auth=(settings.client_id, settings.client_secret),
            )
        except httpx.HTTPError as exc:
            raise PeerUnavailable(f"identity provider unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PeerUnavailable(f"identity provider answered HTTP {response.status_code}")
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in") or MINTED_TOKEN_TTL_SECONDS)
        except (ValueError, KeyError, TypeError) as exc:
            raise PeerUnavailable("identity provider answered without an access_token") from exc
        return token, lifetime


class ServiceClient:
    """GETs from one peer service, with this service's token, timeouts and retries."""

    def __init__(
        self,
        settings: ServiceSettings,
        base_url: str,
        *,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport)
        self.tokens = ServiceTokens(settings, self._http)

    async def get(self, path: str, *, on_behalf_of: str | None = None) -> httpx.Response:
        """The peer's answer (any status but 502/503/504); `PeerUnavailable` when every
        attempt failed. The call carries the current correlation id, and `on_behalf_of` (the
        user this service acts for, e.g. `Principal.actor`) so the peer's logs and access log
        join up with the request that caused it."""
        url = f"{self.base_url}{path}"
        failure = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.get(url, headers=await self._headers(on_behalf_of))
            except httpx.HTTPError as exc:
                failure = f"unreachable: {type(exc).__name__}"
                log.warning("peer.fetch_failed", url=url, error=str(exc), attempt=attempt)
            except PeerUnavailable as exc:
                failure = str(exc)
                log.warning("peer.token_failed", url=url, error=failure, attempt=attempt)
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    if response.status_code != 200:
                        log.warning("peer.fetch_status", url=url, status=response.status_code)
                    return response
                failure = f"answered HTTP {response.status_code}"
                log.warning("peer.fetch_status", url=url, status=response.status_code)
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2**attempt))
        raise PeerUnavailable(failure)

    async def _headers(self, on_behalf_of: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        token = await self.tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        correlation = current_correlation_id()
        if correlation:
            headers[CORRELATION_HEADER] = correlation
        if on_behalf_of:
            headers[ON_BEHALF_OF_HEADER] = on_behalf_of
        return headers

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
