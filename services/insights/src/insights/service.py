"""Use cases of the insights service: project events into the store, answer figures.

Interface for the dashboard (stable; the HTML layer calls these without HTTP):

    from insights.service import figures, parse_query, render_csv, resolve_areas
    from insights.schemas import FiguresQuery, FiguresAnswer
    from insights.domain.figures import DEFINITIONS, FigureKind
    from insights.domain.dimensions import Dimension

    query = FiguresQuery(areas=("E08000029",), **{"from": date(2026, 1, 1)}, to=date(2026, 12, 6),
                         by=(Dimension.PATHWAY,), pathway=None, provider=None)
    answer: FiguresAnswer = await figures(session, FigureKind.NEEDS, query, threshold=5)
    csv_text: str = render_csv(answer)

- `figures(session, kind, query, *, threshold)`: `kind` is a `FigureKind` (or its value:
  "needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer"); `query.areas` must
  already be expanded (no region names) and authorised: use `resolve_areas(principal, raw)`;
  `parse_query(...)` builds a `FiguresQuery` from raw parameters with the API's validation
  (it raises `ValidationProblem` naming the parameter).
- `FiguresAnswer` has `areas`, `from_` ("from" in JSON), `to`, `by`, `suppression.threshold`,
  `rows` (dicts: dimension values, then counts, derived figures, `suppressed`), `total`, and
  `columns` (dimensions then figures, the CSV's header order).
- `render_csv(answer)`: the CSV the API answers (a suppressed cell is empty).
- `default_period(today)`: the 365 days up to today.
- `DEFINITIONS[kind]`: what each kind counts (`counts`), derives (`derived`) and may be broken
  down by (`dimensions`); the threshold of a deployment is `settings.suppression_threshold`.
- A count is `None` in `rows`/`total` when suppressed (and named in that row's `suppressed`),
  a rate or median is `None` when drawn from a suppressed count (or there is nothing to
  measure); a dimension value is `None` when the count has none (no allocation).

Projection: every consumer handler calls one of the `record_*` functions inside the
consumer's transaction; each keeps facts to store when the transaction commits, when the facts
of every event handled in it are stored together (unless already there) and the change of each
need's contribution applied to the aggregates (see `InsightsRepository.add_facts` and
`insights.domain.projection`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from insights.config import InsightsSettings
from insights.domain.cohorts import cohort_answer, periods_of
from insights.domain.dimensions import (
    InvalidDimensions,
    age_band,
    parse_by,
    supervision_category,
)
from insights.domain.figures import DEFINITIONS, FigureKind, RawRow, assemble
from insights.domain.projection import DetailMeasure, StepKind
from insights.repository import InsightsRepository
from insights.schemas import FiguresAnswer, FiguresQuery, Suppression
from pathways_shared.auth import Principal
from pathways_shared.problems import Forbidden, ValidationProblem
from pathways_shared.vocabulary import AREAS, PROVIDER_CODES, REGIONS, Pathway
from pathways_shared.working_days import WorkingCalendar

# Longest period one question may cover (a guard against accidental decades), and the dates
# a question may name at all.
MAX_PERIOD_DAYS = 366 * 10
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)


# --- projection ------------------------------------------------------------------------------


def record_submission(session: AsyncSession, *, calendar: WorkingCalendar, **submission: Any) -> None:
    """A submission's needs kept (`submission_facts`: the same keyword arguments)."""
    InsightsRepository(session).add_facts(calendar, needs=submission_facts(**submission))


def submission_facts(
    *, event_id: str, occurred_at: datetime, referral_id: str, area: str, sex: str,
    age_on_submission: int, supervision_status: str,
    needs: Sequence[tuple[str, str, str, Sequence[str]]],
) -> list[dict[str, Any]]:
    """The need facts of a submission. `needs`: (need id, pathway, complexity, flags) of each."""
    band, supervision = age_band(age_on_submission), supervision_category(supervision_status)
    return [
        {"need_id": need_id, "referral_id": referral_id, "event_id": event_id, "area": area,
         "pathway": pathway, "complexity": complexity, "sex": sex, "age_band": band,
         "supervision": supervision,
         "at_risk_of_homelessness": (
             pathway == Pathway.ACCOMMODATION and "at_risk_of_homelessness" in flags),
         "submitted_at": occurred_at}
        for need_id, pathway, complexity, flags in needs
    ]


