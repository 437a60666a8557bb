"""The `additionalInformation` of each event type, as the contract lists it: the one definition
of each event. Each model names its event type (`event_type`); producers build the model and
hand it to `outbox.publish`, consumers receive it validated (`consumer.typed`; readers stay
tolerant: unknown fields are kept). The AsyncAPI document is generated from these models, and
the system tests check that what crosses the bus conforms.

Fields added after an event was first published have defaults, so older events still read.
Instants travel as UTC with milliseconds and a `Z` (`Instant`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_serializer
from pydantic.alias_generators import to_camel

from pathways_shared.clock import iso_z
from pathways_shared.vocabulary import (
    Cohort,
    Complexity,
    DeclineReason,
    DeselectionReason,
    NeedStatus,
    Outcome,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)

Instant = Annotated[datetime, PlainSerializer(iso_z, return_type=str, when_used="json")]


class Payload(BaseModel):
    """A payload (or a part of one). A model that is an event's payload names its type."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    event_type: ClassVar[str] = ""
    # Optional fields left out of the JSON when empty (rather than sent as null).
    omit_when_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: Any) -> Any:
        data = handler(self)
        if self.omit_when_none and isinstance(data, dict):
            for name in self.omit_when_none:
                if getattr(self, name) is None:
                    data.pop(to_camel(name), None)
                    data.pop(name, None)
        return data

    def additional_information(self) -> dict[str, Any]:
        """The payload as it travels: JSON types, camelCase names."""
        return self.model_dump(mode="json", by_alias=True)


class SubmittedNeed(Payload):
    need_id: UUID
    pathway: Pathway
    complexity: Complexity
    flags: list[str] = []


class ReferralSubmitted(Payload):
    """Routing facts only: no names, dates of birth or contact details."""

    event_type: ClassVar[str] = "referrals.referral.submitted"
    referral_id: UUID
    area: str
    needs: list[SubmittedNeed] = Field(min_length=1)
    sex: Sex
    age_on_submission: int = Field(ge=0, le=150)
    supervision_status: SupervisionStatus
    rosh: Rosh | None = None
    mappa_level: int | None = None


class ReferralWithdrawn(Payload):
    event_type: ClassVar[str] = "referrals.referral.withdrawn"
    referral_id: UUID
    need_ids: list[UUID]
    reason_code: WithdrawalReason


class NeedRef(Payload):
    referral_id: str
    need_id: str


class ProviderReferralRef(NeedRef):
    """About one provider referral; the providers service also says which service has it and
    for which pathway (optional: events from before they were added lack them)."""

    provider_referral_id: str
    service_code: str | None = None
    provider_code: str | None = None
    programme: str | None = None
    pathway: Pathway | None = None


