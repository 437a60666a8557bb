"""The person's details for a provider's view, fetched from the referrals service over HTTP
with a `service` token (never from the bus). Timeouts and a few retries; on failure the
caller says the details are temporarily unavailable."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from pathways_shared.auth import mint_token
from pathways_shared.observability import get_logger

log = get_logger(__name__)

PERSON_FIELDS = (
    "crn",
    "noms_number",
    "pnc_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "needs_interpreter",
    "interpreter_language",
)
PRACTITIONER_FIELDS = ("name", "email", "team")
RETRYABLE_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class PersonDetails:
    person: dict[str, Any]
    practitioner: dict[str, Any]


class ReferralsClient:
    def __init__(
        self,
        base_url: str,
        *,
        jwt_secret: str | None,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.jwt_secret = jwt_secret
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def _headers(self) -> dict[str, str]:
        if not self.jwt_secret:
            return {}
        token = mint_token(
            self.jwt_secret, sub="providers-service", roles=["service"], ttl_seconds=300
        )
        return {"Authorization": f"Bearer {token}"}

    async def person_details(self, referral_id: uuid.UUID) -> PersonDetails | None:
        url = f"{self.base_url}/referrals/{referral_id}"
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.get(url, headers=self._headers())
            except httpx.HTTPError as exc:
                log.warning("referrals.fetch_failed", url=url, error=str(exc), attempt=attempt)
            else:
                if response.status_code == 200:
                    return _details(response.json())
                log.warning("referrals.fetch_status", url=url, status=response.status_code)
                if response.status_code not in RETRYABLE_STATUS:
                    return None
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2**attempt))
        return None

    async def close(self) -> None:
        await self._client.aclose()


def _details(body: Any) -> PersonDetails | None:
    if not isinstance(body, dict):
        return None
    person = body.get("person") or {}
    practitioner = body.get("practitioner") or {}
    return PersonDetails(
        person={k: person.get(k) for k in PERSON_FIELDS if k in person},
        practitioner={k: practitioner.get(k) for k in PRACTITIONER_FIELDS if k in practitioner},
    )
