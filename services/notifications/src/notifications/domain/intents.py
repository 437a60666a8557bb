"""Who is told what: the pure rules of the notifications service.

Values in, decisions out. An event consumed from another service becomes zero or more
``NotificationIntent``s, each for one recipient, each with an idempotency key derived from the
event id and the recipient, so the same event consumed twice yields the same intents (and the
store refuses the second copy). Contact details are not on the bus: a recipient is a role
plus a key (the referral, the provider code, the area), and its address is resolved later
from what the owning services answer and from configuration.

The rules (DOMAIN.md, CONTRACT.md "Notifications service"):

| event                                  | who is told                          | kind                  |
|----------------------------------------|--------------------------------------|-----------------------|
| providers.referral.allocated           | practitioner                         | referral_allocated    |
|                                        | the provider's referral mailbox      | referral_received     |
| providers.referral.unallocated         | practitioner                         | referral_unallocated  |
| providers.referral.declined            | practitioner                         | referral_declined     |
| providers.referral.deadline-missed     | practitioner                         | deadline_missed       |
|                                        | the provider's referral mailbox      | deadline_reminder     |
| referrals.referral.withdrawn           | each provider holding a withdrawn    | referral_withdrawn    |
|                                        | need (one message per provider)      |                       |
| referrals.referral.submitted           | the area's housing team, for each    | duty_to_refer         |
|                                        | accommodation need flagged           |                       |
|                                        | at_risk_of_homelessness (consented)  |                       |

Product decisions, stated once here:
- The practitioner is not told of their own withdrawal, nor of a provider's acknowledgement,
  acceptance, start or completion (they see those on the referral); a declining provider is
  not told of its own decline.
- A referral exists only with the person's consent (the referrals service refuses one
  without), so a submitted referral carries consent; an event that says
  ``consentGiven: false`` explicitly gets no Duty to Refer notice.
- Duty to Refer is statutory, so the decision does not depend on configuration: which address
  is the housing team of an area is configuration, and an area without one makes the
  delivery fail visibly (``RecipientUnresolvable``), never silently dropped.
- A recipient whose address cannot be resolved is a failed delivery in the log, not a skip.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from notifications.errors import RecipientUnresolvable, UnparseableEvent
from pathways_shared.event_payloads import DeliveryFailed, DutyToReferSent
from pathways_shared.vocabulary import Pathway, is_email_address

# The fixed namespace of every key this service derives; changing it would resend everything.
KEY_NAMESPACE = uuid.UUID("6f1c7a52-2f0c-4d8e-9a57-3b0e8f4d2c11")

AT_RISK_OF_HOMELESSNESS = "at_risk_of_homelessness"


class EventType(StrEnum):
    REFERRAL_SUBMITTED = "referrals.referral.submitted"
    REFERRAL_WITHDRAWN = "referrals.referral.withdrawn"
    REFERRAL_ALLOCATED = "providers.referral.allocated"
    REFERRAL_UNALLOCATED = "providers.referral.unallocated"
    REFERRAL_DECLINED = "providers.referral.declined"
    DEADLINE_MISSED = "providers.referral.deadline-missed"
    DUTY_TO_REFER_SENT = "notifications.duty-to-refer.sent"
    DELIVERY_FAILED = "notifications.delivery.failed"


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class RecipientRole(StrEnum):
    PRACTITIONER = "practitioner"
    PROVIDER_MAILBOX = "provider_mailbox"
    HOUSING_TEAM = "housing_team"
    SUBSCRIBER = "subscriber"


class NotificationKind(StrEnum):
    REFERRAL_ALLOCATED = "referral_allocated"
    REFERRAL_RECEIVED = "referral_received"
    REFERRAL_UNALLOCATED = "referral_unallocated"
    REFERRAL_DECLINED = "referral_declined"
    REFERRAL_WITHDRAWN = "referral_withdrawn"
    DEADLINE_MISSED = "deadline_missed"
    DEADLINE_REMINDER = "deadline_reminder"
    DUTY_TO_REFER = "duty_to_refer"
    WEBHOOK = "webhook"

    @property
    def channel(self) -> Channel:
        return Channel.WEBHOOK if self is NotificationKind.WEBHOOK else Channel.EMAIL


class Deadline(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"


# --------------------------------------------------------------------------- events in


class _Info(BaseModel):
    """additionalInformation of a consumed event: a tolerant reader (unknown fields ignored,
    codes kept as text so a new reason code never sends an event to the dead letter store).

    Deliberately not the shared payload models (`pathways_shared.event_payloads`), which type
    reason codes and outcomes as enums: a decline or withdrawal with a code this release does
    not know must still reach the practitioner and the provider, so here a code is a `str`
    and an unknown one is told as it is. Identifiers and times are still typed, and a payload
    that lacks them is refused (`UnparseableEvent`)."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class AllocatedInfo(_Info):
    referral_id: uuid.UUID
    need_id: uuid.UUID
    provider_referral_id: uuid.UUID
    service_code: str
    provider_code: str
    programme: str | None = None
    pathway: str | None = None
    area: str | None = None
    acknowledge_by: AwareDatetime | None = None
    respond_by: AwareDatetime | None = None


