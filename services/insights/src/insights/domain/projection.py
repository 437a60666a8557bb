"""What one need contributes to the figures, as a pure function of the facts known about it.

The four streams are not ordered with respect to each other: an allocation can arrive before
its submission, a completion before its acceptance. So nothing here depends on arrival: a
need's contribution is computed from all its facts at once (`contribution`), ordered by the
time each step happened, and the store applies the difference between the contribution after
a new fact and before it. The figures are then the sum over needs of `contribution`, the same
for every interleaving and every repetition of the same events.

Rules (DOMAIN.md, "Partnership insight"):
- nothing counts until the need's submission is known: it carries the dimensions;
- a step after allocation counts under the allocation it happened in (the provider referral
  its event names; a withdrawal under the allocation current at the time, if any);
- the acknowledgement of an allocation is the first of its acknowledgement, acceptance or
  decline; its response the first of acceptance or decline; each is on time when it happened
  at or before the allocation's `acknowledge_by` / `respond_by`, and is measured in whole
  working days of England and Wales from the day of allocation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from pathways_shared.working_days import WorkingCalendar, london_day


class StepKind(StrEnum):
    UNALLOCATED = "unallocated"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    STARTED = "started"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    DEADLINE_MISSED = "deadline_missed"
    DUTY_TO_REFER_SENT = "duty_to_refer_sent"


class DetailMeasure(StrEnum):
    UNMET_REASON = "unmet_reason"
    DECLINE_REASON = "decline_reason"
    WORKING_DAYS_TO_ACKNOWLEDGE = "working_days_to_acknowledge"
    WORKING_DAYS_TO_RESPOND = "working_days_to_respond"


# The categories of unmet need, from the structured reasons of an unallocation.
UNMET_REASONS: tuple[str, ...] = (
    "no_service", "all_declined", "sex", "age", "supervision_status", "complexity",
    "required_flags", "iom_membership", "inactive", "unknown",
)
_CRITERION_TO_REASON = {"min_age": "age", "max_age": "age", "active": "inactive"}
# Criteria that say a service does not serve this need at all, rather than this person.
_NOT_SERVING = frozenset({"pathway", "area"})


def unmet_reason(reasons: Sequence[tuple[str, str]] | None) -> str:
    """The category of an unallocation from `(service code, criterion)` in priority order.

    No service of the pathway covers the area: `no_service`. Some service declined: then every
    eligible one did (none was left), `all_declined`. Otherwise the failing criterion of the
    service with the best priority. An event from before reasons were structured: `unknown`.
    """
    if reasons is None:
        return "unknown"
    relevant = [criterion for _, criterion in reasons if criterion not in _NOT_SERVING]
    if not relevant:
        return "no_service"
    if "previously_declined" in relevant:
        return "all_declined"
    first = relevant[0]
    return _CRITERION_TO_REASON.get(first, first if first in UNMET_REASONS else "unknown")


@dataclass(frozen=True)
class Need:
    """A need's dimensions, fixed at submission."""

    need_id: str
    area: str
    pathway: str
    complexity: str
    sex: str
    age_band: str
    supervision: str
    at_risk_of_homelessness: bool
    submitted_at: datetime


@dataclass(frozen=True)
class Allocation:
    provider_referral_id: str
    service_code: str
    provider_code: str
    programme: str
    allocated_at: datetime
    acknowledge_by: datetime
    respond_by: datetime


@dataclass(frozen=True)
class Step:
    event_id: str
    kind: StepKind
    occurred_at: datetime
    provider_referral_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class CellKey:
    """Where a count lands: the day and every dimension ("" for no allocation)."""

    day: date
    area: str
    pathway: str
    complexity: str
    sex: str
    age_band: str
    supervision: str
    service_code: str = ""
    provider_code: str = ""
    programme: str = ""


# (cell, measure, detail): a count column of the cell when detail is None, else a detail count.
Entry = tuple[CellKey, str, str | None]
Contribution = Counter[Entry]


def _cell(need: Need, moment: datetime, allocation: Allocation | None) -> CellKey:
    return CellKey(
        day=london_day(moment), area=need.area, pathway=need.pathway,
        complexity=need.complexity, sex=need.sex, age_band=need.age_band,
        supervision=need.supervision,
        service_code=allocation.service_code if allocation else "",
        provider_code=allocation.provider_code if allocation else "",
        programme=allocation.programme if allocation else "",
    )


def _order(step: Step) -> tuple[datetime, str]:
    return (step.occurred_at, step.event_id)


def _current_allocation(
    moment: datetime, allocations: Iterable[Allocation], steps: Iterable[Step]
) -> Allocation | None:
    """The allocation a need was in at `moment`: the latest routing before it, if an allocation."""
    latest: tuple[datetime, int, Allocation | None] | None = None
    for allocation in allocations:
        if allocation.allocated_at <= moment:
            candidate = (allocation.allocated_at, 1, allocation)
            if latest is None or candidate[:2] > latest[:2]:
                latest = candidate
    for step in steps:
        if step.kind is StepKind.UNALLOCATED and step.occurred_at <= moment:
            candidate = (step.occurred_at, 0, None)
            if latest is None or candidate[:2] > latest[:2]:
                latest = candidate
    return latest[2] if latest else None