def record_allocation(
    session: AsyncSession, *, event_id: str, occurred_at: datetime, need_id: str,
    provider_referral_id: str, service_code: str, provider_code: str, programme: str,
    acknowledge_by: datetime, respond_by: datetime, calendar: WorkingCalendar,
) -> None:
    InsightsRepository(session).add_facts(calendar, allocations=[{
        "provider_referral_id": provider_referral_id, "need_id": need_id, "event_id": event_id,
        "service_code": service_code, "provider_code": provider_code, "programme": programme,
        "allocated_at": occurred_at, "acknowledge_by": acknowledge_by, "respond_by": respond_by,
    }])


def record_steps(
    session: AsyncSession, *, event_id: str, occurred_at: datetime, need_ids: Sequence[str],
    kind: StepKind, provider_referral_id: str | None = None, detail: str | None = None,
    calendar: WorkingCalendar,
) -> None:
    """The same step of one or more needs (a withdrawal names every need of its referral)."""
    InsightsRepository(session).add_facts(calendar, steps=[
        {"event_id": event_id, "need_id": need_id, "step": str(kind),
         "provider_referral_id": provider_referral_id, "detail": detail,
         "occurred_at": occurred_at}
        for need_id in need_ids
    ])


def pseudonym_secret(settings: InsightsSettings) -> str:
    """The key of member pseudonyms: INSIGHTS_PSEUDONYM_KEY, else derived from the JWT secret."""
    return settings.pseudonym_key or hashlib.sha256(
        f"pathways-insights:{settings.jwt_secret or settings.jwks_url or ''}".encode()
    ).hexdigest()


def member_key(crn: str, secret: str) -> str:
    """A keyed pseudonym for a cohort member: the same person gets the same key, and the CRN
    cannot be recovered from the store (the key is not in it)."""
    return hmac.new(secret.encode(), crn.encode(), hashlib.sha256).hexdigest()[:32]


def record_cohort_fact(session: AsyncSession, *, calendar: WorkingCalendar, **fact: Any) -> None:
    """A cohort event's fact kept (`cohort_fact`: the same keyword arguments)."""
    InsightsRepository(session).add_facts(calendar, cohort=[cohort_fact(**fact)])


def cohort_fact(
    *, event_id: str, occurred_at: datetime, kind: str, member: str, area: str, cohort: str,
    reason: str | None = None, pathway: str | None = None, status: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id, "kind": kind, "member_key": member, "area": area,
        "cohort": cohort, "reason": reason, "pathway": pathway, "status": status,
        "occurred_at": occurred_at,
    }


async def subject_access(session: AsyncSession, crn: str, settings: InsightsSettings) -> dict:
    """What the service holds on a person: only cohort events, under the person's pseudonym."""
    key = member_key(crn, pseudonym_secret(settings))
    facts = await InsightsRepository(session).cohort_facts_of(key)
    return {
        "crn": crn,
        "service": "insights",
        "pseudonym": key,
        "note": (
            "The insights service holds no names, dates of birth, contact details or CRNs. "
            "Needs are kept by id with their categories; IOM cohort events are kept under a "
            "keyed pseudonym of the person, listed here."
        ),
        "cohort_events": [
            {"event_id": f.event_id, "kind": f.kind, "area": f.area, "cohort": f.cohort,
             "reason": f.reason, "pathway": f.pathway, "status": f.status,
             "occurred_at": f.occurred_at}
            for f in facts
        ],
    }


# --- questions -------------------------------------------------------------------------------


def default_period(today: date) -> tuple[date, date]:
    """The 365 days up to today, both included."""
    return today - timedelta(days=364), today


def resolve_areas(principal: Principal, raw: Sequence[str]) -> tuple[str, ...]:
    """The areas asked for (region names expanded), or every area the caller may see.

    An unknown code: 422 naming `area`; an area outside the caller's areas: 403.
    """
    if not raw:
        allowed = principal.areas if principal.areas is not None else frozenset(AREAS)
        return tuple(sorted(a for a in allowed if a in AREAS))
    asked: set[str] = set()
    for code in raw:
        if code in REGIONS:
            asked |= REGIONS[code]
        elif code in AREAS:
            asked.add(code)
        else:
            raise ValidationProblem(
                f"unknown area {code[:40]!r}: a GSS code of the West Midlands or 'west-midlands'",
                field="area",
            )
    outside = sorted(a for a in asked if not principal.may_see_area(a))
    if outside:
        raise Forbidden(f"area {outside[0]} is not among the caller's areas")
    return tuple(sorted(asked))