class UnallocatedInfo(_Info):
    referral_id: uuid.UUID
    need_id: uuid.UUID
    reason: str | None = None
    pathway: str | None = None
    area: str | None = None


class DeclinedInfo(_Info):
    referral_id: uuid.UUID
    need_id: uuid.UUID
    provider_referral_id: uuid.UUID
    reason_code: str
    provider_code: str | None = None
    service_code: str | None = None


class DeadlineMissedInfo(_Info):
    referral_id: uuid.UUID
    need_id: uuid.UUID
    provider_referral_id: uuid.UUID
    deadline: Deadline
    provider_code: str | None = None
    service_code: str | None = None
    due_at: AwareDatetime | None = None


class WithdrawnInfo(_Info):
    referral_id: uuid.UUID
    need_ids: tuple[uuid.UUID, ...]
    reason_code: str


class SubmittedNeedInfo(_Info):
    need_id: uuid.UUID
    pathway: str
    complexity: str | None = None
    flags: tuple[str, ...] = ()


class SubmittedInfo(_Info):
    referral_id: uuid.UUID
    area: str
    needs: tuple[SubmittedNeedInfo, ...]
    consent_given: bool | None = None


INFO_MODELS: dict[EventType, type[_Info]] = {
    EventType.REFERRAL_SUBMITTED: SubmittedInfo,
    EventType.REFERRAL_WITHDRAWN: WithdrawnInfo,
    EventType.REFERRAL_ALLOCATED: AllocatedInfo,
    EventType.REFERRAL_UNALLOCATED: UnallocatedInfo,
    EventType.REFERRAL_DECLINED: DeclinedInfo,
    EventType.DEADLINE_MISSED: DeadlineMissedInfo,
}

_EVENT_TYPE_SHAPE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+\Z")


