"""IOM cohort figures from cohort facts (DOMAIN.md, "IOM"): members per cohort at the end of
the period, adoptions and deselections in it (by reason), and members with at least one open
need at the end of the period (from the pathway activity the cohorts service publishes).

A person is known only by a keyed pseudonym. Membership at an instant is decided by the
latest adoption or deselection of that person in that area and cohort at or before it, and
an open need by the latest activity per pathway, so the order events arrived in is irrelevant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from insights.domain.dimensions import Dimension
from insights.domain.figures import RawRow
from pathways_shared.vocabulary import ENDED_NEED_STATUSES
from pathways_shared.working_days import end_of_london_day, london_day

SELECTED = "selected"
DESELECTED = "deselected"
ACTIVITY = "activity"
ENDED = frozenset(str(s) for s in ENDED_NEED_STATUSES)


class CohortFact(NamedTuple):  # a tuple: thousands are read for one answer
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


def _membership_order(fact: CohortFact) -> tuple:
    # On the same instant a deselection is taken as the later (then the event id).
    return (fact.occurred_at, fact.kind == DESELECTED, fact.event_id)


def cohort_rows(
    facts: Iterable[CohortFact], start: date, end: date, by: Sequence[Dimension]
) -> tuple[list[RawRow], dict[str, int]]:
    """Raw rows for `by` (from area, cohort, month, reason), and the period's stock counts.

    One sweep through the events in time order: at the end of each month (or of the period)
    the members are those whose latest adoption or deselection was an adoption, and a member
    has an open need when the latest activity of one of their pathways is not an ended status.
    """
    facts = list(facts)
    membership = sorted((f for f in facts if f.kind in (SELECTED, DESELECTED)), key=_membership_order)
    activity = sorted((f for f in facts if f.kind == ACTIVITY), key=lambda f: (f.occurred_at, f.event_id))
    counts: dict[tuple, dict[str, int]] = {}

    def add(values: dict[Dimension, str | None], column: str, n: int = 1) -> None:
        key = tuple(values.get(d) for d in by)
        row = counts.setdefault(key, {})
        row[column] = row.get(column, 0) + n

    by_month = Dimension.MONTH in by
    periods = months_between(start, end) if by_month else [(start, end)]
    member: dict[tuple[str, str, str], bool] = {}
    status: dict[tuple[str, str], str] = {}
    i = j = 0
    members: list[tuple[str, str, str]] = []
    open_need: set[str] = set()
    for first, last in periods:
        moment = end_of_london_day(last)
        while i < len(membership) and membership[i].occurred_at <= moment:
            fact = membership[i]
            member[(fact.area, fact.cohort, fact.member_key)] = fact.kind == SELECTED
            i += 1
        while j < len(activity) and activity[j].occurred_at <= moment:
            fact = activity[j]
            if fact.pathway:
                status[(fact.member_key, fact.pathway)] = fact.status or ""
            j += 1
        members = [key for key, current in member.items() if current]
        open_need = {m for (m, _), s in status.items() if s not in ENDED}
        month = first.strftime("%Y-%m")
        stock: dict[tuple[str, str], list[int]] = {}
        for area, cohort, key in members:
            tally = stock.setdefault((area, cohort), [0, 0])
            tally[0] += 1
            tally[1] += key in open_need
        for (area, cohort), (n, with_open_need) in stock.items():
            values = {Dimension.AREA: area, Dimension.COHORT: cohort, Dimension.MONTH: month,
                      Dimension.REASON: None}
            add(values, "members", n)
            if with_open_need:
                add(values, "members_with_open_need", with_open_need)
    # Only facts near the period can fall in it (its London days): a cheap test first.
    low = datetime.combine(start - timedelta(days=1), time.min, tzinfo=UTC)
    high = datetime.combine(end + timedelta(days=2), time.min, tzinfo=UTC)
    for fact in membership:
        if not low <= fact.occurred_at < high:
            continue
        day = london_day(fact.occurred_at)
        if not start <= day <= end:
            continue
        values = {Dimension.AREA: fact.area, Dimension.COHORT: fact.cohort,
                  Dimension.MONTH: day.strftime("%Y-%m") if by_month else None,
                  Dimension.REASON: fact.reason if fact.kind == DESELECTED else None}
        add(values, "adopted" if fact.kind == SELECTED else "deselected")
    stock_total = {
        "members": len(members),
        "members_with_open_need": sum(1 for _, _, m in members if m in open_need),
    }
    return [RawRow(key=key, counts=row) for key, row in counts.items()], stock_total


def periods_of(start: date, end: date, by: Sequence[Dimension]) -> list[tuple[date, datetime]]:
    """The instants the stock counts are taken at: the end of each month of the period (by
    month; each clipped to it), else the end of the period; each with its period's first day."""
    periods = months_between(start, end) if Dimension.MONTH in by else [(start, end)]
    return [(first, end_of_london_day(last)) for first, last in periods]


class Stock(NamedTuple):
    """Members of a cohort in an area at the end of a period (`period`: its first day)."""

    period: date
    area: str
    cohort: str
    members: int
    members_with_open_need: int


def cohort_answer(
    stock: Iterable[Stock], flows: Iterable[CohortFact], start: date, end: date,
    by: Sequence[Dimension],
) -> tuple[list[RawRow], dict[str, int]]:
    """What `cohort_rows` gives, from the stock counted by the store at the end of each period
    (the same rule: the latest adoption or deselection, the latest activity per pathway) and
    the adoptions and deselections near the period."""
    counts: dict[tuple, dict[str, int]] = {}

    def add(values: dict[Dimension, str | None], column: str, n: int = 1) -> None:
        key = tuple(values.get(d) for d in by)
        row = counts.setdefault(key, {})
        row[column] = row.get(column, 0) + n

    by_month = Dimension.MONTH in by
    last = max((first for first, _ in periods_of(start, end, by)), default=start)
    total = {"members": 0, "members_with_open_need": 0}
    for row in stock:
        values = {Dimension.AREA: row.area, Dimension.COHORT: row.cohort,
                  Dimension.MONTH: row.period.strftime("%Y-%m"), Dimension.REASON: None}
        add(values, "members", row.members)
        if row.members_with_open_need:
            add(values, "members_with_open_need", row.members_with_open_need)
        if row.period == last:
            total["members"] += row.members
            total["members_with_open_need"] += row.members_with_open_need
    # Tallied first (a thousand facts, a few dozen keys), then added as rows.
    tally: Counter[tuple] = Counter()
    for fact in flows:
        if fact.kind == SELECTED:
            reason, column = None, "adopted"
        elif fact.kind == DESELECTED:
            reason, column = fact.reason, "deselected"
        else:
            continue
        day = london_day(fact.occurred_at)
        if start <= day <= end:
            tally[(fact.area, fact.cohort, day.replace(day=1) if by_month else None, reason,
                   column)] += 1
    for (area, cohort, month, reason, column), n in tally.items():
        values = {Dimension.AREA: area, Dimension.COHORT: cohort,
                  Dimension.MONTH: month.strftime("%Y-%m") if month else None,
                  Dimension.REASON: reason}
        add(values, column, n)
    return [RawRow(key=key, counts=row) for key, row in counts.items()], total