def parse_query(
    kind: FigureKind | str, *, areas: tuple[str, ...], start: date | None, end: date | None,
    by: str | None, pathway: str | None, provider: str | None, today: date,
) -> FiguresQuery:
    """A `FiguresQuery` from raw parameters, refused with 422 naming the parameter at fault."""
    definition = DEFINITIONS[FigureKind(kind)]
    end = end or today
    for name, day in (("from", start), ("to", end)):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise ValidationProblem(f"`{name}` must be between {EARLIEST} and {LATEST}", field=name)
    start = start or default_period(end)[0]
    if start > end:
        raise ValidationProblem("`from` must be on or before `to`", field="from")
    if (end - start).days >= MAX_PERIOD_DAYS:
        raise ValidationProblem("the period may be at most ten years", field="from")
    try:
        dimensions = parse_by(by, definition.dimensions)
    except InvalidDimensions as exc:
        raise ValidationProblem(str(exc), field="by") from None
    if pathway is not None and pathway not in {str(p) for p in Pathway}:
        raise ValidationProblem(f"unknown pathway {pathway[:40]!r}", field="pathway")
    if provider is not None and provider not in PROVIDER_CODES:
        raise ValidationProblem(f"unknown provider {provider[:40]!r}", field="provider")
    return FiguresQuery(areas=areas, **{"from": start}, to=end, by=dimensions, pathway=pathway,
                        provider=provider)


async def figures(
    session: AsyncSession, kind: FigureKind | str, query: FiguresQuery, *, threshold: int = 5
) -> FiguresAnswer:
    """The figures of one kind for a validated, authorised question."""
    kind = FigureKind(kind)
    definition = DEFINITIONS[kind]
    repository = InsightsRepository(session)
    scope = {"areas": query.areas, "start": query.from_, "end": query.to, "by": query.by,
             "pathway": query.pathway, "provider": query.provider}
    total_counts: dict[str, int] | None = None
    if not query.areas:
        raw: list[RawRow] = []
    elif kind is FigureKind.COHORTS:
        stock = await repository.cohort_stock(query.areas, periods_of(query.from_, query.to, query.by))
        flows = await repository.cohort_flows(query.areas, query.from_, query.to)
        raw, total_counts = cohort_answer(stock, flows, query.from_, query.to, query.by)
    elif kind is FigureKind.UNMET_NEED:
        details = await repository.read_details([str(DetailMeasure.UNMET_REASON)], **scope)
        merged: dict[tuple, int] = {}
        for _, key, _, n in details:
            merged[key] = merged.get(key, 0) + n
        raw = [RawRow(key=key, counts={"unallocated": n}) for key, n in merged.items()]
    else:
        raw = await repository.read_counts(definition.cell_counts, **scope)
        if definition.histograms or definition.breakdowns:
            by_key = {row.key: row for row in raw}
            histograms = {str(m) for m in definition.histograms}
            breakdowns = {str(b.measure): b for b in definition.breakdowns}
            measures = sorted(histograms | set(breakdowns))
            for measure, key, detail, n in await repository.read_details(measures, **scope):
                row = by_key.get(key)
                if row is None:
                    continue
                if measure in breakdowns:
                    column = breakdowns[measure].column(detail)
                    row.counts[column] = row.counts.get(column, 0) + n
                    continue
                histogram = row.histograms.setdefault(measure, {})
                histogram[int(detail)] = histogram.get(int(detail), 0) + n
    rows, total = assemble(definition, query.by, raw, threshold, total_counts=total_counts)
    return FiguresAnswer(
        kind=str(kind), areas=list(query.areas), **{"from": query.from_}, to=query.to,
        by=[str(d) for d in query.by], suppression=Suppression(threshold=threshold),
        rows=rows, total=total,
    )


def render_csv(answer: FiguresAnswer) -> str:
    """The answer's rows as CSV: a header line, one column per dimension then per figure; a
    suppressed (or otherwise absent) cell is empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = answer.columns
    writer.writerow(columns)
    for row in answer.rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()
