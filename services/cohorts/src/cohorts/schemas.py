"""Request and response models of the cohorts service. Requests refuse unknown fields."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from cohorts.models import MembershipRecord, NominalRecord, OffenceRecord, ReferralNeedRecord
from pathways_shared.access import AccessLogStored
from pathways_shared.erasure import ErasurePublic
from pathways_shared.inputs import AreaCode, InputDate, InputDateTime, not_blank
from pathways_shared.outputs import UtcDateTime, stored_form
from pathways_shared.vocabulary import (
    Cohort,
    DeselectionReason,
    OffenceCategory,
    SupervisionStatus,
)

Crn = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{6}$")]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text2000 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- nominals and offences ------------------------------------------------------------------


class NominalUpsert(Request):
    area: AreaCode
    date_of_birth: InputDate
    supervision_status: SupervisionStatus
    mappa_level: int | None = Field(default=None, ge=1, le=3)
    pnc_number: str | None = Field(default=None, pattern=r"^[0-9]{4}/[0-9]{7}[A-Z]$")


class NominalPublic(Response):
    crn: str
    area: str
    date_of_birth: date
    supervision_status: SupervisionStatus
    mappa_level: int | None
    pnc_number: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    offence_count: int = 0
    last_offence_date: date | None = None


class OffenceIn(Request):
    offence_date: InputDate
    category: OffenceCategory
    description: str | None = Field(default=None, max_length=500)


class OffencesCreate(Request):
    offences: list[OffenceIn] = Field(min_length=1, max_length=1000)


class OffencePublic(Response):
    offence_date: date
    category: OffenceCategory
    description: str | None
    recorded_at: UtcDateTime


class OffencesAdded(Response):
    crn: str
    added: int
    duplicates: int


class RowErrorPublic(Response):
    line: int
    field: str
    message: str


class ImportPublic(Response):
    id: str
    status: str
    created_by: str
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    total_rows: int
    processed_rows: int
    loaded: int
    duplicates: int
    rejected: int
    batches_total: int
    batches_done: int
    errors: list[RowErrorPublic]
    # Rejected lines whose errors are not listed (the list is capped).
    rejected_not_listed: int = 0
    failure: str | None


# --- policies -------------------------------------------------------------------------------


class ProlificBandIn(Request):
    min_age: StrictInt
    max_age: StrictInt | None = None
    min_offences: StrictInt


class RecencyBandIn(Request):
    max_days: StrictInt
    points: StrictInt


class ScoreIn(Request):
    window_years: StrictInt | None = None
    recency_bands: list[RecencyBandIn] | None = None
    frequency_points_per_offence: StrictInt | None = None
    frequency_cap: StrictInt | None = None
    gravity_weights: dict[OffenceCategory, StrictInt] | None = None
    gravity_default_weight: StrictInt | None = None
    gravity_cap: StrictInt | None = None


class CohortNumbersIn(Request):
    fixed: StrictInt | None = None
    flex: StrictInt | None = None
    free: StrictInt | None = None


class PolicyPut(Request):
    """A whole policy; anything left out takes the default of DOMAIN.md. `version`, when
    given, must be the current version (an optimistic lock against lost updates); `area`,
    when given, must be the area of the path."""

    area: AreaCode | None = None
    version: StrictInt | None = None
    updated_at: InputDateTime | None = Field(default=None, description="read-only; ignored")
    updated_by: str | None = Field(default=None, description="read-only; ignored")
    flex_categories: list[OffenceCategory] | None = None
    prolific_bands: list[ProlificBandIn] | None = None
    score: ScoreIn | None = None
    thresholds: CohortNumbersIn | None = None
    candidacy_window_years: StrictInt | None = None
    capacities: CohortNumbersIn | None = None
    review_interval_weeks: StrictInt | None = None
    deselection_after_months: StrictInt | None = None

    def policy_data(self) -> dict[str, Any]:
        data = self.model_dump(
            mode="json",
            exclude_unset=True,
            exclude_none=True,
            exclude={"area", "version", "updated_at", "updated_by"},
        )
        return data


class PolicyPublic(BaseModel):
    area: str
    version: int
    updated_at: str | None
    updated_by: str | None
    flex_categories: list[str]
    prolific_bands: list[dict[str, Any]]
    score: dict[str, Any]
    thresholds: dict[str, int]
    candidacy_window_years: int
    capacities: dict[str, int]
    review_interval_weeks: int
    deselection_after_months: int


# --- selection runs -------------------------------------------------------------------------


class SelectionRunCreate(Request):
    area: AreaCode
    as_of: InputDate


class CandidatePublic(BaseModel):
    crn: str
    cohort: Cohort
    score: int
    recency: int
    frequency: int
    gravity: int
    prolific: bool
    last_offence_date: date | None
    within_capacity: bool
    rank: int
    cohort_rank: int
    reasons: list[str]


class ExcludedPublic(BaseModel):
    crn: str
    reason: str
    detail: str
    would_be: Cohort | None


class SelectionRunSummary(BaseModel):
    id: str
    area: str
    as_of: date
    policy_version: int
    created_at: UtcDateTime
    created_by: str
    counts: dict[str, dict[str, int]] = Field(
        description="per cohort: candidates, and how many are within capacity"
    )
    duration_ms: int


class SelectionRunPublic(SelectionRunSummary):
    candidates: list[CandidatePublic] = Field(
        description="ranked over the whole run: score, then most recent offence, then CRN"
    )
    excluded: list[ExcludedPublic]


class DeselectionSuggestion(BaseModel):
    crn: str
    cohort: Cohort
    adopted_at: UtcDateTime
    last_offence_date: date | None


# --- members --------------------------------------------------------------------------------


class MemberCreate(Request):
    crn: Crn
    cohort: Cohort
    decided_by: str = not_blank(200)
    rationale: str = not_blank(2000)


class MemberDeselect(Request):
    reason: DeselectionReason
    decided_by: str = not_blank(200)
    comments: str | None = Field(default=None, max_length=2000)


class MemberMove(Request):
    cohort: Cohort
    decided_by: str = not_blank(200)
    rationale: str = not_blank(2000)


class MemberPublic(Response):
    crn: str
    area: str
    cohort: Cohort
    status: str
    adopted_at: UtcDateTime
    adopted_by: str
    rationale: str
    review_due_at: UtcDateTime
    met_criteria: bool
    criteria_reasons: list[str]
    score_at_adoption: int
    deselected_at: UtcDateTime | None
    deselected_by: str | None
    deselection_reason: DeselectionReason | None
    deselection_comments: str | None


class AssessmentPublic(BaseModel):
    crn: str
    as_of: date
    age: int
    cohort: Cohort | None
    meets: list[Cohort]
    score: int
    recency: int
    frequency: int
    gravity: int
    prolific: bool
    last_offence_date: date | None
    excluded: str | None
    reasons: list[str]


class ImportStarted(BaseModel):
    """An import answered at once (`wait=false`): follow it at `Location`."""

    id: str
    status: str = Field(json_schema_extra={"enum": ["running"]})


# The records a subject access request discloses, each as it is stored.
NominalStored = stored_form(NominalRecord, "NominalStored", "The nominal, as stored")
OffenceStored = stored_form(OffenceRecord, "OffenceStored", "An offence, as stored")
MembershipStored = stored_form(
    MembershipRecord, "MembershipStored", "A cohort membership, as stored",
    criteria_reasons=list[str],
)
ReferralNeedStored = stored_form(
    ReferralNeedRecord, "ReferralNeedStored", "A need of a referral, as the cohorts service keeps it"
)


class SubjectAccessRun(BaseModel):
    id: str
    area: str
    as_of: date
    candidate: list[CandidatePublic]
    excluded: list[ExcludedPublic]


class SubjectAccessPublic(BaseModel):
    """Everything the cohorts service holds on one person (DPA 2018 s.45): each record as it
    is stored, and the log of who read or changed it."""

    crn: str
    nominal: NominalStored | None  # type: ignore[valid-type]
    offences: list[OffenceStored]  # type: ignore[valid-type]
    memberships: list[MembershipStored]  # type: ignore[valid-type]
    referral_needs: list[ReferralNeedStored]  # type: ignore[valid-type]
    selection_runs: list[SubjectAccessRun]
    access_log: list[AccessLogStored]  # type: ignore[valid-type]
    # what was erased once its retention period ended, and when (pathways_shared.erasure)
    erasures: list[ErasurePublic] = Field(default_factory=list)
