"""Who the people are, fetched from their owner when an email is about to go out.

Contact details are not on the bus: the practitioner, the person's name (Duty to Refer only)
and the pathway of each need come from the referrals service (``GET /referrals/{id}``) with a
``service`` token; providers' mailboxes and areas' housing teams come from configuration.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from notifications.domain.intents import Contacts, NotificationKind
from notifications.domain.templates import RenderContext
from pathways_shared.service_client import PeerUnavailable, ServiceClient


class ContactsUnavailable(Exception):
    """The owner could not answer now (down, slow, 5xx): try the delivery again later."""


class ContactsMissing(Exception):
    """The owner answered that there is nothing to find (404, or a body we cannot read)."""


@dataclass(frozen=True)
class ReferralRecord:
    referral_id: uuid.UUID
    crn: str | None
    area: str | None
    practitioner_name: str | None
    practitioner_email: str | None
    practitioner_team: str | None
    person_name: str | None
    need_pathways: Mapping[uuid.UUID, str] = field(default_factory=dict, hash=False)
    need_providers: Mapping[uuid.UUID, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_representation(cls, body: Mapping[str, Any]) -> ReferralRecord:
        try:
            person = body.get("person") or {}
            practitioner = body.get("practitioner") or {}
            names = [person.get("given_name"), person.get("family_name")]
            pathways: dict[uuid.UUID, str] = {}
            providers: dict[uuid.UUID, str] = {}
            for need in body.get("needs") or ():
                need_id = uuid.UUID(str(need["id"]))
                if need.get("pathway"):
                    pathways[need_id] = str(need["pathway"])
                if need.get("provider_code"):
                    providers[need_id] = str(need["provider_code"])
            return cls(
                referral_id=uuid.UUID(str(body["id"])),
                crn=person.get("crn"),
                area=body.get("area"),
                practitioner_name=practitioner.get("name"),
                practitioner_email=practitioner.get("email"),
                practitioner_team=practitioner.get("team"),
                person_name=" ".join(n for n in names if n) or None,
                need_pathways=pathways,
                need_providers=providers,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContactsMissing(f"the referral could not be read: {exc}") from exc

    def render_context(self, kind: NotificationKind) -> RenderContext:
        """What a template may use: the person's name only in a Duty to Refer notice."""
        return RenderContext(
            crn=self.crn,
            area=self.area,
            practitioner_name=self.practitioner_name,
            practitioner_team=self.practitioner_team,
            practitioner_email=self.practitioner_email,
            person_name=self.person_name if kind is NotificationKind.DUTY_TO_REFER else None,
            need_pathways=self.need_pathways,
        )

    def contacts(
        self, provider_mailboxes: Mapping[str, str], housing_teams: Mapping[str, str]
    ) -> Contacts:
        return Contacts(
            practitioner_email=self.practitioner_email,
            provider_mailboxes=provider_mailboxes,
            housing_teams=housing_teams,
        )


class ReferralContactsClient(ServiceClient):
    """The referrals service as notifications reads it: a referral's contacts (the shared
    client underneath; providers' `ReferralsClient` reads the person's details)."""

    async def referral(self, referral_id: uuid.UUID) -> ReferralRecord:
        try:
            response = await self.get(f"/referrals/{referral_id}")
        except PeerUnavailable as exc:
            raise ContactsUnavailable(f"referrals service {exc}") from exc
        if response.status_code == 404:
            raise ContactsMissing(f"referral {referral_id} not found")
        if response.status_code != 200:
            raise ContactsUnavailable(f"referrals service answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ContactsMissing(
                "the referrals service answered something that is not JSON"
            ) from exc
        if not isinstance(body, dict):
            raise ContactsMissing("the referrals service answered something that is not a referral")
        return ReferralRecord.from_representation(body)
