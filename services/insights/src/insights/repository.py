"""Every query of the insights service, and the mapping between rows and domain values."""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    event,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as SyncSession
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession

from insights.domain.cohorts import ACTIVITY, DESELECTED, SELECTED, Stock
from insights.domain.cohorts import ENDED as ENDED_STATUSES
from insights.domain.cohorts import CohortFact as CohortFactValue
from insights.domain.dimensions import Dimension
from insights.domain.figures import RawRow
from insights.domain.periods import period_terms
from insights.domain.projection import (
    Allocation,
    CellKey,
    Contribution,
    History,
    Need,
    Step,
    StepKind,
)
from insights.domain.projection import change as change_of
from insights.models import (
    CELL_KEY,
    CELL_MEASURES,
    CUBES,
    NO_VALUE,
    PROJECTION_TABLES,
    AllocationFact,
    CohortFact,
    FigureCell,
    FigureDetail,
    NeedFact,
    StepFact,
)
from pathways_shared.consumer import mark_processed_many
from pathways_shared.db import DriverStatement
from pathways_shared.events import Event
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.working_days import WorkingCalendar, end_of_london_day

CELLS: Table = FigureCell.__table__  # type: ignore[attr-defined]
NEEDS: Table = NeedFact.__table__  # type: ignore[attr-defined]
ALLOCATIONS: Table = AllocationFact.__table__  # type: ignore[attr-defined]
STEPS: Table = StepFact.__table__  # type: ignore[attr-defined]
COHORT_FACTS: Table = CohortFact.__table__  # type: ignore[attr-defined]
PENDING_KEY = "insights_pending_contribution"
FACTS_KEY = "insights_pending_facts"
DETAILS: Table = FigureDetail.__table__  # type: ignore[attr-defined]

_DIMENSION_COLUMNS = {
    Dimension.PATHWAY: "pathway",
    Dimension.AREA: "area",
    Dimension.PROVIDER: "provider_code",
    Dimension.SERVICE: "service_code",
    Dimension.PROGRAMME: "programme",
    Dimension.MONTH: "month",
    Dimension.SEX: "sex",
    Dimension.AGE_BAND: "age_band",
    Dimension.SUPERVISION: "supervision",
    Dimension.COMPLEXITY: "complexity",
    Dimension.REASON: "detail",
}
# Dimensions that may have no value (a step before any allocation).
_OPTIONAL = frozenset({Dimension.PROVIDER, Dimension.SERVICE, Dimension.PROGRAMME})


def _history_query() -> Any:
    """need_facts, allocation_facts and step_facts of some needs as one UNION ALL (typed by
    its first branch, so times come back as aware datetimes on SQLite too)."""
    need_ids = bindparam("need_ids", expanding=True)
    no_text, no_time = null().cast(String), null().cast(DateTime(timezone=True))
    return union_all(
        select(literal(0).label("kind"), NEEDS.c.need_id.label("need"), NEEDS.c.need_id,
               NEEDS.c.area, NEEDS.c.pathway, NEEDS.c.complexity, NEEDS.c.sex, NEEDS.c.age_band,
               NEEDS.c.supervision, NEEDS.c.at_risk_of_homelessness, NEEDS.c.submitted_at,
               no_time, no_time)
        .where(NEEDS.c.need_id.in_(need_ids)),
        select(literal(1), ALLOCATIONS.c.need_id, ALLOCATIONS.c.provider_referral_id,
               ALLOCATIONS.c.service_code, ALLOCATIONS.c.provider_code, ALLOCATIONS.c.programme,
               no_text, no_text, no_text, null().cast(Boolean), ALLOCATIONS.c.allocated_at,
               ALLOCATIONS.c.acknowledge_by, ALLOCATIONS.c.respond_by)
        .where(ALLOCATIONS.c.need_id.in_(need_ids)),
        select(literal(2), STEPS.c.need_id, STEPS.c.event_id, STEPS.c.step,
               STEPS.c.provider_referral_id, STEPS.c.detail, no_text, no_text, no_text,
               null().cast(Boolean), STEPS.c.occurred_at, no_time, no_time)
        .where(STEPS.c.need_id.in_(need_ids)),
    )


