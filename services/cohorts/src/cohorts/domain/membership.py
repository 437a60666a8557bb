"""Panel decisions on cohort membership, reviews and deselection suggestions.

A membership is one spell of a person in one cohort of one area. The panel adopts (with who
decided and why), deselects with a reason, or moves a member to another cohort (which ends one
spell and starts another). Adoption needs no prior run: the panel decides, and the membership
records whether the person met that cohort's criteria on the day.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from cohorts.domain.dates import first_day_of_months_before
from cohorts.domain.policy import SelectionPolicy
from cohorts.domain.selection import Assessment, ExclusionReason, SelectionRun
from cohorts.errors import (
    AlreadyMember,
    FieldError,
    IllegalTransition,
    InvalidValue,
    NotAMember,
    NotForIom,
)
from pathways_shared.event_payloads import (
    MemberDeselected,
    MemberPathwayActivity,
    MemberReviewDue,
    MemberSelected,
    SelectionRunCompleted,
)
from pathways_shared.vocabulary import Cohort, DeselectionReason

MAX_TEXT = 2000


class MembershipStatus(StrEnum):
    ACTIVE = "active"
    DESELECTED = "deselected"


@dataclass(frozen=True)
class Membership:
    crn: str
    area: str
    cohort: Cohort
    status: MembershipStatus
    adopted_at: datetime
    adopted_by: str
    rationale: str
    met_criteria: bool
    criteria_reasons: tuple[str, ...]
    score_at_adoption: int
    review_due_at: datetime
    deselected_at: datetime | None = None
    deselected_by: str | None = None
    deselection_reason: DeselectionReason | None = None
    deselection_comments: str | None = None

    @property
    def active(self) -> bool:
        return self.status is MembershipStatus.ACTIVE


# --- events: the shared payload models; the service puts the CRN on their envelope ------------

MemberEvent = MemberSelected | MemberDeselected | MemberReviewDue | MemberPathwayActivity


def run_completed(run: SelectionRun, run_id: str) -> SelectionRunCompleted:
    counts = run.counts()
    return SelectionRunCompleted(
        run_id=run_id,
        area=run.area,
        as_of=run.as_of,
        policy_version=run.policy_version,
        candidates={cohort: n["candidates"] for cohort, n in counts.items()},
        within_capacity={cohort: n["within_capacity"] for cohort, n in counts.items()},
    )


def pathway_activity(
    member: Membership | None, *, pathway: str, status: str, programme: str | None
) -> MemberPathwayActivity | None:
    """Only current members' activity reaches the police, and only pathway, status and
    programme (data minimisation). The event is about `member.crn`."""
    if member is None or not member.active:
        return None
    return MemberPathwayActivity(
        area=member.area, cohort=member.cohort, pathway=pathway, status=status, programme=programme
    )


# --- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The memberships to save (the ended spell first, then the new one) and the events."""

    memberships: tuple[Membership, ...]
    events: tuple[MemberSelected | MemberDeselected, ...]

    @property
    def crn(self) -> str:
        """Whom the decision (and each of its events) is about."""
        return self.memberships[0].crn