@dataclass(frozen=True)
class InboundEvent:
    """A consumed event envelope, reduced to what this service reads."""

    id: uuid.UUID
    event_type: str
    occurred_at: datetime
    crn: str | None = None
    detail_url: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def area(self) -> str | None:
        area = self.info.get("area")
        return area if isinstance(area, str) else None

    @property
    def referral_id(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(str(self.info["referralId"]))
        except (KeyError, ValueError):
            return None

    def details(self) -> _Info:
        """The typed additionalInformation of an event type this service acts on."""
        model = INFO_MODELS.get(self.event_type)  # type: ignore[call-overload]
        if model is None:
            raise UnparseableEvent(f"no rules for event type {self.event_type!r}")
        try:
            return model.model_validate(dict(self.info))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise UnparseableEvent(
                f"{self.event_type}: additionalInformation.{where}: {first['msg']}",
                field=f"additionalInformation.{where}",
            ) from exc


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: uuid.UUID
    eventType: str
    occurredAt: AwareDatetime
    detailUrl: str | None = None
    personReference: dict[str, Any] | None = None
    additionalInformation: dict[str, Any] = {}


def parse_envelope(raw: Mapping[str, Any]) -> InboundEvent:
    """The envelope of CONTRACT.md "Events" as an ``InboundEvent``; ``UnparseableEvent`` if not."""
    try:
        envelope = _Envelope.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnparseableEvent(f"envelope.{where}: {first['msg']}", field=where) from exc
    if not _EVENT_TYPE_SHAPE.fullmatch(envelope.eventType):
        raise UnparseableEvent(
            f"eventType {envelope.eventType!r} is not dot-separated tokens", field="eventType"
        )
    return InboundEvent(
        id=envelope.id,
        event_type=envelope.eventType,
        occurred_at=envelope.occurredAt,
        crn=_crn_of(envelope.personReference),
        detail_url=envelope.detailUrl,
        info=envelope.additionalInformation,
    )


def _crn_of(person_reference: Mapping[str, Any] | None) -> str | None:
    if not person_reference:
        return None
    for identifier in person_reference.get("identifiers") or ():
        if isinstance(identifier, Mapping) and identifier.get("type") == "CRN":
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


# --------------------------------------------------------------------------- intents out


@dataclass(frozen=True)
class Recipient:
    """Who, without their address: the role and the key that names them (the referral for
    its practitioner, the provider code, the area code, the subscription id)."""

    role: RecipientRole
    key: str | None

    def __str__(self) -> str:
        return f"{self.role.value}:{self.key or '-'}"


def idempotency_key(event_id: uuid.UUID, recipient: Recipient) -> uuid.UUID:
    """The same event for the same recipient always has the same key, across restarts."""
    return uuid.uuid5(KEY_NAMESPACE, f"{event_id}|{recipient.role.value}|{recipient.key or ''}")


def email_message_id(key: uuid.UUID, domain: str) -> str:
    """The RFC 5322 Message-ID of the email of an intent: resending after a crash reuses it."""
    return f"<{key}@{domain}>"


@dataclass(frozen=True)
class NotificationIntent:
    """One message to one recipient, decided from one event, not yet sent."""

    idempotency_key: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    kind: NotificationKind
    recipient: Recipient
    referral_id: uuid.UUID | None = None
    need_ids: tuple[uuid.UUID, ...] = ()

    @property
    def channel(self) -> Channel:
        return self.kind.channel


def _intent(
    event: InboundEvent,
    kind: NotificationKind,
    recipient: Recipient,
    referral_id: uuid.UUID | None,
    need_ids: tuple[uuid.UUID, ...],
) -> NotificationIntent:
    return NotificationIntent(
        idempotency_key=idempotency_key(event.id, recipient),
        event_id=event.id,
        event_type=event.event_type,
        kind=kind,
        recipient=recipient,
        referral_id=referral_id,
        need_ids=need_ids,
    )


def _practitioner(referral_id: uuid.UUID) -> Recipient:
    return Recipient(RecipientRole.PRACTITIONER, str(referral_id))


def _provider(code: str | None) -> Recipient:
    return Recipient(RecipientRole.PROVIDER_MAILBOX, code)


def needs_duty_to_refer(need: SubmittedNeedInfo) -> bool:
    return need.pathway == Pathway.ACCOMMODATION.value and AT_RISK_OF_HOMELESSNESS in need.flags


# The events whose rules may need to know who holds a need (``allocations``).
NEEDS_ALLOCATIONS = frozenset({EventType.DEADLINE_MISSED, EventType.REFERRAL_WITHDRAWN})


def decide_notifications(
    event: InboundEvent, *, allocations: Mapping[uuid.UUID, str] | None = None
) -> tuple[NotificationIntent, ...]:
    """The emails an event calls for (webhooks are decided by ``subscriptions``).

    ``allocations`` maps a need id to the provider code holding it, as known to the caller
    (the referral read from its owner, or what this service saw allocated); it names the
    provider where the event itself does not, and is read only for ``NEEDS_ALLOCATIONS``.
    Event types without rules give no intents.
    """
    known = allocations or {}
    if event.event_type not in INFO_MODELS:
        return ()
    details = event.details()
    match details:
        case AllocatedInfo():
            return (
                _intent(
                    event,
                    NotificationKind.REFERRAL_ALLOCATED,
                    _practitioner(details.referral_id),
                    details.referral_id,
                    (details.need_id,),
                ),
                _intent(
                    event,
                    NotificationKind.REFERRAL_RECEIVED,
                    _provider(details.provider_code),
                    details.referral_id,
                    (details.need_id,),
                ),
            )
        case UnallocatedInfo():
            return (
                _intent(
                    event,
                    NotificationKind.REFERRAL_UNALLOCATED,
                    _practitioner(details.referral_id),
                    details.referral_id,
                    (details.need_id,),
                ),
            )
        case DeclinedInfo():
            return (
                _intent(
                    event,
                    NotificationKind.REFERRAL_DECLINED,
                    _practitioner(details.referral_id),
                    details.referral_id,
                    (details.need_id,),
                ),
            )
        case DeadlineMissedInfo():
            provider_code = details.provider_code or known.get(details.need_id)
            return (
                _intent(
                    event,
                    NotificationKind.DEADLINE_MISSED,
                    _practitioner(details.referral_id),
                    details.referral_id,
                    (details.need_id,),
                ),
                _intent(
                    event,
                    NotificationKind.DEADLINE_REMINDER,
                    _provider(provider_code),
                    details.referral_id,
                    (details.need_id,),
                ),
            )
        case WithdrawnInfo():
            by_provider: dict[str, list[uuid.UUID]] = {}
            for need_id in details.need_ids:
                code = known.get(need_id)
                if code:
                    by_provider.setdefault(code, []).append(need_id)
            return tuple(
                _intent(
                    event,
                    NotificationKind.REFERRAL_WITHDRAWN,
                    _provider(code),
                    details.referral_id,
                    tuple(need_ids),
                )
                for code, need_ids in sorted(by_provider.items())
            )
        case SubmittedInfo():
            if details.consent_given is False:
                return ()
            return tuple(
                _intent(
                    event,
                    NotificationKind.DUTY_TO_REFER,
                    Recipient(RecipientRole.HOUSING_TEAM, details.area),
                    details.referral_id,
                    (need.need_id,),
                )
                for need in details.needs
                if needs_duty_to_refer(need)
            )
        case _:
            return ()


# --------------------------------------------------------------------------- addresses

# is_email_address: the one email rule, in pathways_shared.vocabulary (referrals checks
# submissions with the same).


@dataclass(frozen=True)
class Contacts:
    """What is known of the recipients' addresses when an intent is about to be sent.

    ``practitioner_email`` comes from the referrals service; the mailboxes of providers and
    the housing teams of areas from configuration (or the providers service)."""

    practitioner_email: str | None = None
    provider_mailboxes: Mapping[str, str] = field(default_factory=dict, hash=False)
    housing_teams: Mapping[str, str] = field(default_factory=dict, hash=False)


def resolve_address(recipient: Recipient, contacts: Contacts) -> str:
    """The email address of a recipient, or ``RecipientUnresolvable`` saying what is missing."""
    match recipient.role:
        case RecipientRole.PRACTITIONER:
            address, what = contacts.practitioner_email, "the practitioner of the referral"
        case RecipientRole.PROVIDER_MAILBOX:
            address = contacts.provider_mailboxes.get(recipient.key) if recipient.key else None
            what = (
                f"the referral mailbox of provider {recipient.key}"
                if recipient.key
                else "the provider holding the need (not known)"
            )
        case RecipientRole.HOUSING_TEAM:
            address = contacts.housing_teams.get(recipient.key) if recipient.key else None
            what = f"the housing team of area {recipient.key}"
        case _:
            raise RecipientUnresolvable(f"{recipient} is not reached by email")
    if not address:
        raise RecipientUnresolvable(f"no email address is configured for {what}")
    if not is_email_address(address):
        raise RecipientUnresolvable(f"the email address for {what} is not valid")
    return address


# --------------------------------------------------------------------------- events out


@dataclass(frozen=True)
class OutboundEvent:
    """An event this service publishes (through its outbox): its id, whom it is about (the
    CRN, no other personal data) and its payload, the shared model of its type."""

    id: uuid.UUID
    crn: str | None
    payload: DutyToReferSent | DeliveryFailed = field(hash=False)

    @property
    def event_type(self) -> str:
        return self.payload.event_type

    @property
    def additional_information(self) -> dict[str, Any]:
        return self.payload.additional_information()


def events_after_delivery(
    intent: NotificationIntent, event: InboundEvent
) -> tuple[OutboundEvent, ...]:
    """What is published once an intent has been delivered.

    The id is derived from the intent, so recording the same delivery twice (after a crash)
    publishes the same event id and the broker's de-duplication drops the copy."""
    if intent.kind is not NotificationKind.DUTY_TO_REFER:
        return ()
    return tuple(
        OutboundEvent(
            id=uuid.uuid5(KEY_NAMESPACE, f"{intent.idempotency_key}|duty-to-refer.sent|{need}"),
            crn=event.crn,
            payload=DutyToReferSent(
                referral_id=str(intent.referral_id), need_id=str(need), area=intent.recipient.key
            ),
        )
        for need in intent.need_ids
    )


def events_after_final_failure(
    intent: NotificationIntent, event: InboundEvent, *, notification_id: uuid.UUID, attempts: int
) -> tuple[OutboundEvent, ...]:
    """What is published when a delivery fails for good, so operators see it off the log too.

    The failure's text stays in the delivery log: an SMTP or HTTP error may quote an address."""
    return (
        OutboundEvent(
            id=uuid.uuid5(KEY_NAMESPACE, f"{intent.idempotency_key}|delivery.failed"),
            crn=event.crn,
            payload=DeliveryFailed(
                notification_id=notification_id,
                kind=intent.kind.value,
                channel=intent.channel.value,
                recipient_role=intent.recipient.role.value,
                recipient_key=intent.recipient.key,
                referral_id=intent.referral_id,
                source_event_id=intent.event_id,
                source_event_type=intent.event_type,
                attempts=attempts,
            ),
        ),
    )