_SIMPLE_COUNTS = {
    StepKind.UNALLOCATED: "unallocated",
    StepKind.DECLINED: "declined",
    StepKind.ACCEPTED: "accepted",
    StepKind.STARTED: "started",
    StepKind.COMPLETED: "completed",
    StepKind.WITHDRAWN: "withdrawn",
    StepKind.DEADLINE_MISSED: "deadlines_missed",
    StepKind.DUTY_TO_REFER_SENT: "duty_to_refer_sent",
}
_DETAILS = {
    StepKind.UNALLOCATED: DetailMeasure.UNMET_REASON,
    StepKind.DECLINED: DetailMeasure.DECLINE_REASON,
}
_ACKNOWLEDGING = frozenset({StepKind.ACKNOWLEDGED, StepKind.ACCEPTED, StepKind.DECLINED})
_RESPONDING = frozenset({StepKind.ACCEPTED, StepKind.DECLINED})


def contribution(
    need: Need | None,
    allocations: Sequence[Allocation],
    steps: Sequence[Step],
    calendar: WorkingCalendar,
) -> Contribution:
    """Every count this need adds to the figures, given all the facts known about it."""
    counts: Contribution = Counter()
    if need is None:
        return counts
    by_id = {a.provider_referral_id: a for a in allocations}
    counts[(_cell(need, need.submitted_at, None), "submitted", None)] += 1
    if need.at_risk_of_homelessness:
        counts[(_cell(need, need.submitted_at, None), "accommodation_at_risk", None)] += 1
    for allocation in allocations:
        counts[(_cell(need, allocation.allocated_at, allocation), "allocated", None)] += 1

    ordered = sorted(steps, key=_order)
    for step in ordered:
        if step.provider_referral_id is not None:
            allocation = by_id.get(step.provider_referral_id)
            if allocation is None:
                continue  # its allocation has not arrived yet: counted when it does
        elif step.kind is StepKind.WITHDRAWN:
            allocation = _current_allocation(step.occurred_at, allocations, ordered)
        else:
            allocation = None
        cell = _cell(need, step.occurred_at, allocation)
        if step.kind is StepKind.COMPLETED and step.detail:
            counts[(cell, f"outcome_{step.detail}", None)] += 1
        measure = _SIMPLE_COUNTS.get(step.kind)
        if measure:
            counts[(cell, measure, None)] += 1
        detail = _DETAILS.get(step.kind)
        if detail and step.detail:
            counts[(cell, str(detail), step.detail)] += 1

    for allocation in allocations:
        mine = [s for s in ordered if s.provider_referral_id == allocation.provider_referral_id]
        acknowledged = next((s for s in mine if s.kind in _ACKNOWLEDGING), None)
        if acknowledged is not None:
            _timed(counts, need, allocation, acknowledged, allocation.acknowledge_by,
                   "acknowledged", DetailMeasure.WORKING_DAYS_TO_ACKNOWLEDGE, calendar)
        responded = next((s for s in mine if s.kind in _RESPONDING), None)
        if responded is not None:
            _timed(counts, need, allocation, responded, allocation.respond_by,
                   "responded", DetailMeasure.WORKING_DAYS_TO_RESPOND, calendar)
    return counts


def _timed(
    counts: Contribution, need: Need, allocation: Allocation, step: Step, due: datetime,
    prefix: str, measure: DetailMeasure, calendar: WorkingCalendar,
) -> None:
    cell = _cell(need, step.occurred_at, allocation)
    counts[(cell, f"{prefix}_{'on_time' if step.occurred_at <= due else 'late'}", None)] += 1
    days = calendar.working_days_between(london_day(allocation.allocated_at), cell.day)
    counts[(cell, str(measure), str(days))] += 1


def difference(after: Contribution, before: Contribution) -> Contribution:
    """after - before, keeping negative counts (a retracted implied acknowledgement)."""
    delta: Contribution = Counter()
    for key in after.keys() | before.keys():
        change = after.get(key, 0) - before.get(key, 0)
        if change:
            delta[key] = change
    return delta


@dataclass
class History:
    """The facts known about one need."""

    need: Need | None = None
    allocations: list[Allocation] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def change(known: History, added: History, calendar: WorkingCalendar) -> Contribution:
    """What adding new facts (`added`, none of them known before) changes in the figures.

    However many facts arrive at once, and in whatever order, the need's contribution goes
    from what its known facts give to what all of them give.
    """
    if not (added.need or added.allocations or added.steps):
        return Counter()
    before = contribution(known.need, known.allocations, known.steps, calendar)
    after = contribution(
        added.need or known.need, [*known.allocations, *added.allocations],
        [*known.steps, *added.steps], calendar,
    )
    return difference(after, before)