HISTORY = _history_query()
# Every need of a transaction locked in one statement, in one order (the lock keys'), so two
# transactions never wait for each other's locks in opposite orders; then (a data-modifying
# WITH the query does not read runs after it) each need claimed unless it was: the insert
# waits for a one-statement projection claiming the same need at that moment to end
# (`settle_in_one`), so the facts read next include what it stored.
LOCK_NEEDS = text(
    "WITH claimed AS (INSERT INTO need_claims (need_id)"
    " SELECT n FROM unnest(CAST(:need_ids AS varchar[])) AS n ORDER BY n"
    " ON CONFLICT DO NOTHING)"
    " SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
    " FROM unnest(CAST(:keys AS text[])) AS k) AS locks ORDER BY h"
)


def _period_parts(table: Table, start: date, end: date) -> list[tuple[Any, int]]:
    """[start, end] as conditions on (grain, period), each with its sign (1: its counts are
    added, -1: subtracted): whole months, then days (`period_terms`)."""
    months, added, subtracted = period_terms(start, end)
    conditions: list[tuple[Any, int]] = []
    if months:
        conditions.append((and_(table.c.grain == "M", table.c.period.in_(months)), 1))
    for ranges, sign in ((added, 1), (subtracted, -1)):
        for low, high in ranges:
            conditions.append((and_(table.c.grain == "D", table.c.period.between(low, high)), sign))
    return conditions


def _key(values: Sequence[Any], optional: Sequence[bool]) -> tuple:
    """Dimension values as answered: an optional dimension's stored "" is None."""
    return tuple(None if o and v == NO_VALUE else v for v, o in zip(values, optional, strict=True))


class InsightsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- facts ---------------------------------------------------------------------------

    def add_facts(
        self, calendar: WorkingCalendar, *, needs: Sequence[dict[str, Any]] = (),
        allocations: Sequence[dict[str, Any]] = (), steps: Sequence[dict[str, Any]] = (),
        cohort: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Keep facts (rows of the fact tables) to project when the transaction commits.

        At commit the facts of every event handled in the transaction are projected together
        (`project_facts`): the needs they touch locked and read in one statement each, the new
        facts inserted in one statement per table, the aggregates changed by the difference.
        A fact already stored (a redelivered or replayed event) changes nothing. Not visible
        to queries before the commit.
        """
        sync = self.session.sync_session
        if not sync.in_transaction():
            sync.begin()  # no I/O: a rollback then forgets these facts
        pending: PendingFacts | None = sync.info.get(FACTS_KEY)
        if pending is None:
            pending = sync.info[FACTS_KEY] = PendingFacts(calendar)
        for row in needs:
            pending.needs.setdefault(row["need_id"], row)
        for row in allocations:
            pending.allocations.setdefault(row["provider_referral_id"], row)
        for row in steps:
            pending.steps.setdefault((row["event_id"], row["need_id"]), row)
        for row in cohort:
            pending.cohort.setdefault(row["event_id"], row)

    async def mark_processed(self, consumer: str, events: Sequence[Event]) -> set[str]:
        """Record that `consumer` handled these events, in one statement; the ids of those it
        had not handled before (`pathways_shared.consumer.mark_processed_many`)."""
        return await mark_processed_many(self.session, consumer, list(events))

    # --- aggregates ----------------------------------------------------------------------

    async def read_counts(
        self, measures: Sequence[str], *, areas: Sequence[str], start: date, end: date,
        by: Sequence[Dimension], pathway: str | None = None, provider: str | None = None,
    ) -> list[RawRow]:
        group = [CELLS.c[_DIMENSION_COLUMNS[d]] for d in by]
        parts = _period_parts(CELLS, start, end)
        negative = [condition for condition, sign in parts if sign < 0]

        def total(m: str) -> Any:
            if not negative:
                return func.sum(CELLS.c[m]).label(m)
            return func.sum(case((or_(*negative), -CELLS.c[m]), else_=CELLS.c[m])).label(m)

        query = (
            select(*group, *(total(m) for m in measures))
            .where(CELLS.c.cube == cube_for(by, provider), CELLS.c.area.in_(list(areas)),
                   or_(*(condition for condition, _ in parts)))
        )
        query = self._filters(query, CELLS, pathway, provider)
        if group:
            query = query.group_by(*group)
        result = await self.session.exec(query)
        out = []
        width, optional = len(by), [d in _OPTIONAL for d in by]
        for row in result.all():
            counts = {m: int(v or 0) for m, v in zip(measures, row[width:], strict=True)}
            if not any(counts.values()):
                continue
            out.append(RawRow(key=_key(row[:width], optional), counts=counts))
        return out

    async def read_details(
        self, measures: Sequence[str], *, areas: Sequence[str], start: date, end: date,
        by: Sequence[Dimension], pathway: str | None = None, provider: str | None = None,
    ) -> list[tuple[str, tuple, str, int]]:
        """(measure, dimension values, detail, count) for detail measures, in one scan."""
        by_plain = [d for d in by if d is not Dimension.REASON]
        names = [_DIMENSION_COLUMNS[d] for d in by_plain]
        # One branch per part of the period (whole months; days added or subtracted at either
        # end, see `period_terms`), each a plain range of the covering index
        # `ix_figure_details_read`, read alone (an index-only scan); an OR of the parts would
        # make PostgreSQL visit the table's rows instead.
        branches = []
        for part, sign in _period_parts(DETAILS, start, end):
            count = DETAILS.c["count"] if sign > 0 else -DETAILS.c["count"]
            branch = (
                select(DETAILS.c.measure, *(DETAILS.c[n] for n in names), DETAILS.c.detail,
                       count.label("count"))
                .where(DETAILS.c.measure.in_(list(measures)),
                       DETAILS.c.cube == cube_for(by, provider),
                       DETAILS.c.area.in_(list(areas)), part)
            )
            branches.append(self._filters(branch, DETAILS, pathway, provider))
        parts = union_all(*branches).subquery() if len(branches) > 1 else branches[0].subquery()
        group = [parts.c[n] for n in names]
        query = (
            select(parts.c.measure, *group, parts.c.detail, func.sum(parts.c["count"]).label("n"))
            .group_by(parts.c.measure, *group, parts.c.detail)
        )
        result = await self.session.exec(query)
        out = []
        width, optional = len(by_plain), [d in _OPTIONAL for d in by]
        # The reason is the detail: put back in its place among the dimensions.
        reason = list(by).index(Dimension.REASON) if Dimension.REASON in by else None
        for row in result.all():
            measure, detail, n = row[0], row[width + 1], int(row[width + 2] or 0)
            if n:
                values = list(row[1: width + 1])
                if reason is not None:
                    values.insert(reason, detail)
                out.append((measure, _key(values, optional), detail, n))
        return out

    @staticmethod
    def _filters(query: Any, table: Table, pathway: str | None, provider: str | None) -> Any:
        if pathway is not None:
            query = query.where(table.c.pathway == pathway)
        if provider is not None:
            query = query.where(table.c.provider_code == provider)
        return query

    async def cohort_facts(self, areas: Sequence[str], end: date) -> list[CohortFactValue]:
        c = COHORT_FACTS.c
        rows = (await self.session.exec(
            select(c.event_id, c.kind, c.member_key, c.area, c.cohort, c.occurred_at, c.reason,
                   c.pathway, c.status)
            .where(c.area.in_(list(areas)), c.occurred_at <= end_of_london_day(end))
        )).all()
        return [CohortFactValue(*row) for row in rows]

    async def cohort_stock(
        self, areas: Sequence[str], periods: Sequence[tuple[date, datetime]]
    ) -> list[Stock]:
        """Members per area and cohort at each instant (with their period's first day), and
        how many of them have an open need, counted by the database: a member is one whose
        latest adoption or deselection at or before the instant is an adoption (a deselection
        at the same instant taken as the later, then the event id); an open need, a pathway
        whose latest activity is not an ended status (DOMAIN.md "IOM"; the rule of
        `insights.domain.cohorts.cohort_rows`). A few rows, not every fact."""
        c = COHORT_FACTS.c
        moments = union_all(*(
            select(literal(first, Date()).label("period"),
                   literal(moment, DateTime(timezone=True)).label("moment"))
            for first, moment in periods
        )).subquery("moments")
        facts = moments.join(COHORT_FACTS, c.occurred_at <= moments.c.moment)
        ranked = (
            select(moments.c.period, moments.c.moment, c.area, c.cohort, c.member_key, c.kind,
                   func.row_number().over(
                       partition_by=(moments.c.moment, c.area, c.cohort, c.member_key),
                       order_by=(c.occurred_at.desc(), (c.kind == DESELECTED).desc(),
                                 c.event_id.desc())).label("latest"))
            .select_from(facts)
            .where(c.area.in_(list(areas)), c.kind.in_([SELECTED, DESELECTED]))
        ).subquery("ranked")
        # The latest adoption of each member, and the latest activity of each pathway (1 when
        # its need is open), as one list; a member has an open need when any row of theirs at
        # that instant has one. No join: the planner cannot estimate the ranked rows, and a
        # join of them (by instant and member) became a nested loop or a merge on the instant
        # alone, seconds by month.
        members = (
            select(ranked.c.period, ranked.c.moment, ranked.c.area, ranked.c.cohort,
                   ranked.c.member_key, literal(1).label("member"), literal(0).label("open"))
            .where(ranked.c.latest == 1, ranked.c.kind == SELECTED)
        )
        activity = (
            select(moments.c.moment, c.member_key, c.status,
                   func.row_number().over(
                       partition_by=(moments.c.moment, c.member_key, c.pathway),
                       order_by=(c.occurred_at.desc(), c.event_id.desc())).label("latest"))
            .select_from(facts)
            .where(c.area.in_(list(areas)), c.kind == ACTIVITY, c.pathway.is_not(None),
                   c.pathway != "")
        ).subquery("activity")
        needs = (
            select(null().cast(Date), activity.c.moment, null().cast(String),
                   null().cast(String), activity.c.member_key, literal(0),
                   case((func.coalesce(activity.c.status, "").not_in(sorted(ENDED_STATUSES)), 1),
                        else_=0))
            .where(activity.c.latest == 1)
        )
        both = union_all(members, needs).subquery("both_")
        flagged = (
            select(both.c.period, both.c.area, both.c.cohort, both.c.member,
                   func.max(both.c.open).over(
                       partition_by=(both.c.moment, both.c.member_key)).label("has_open"))
        ).subquery("flagged")
        query = (
            select(flagged.c.period, flagged.c.area, flagged.c.cohort, func.count(),
                   func.sum(flagged.c.has_open))
            .where(flagged.c.member == 1)
            .group_by(flagged.c.period, flagged.c.area, flagged.c.cohort)
        )
        return [Stock(*row) for row in (await self.session.exec(query)).all()]

    async def cohort_flows(self, areas: Sequence[str], start: date, end: date) -> list[CohortFactValue]:
        """Adoptions and deselections around [start, end] (a day either side: the caller keeps
        those on its London days)."""
        c = COHORT_FACTS.c
        low = datetime.combine(start - timedelta(days=1), time.min, tzinfo=UTC)
        high = datetime.combine(end + timedelta(days=2), time.min, tzinfo=UTC)
        rows = (await self.session.exec(
            select(c.event_id, c.kind, c.member_key, c.area, c.cohort, c.occurred_at, c.reason)
            .where(c.area.in_(list(areas)), c.kind.in_([SELECTED, DESELECTED]),
                   c.occurred_at >= low, c.occurred_at < high)
        )).all()
        return [CohortFactValue(*row) for row in rows]

    async def cohort_facts_of(self, member_key: str) -> list[CohortFactValue]:
        rows = (await self.session.exec(
            select_models(CohortFact).where(CohortFact.member_key == member_key)
            .order_by(CohortFact.occurred_at)  # type: ignore[arg-type]
        )).all()
        return [
            CohortFactValue(r.event_id, r.kind, r.member_key, r.area, r.cohort, r.occurred_at,
                            r.reason, r.pathway, r.status)
            for r in rows
        ]

    # --- rebuild -------------------------------------------------------------------------

    async def clear(self, consumers: Sequence[str]) -> None:
        """Empty the projection and forget which events the consumers had handled."""
        for name in PROJECTION_TABLES:
            await self.session.exec(text(f"DELETE FROM {name}"))
        await self.session.exec(
            delete(ProcessedEvent).where(ProcessedEvent.consumer.in_(list(consumers)))  # type: ignore[attr-defined]
        )


_PERSON = ("complexity", "sex", "age_band", "supervision")
_ALLOCATION = ("service_code", "provider_code", "programme")
_PERSON_DIMENSIONS = frozenset({Dimension.COMPLEXITY, Dimension.SEX, Dimension.AGE_BAND,
                                Dimension.SUPERVISION})
_ALLOCATION_DIMENSIONS = frozenset({Dimension.PROVIDER, Dimension.SERVICE, Dimension.PROGRAMME})


def cube_for(by: Sequence[Dimension], provider: str | None = None) -> str:
    """The smallest cube holding every dimension the question breaks down or filters by."""
    person = any(d in _PERSON_DIMENSIONS for d in by)
    allocation = provider is not None or any(d in _ALLOCATION_DIMENSIONS for d in by)
    if person and allocation:
        return "F"
    return "P" if person else "S"


def _cells_of(key: CellKey) -> list[tuple]:
    """Every aggregate row (cube, grain, ...) a count on `key.day` belongs to."""
    values = {
        "area": key.area, "pathway": key.pathway, "complexity": key.complexity, "sex": key.sex,
        "age_band": key.age_band, "supervision": key.supervision,
        "service_code": key.service_code, "provider_code": key.provider_code,
        "programme": key.programme,
    }
    month = key.day.strftime("%Y-%m")
    out = []
    for cube, kept in CUBES.items():
        dims = tuple(values[c] if c in kept else NO_VALUE for c in CELL_KEY[4:])
        out.append((cube, "D", key.day, month, *dims))
        out.append((cube, "M", key.day.replace(day=1), month, *dims))
    return out


@functools.cache
def _add_to_cells(dialect_name: str) -> Any:
    """The upsert adding to `figure_cells`' measures, built once per dialect (building it,
    `excluded` and the nine sums, cost more than executing it)."""
    insert = (postgresql if dialect_name == "postgresql" else sqlite).insert(CELLS)
    return insert.on_conflict_do_update(
        index_elements=list(CELL_KEY),
        set_={m: CELLS.c[m] + insert.excluded[m] for m in CELL_MEASURES},
    )


@functools.cache
def _add_to_details(dialect_name: str) -> Any:
    """The upsert adding to `figure_details`' counts, built once per dialect."""
    insert = (postgresql if dialect_name == "postgresql" else sqlite).insert(DETAILS)
    return insert.on_conflict_do_update(
        index_elements=[*CELL_KEY, "measure", "detail"],
        set_={"count": DETAILS.c["count"] + insert.excluded["count"]},
    )


def _aggregate_rows(pending: Contribution) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summed changes as the rows to add to `figure_cells` and `figure_details`, in key order."""
    cells: dict[tuple, dict[str, int]] = defaultdict(dict)
    details: dict[tuple, int] = defaultdict(int)
    for (key, measure, detail), change in pending.items():
        if not change:
            continue
        for cell in _cells_of(key):
            if detail is None:
                row = cells[cell]
                row[measure] = row.get(measure, 0) + change
            else:
                details[(*cell, measure, detail)] += change
    return (
        [dict(zip(CELL_KEY, key, strict=True)) | {m: counts.get(m, 0) for m in CELL_MEASURES}
         for key, counts in sorted(cells.items())],
        [dict(zip((*CELL_KEY, "measure", "detail"), key, strict=True)) | {"count": n}
         for key, n in sorted(details.items()) if n],
    )


def _flush(connection: Any, pending: Contribution) -> None:
    """Write summed changes to the aggregates: one statement per table, rows in key order."""
    cells, details = _aggregate_rows(pending)
    if cells:
        connection.execute(_add_to_cells(connection.dialect.name), cells)
    if details:
        connection.execute(_add_to_details(connection.dialect.name), details)


@dataclass
class PendingFacts:
    """Facts of a transaction not yet stored, by their keys (the first of a key kept)."""

    calendar: WorkingCalendar
    needs: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    cohort: dict[str, dict[str, Any]] = field(default_factory=dict)


def _insert_new(connection: Any, table: Table, rows: list[dict[str, Any]]) -> set[tuple]:
    """Insert the rows not already there (one statement); the primary keys of those inserted."""
    if not rows:
        return set()
    result = connection.execute(_insert_if_new(connection.dialect.name, table), rows)
    return {tuple(row) for row in result}


@functools.cache
def _insert_if_new(dialect_name: str, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING` the primary key, built once per table."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def _histories(connection: Any, need_ids: list[str]) -> dict[str, History]:
    """Every stored fact of these needs, in one round trip."""
    out: dict[str, History] = defaultdict(History)
    for kind, need_id, key, a, b, c, d, e, f, flag, t1, t2, t3 in connection.execute(
        HISTORY, {"need_ids": need_ids}
    ):
        history = out[need_id]
        if kind == 0:
            history.need = Need(key, a, b, c, d, e, f, bool(flag), t1)
        elif kind == 1:
            history.allocations.append(Allocation(key, a, b, c, t1, t2, t3))
        else:
            history.steps.append(Step(key, StepKind(a), t1, b, c))
    return out


def _need_of(r: dict[str, Any]) -> Need:
    return Need(r["need_id"], r["area"], r["pathway"], r["complexity"], r["sex"], r["age_band"],
                r["supervision"], r["at_risk_of_homelessness"], r["submitted_at"])


def project_facts(connection: Any, pending: PendingFacts) -> Contribution:
    """Store a transaction's new facts; the change they make to the aggregates.

    The needs touched are locked until the transaction ends (two events of one need can be
    handled at once by the consumers of different streams: each computes the need's
    contribution before and after its facts, so they must not interleave; SQLite has one
    writer already), then read, then the new facts inserted: only those inserted change
    anything, so a fact seen twice counts once.
    """
    if pending.cohort:
        _insert_new(connection, COHORT_FACTS, list(pending.cohort.values()))
    need_ids = sorted({*pending.needs, *(r["need_id"] for r in pending.allocations.values()),
                       *(r["need_id"] for r in pending.steps.values())})
    if not need_ids:
        return Counter()
    if connection.dialect.name == "postgresql":
        connection.execute(LOCK_NEEDS, {"keys": [f"insights-need:{n}" for n in need_ids],
                                        "need_ids": need_ids})
    known = _histories(connection, need_ids)
    added: dict[str, History] = defaultdict(History)
    for (need_id,) in _insert_new(connection, NEEDS, list(pending.needs.values())):
        added[need_id].need = _need_of(pending.needs[need_id])
    for (provider_referral_id,) in _insert_new(connection, ALLOCATIONS,
                                               list(pending.allocations.values())):
        r = pending.allocations[provider_referral_id]
        added[r["need_id"]].allocations.append(Allocation(
            provider_referral_id, r["service_code"], r["provider_code"], r["programme"],
            r["allocated_at"], r["acknowledge_by"], r["respond_by"],
        ))
    for event_id, need_id in _insert_new(connection, STEPS, list(pending.steps.values())):
        r = pending.steps[(event_id, need_id)]
        added[need_id].steps.append(Step(
            event_id, StepKind(r["step"]), r["occurred_at"], r["provider_referral_id"],
            r["detail"],
        ))
    delta: Contribution = Counter()
    for need_id in sorted(added):
        delta.update(change_of(known.get(need_id, History()), added[need_id], pending.calendar))
    return delta


@event.listens_for(SyncSession, "before_commit")
def _write_pending(session: SyncSession) -> None:
    # Runs inside AsyncSession.commit's greenlet (as pathways_shared.db's deferred inserts).
    facts = session.info.pop(FACTS_KEY, None)
    if facts is not None:
        delta = project_facts(session.connection(), facts)
        if delta:
            session.info.setdefault(PENDING_KEY, Counter()).update(delta)
    pending = session.info.pop(PENDING_KEY, None)
    if pending:
        _flush(session.connection(), pending)


@event.listens_for(SyncSession, "after_soft_rollback")
def _forget_pending(session: SyncSession, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(PENDING_KEY, None)
        session.info.pop(FACTS_KEY, None)


# --- one statement -------------------------------------------------------------------------


def _recordset(name: str, table: Table, columns: Sequence[str]) -> str:
    """`jsonb_to_recordset` of the JSON rows bound as `:name`, typed as `table`'s columns, in
    the order given (so rows are written, and locked, in that order)."""
    types = ", ".join(
        f"{c} {table.c[c].type.compile(dialect=postgresql.dialect())}" for c in columns)
    return (f"ROWS FROM (jsonb_to_recordset(CAST(:{name} AS jsonb)) AS ({types}))"
            f" WITH ORDINALITY AS {name}_rows({', '.join(columns)}, row_number)")


def _settle_statement() -> DriverStatement:
    """One statement: each need of the event claimed (none may have been); if every one was,
    the event recorded processed (unless it had been); if it was, its need and cohort facts
    inserted and its changes added to `figure_cells` and `figure_details`. Then whether it
    was recorded, and whether it had been before."""
    need_columns = [c.name for c in NEEDS.columns]
    cohort_columns = [c.name for c in COHORT_FACTS.columns]
    cell_columns = [*CELL_KEY, *CELL_MEASURES]
    detail_columns = [*CELL_KEY, "measure", "detail", "count"]
    only_if_marked = "WHERE EXISTS (SELECT FROM marked)"

    def insert(table: Table, name: str, columns: list[str], conflict: str = "") -> str:
        listed = ", ".join(columns)
        return (f"{name} AS (INSERT INTO {table.name} ({listed}) SELECT {listed}"
                f" FROM {_recordset(name, table, columns)} {only_if_marked}"
                f" ORDER BY row_number{conflict})")

    def adding(columns: Sequence[str], keys: Sequence[str]) -> str:
        return (f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                + ", ".join(f"{c} = {{table}}.{c} + excluded.{c}" for c in columns))

    cells = insert(CELLS, "cells", cell_columns,
                   adding(CELL_MEASURES, CELL_KEY).format(table=CELLS.name))
    details = insert(DETAILS, "details", detail_columns,
                     adding(["count"], [*CELL_KEY, "measure", "detail"]).format(table=DETAILS.name))
    sql = (
        "WITH claimed AS (INSERT INTO need_claims (need_id)"
        " SELECT n FROM unnest(CAST(:need_ids AS varchar[])) AS n ORDER BY n"
        " ON CONFLICT DO NOTHING RETURNING need_id),"
        " marked AS (INSERT INTO processed_events (consumer, event_id, event_type, processed_at)"
        " SELECT :consumer, :event_id, :event_type, :processed_at"
        " WHERE (SELECT count(*) FROM claimed) = cardinality(CAST(:need_ids AS varchar[]))"
        " ON CONFLICT DO NOTHING RETURNING id),"
        f" {insert(NEEDS, 'needs', need_columns)},"
        f" {insert(COHORT_FACTS, 'cohort', cohort_columns)},"
        f" {cells}, {details}"
        " SELECT (SELECT count(*) FROM marked) AS marked, EXISTS (SELECT FROM processed_events"
        " WHERE consumer = :consumer AND event_id = :event_id) AS seen"
    )
    return DriverStatement(text(sql).bindparams(
        bindparam("need_ids", type_=postgresql.ARRAY(String())),
        bindparam("processed_at", type_=DateTime(timezone=True)),
        *(bindparam(name, type_=String()) for name in (
            "consumer", "event_id", "event_type", "needs", "cohort", "cells", "details")),
    ))


SETTLE = _settle_statement()


def _json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=lambda value: value.isoformat(), separators=(",", ":"))


async def settle_in_one(
    connection: Any, *, consumer: str, event: Event, calendar: WorkingCalendar,
    needs: Sequence[dict[str, Any]] = (), cohort: Sequence[dict[str, Any]] = (),
) -> str | None:
    """PostgreSQL, one statement on a connection outside any transaction: an event whose facts
    are new needs (a submission) and cohort facts recorded processed `consumer`'s, the facts
    stored and the needs' counts added to the aggregates, as `project_facts` would: a need
    of whom nothing is known contributes what its submission alone gives. "handled",
    "duplicate" if the event had been recorded, or None (nothing written) when any of its
    needs was already claimed (known, or being projected at this moment: `NeedClaim`), for
    the transaction's path, which reads what is known.
    """
    delta: Contribution = Counter()
    for row in needs:
        delta.update(change_of(History(), History(need=_need_of(row)), calendar))
    cells, details = _aggregate_rows(delta)
    statement = SETTLE.compiled(connection.dialect)
    arguments = statement.arguments({
        "need_ids": [row["need_id"] for row in needs], "consumer": consumer,
        "event_id": str(event.id), "event_type": event.event_type,
        "processed_at": datetime.now(UTC), "needs": _json(needs), "cohort": _json(cohort),
        "cells": _json(cells), "details": _json(details),
    })
    driver = (await connection.get_raw_connection()).driver_connection
    try:
        marked, seen = await driver.fetchrow(statement.sql, *arguments)
    except Exception:
        if driver.is_closed():  # lost: the pool must not hand it out again
            await connection.invalidate()
        raise
    if marked:
        return "handled"
    return "duplicate" if seen else None