class ReferralAllocated(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.allocated"
    service_code: str
    provider_code: str
    programme: str
    area: str | None = None
    acknowledge_by: Instant
    respond_by: Instant
    duty_to_refer: bool = Field(default=False, description="The need calls for a Duty to Refer notice")


class UnallocationReason(Payload):
    """Why one service of the pathway could not take the need: its first failing criterion
    (`active`, `pathway`, `area`, `sex`, `min_age`, `max_age`, `supervision_status`,
    `complexity`, `required_flags`, `iom_membership`), or `previously_declined`."""

    service_code: str
    criterion: str


class ReferralUnallocated(NeedRef):
    event_type: ClassVar[str] = "providers.referral.unallocated"
    reason: str
    # Every service of the pathway considered, in routing order (priority, then code); empty
    # when no service delivers the pathway. None only on events from before it was added.
    reasons: list[UnallocationReason] | None = None
    pathway: Pathway | None = None
    area: str | None = None
    duty_to_refer: bool = Field(default=False, description="The need calls for a Duty to Refer notice")


class ReferralAcknowledged(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.acknowledged"


class ReferralAccepted(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.accepted"


class ReferralStarted(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.started"


class ReferralDeclined(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.declined"
    reason_code: DeclineReason


class ReferralCompleted(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.completed"
    outcome: Outcome


class ProviderReferralWithdrawn(ProviderReferralRef):
    """A provider referral closed because probation withdrew the need."""

    event_type: ClassVar[str] = "providers.referral.withdrawn"
    reason_code: WithdrawalReason | None = None


class DeadlineMissed(ProviderReferralRef):
    event_type: ClassVar[str] = "providers.referral.deadline-missed"
    deadline: str  # "acknowledge" or "respond"
    due_at: Instant | None = None


class MemberSelected(Payload):
    event_type: ClassVar[str] = "cohorts.member.selected"
    omit_when_none: ClassVar[frozenset[str]] = frozenset({"moved_from"})
    area: str
    cohort: Cohort
    score: int | None = None
    review_due_at: Instant | date
    met_criteria: bool | None = None
    moved_from: Cohort | None = Field(default=None, description="The cohort left for this one, on a move")


class MemberDeselected(Payload):
    event_type: ClassVar[str] = "cohorts.member.deselected"
    omit_when_none: ClassVar[frozenset[str]] = frozenset({"moved_to"})
    area: str
    cohort: Cohort
    reason: DeselectionReason
    moved_to: Cohort | None = Field(default=None, description="The cohort joined instead, on a move")


class MemberPathwayActivity(Payload):
    event_type: ClassVar[str] = "cohorts.member.pathway-activity"
    area: str
    cohort: Cohort
    pathway: Pathway
    status: NeedStatus | str
    programme: str | None = None


class SelectionRunCompleted(Payload):
    event_type: ClassVar[str] = "cohorts.selection-run.completed"
    run_id: str
    area: str
    as_of: date | None = None
    policy_version: int | None = None
    candidates: dict[str, int]
    within_capacity: dict[str, int] | None = None


class DutyToReferSent(Payload):
    event_type: ClassVar[str] = "notifications.duty-to-refer.sent"
    referral_id: str
    need_id: str
    area: str


class MemberReviewDue(Payload):
    event_type: ClassVar[str] = "cohorts.member.review-due"
    area: str
    cohort: Cohort
    review_due_at: Instant
    suggest_deselection: bool = Field(description="The member has been quiet long enough to consider deselecting")


class DeliveryFailed(Payload):
    """A notification that failed for good; the failure's text stays in the delivery log."""

    event_type: ClassVar[str] = "notifications.delivery.failed"
    notification_id: UUID
    kind: str
    channel: str = Field(examples=["email", "webhook"])
    recipient_role: str
    recipient_key: str
    referral_id: UUID | None = None
    source_event_id: UUID
    source_event_type: str
    attempts: int = Field(ge=1)


class TestPing(Payload):
    """The infrastructure's own test event: any fields."""

    event_type: ClassVar[str] = "pathways.test.ping"


def _event_models() -> dict[str, type[Payload]]:
    models: dict[str, type[Payload]] = {}
    pending: list[type[Payload]] = [Payload]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__ == __name__ and vars(model).get("event_type"):
            if model.event_type in models:
                raise TypeError(f"two models of {model.event_type}")
            models[model.event_type] = model
    return dict(sorted(models.items()))


# Each event type's payload model, from the models themselves (each names its type once).
PAYLOADS: dict[str, type[Payload]] = _event_models()


def event_type_of(payload: Payload) -> str:
    """The event type `payload` is the payload of; TypeError for anything that is not exactly
    one event's model (a dict, a part of a payload such as `NeedRef`, a subclass of a model)."""
    kind = getattr(type(payload), "event_type", "")
    if not isinstance(payload, Payload) or not kind or PAYLOADS.get(kind) is not type(payload):
        raise TypeError(f"{type(payload).__name__} is not the payload model of an event type")
    return kind


# Events of the infrastructure's own tests: never a partner's concern, not in the AsyncAPI document.
INTERNAL_EVENT_TYPES = frozenset({"pathways.test.ping"})

# Keys that must never appear anywhere in an event (personal details stay off the bus).
FORBIDDEN_KEYS = frozenset(
    {"givenName", "familyName", "dateOfBirth", "email", "name", "phone", "address",
     "given_name", "family_name", "date_of_birth", "practitionerEmail", "practitionerName"}
)
