"""IOM cohort selection: prolific test, Recency/Frequency/Gravity score, candidacy, ranking,
capacity. Pure: values in, a run out; the same summaries, policy and `as_of` always give the
same run, whatever order the summaries come in.

The input is one `NominalSummary` per person: a handful of counts that SQL can aggregate over
millions of offences (see `summary_windows` for the date bounds it must use), so a run over a
whole area never loads offences into Python. `summarise` builds the same summary from a list
of offences, for small cases and for tests; the two must agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property

from cohorts.domain.dates import first_day_of_years_before
from cohorts.domain.policy import MIN_AGE, SelectionPolicy
from pathways_shared.clock import age_on
from pathways_shared.vocabulary import (
    NEIGHBOURHOOD_CRIME,
    STATUTORY_STATUSES,
    Cohort,
    OffenceCategory,
    SupervisionStatus,
)

COHORT_ORDER: tuple[Cohort, ...] = (Cohort.FIXED, Cohort.FLEX, Cohort.FREE)
MAPPA_EXCLUDED_LEVELS: frozenset[int] = frozenset({2, 3})


class ExclusionReason(StrEnum):
    UNDER_18 = "under_18"
    MANAGED_UNDER_MAPPA = "managed_under_mappa"


@dataclass(frozen=True)
class Nominal:
    """What selection needs to know about a person (no names, no contact details)."""

    crn: str
    date_of_birth: date
    supervision_status: SupervisionStatus
    mappa_level: int | None = None


@dataclass(frozen=True)
class Offence:
    offence_date: date
    category: OffenceCategory


@dataclass(frozen=True)
class SummaryWindows:
    """The inclusive date bounds a summary is aggregated over, for one `as_of` and policy."""

    as_of: date
    score_from: date  # first day of the score window (3 years by default)
    candidacy_from: date  # first day of the neighbourhood/flex look-back (2 years by default)


def summary_windows(as_of: date, policy: SelectionPolicy) -> SummaryWindows:
    return SummaryWindows(
        as_of=as_of,
        score_from=first_day_of_years_before(as_of, policy.score.window_years),
        candidacy_from=first_day_of_years_before(as_of, policy.candidacy_window_years),
    )


@dataclass(frozen=True)
class NominalSummary:
    """One person's offence history boiled down for one `as_of`. Offences dated after `as_of`
    are not counted at all, so a run for a past date can be repeated exactly.

    - `total_offences`: every recorded offence on or before `as_of` (the prolific count);
    - `window_offences`, `window_gravity`: count and uncapped sum of gravity weights of the
      offences in the score window;
    - `last_offence_date`: the latest offence on or before `as_of`;
    - `neighbourhood_recent`, `flex_recent`: an offence of a neighbourhood-crime category, or
      of one of the area's flex categories, in the candidacy window.
    """

    nominal: Nominal
    total_offences: int = 0
    window_offences: int = 0
    window_gravity: int = 0
    last_offence_date: date | None = None
    neighbourhood_recent: bool = False
    flex_recent: bool = False

    @property
    def crn(self) -> str:
        return self.nominal.crn


def summarise(
    nominal: Nominal, offences: Iterable[Offence], as_of: date, policy: SelectionPolicy
) -> NominalSummary:
    windows = summary_windows(as_of, policy)
    total = window_count = window_gravity = 0
    last: date | None = None
    neighbourhood = flex = False
    for offence in offences:
        if offence.offence_date > as_of:
            continue
        total += 1
        if last is None or offence.offence_date > last:
            last = offence.offence_date
        if offence.offence_date >= windows.score_from:
            window_count += 1
            window_gravity += policy.score.gravity_weight(offence.category)
        if offence.offence_date >= windows.candidacy_from:
            neighbourhood |= offence.category in NEIGHBOURHOOD_CRIME
            flex |= offence.category in policy.flex_categories
    return NominalSummary(
        nominal=nominal,
        total_offences=total,
        window_offences=window_count,
        window_gravity=window_gravity,
        last_offence_date=last,
        neighbourhood_recent=neighbourhood,
        flex_recent=flex,
    )


# --- the rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    recency: int
    frequency: int
    gravity: int

    @property
    def total(self) -> int:
        return self.recency + self.frequency + self.gravity


def recency_points(last_offence_date: date | None, as_of: date, policy: SelectionPolicy) -> int:
    if last_offence_date is None or last_offence_date > as_of:
        return 0
    days = (as_of - last_offence_date).days
    for band in policy.score.recency_bands:
        if days <= band.max_days:
            return band.points
    return 0


def score(summary: NominalSummary, as_of: date, policy: SelectionPolicy) -> Score:
    weights = policy.score
    return Score(
        recency=recency_points(summary.last_offence_date, as_of, policy),
        frequency=min(
            summary.window_offences * weights.frequency_points_per_offence, weights.frequency_cap
        ),
        gravity=min(summary.window_gravity, weights.gravity_cap),
    )


def is_prolific(age: int, total_offences: int, policy: SelectionPolicy) -> bool:
    band = policy.prolific_band(age)
    return band is not None and total_offences >= band.min_offences


@dataclass(frozen=True)
class Exclusion:
    reason: ExclusionReason
    detail: str


def exclusion(nominal: Nominal, age: int) -> Exclusion | None:
    """Why a person cannot be a candidate at all; under 18 comes first (they belong to the
    Youth Justice Service, not this system)."""
    if age < MIN_AGE:
        return Exclusion(
            ExclusionReason.UNDER_18,
            f"aged {age}: under 18s are managed by the Youth Justice Service",
        )
    if nominal.mappa_level in MAPPA_EXCLUDED_LEVELS:
        return Exclusion(
            ExclusionReason.MANAGED_UNDER_MAPPA,
            f"managed under MAPPA at level {nominal.mappa_level}",
        )
    return None


@dataclass(frozen=True)
class Assessment:
    """Everything the rules say about one person on one date. The `reasons` in words are
    built on first use, so a run over a whole area words only its candidates."""

    crn: str
    as_of: date
    age: int
    statutory: bool
    prolific: bool
    score: Score
    last_offence_date: date | None
    meets: frozenset[Cohort]
    exclusion: Exclusion | None
    summary: NominalSummary = field(repr=False)
    policy: SelectionPolicy = field(repr=False, compare=False)

    @property
    def cohort(self) -> Cohort | None:
        """The cohort the person is a candidate for: the first of fixed, flex, free they meet,
        and none when excluded."""
        if self.exclusion is not None:
            return None
        return self.first_met

    @property
    def first_met(self) -> Cohort | None:
        """The cohort the person would be a candidate for were they not excluded."""
        for cohort in COHORT_ORDER:
            if cohort in self.meets:
                return cohort
        return None

    def met_criteria(self, cohort: Cohort) -> bool:
        """Whether the person meets that cohort's own criteria (whatever the precedence)."""
        return self.exclusion is None and cohort in self.meets

    @cached_property
    def reasons(self) -> tuple[str, ...]:
        return explain(self)