def _required_text(value: str | None, field: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidValue.for_field(field, "is required")
    if len(text) > MAX_TEXT:
        raise InvalidValue.for_field(field, f"must be at most {MAX_TEXT} characters")
    return text


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def review_due_after(start: datetime, policy: SelectionPolicy) -> datetime:
    return start + timedelta(weeks=policy.review_interval_weeks)


def _new_spell(
    *,
    crn: str,
    area: str,
    cohort: Cohort,
    decided_by: str,
    rationale: str,
    now: datetime,
    policy: SelectionPolicy,
    assessment: Assessment,
) -> Membership:
    if assessment.crn != crn:
        raise ValueError("assessment is for another person")
    if assessment.exclusion is not None and assessment.exclusion.reason is ExclusionReason.UNDER_18:
        raise NotForIom(
            f"{crn} is {assessment.exclusion.detail}",
            [FieldError("crn", "the person is under 18")],
        )
    return Membership(
        crn=crn,
        area=area,
        cohort=cohort,
        status=MembershipStatus.ACTIVE,
        adopted_at=now,
        adopted_by=decided_by,
        rationale=rationale,
        met_criteria=assessment.met_criteria(cohort),
        criteria_reasons=assessment.reasons,
        score_at_adoption=assessment.score.total,
        review_due_at=review_due_after(now, policy),
    )


def adopt(
    current: Membership | None,
    *,
    crn: str,
    area: str,
    cohort: Cohort,
    decided_by: str,
    rationale: str,
    now: datetime,
    policy: SelectionPolicy,
    assessment: Assessment,
) -> Decision:
    """Adopt a person into a cohort. `current` is their active membership in the area, if
    any; `assessment` is the rules' view of them on the day of the decision."""
    _check_aware(now)
    decided_by = _required_text(decided_by, "decided_by")
    rationale = _required_text(rationale, "rationale")
    if current is not None and current.active:
        where = "this cohort" if current.cohort is cohort else f"the {current.cohort.value} cohort"
        raise AlreadyMember(
            f"{crn} is already a member of {where} in {area}; move them instead"
            if current.cohort is not cohort
            else f"{crn} is already a member of {where} in {area}"
        )
    spell = _new_spell(
        crn=crn,
        area=area,
        cohort=cohort,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    event = MemberSelected(
        area=area,
        cohort=cohort,
        score=spell.score_at_adoption,
        review_due_at=spell.review_due_at,
        met_criteria=spell.met_criteria,
    )
    return Decision((spell,), (event,))


def deselect(
    current: Membership | None,
    *,
    reason: DeselectionReason,
    decided_by: str,
    now: datetime,
    comments: str | None = None,
) -> Decision:
    _check_aware(now)
    decided_by = _required_text(decided_by, "decided_by")
    if current is None or not current.active:
        raise NotAMember("the person is not a current member of a cohort in this area")
    ended = replace(
        current,
        status=MembershipStatus.DESELECTED,
        deselected_at=now,
        deselected_by=decided_by,
        deselection_reason=reason,
        deselection_comments=(comments or "").strip() or None,
    )
    event = MemberDeselected(area=current.area, cohort=current.cohort, reason=reason)
    return Decision((ended,), (event,))


def move(
    current: Membership | None,
    *,
    to: Cohort,
    decided_by: str,
    rationale: str,
    now: datetime,
    policy: SelectionPolicy,
    assessment: Assessment,
) -> Decision:
    """Move a member to another cohort: the old spell ends (`panel_decision`), a new one
    starts today with its own review cycle and its own criteria check."""
    _check_aware(now)
    decided_by = _required_text(decided_by, "decided_by")
    rationale = _required_text(rationale, "rationale")
    if current is None or not current.active:
        raise NotAMember("the person is not a current member of a cohort in this area")
    if current.cohort is to:
        raise IllegalTransition(f"{current.crn} is already in the {to.value} cohort")
    ended = replace(
        current,
        status=MembershipStatus.DESELECTED,
        deselected_at=now,
        deselected_by=decided_by,
        deselection_reason=DeselectionReason.PANEL_DECISION,
        deselection_comments=f"moved to {to.value}: {rationale}",
    )
    spell = _new_spell(
        crn=current.crn,
        area=current.area,
        cohort=to,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    return Decision(
        (ended, spell),
        (
            MemberDeselected(
                area=current.area,
                cohort=current.cohort,
                reason=DeselectionReason.PANEL_DECISION,
                moved_to=to,
            ),
            MemberSelected(
                area=current.area,
                cohort=to,
                score=spell.score_at_adoption,
                review_due_at=spell.review_due_at,
                met_criteria=spell.met_criteria,
                moved_from=current.cohort,
            ),
        ),
    )


# --- reviews ------------------------------------------------------------------------------


def should_suggest_deselection(
    last_offence_date: date | None, today: date, policy: SelectionPolicy
) -> bool:
    """No recorded offence in the `deselection_after_months` (12) months up to today."""
    quiet_from = first_day_of_months_before(today, policy.deselection_after_months)
    return last_offence_date is None or last_offence_date < quiet_from


def next_review_due(review_due_at: datetime, now: datetime, policy: SelectionPolicy) -> datetime:
    """The first due time after `now` on the member's review cycle (every interval from
    adoption), so a missed scheduler tick does not shift the cycle."""
    step = timedelta(weeks=policy.review_interval_weeks)
    due = review_due_at
    if due > now:
        return due
    missed = (now - due) // step + 1
    return due + missed * step


@dataclass(frozen=True)
class ReviewDecision:
    membership: Membership  # with review_due_at moved on to the next review
    event: MemberReviewDue  # about `membership.crn`
    # Kept for the caller; not on the bus (offence history stays behind `detailUrl`).
    last_offence_date: date | None


def review_if_due(
    member: Membership,
    *,
    last_offence_date: date | None,
    now: datetime,
    today: date,
    policy: SelectionPolicy,
) -> ReviewDecision | None:
    """For the scheduler: when an active member's review has come, the review-due event
    (with a deselection suggestion if they have been quiet for 12 months) and the member with
    the next review date. `today` is `now` as a Europe/London calendar day."""
    _check_aware(now)
    if not member.active or member.review_due_at > now:
        return None
    suggest = should_suggest_deselection(last_offence_date, today, policy)
    event = MemberReviewDue(
        area=member.area,
        cohort=member.cohort,
        review_due_at=member.review_due_at,
        suggest_deselection=suggest,
    )
    moved_on = replace(member, review_due_at=next_review_due(member.review_due_at, now, policy))
    return ReviewDecision(moved_on, event, last_offence_date)


def deselection_suggestions(
    members: list[tuple[Membership, date | None]], today: date, policy: SelectionPolicy
) -> list[Membership]:
    """The active members, of (member, last offence date) pairs, quiet long enough to be
    suggested for deselection, in CRN order."""
    return sorted(
        (
            member
            for member, last in members
            if member.active and should_suggest_deselection(last, today, policy)
        ),
        key=lambda m: (m.crn, m.cohort.value),
    )
