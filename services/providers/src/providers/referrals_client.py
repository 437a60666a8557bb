"""The person's details for a provider's view, fetched from the referrals service over HTTP
with a `service` token (never from the bus) by the shared service client (timeouts, a few
retries); on failure the caller says the details are temporarily unavailable."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pathways_shared.service_client import PeerUnavailable, ServiceClient

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


@dataclass(frozen=True)
class PersonDetails:
    person: dict[str, Any]
    practitioner: dict[str, Any]


class ReferralsClient(ServiceClient):
    async def person_details(
        self, referral_id: uuid.UUID, *, on_behalf_of: str | None = None
    ) -> PersonDetails | None:
        """The person's details, asked for `on_behalf_of` (the provider user), under the
        current correlation id; None when referrals cannot say now."""
        try:
            response = await self.get(f"/referrals/{referral_id}", on_behalf_of=on_behalf_of)
        except PeerUnavailable:
            return None
        return _details(response.json()) if response.status_code == 200 else None


def _details(body: Any) -> PersonDetails | None:
    if not isinstance(body, dict):
        return None
    person = body.get("person") or {}
    practitioner = body.get("practitioner") or {}
    return PersonDetails(
        person={k: person.get(k) for k in PERSON_FIELDS if k in person},
        practitioner={k: practitioner.get(k) for k in PRACTITIONER_FIELDS if k in practitioner},
    )