def assess(summary: NominalSummary, as_of: date, policy: SelectionPolicy) -> Assessment:
    nominal = summary.nominal
    age = age_on(nominal.date_of_birth, as_of)
    statutory = nominal.supervision_status in STATUTORY_STATUSES
    prolific = is_prolific(age, summary.total_offences, policy)
    parts = score(summary, as_of, policy)
    total = parts.total
    thresholds = policy.thresholds

    meets: set[Cohort] = set()
    if statutory and summary.neighbourhood_recent and (prolific or total >= thresholds.fixed):
        meets.add(Cohort.FIXED)
    if statutory and summary.flex_recent and (prolific or total >= thresholds.flex):
        meets.add(Cohort.FLEX)
    if total >= thresholds.free:
        meets.add(Cohort.FREE)
    return Assessment(
        crn=nominal.crn,
        as_of=as_of,
        age=age,
        statutory=statutory,
        prolific=prolific,
        score=parts,
        last_offence_date=summary.last_offence_date,
        meets=frozenset(meets),
        exclusion=exclusion(nominal, age),
        summary=summary,
        policy=policy,
    )


def explain(assessment: Assessment) -> tuple[str, ...]:
    """The assessment in words, for the panel."""
    a, summary, policy = assessment, assessment.summary, assessment.policy
    nominal, parts, age, as_of = summary.nominal, a.score, a.age, a.as_of
    years = policy.candidacy_window_years
    band = policy.prolific_band(age)
    reasons: list[str] = []
    if band is None:
        reasons.append(f"not prolific: no prolific age band holds age {age}")
    else:
        verdict = "prolific" if a.prolific else "not prolific"
        reasons.append(
            f"{verdict}: aged {age} with {summary.total_offences} recorded offences "
            f"(at least {band.min_offences} for ages {band.label})"
        )
    if summary.last_offence_date is None:
        recency_words = "no recorded offence"
    else:
        days = (as_of - summary.last_offence_date).days
        recency_words = f"last offence {summary.last_offence_date.isoformat()}, {days} days before"
    reasons.append(
        f"score {parts.total}: recency {parts.recency} ({recency_words}), "
        f"frequency {parts.frequency} ({summary.window_offences} offences in the "
        f"{policy.score.window_years} years before, at most {policy.score.frequency_cap}), "
        f"gravity {parts.gravity} (weights add up to {summary.window_gravity}, "
        f"at most {policy.score.gravity_cap})"
    )
    reasons.append(
        f"statutory supervision ({nominal.supervision_status.value})"
        if a.statutory
        else f"not on statutory supervision ({nominal.supervision_status.value})"
    )
    reasons.append(
        f"neighbourhood crime offence in the last {years} years"
        if summary.neighbourhood_recent
        else f"no neighbourhood crime offence in the last {years} years"
    )
    reasons.append(
        f"offence in the area's flex categories in the last {years} years"
        if summary.flex_recent
        else f"no offence in the area's flex categories in the last {years} years"
    )
    for cohort in COHORT_ORDER:
        reasons.append(
            _cohort_reason(cohort, set(a.meets), a.statutory, a.prolific, parts, summary, policy)
        )
    if a.exclusion is not None:
        reasons.append(f"excluded: {a.exclusion.detail}")
    return tuple(reasons)


