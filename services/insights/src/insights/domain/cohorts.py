"""IOM cohort figures from cohort facts (DOMAIN.md, "IOM"): members per cohort at the end of
the period, adoptions and deselections in it (by reason), and members with at least one open
need at the end of the period (from the pathway activity the cohorts service publishes).

A person is known only by a keyed pseudonym. Membership at an instant is decided by the
latest adoption or deselection of that person in that area and cohort at or before it, and
an open need by the latest activity per pathway, so the order events arrived in is irrelevant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from insights.domain.dimensions import Dimension
from insights.domain.figures import RawRow
from pathways_shared.vocabulary import ENDED_NEED_STATUSES
from pathways_shared.working_days import end_of_london_day, london_day

SELECTED = "selected"
DESELECTED = "deselected"
ACTIVITY = "activity"
_ENDED = frozenset(str(s) for s in ENDED_NEED_STATUSES)


@dataclass(frozen=True)
class CohortFact:
    event_id: str
    kind: str
    member_key: str
    area: str
    cohort: str
    occurred_at: datetime
    reason: str | None = None
    pathway: str | None = None
    status: str | None = None


def months_between(start: date, end: date) -> list[tuple[date, date]]:
    """The calendar months touching [start, end], each clipped to it."""
    out = []
    current = start
    while current <= end:
        next_month = (current.replace(day=1) + timedelta(days=32)).replace(day=1)
        out.append((current, min(end, next_month - timedelta(days=1))))
        current = next_month
    return out


def _members_at(facts: Sequence[CohortFact], moment: datetime) -> set[tuple[str, str, str]]:
    """(area, cohort, member) of everyone who was a member at `moment`."""
    latest: dict[tuple[str, str, str], tuple[datetime, str, str]] = {}
    for fact in facts:
        if fact.kind not in (SELECTED, DESELECTED) or fact.occurred_at > moment:
            continue
        key = (fact.area, fact.cohort, fact.member_key)
        # On the same instant a deselection is taken as the later (then the event id).
        candidate = (fact.occurred_at, "1" if fact.kind == DESELECTED else "0", fact.event_id)
        if key not in latest or candidate > latest[key]:
            latest[key] = candidate
    return {key for key, (_, kind, _) in latest.items() if kind == "0"}


def _with_open_need(facts: Sequence[CohortFact], moment: datetime) -> set[str]:
    latest: dict[tuple[str, str], tuple[datetime, str, str]] = {}
    for fact in facts:
        if fact.kind != ACTIVITY or fact.occurred_at > moment or not fact.pathway:
            continue
        key = (fact.member_key, fact.pathway)
        candidate = (fact.occurred_at, fact.event_id, fact.status or "")
        if key not in latest or candidate > latest[key]:
            latest[key] = candidate
    return {member for (member, _), (_, _, status) in latest.items() if status not in _ENDED}


def cohort_rows(
    facts: Iterable[CohortFact], start: date, end: date, by: Sequence[Dimension]
) -> tuple[list[RawRow], dict[str, int]]:
    """Raw rows for `by` (from area, cohort, month, reason), and the period's stock counts."""
    facts = list(facts)
    counts: dict[tuple, dict[str, int]] = {}

    def add(values: dict[Dimension, str | None], column: str, n: int = 1) -> None:
        key = tuple(values.get(d) for d in by)
        row = counts.setdefault(key, {})
        row[column] = row.get(column, 0) + n

    periods = months_between(start, end) if Dimension.MONTH in by else [(start, end)]
    for first, last in periods:
        moment = end_of_london_day(last)
        month = first.strftime("%Y-%m")
        members = _members_at(facts, moment)
        open_need = _with_open_need(facts, moment)
        for area, cohort, member in members:
            values = {Dimension.AREA: area, Dimension.COHORT: cohort, Dimension.MONTH: month,
                      Dimension.REASON: None}
            add(values, "members")
            if member in open_need:
                add(values, "members_with_open_need")
        for fact in facts:
            if fact.kind not in (SELECTED, DESELECTED) or not first <= london_day(fact.occurred_at) <= last:
                continue
            values = {Dimension.AREA: fact.area, Dimension.COHORT: fact.cohort,
                      Dimension.MONTH: month,
                      Dimension.REASON: fact.reason if fact.kind == DESELECTED else None}
            add(values, "adopted" if fact.kind == SELECTED else "deselected")

    end_moment = end_of_london_day(end)
    final_members = _members_at(facts, end_moment)
    final_open = _with_open_need(facts, end_moment)
    stock = {
        "members": len(final_members),
        "members_with_open_need": sum(1 for _, _, m in final_members if m in final_open),
    }
    return [RawRow(key=key, counts=row) for key, row in counts.items()], stock
