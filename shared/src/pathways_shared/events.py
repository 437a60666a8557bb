"""The event envelope (HMPPS domain-event envelope plus `id`) and the catalogue of event types.

The NATS subject of an event is its `eventType` (behind an optional test prefix); the stream
is chosen by the first token. `EVENT_TYPES` is the single list of what the system publishes,
so descriptions, versions and the AsyncAPI document come from one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from pathways_shared.clock import iso_z, utc_now
from pathways_shared.event_payloads import Payload, event_type_of


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    version: int = 1

    @property
    def stream(self) -> str:
        return self.name.split(".", 1)[0].upper()


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in [
        EventType("referrals.referral.submitted", "A referral was submitted by probation"),
        EventType("referrals.referral.withdrawn", "A referral was withdrawn by probation"),
        EventType("providers.referral.allocated", "A need was allocated to a commissioned service"),
        EventType("providers.referral.unallocated", "No commissioned service could take a need"),
        EventType("providers.referral.acknowledged", "A provider acknowledged a referral"),
        EventType("providers.referral.accepted", "A provider accepted a referral"),
        EventType("providers.referral.declined", "A provider declined a referral"),
        EventType("providers.referral.started", "A provider started the service"),
        EventType("providers.referral.completed", "A provider completed the service"),
        EventType("providers.referral.withdrawn", "A provider referral was closed on withdrawal"),
        EventType("providers.referral.deadline-missed", "A service-level deadline was missed"),
        EventType("cohorts.member.selected", "A person was adopted into an IOM cohort"),
        EventType("cohorts.member.deselected", "A person left an IOM cohort"),
        EventType("cohorts.member.review-due", "An IOM cohort member is due for review"),
        EventType(
            "cohorts.member.pathway-activity", "Pathway activity for a current IOM cohort member"
        ),
        EventType("cohorts.selection-run.completed", "An IOM selection run completed"),
        EventType("notifications.duty-to-refer.sent", "A Duty to Refer notice was sent"),
        EventType("notifications.delivery.failed", "A notification finally failed to deliver"),
        EventType("pathways.test.ping", "A test event used by the infrastructure's own tests"),
    ]
}

STREAMS: dict[str, str] = {
    "REFERRALS": "referrals.>",
    "PROVIDERS": "providers.>",
    "COHORTS": "cohorts.>",
    "NOTIFICATIONS": "notifications.>",
    "PATHWAYS": "pathways.>",
}


class Identifier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    value: str


class PersonReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifiers: list[Identifier] = Field(default_factory=list)

    def value_of(self, kind: str) -> str | None:
        return next((i.value for i in self.identifiers if i.type == kind), None)


class Event(BaseModel):
    """The envelope. Field names in Python are snake_case; on the wire, camelCase."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str = Field(alias="eventType")
    version: int = 1
    description: str = ""
    occurred_at: datetime = Field(default_factory=utc_now, alias="occurredAt")
    detail_url: str | None = Field(default=None, alias="detailUrl")
    person_reference: PersonReference | None = Field(default=None, alias="personReference")
    additional_information: dict[str, Any] = Field(
        default_factory=dict, alias="additionalInformation"
    )

    @field_validator("occurred_at")
    @classmethod
    def _utc_millis(cls, value: datetime) -> datetime:
        """Times travel as UTC with milliseconds; keep them so, so a round trip is exact."""
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)

    @field_serializer("occurred_at")
    def _ser_time(self, value: datetime) -> str:
        return iso_z(value)

    @property
    def crn(self) -> str | None:
        return self.person_reference.value_of("CRN") if self.person_reference else None

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        return cls.model_validate_json(data)


@dataclass(frozen=True, kw_only=True)
class Addressing:
    """What an envelope says besides its payload: whom the event is about (CRN, then NOMS
    number), where to read more, when it happened (default now) and its id (default new)."""

    crn: str | None = None
    noms_number: str | None = None
    detail_url: str | None = None
    occurred_at: datetime | None = None
    event_id: uuid.UUID | None = None

    def person_reference(self) -> PersonReference | None:
        identifiers = [Identifier(type=kind, value=value)
                       for kind, value in (("CRN", self.crn), ("NOMS", self.noms_number)) if value]
        return PersonReference(identifiers=identifiers) if identifiers else None


def envelope(payload: Payload, addressing: Addressing | None = None) -> Event:
    """The envelope of an event whose payload is `payload`, its type's model
    (TypeError for anything else: see `event_payloads.event_type_of`)."""
    return _envelope(event_type_of(payload), payload.additional_information(),
                     addressing or Addressing())


def make_event(
    event_type: str,
    additional_information: dict[str, Any],
    *,
    crn: str | None = None,
    detail_url: str | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Event:
    """An envelope from an event type and a plain payload, unchecked: for tests and tools that
    make events as another producer (or a broken one) would. Services publish with
    `outbox.publish`, which takes the payload model."""
    return _envelope(event_type, additional_information, Addressing(
        crn=crn, detail_url=detail_url, occurred_at=occurred_at, event_id=event_id))


def _envelope(event_type: str, additional_information: dict[str, Any], addressing: Addressing) -> Event:
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        raise ValueError(f"unknown event type {event_type!r}: add it to EVENT_TYPES")
    return Event(
        id=addressing.event_id or uuid.uuid4(),
        event_type=event_type,
        version=kind.version,
        description=kind.description,
        occurred_at=addressing.occurred_at or utc_now(),
        detail_url=addressing.detail_url,
        person_reference=addressing.person_reference(),
        additional_information=additional_information,
    )


def subject_for(event_type: str, prefix: str = "") -> str:
    return f"{prefix}{event_type}"


def stream_name(stream: str, prefix: str = "") -> str:
    """Stream names cannot hold dots; a test prefix `t1a2b.` becomes `T1A2B_`."""
    if not prefix:
        return stream
    return prefix.strip(".").upper().replace(".", "_").replace("-", "_") + "_" + stream