def _cohort_reason(
    cohort: Cohort,
    meets: set[Cohort],
    statutory: bool,
    prolific: bool,
    parts: Score,
    summary: NominalSummary,
    policy: SelectionPolicy,
) -> str:
    threshold = policy.thresholds.of(cohort)
    if cohort is Cohort.FREE:
        if cohort in meets:
            return f"meets free: score {parts.total} is at least {threshold}"
        return f"does not meet free: score {parts.total} is below {threshold}"
    recent = summary.neighbourhood_recent if cohort is Cohort.FIXED else summary.flex_recent
    offence_words = "neighbourhood crime" if cohort is Cohort.FIXED else "flex-category"
    if cohort in meets:
        why = "prolific" if prolific else f"score {parts.total} is at least {threshold}"
        return f"meets {cohort.value}: statutory, recent {offence_words} offence, {why}"
    missing = []
    if not statutory:
        missing.append("not statutory")
    if not recent:
        missing.append(f"no recent {offence_words} offence")
    if not prolific and parts.total < threshold:
        missing.append(f"not prolific and score {parts.total} is below {threshold}")
    return f"does not meet {cohort.value}: " + ", ".join(missing)


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    crn: str
    cohort: Cohort
    score: int
    recency: int
    frequency: int
    gravity: int
    prolific: bool
    last_offence_date: date | None
    rank: int  # 1-based, over the whole run
    cohort_rank: int  # 1-based, within its cohort
    within_capacity: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Excluded:
    crn: str
    reason: ExclusionReason
    detail: str
    would_be: Cohort | None  # the cohort they would otherwise be a candidate for


@dataclass(frozen=True)
class SelectionRun:
    area: str
    as_of: date
    policy_version: int
    candidates: tuple[Candidate, ...]
    excluded: tuple[Excluded, ...]
    capacities: Mapping[Cohort, int] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Candidates per cohort, and how many of them are within capacity."""
        out = {c.value: {"candidates": 0, "within_capacity": 0} for c in COHORT_ORDER}
        for candidate in self.candidates:
            out[candidate.cohort.value]["candidates"] += 1
            out[candidate.cohort.value]["within_capacity"] += int(candidate.within_capacity)
        return out


def ranking_key(assessment: Assessment) -> tuple[int, int, str]:
    """Score descending, then most recent offence first (none last), then CRN ascending."""
    last = assessment.last_offence_date
    return (-assessment.score.total, -(last.toordinal() if last else 0), assessment.crn)


def select(
    summaries: Iterable[NominalSummary],
    as_of: date,
    policy: SelectionPolicy,
    *,
    area: str,
    policy_version: int,
) -> SelectionRun:
    assessments: list[Assessment] = []
    seen: set[str] = set()
    for summary in summaries:
        if summary.crn in seen:
            raise ValueError(f"two summaries for {summary.crn}")
        seen.add(summary.crn)
        assessments.append(assess(summary, as_of, policy))

    ranked = sorted((a for a in assessments if a.cohort is not None), key=ranking_key)
    taken = dict.fromkeys(COHORT_ORDER, 0)
    candidates: list[Candidate] = []
    for rank, a in enumerate(ranked, start=1):
        cohort = a.cohort
        assert cohort is not None
        taken[cohort] += 1
        capacity = policy.capacities.of(cohort)
        within = taken[cohort] <= capacity
        place = (
            f"ranked {rank} in the run and {taken[cohort]} in {cohort.value}: "
            + ("within" if within else "beyond")
            + f" its capacity of {capacity}"
        )
        candidates.append(
            Candidate(
                crn=a.crn,
                cohort=cohort,
                score=a.score.total,
                recency=a.score.recency,
                frequency=a.score.frequency,
                gravity=a.score.gravity,
                prolific=a.prolific,
                last_offence_date=a.last_offence_date,
                rank=rank,
                cohort_rank=taken[cohort],
                within_capacity=within,
                reasons=(f"candidate for {cohort.value}", *a.reasons, place),
            )
        )
    excluded = tuple(
        Excluded(
            crn=a.crn, reason=a.exclusion.reason, detail=a.exclusion.detail, would_be=a.first_met
        )
        for a in sorted(assessments, key=lambda a: a.crn)
        if a.exclusion is not None
    )
    return SelectionRun(
        area=area,
        as_of=as_of,
        policy_version=policy_version,
        candidates=tuple(candidates),
        excluded=excluded,
        capacities={c: policy.capacities.of(c) for c in COHORT_ORDER},
    )
