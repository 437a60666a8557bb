"""The `additionalInformation` of each event type, as the contract lists it (at least these
fields; producers may add more). The AsyncAPI document is generated from these models
(`scripts/asyncapi.py`), and the system tests check that what crosses the bus conforms.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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


class Payload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class SubmittedNeed(Payload):
    need_id: UUID
    pathway: Pathway
    complexity: Complexity
    flags: list[str] = []


class ReferralSubmitted(Payload):
    """Routing facts only: no names, dates of birth or contact details."""

    referral_id: UUID
    area: str
    needs: list[SubmittedNeed] = Field(min_length=1)
    sex: Sex
    age_on_submission: int = Field(ge=0, le=150)
    supervision_status: SupervisionStatus
    rosh: Rosh | None = None
    mappa_level: int | None = None


class ReferralWithdrawn(Payload):
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
    service_code: str
    provider_code: str
    programme: str
    acknowledge_by: datetime
    respond_by: datetime


class UnallocationReason(Payload):
    """Why one service of the pathway could not take the need: its first failing criterion
    (`active`, `pathway`, `area`, `sex`, `min_age`, `max_age`, `supervision_status`,
    `complexity`, `required_flags`, `iom_membership`), or `previously_declined`."""

    service_code: str
    criterion: str


class ReferralUnallocated(NeedRef):
    reason: str
    # Every service of the pathway considered, in routing order (priority, then code); empty
    # when no service delivers the pathway. None only on events from before it was added.
    reasons: list[UnallocationReason] | None = None
    area: str | None = None
    pathway: Pathway | None = None


class ReferralDeclined(ProviderReferralRef):
    reason_code: DeclineReason


class ReferralCompleted(ProviderReferralRef):
    outcome: Outcome


class DeadlineMissed(ProviderReferralRef):
    deadline: str  # "acknowledge" or "respond"


class MemberSelected(Payload):
    area: str
    cohort: Cohort
    score: int | None = None
    review_due_at: datetime | date


class MemberDeselected(Payload):
    area: str
    cohort: Cohort
    reason: DeselectionReason


class MemberPathwayActivity(Payload):
    area: str
    cohort: Cohort
    pathway: Pathway
    status: NeedStatus | str
    programme: str | None = None


class SelectionRunCompleted(Payload):
    run_id: str
    area: str
    candidates: dict[str, int]


class DutyToReferSent(Payload):
    referral_id: str
    need_id: str
    area: str


class MemberReviewDue(Payload):
    area: str
    cohort: Cohort
    review_due_at: datetime
    suggest_deselection: bool = Field(description="The member has been quiet long enough to consider deselecting")


class DeliveryFailed(Payload):
    """A notification that failed for good; the failure's text stays in the delivery log."""

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
    pass


PAYLOADS: dict[str, type[Payload]] = {
    "referrals.referral.submitted": ReferralSubmitted,
    "referrals.referral.withdrawn": ReferralWithdrawn,
    "providers.referral.allocated": ReferralAllocated,
    "providers.referral.unallocated": ReferralUnallocated,
    "providers.referral.acknowledged": ProviderReferralRef,
    "providers.referral.accepted": ProviderReferralRef,
    "providers.referral.declined": ReferralDeclined,
    "providers.referral.started": ProviderReferralRef,
    "providers.referral.completed": ReferralCompleted,
    "providers.referral.withdrawn": ProviderReferralRef,
    "providers.referral.deadline-missed": DeadlineMissed,
    "cohorts.member.selected": MemberSelected,
    "cohorts.member.deselected": MemberDeselected,
    "cohorts.member.review-due": MemberReviewDue,
    "cohorts.member.pathway-activity": MemberPathwayActivity,
    "cohorts.selection-run.completed": SelectionRunCompleted,
    "notifications.duty-to-refer.sent": DutyToReferSent,
    "notifications.delivery.failed": DeliveryFailed,
    "pathways.test.ping": TestPing,
}


def event_type_of(payload: Payload) -> str:
    """The event type a payload is the model of: the one type whose model is exactly its class
    (ValueError for a model several types share, such as `ProviderReferralRef`)."""
    types = [name for name, model in PAYLOADS.items() if model is type(payload)]
    if len(types) != 1:
        raise ValueError(f"{type(payload).__name__} is the model of {len(types)} event types")
    return types[0]


# Events of the infrastructure's own tests: never a partner's concern, not in the AsyncAPI document.
INTERNAL_EVENT_TYPES = frozenset({"pathways.test.ping"})

# Keys that must never appear anywhere in an event (personal details stay off the bus).
FORBIDDEN_KEYS = frozenset(
    {"givenName", "familyName", "dateOfBirth", "email", "name", "phone", "address",
     "given_name", "family_name", "date_of_birth", "practitionerEmail", "practitionerName"}
)
