"""Request and response models of the providers service (unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pathways_shared.access import AccessLogStored
from pathways_shared.erasure import ErasurePublic
from pathways_shared.inputs import (
    AreaCode,
    InputBool,
    InputDate,
    InputDateTime,
    code_of,
    comments_required_when_other,
)
from pathways_shared.outputs import stored_form
from pathways_shared.pagination import NextCursor
from pathways_shared.problems import problem_responses as shared_problem_responses
from pathways_shared.vocabulary import (
    Complexity,
    DeclineReason,
    Outcome,
    Pathway,
    Sex,
    SupervisionStatus,
)
from providers.domain.catalogue import Eligibility, NeedFlag, Service
from providers.domain.provider_referral import ProviderReferralStatus
from providers.models import IomMemberRow, NeedRow, ProviderReferralRow, RoutingDecisionRow


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- catalogue -----------------------------------------------------------------------------


class ServicePublic(Strict):
    code: str
    name: str
    provider_code: str
    programme: str
    pathway: Pathway
    areas: list[str]
    priority: int
    eligibility: Eligibility
    acknowledge_days: int
    respond_days: int
    active: bool

    @classmethod
    def of(cls, service: Service) -> ServicePublic:
        return cls.model_validate(service.model_dump())


class ServicesPublic(Strict):
    data: list[ServicePublic]
    next_cursor: NextCursor = None


class ServicePut(Service):
    """The body of `PUT /services/{code}`: a service; its `code`, if given, must be the path's."""

    code: str | None = Field(default=None, max_length=32)  # type: ignore[assignment]


class ProviderPublic(Strict):
    code: str
    name: str
    services: list[str]


class ProvidersPublic(Strict):
    data: list[ProviderPublic]
    next_cursor: NextCursor = None


# ---- eligibility ---------------------------------------------------------------------------


class EligibilityPerson(Strict):
    date_of_birth: InputDate
    sex: Sex


class EligibilitySupervision(Strict):
    status: SupervisionStatus


class EligibilityNeed(Strict):
    pathway: Pathway
    complexity: Complexity
    flags: list[NeedFlag] = Field(default_factory=list, max_length=10)


class EligibilityRequest(Strict):
    area: AreaCode
    person: EligibilityPerson
    supervision: EligibilitySupervision
    need: EligibilityNeed
    iom_member: InputBool = False


class ServiceEligibility(Strict):
    code: str
    eligible: bool
    reason: str | None = None
    criterion: str | None = None


class EligibilityResponse(Strict):
    chosen: str | None
    age: int
    reason: str | None = None
    services: list[ServiceEligibility]


# ---- provider referrals --------------------------------------------------------------------


class ProviderReferralPublic(Strict):
    id: uuid.UUID
    referral_id: uuid.UUID
    need_id: uuid.UUID
    crn: str | None = Field(description="null once the record's personal data has been erased")
    area: str
    pathway: Pathway
    complexity: Complexity
    flags: list[str]
    service_code: str
    provider_code: str
    programme: str
    status: ProviderReferralStatus
    allocated_at: datetime
    acknowledge_by: datetime
    respond_by: datetime
    acknowledged_at: datetime | None = None
    responded_at: datetime | None = None
    decline_reason: str | None = None
    decline_comments: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: str | None = None
    outcome_notes: str | None = None
    withdrawn_at: datetime | None = None
    withdrawal_reason: str | None = None


class ProviderReferralsPublic(Strict):
    data: list[ProviderReferralPublic]
    next_cursor: NextCursor = None


class ProviderReferralDetail(ProviderReferralPublic):
    person: dict[str, Any] | None = None
    practitioner: dict[str, Any] | None = None
    details_available: bool
    details_message: str | None = None


class DeclineRequest(Strict):
    model_config = ConfigDict(json_schema_extra=comments_required_when_other("reason_code"))

    reason_code: str = code_of(DeclineReason, "Why the provider declines")
    comments: str | None = Field(default=None, max_length=4000)


class StartRequest(Strict):
    started_at: InputDateTime | None = None


class CompleteRequest(Strict):
    outcome: str = code_of(Outcome, "What the intervention achieved")
    notes: str | None = Field(default=None, max_length=4000)


# ---- routing decisions ---------------------------------------------------------------------


class RoutingDecisionPublic(Strict):
    id: uuid.UUID
    need_id: uuid.UUID
    decided_at: datetime
    trigger: str
    chosen_service_code: str | None
    provider_referral_id: uuid.UUID | None
    unallocated_reason: str | None
    iom_member: bool
    assessments: list[ServiceEligibility]


class RoutingDecisionsPublic(Strict):
    data: list[RoutingDecisionPublic]
    next_cursor: NextCursor = None


# ---- problems (for the OpenAPI document) ---------------------------------------------------


PROBLEM_MEANINGS: dict[int, str] = {
    401: "No token, or a bad one",
    403: "The caller's role does not allow this",
    404: "No such record (or not the caller's provider's)",
    409: "The state machine does not allow this action now",
    422: "Invalid input: `errors` lists each field at fault",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these statuses, each a problem+json body."""
    return shared_problem_responses(PROBLEM_MEANINGS, *statuses)


# ---- subject access ------------------------------------------------------------------------


class AssessmentStored(BaseModel):
    """One service judged for the need, as the routing decision stored it."""

    service_code: str
    eligible: bool
    criterion: str | None
    reason: str | None


NeedStored = stored_form(NeedRow, "NeedStored", "A need, as stored")
RoutingDecisionStored = stored_form(
    RoutingDecisionRow, "RoutingDecisionStored", "A routing decision, as stored",
    assessments=list[AssessmentStored],
)
ProviderReferralStored = stored_form(
    ProviderReferralRow, "ProviderReferralStored", "A provider referral, as stored"
)
IomMemberStored = stored_form(IomMemberRow, "IomMemberStored", "An IOM membership, as stored")


class SubjectAccessPublic(BaseModel):
    """Everything the providers service holds on one person (DPA 2018 s.45): each record as
    it is stored, and the log of who read or changed it."""

    crn: str
    needs: list[NeedStored]  # type: ignore[valid-type]
    routing_decisions: list[RoutingDecisionStored]  # type: ignore[valid-type]
    provider_referrals: list[ProviderReferralStored]  # type: ignore[valid-type]
    iom_membership: list[IomMemberStored]  # type: ignore[valid-type]
    access_log: list[AccessLogStored]  # type: ignore[valid-type]
    # what was erased once its retention period ended, and when (pathways_shared.erasure)
    erasures: list[ErasurePublic]
