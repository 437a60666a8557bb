"""Use cases of the cohorts service: load, decide (pure domain), save and write the outbox, in
the caller's transaction. Services never commit; the request's session (or the worker's
transaction) does. The offence import is the exception that proves it: each batch is its
own unit of work, so it takes the sessionmaker.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts import repository as repo
from cohorts.membership import (
    Decision,
    Membership,
    MembershipStatus,
    adopt,
    deselect,
    deselection_suggestions,
    move,
    pathway_activity,
    review_if_due,
    run_completed,
)
from cohorts.models import (
    MembershipRecord,
    NominalRecord,
    OffenceImportRecord,
    PolicyRecord,
    ReferralNeedRecord,
    SelectionRunRecord,
)
from cohorts.offences import (
    EARLIEST_DATE,
    RowError,
    check_nominal,
    check_offence,
    check_row,
    header_problems,
)
from cohorts.policy import SelectionPolicy
from cohorts.selection import (
    Assessment,
    Nominal,
    NominalSummary,
    assess,
    select,
)
from pathways_shared.clock import london_today
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.events import iso_z, make_event
from pathways_shared.outbox import add_event
from pathways_shared.problems import Conflict, NotFound, ValidationProblem
from pathways_shared.vocabulary import (
    AREAS,
    CRN_PATTERN,
    Cohort,
    DeselectionReason,
    SupervisionStatus,
)

def _known_area(area: str, field: str = "area") -> str:
    if area not in AREAS:
        raise ValidationProblem(f"{area!r} is not a known area (GSS code)", field=field)
    return area


def _crn(crn: str, field: str = "crn") -> str:
    if not CRN_PATTERN.match(crn):
        raise ValidationProblem(
            "must be one capital letter and six digits, e.g. X123456", field=field
        )
    return crn


def _check_as_of(as_of: date, now: datetime) -> None:
    if as_of > london_today(now):
        raise ValidationProblem("as_of is in the future", field="as_of")
    if as_of < EARLIEST_DATE:
        raise ValidationProblem(f"as_of is before {EARLIEST_DATE.isoformat()}", field="as_of")


# --- nominals -------------------------------------------------------------------------------


async def upsert_nominal(
    session: AsyncSession,
    principal: Principal,
    crn: str,
    *,
    area: str,
    date_of_birth: date,
    supervision_status: SupervisionStatus,
    mappa_level: int | None,
    pnc_number: str | None,
    now: datetime,
) -> tuple[NominalRecord, bool]:
    _crn(crn)
    check_nominal(
        crn=crn,
        area=area,
        date_of_birth=date_of_birth,
        mappa_level=mappa_level,
        pnc_number=pnc_number,
        today=london_today(now),
    )
    principal.require_area(area, hide=False)
    record = await repo.get_nominal(session, crn, for_update=True)
    created = record is None
    if record is None:
        record = NominalRecord(
            crn=crn,
            area=area,
            date_of_birth=date_of_birth,
            supervision_status=supervision_status.value,
            mappa_level=mappa_level,
            pnc_number=pnc_number,
            created_at=now,
            updated_at=now,
        )
        repo.add(session, record)
    else:
        principal.require_area(record.area, hide=False)
        record.area = area
        record.date_of_birth = date_of_birth
        record.supervision_status = supervision_status.value
        record.mappa_level = mappa_level
        record.pnc_number = pnc_number
        record.updated_at = now
        repo.add(session, record)
    try:
        await session.flush()
    except IntegrityError as exc:  # the same CRN created by another request meanwhile
        raise Conflict(f"nominal {crn} was recorded at the same time; send it again") from exc
    record_access(
        session,
        actor=principal,
        action=Action.COLLECTION if created else Action.ALTERATION,
        resource=f"/nominals/{crn}",
        crn=crn,
        purpose="record an IOM nominal",
    )
    return record, created


async def visible_nominal(session: AsyncSession, principal: Principal, crn: str) -> NominalRecord:
    _crn(crn)
    record = await repo.get_nominal(session, crn)
    if record is None or not principal.may_see_area(record.area):
        raise NotFound(f"no nominal {crn}")
    return record


async def read_nominal(
    session: AsyncSession, principal: Principal, crn: str
) -> tuple[NominalRecord, int, date | None]:
    record = await visible_nominal(session, principal, crn)
    count, last = await repo.offence_count_and_last(session, crn)
    record_access(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        resource=f"/nominals/{crn}",
        crn=crn,
        purpose="view an IOM nominal",
    )
    return record, count, last


async def add_offences(
    session: AsyncSession,
    principal: Principal,
    crn: str,
    offences: list[dict[str, Any]],
    *,
    now: datetime,
) -> tuple[int, int]:
    """Record offences for a known nominal; answers (added, already recorded)."""
    await visible_nominal(session, principal, crn)
    today = london_today(now)
    rows = []
    for i, offence in enumerate(offences):
        check_offence(
            offence["offence_date"],
            offence["category"],
            today,
            field_prefix=f"offences.{i}",
            description=offence.get("description"),
        )
        rows.append(
            {
                "crn": crn,
                "offence_date": offence["offence_date"],
                "category": offence["category"].value,
                "description": (offence.get("description") or "").strip(),
                "recorded_at": now,
            }
        )
    added = await repo.insert_offences(session, rows)
    record_access(
        session,
        actor=principal,
        action=Action.COLLECTION,
        resource=f"/nominals/{crn}/offences",
        crn=crn,
        purpose="record offences of an IOM nominal",
    )
    return added, len(rows) - added


async def list_offences(
    session: AsyncSession, principal: Principal, crn: str, *, limit: int, after: list[Any] | None
):
    await visible_nominal(session, principal, crn)
    rows = await repo.offences_page(session, crn, limit=limit, after=after)
    record_access(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        resource=f"/nominals/{crn}/offences",
        crn=crn,
        purpose="view the offence history of an IOM nominal",
    )
    return rows


async def assess_nominal(
    session: AsyncSession, principal: Principal, crn: str, *, as_of: date | None, now: datetime
) -> Assessment:
    record = await visible_nominal(session, principal, crn)
    as_of = as_of or london_today(now)
    _check_as_of(as_of, now)
    policy, _ = await policy_for(session, record.area)
    assessment = await _assessment(session, record, as_of, policy)
    record_access(
        session,
        actor=principal,
        action=Action.COMBINATION,
        resource=f"/nominals/{crn}/assessment",
        crn=crn,
        purpose="assess an IOM nominal against the selection policy",
    )
    return assessment


async def _assessment(
    session: AsyncSession, record: NominalRecord, as_of: date, policy: SelectionPolicy
) -> Assessment:
    found = await repo.summaries(session, as_of, policy, crns=[record.crn])
    summary = (
        found[0]
        if found
        else NominalSummary(
            Nominal(
                record.crn,
                record.date_of_birth,
                SupervisionStatus(record.supervision_status),
                record.mappa_level,
            )
        )
    )
    return assess(summary, as_of, policy)


# --- the CSV import -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedImport:
    good: list[Any]  # OffenceRow
    errors: list[Any]  # RowError
    total_rows: int


def parse_offence_csv(data: bytes, today: date) -> ParsedImport:
    """Every row checked; the whole file refused (422) only when it is not a CSV of ours."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationProblem("the file is not UTF-8 text", field="body") from exc
    if "\x00" in text:  # PostgreSQL stores no NUL: refuse the file rather than fail (a 500)
        raise ValidationProblem("the file contains a NUL character", field="body")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValidationProblem(f"the file is not CSV: {exc}", field="body") from exc
    problems = header_problems(header)
    if problems:
        raise ValidationProblem(problems[0].message, field="header")
    good, errors, total = [], [], 0
    columns = ("crn", "offence_date", "category", "description")
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            total += 1
            errors.append(RowError(line, "row", f"not valid CSV: {exc}"))
            continue
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        total += 1
        raw: dict[Any, Any] = dict(zip(columns, cells))
        if len(cells) > len(columns):
            raw[None] = cells[len(columns) :]
        checked = check_row(line, raw, today)
        if isinstance(checked, list):
            errors.extend(checked)
        else:
            good.append(checked)
    return ParsedImport(good, errors, total)


async def start_import(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, *, now: datetime
) -> str:
    import_id = str(uuid.uuid4())
    async with sessionmaker() as session, session.begin():
        repo.add(
            session,
            OffenceImportRecord(
                id=import_id,
                status="running",
                created_by=principal.actor,
                started_at=now,
                errors=[],
            ),
        )
    return import_id


async def run_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    import_id: str,
    data: bytes,
    *,
    now: datetime,
    batch_size: int,
) -> None:
    """Load the good rows in batches; each batch, with its progress, is one transaction, so a
    batch is loaded whole or not at all. Rows of nominals in areas the caller cannot see are
    refused like bad rows."""
    try:
        # Checking hundreds of thousands of rows takes CPU: off the event loop.
        parsed = await asyncio.to_thread(parse_offence_csv, data, london_today(now))
    except ValidationProblem as problem:
        await _finish_import(sessionmaker, import_id, status="failed", failure=problem.detail)
        raise
    batches = [parsed.good[i : i + batch_size] for i in range(0, len(parsed.good), batch_size)]
    errors = [e.as_dict() for e in parsed.errors]
    async with sessionmaker() as session, session.begin():
        record = await repo.get_import(session, import_id)
        assert record is not None
        record.total_rows = parsed.total_rows
        record.rejected = len({e.line for e in parsed.errors})
        record.batches_total = len(batches)
        record.processed_rows = record.rejected
        record.errors = sorted(errors, key=lambda e: e["line"])
    for batch in batches:
        try:
            async with sessionmaker() as session, session.begin():
                areas = await repo.areas_of(session, sorted({row.crn for row in batch}))
                refused = [
                    row
                    for row in batch
                    if row.crn in areas and not principal.may_see_area(areas[row.crn])
                ]
                refused_lines = {row.line for row in refused}
                rows = [
                    {
                        "crn": row.crn,
                        "offence_date": row.offence_date,
                        "category": row.category.value,
                        "description": row.description or "",
                        "recorded_at": now,
                        "import_id": import_id,
                    }
                    for row in batch
                    if row.line not in refused_lines
                ]
                loaded = await repo.insert_offences(session, rows)
                await repo.log_access_many(
                    session,
                    actor=principal,
                    action=Action.COLLECTION,
                    crns=sorted({row["crn"] for row in rows}),
                    resource=f"/offence-imports/{import_id}",
                    purpose="bulk load of police offence records",
                )
                record = await repo.get_import(session, import_id)
                assert record is not None
                record.loaded += loaded
                record.duplicates += len(rows) - loaded
                record.rejected += len(refused)
                record.processed_rows += len(batch)
                record.batches_done += 1
                if refused:
                    record.errors = sorted(
                        [
                            *record.errors,
                            *(
                                {
                                    "line": r.line,
                                    "field": "crn",
                                    "message": "the nominal is not in your areas",
                                }
                                for r in refused
                            ),
                        ],
                        key=lambda e: e["line"],
                    )
        except Exception as exc:
            await _finish_import(
                sessionmaker,
                import_id,
                status="failed",
                failure=f"batch {batches.index(batch) + 1} of {len(batches)} was not loaded: {type(exc).__name__}",
            )
            raise
    await _finish_import(sessionmaker, import_id, status="completed")


async def _finish_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    import_id: str,
    *,
    status: str,
    failure: str | None = None,
) -> None:
    async with sessionmaker() as session, session.begin():
        record = await repo.get_import(session, import_id)
        if record is not None:
            record.status = status
            record.failure = failure
            record.finished_at = datetime.now(UTC)


async def get_import(
    session: AsyncSession, principal: Principal, import_id: str
) -> OffenceImportRecord:
    record = await repo.get_import(session, import_id)
    if record is None or (record.created_by != principal.actor and not principal.has("admin")):
        raise NotFound(f"no import {import_id}")
    return record


# --- policies -------------------------------------------------------------------------------


async def policy_for(
    session: AsyncSession, area: str
) -> tuple[SelectionPolicy, PolicyRecord | None]:
    """The area's current policy; version 0 is the defaults of DOMAIN.md, never stored."""
    record = await repo.current_policy(session, area)
    if record is None:
        return SelectionPolicy(), None
    return SelectionPolicy.from_dict(record.body), record


def policy_view(area: str, policy: SelectionPolicy, record: PolicyRecord | None) -> dict[str, Any]:
    return {
        "area": area,
        "version": record.version if record else 0,
        "updated_at": iso_z(record.created_at) if record else None,
        "updated_by": record.created_by if record else None,
        **policy.to_dict(),
    }


async def read_policy(session: AsyncSession, principal: Principal, area: str) -> dict[str, Any]:
    if area not in AREAS:
        raise NotFound(f"no area {area}")
    principal.require_area(area, hide=False)
    policy, record = await policy_for(session, area)
    return policy_view(area, policy, record)


async def replace_policy(
    session: AsyncSession,
    principal: Principal,
    area: str,
    data: dict[str, Any],
    *,
    expected_version: int | None,
    body_area: str | None,
    now: datetime,
) -> dict[str, Any]:
    if area not in AREAS:
        raise NotFound(f"no area {area}")
    principal.require_area(area, hide=False)
    if body_area is not None and body_area != area:
        raise ValidationProblem(
            f"the body is for area {body_area}, the path for {area}", field="area"
        )
    policy = SelectionPolicy.from_dict(data)
    current = await repo.current_policy(session, area, for_update=True)
    version = current.version if current else 0
    if expected_version is not None and expected_version != version:
        raise Conflict(
            f"the policy of {area} is at version {version}, not {expected_version}; "
            "read it again and reapply your change"
        )
    record = PolicyRecord(
        area=area,
        version=version + 1,
        body=policy.to_dict(),
        created_at=now,
        created_by=principal.actor,
    )
    repo.add(session, record)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the policy of {area} changed at the same time; try again") from exc
    return policy_view(area, policy, record)


# --- selection runs -------------------------------------------------------------------------


def _candidate_json(c: Any) -> dict[str, Any]:
    return {
        "crn": c.crn,
        "cohort": c.cohort.value,
        "score": c.score,
        "recency": c.recency,
        "frequency": c.frequency,
        "gravity": c.gravity,
        "prolific": c.prolific,
        "last_offence_date": c.last_offence_date.isoformat() if c.last_offence_date else None,
        "within_capacity": c.within_capacity,
        "rank": c.rank,
        "cohort_rank": c.cohort_rank,
        "reasons": list(c.reasons),
    }


def _excluded_json(e: Any) -> dict[str, Any]:
    return {
        "crn": e.crn,
        "reason": e.reason.value,
        "detail": e.detail,
        "would_be": e.would_be.value if e.would_be else None,
    }


async def run_selection(
    session: AsyncSession,
    principal: Principal,
    *,
    area: str,
    as_of: date,
    now: datetime,
    base_url: str,
) -> SelectionRunRecord:
    _known_area(area)
    principal.require_area(area, hide=False)
    _check_as_of(as_of, now)
    started = time.perf_counter()
    policy, record = await policy_for(session, area)
    version = record.version if record else 0
    summaries = await repo.summaries(session, as_of, policy, area=area)
    # The rules over a whole area take CPU for a second or so: off the event loop.
    run = await asyncio.to_thread(
        select, summaries, as_of, policy, area=area, policy_version=version
    )
    run_id = str(uuid.uuid4())
    stored = SelectionRunRecord(
        id=run_id,
        area=area,
        as_of=as_of,
        policy_version=version,
        created_at=now,
        created_by=principal.actor,
        counts=run.counts(),
        candidates=[_candidate_json(c) for c in run.candidates],
        excluded=[_excluded_json(e) for e in run.excluded],
        duration_ms=int((time.perf_counter() - started) * 1000),
    )
    repo.add(session, stored)
    completed = run_completed(run, run_id)
    add_event(
        session,
        make_event(
            completed.event_type,
            completed.additional_information(),
            detail_url=f"{base_url}/selection-runs/{run_id}",
            occurred_at=now,
        ),
    )
    await repo.log_access_many(
        session,
        actor=principal,
        action=Action.COMBINATION,
        crns=_crns_of(stored),
        resource=f"/selection-runs/{run_id}",
        purpose=f"IOM selection run for {area} as of {as_of.isoformat()}",
    )
    return stored


def _crns_of(run: SelectionRunRecord) -> list[str]:
    return sorted({entry["crn"] for entry in [*run.candidates, *run.excluded]})


async def read_run(session: AsyncSession, principal: Principal, run_id: str) -> SelectionRunRecord:
    record = await repo.get_run(session, run_id)
    if record is None or not principal.may_see_area(record.area):
        raise NotFound(f"no selection run {run_id}")
    await repo.log_access_many(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        crns=_crns_of(record),
        resource=f"/selection-runs/{run_id}",
        purpose="view an IOM selection run",
    )
    return record


# --- members --------------------------------------------------------------------------------


def _to_domain(record: MembershipRecord) -> Membership:
    return Membership(
        crn=record.crn,
        area=record.area,
        cohort=Cohort(record.cohort),
        status=MembershipStatus(record.status),
        adopted_at=record.adopted_at,
        adopted_by=record.adopted_by,
        rationale=record.rationale,
        met_criteria=record.met_criteria,
        criteria_reasons=tuple(record.criteria_reasons),
        score_at_adoption=record.score_at_adoption,
        review_due_at=record.review_due_at,
        deselected_at=record.deselected_at,
        deselected_by=record.deselected_by,
        deselection_reason=DeselectionReason(record.deselection_reason)
        if record.deselection_reason
        else None,
        deselection_comments=record.deselection_comments,
    )


def _apply(record: MembershipRecord | None, member: Membership) -> MembershipRecord:
    record = record or MembershipRecord(id=str(uuid.uuid4()))
    record.crn = member.crn
    record.area = member.area
    record.cohort = member.cohort.value
    record.status = member.status.value
    record.adopted_at = member.adopted_at
    record.adopted_by = member.adopted_by
    record.rationale = member.rationale
    record.met_criteria = member.met_criteria
    record.criteria_reasons = list(member.criteria_reasons)
    record.score_at_adoption = member.score_at_adoption
    record.review_due_at = member.review_due_at
    record.deselected_at = member.deselected_at
    record.deselected_by = member.deselected_by
    record.deselection_reason = (
        member.deselection_reason.value if member.deselection_reason else None
    )
    record.deselection_comments = member.deselection_comments
    return record


def _publish(session: AsyncSession, events: Any, base_url: str, now: datetime) -> None:
    for event in events:
        add_event(
            session,
            make_event(
                event.event_type,
                event.additional_information(),
                crn=event.crn,
                detail_url=f"{base_url}/cohorts/{event.area}/members/{event.crn}",
                occurred_at=now,
            ),
        )


async def _save(
    session: AsyncSession, decision: Decision, current: MembershipRecord | None
) -> list[MembershipRecord]:
    saved = []
    for member in decision.memberships:
        same_spell = (
            current is not None
            and member.adopted_at == current.adopted_at
            and member.cohort.value == current.cohort
        )
        record = _apply(current if same_spell else None, member)
        repo.add(session, record)
        saved.append(record)
        # the ended spell must be written before the new active one (one active per area)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict(f"{member.crn} is already a member in {member.area}") from exc
    return saved


def _area_for_panel(principal: Principal, area: str) -> str:
    if area not in AREAS:
        raise NotFound(f"no area {area}")
    principal.require_area(area, hide=False)
    return area


async def adopt_member(
    session: AsyncSession,
    principal: Principal,
    area: str,
    *,
    crn: str,
    cohort: Cohort,
    decided_by: str,
    rationale: str,
    now: datetime,
    base_url: str,
) -> MembershipRecord:
    _area_for_panel(principal, area)
    nominal = await repo.get_nominal(session, crn)
    if nominal is None:
        raise ValidationProblem(
            f"no nominal {crn}: record it first (PUT /nominals/{crn})", field="crn"
        )
    if nominal.area != area:
        raise ValidationProblem(
            f"{crn} is recorded in area {nominal.area}, not {area}", field="crn"
        )
    current = await repo.active_membership(session, crn, area, for_update=True)
    policy, _ = await policy_for(session, area)
    assessment = await _assessment(session, nominal, london_today(now), policy)
    decision = adopt(
        _to_domain(current) if current else None,
        crn=crn,
        area=area,
        cohort=cohort,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    (saved,) = await _save(session, decision, None)
    _publish(session, decision.events, base_url, now)
    record_access(
        session,
        actor=principal,
        action=Action.ALTERATION,
        resource=f"/cohorts/{area}/members/{crn}",
        crn=crn,
        purpose=f"IOM panel adoption into {cohort.value}",
    )
    return saved


async def _current_member(
    session: AsyncSession, principal: Principal, area: str, crn: str
) -> MembershipRecord:
    _area_for_panel(principal, area)
    _crn(crn)
    current = await repo.active_membership(session, crn, area, for_update=True)
    if current is None:
        raise NotFound(f"{crn} is not a current member of a cohort in {area}")
    return current


async def deselect_member(
    session: AsyncSession,
    principal: Principal,
    area: str,
    crn: str,
    *,
    reason: DeselectionReason,
    decided_by: str,
    comments: str | None,
    now: datetime,
    base_url: str,
) -> MembershipRecord:
    current = await _current_member(session, principal, area, crn)
    decision = deselect(
        _to_domain(current), reason=reason, decided_by=decided_by, now=now, comments=comments
    )
    (saved,) = await _save(session, decision, current)
    _publish(session, decision.events, base_url, now)
    record_access(
        session,
        actor=principal,
        action=Action.ALTERATION,
        resource=f"/cohorts/{area}/members/{crn}/deselect",
        crn=crn,
        purpose=f"IOM panel deselection ({reason.value})",
    )
    return saved


async def move_member(
    session: AsyncSession,
    principal: Principal,
    area: str,
    crn: str,
    *,
    cohort: Cohort,
    decided_by: str,
    rationale: str,
    now: datetime,
    base_url: str,
) -> MembershipRecord:
    current = await _current_member(session, principal, area, crn)
    nominal = await repo.get_nominal(session, crn)
    assert nominal is not None
    policy, _ = await policy_for(session, area)
    assessment = await _assessment(session, nominal, london_today(now), policy)
    decision = move(
        _to_domain(current),
        to=cohort,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    _ended, started = await _save(session, decision, current)
    _publish(session, decision.events, base_url, now)
    record_access(
        session,
        actor=principal,
        action=Action.ALTERATION,
        resource=f"/cohorts/{area}/members/{crn}/move",
        crn=crn,
        purpose=f"IOM panel move to {cohort.value}",
    )
    return started


async def list_members(
    session: AsyncSession,
    principal: Principal,
    area: str,
    *,
    cohort: Cohort | None,
    status: str | None,
    limit: int,
    after: list[Any] | None,
) -> list[MembershipRecord]:
    _area_for_panel(principal, area)
    rows = await repo.list_members(
        session,
        area,
        cohort=cohort.value if cohort else None,
        status=status,
        limit=limit,
        after=after,
    )
    await repo.log_access_many(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        crns=sorted({r.crn for r in rows[:limit]}),
        resource=f"/cohorts/{area}/members",
        purpose="view IOM cohort membership",
    )
    return rows


async def suggestions(
    session: AsyncSession, principal: Principal, area: str, *, now: datetime
) -> list[tuple[MembershipRecord, date | None]]:
    _area_for_panel(principal, area)
    today = london_today(now)
    policy, _ = await policy_for(session, area)
    records = await repo.active_members_in(session, area)
    last = await repo.last_offence_dates(session, [r.crn for r in records], today)
    by_key = {(r.crn, r.cohort): r for r in records}
    chosen = deselection_suggestions(
        [(_to_domain(r), last.get(r.crn)) for r in records], today, policy
    )
    await repo.log_access_many(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        crns=[m.crn for m in chosen],
        resource=f"/cohorts/{area}/deselection-suggestions",
        purpose="IOM panel review of members quiet for a year",
    )
    return [(by_key[(m.crn, m.cohort.value)], last.get(m.crn)) for m in chosen]


async def review_due_members(
    session: AsyncSession, *, now: datetime, base_url: str, limit: int = 200
) -> int:
    """The scheduler's step: publish a review-due event (with a deselection suggestion when
    the member has been quiet for a year) for each member whose review has come, and move
    their review on by one interval. Answers how many reviews were published."""
    due = await repo.members_due_for_review(session, now, limit)
    if not due:
        return 0
    published = 0
    today = london_today(now)
    last = await repo.last_offence_dates(session, sorted({r.crn for r in due}), today)
    policies: dict[str, SelectionPolicy] = {}
    for record in due:
        if record.area not in policies:
            policies[record.area], _ = await policy_for(session, record.area)
        decision = review_if_due(
            _to_domain(record),
            last_offence_date=last.get(record.crn),
            now=now,
            today=today,
            policy=policies[record.area],
        )
        if decision is None:
            continue
        record.review_due_at = decision.membership.review_due_at
        repo.add(session, record)
        _publish(session, [decision.event], base_url, now)
        published += 1
    return published


# --- pathway activity (consumed events) -----------------------------------------------------


async def note_need_activity(
    session: AsyncSession,
    *,
    crn: str | None,
    need_id: str,
    status: str,
    now: datetime,
    base_url: str,
    referral_id: str | None = None,
    pathway: str | None = None,
    programme: str | None = None,
) -> int:
    """Keep where a need stands; tell the police about it when the person is a current
    member. Answers how many pathway-activity events were written."""
    need = await repo.get_need(session, need_id)
    if need is None:
        if crn is None or pathway is None:
            members = await repo.active_memberships_of(session, crn) if crn else []
            if members:
                # The submitted event that names the pathway has not been seen yet: retry.
                raise LookupError(f"need {need_id} of a member is not known yet")
            return 0
        need = ReferralNeedRecord(
            need_id=need_id,
            referral_id=referral_id or "",
            crn=crn,
            pathway=pathway,
            status=status,
            programme=programme,
            updated_at=now,
        )
    need.status = status
    if programme:
        need.programme = programme
    need.updated_at = now
    repo.add(session, need)
    published = 0
    for record in await repo.active_memberships_of(session, need.crn):
        event = pathway_activity(
            _to_domain(record), pathway=need.pathway, status=need.status, programme=need.programme
        )
        if event is not None:
            _publish(session, [event], base_url, now)
            published += 1
    return published


# --- subject access -------------------------------------------------------------------------


async def subject_access(session: AsyncSession, principal: Principal, crn: str) -> dict[str, Any]:
    _crn(crn)
    nominal = await repo.get_nominal(session, crn)
    offences = await repo.offences_of(session, crn)
    memberships = await repo.memberships_of(session, crn)
    needs = await repo.needs_of(session, crn)
    runs = await repo.runs_naming(session, crn)
    log = await repo.access_log_of(session, crn)
    record_access(
        session,
        actor=principal,
        action=Action.DISCLOSURE,
        resource=f"/subject-access-requests?crn={crn}",
        crn=crn,
        purpose="subject access request",
    )

    def dump(record: Any) -> dict[str, Any]:
        return record.model_dump(mode="json")

    return {
        "crn": crn,
        "nominal": dump(nominal) if nominal else None,
        "offences": [dump(o) for o in offences],
        "memberships": [dump(m) for m in memberships],
        "referral_needs": [dump(n) for n in needs],
        "selection_runs": [
            {
                "id": run.id,
                "area": run.area,
                "as_of": run.as_of.isoformat(),
                "candidate": [c for c in run.candidates if c.get("crn") == crn],
                "excluded": [e for e in run.excluded if e.get("crn") == crn],
            }
            for run in runs
        ],
        "access_log": [dump(entry) for entry in log],
    }


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    *,
    area: str | None,
    limit: int,
    after: list[Any] | None,
) -> list[SelectionRunRecord]:
    if area is not None and not principal.may_see_area(_known_area(area)):
        return []
    return await repo.list_runs(session, principal.areas, area, limit, after)


async def read_member(
    session: AsyncSession, principal: Principal, area: str, crn: str
) -> MembershipRecord:
    current = await _current_member(session, principal, area, crn)
    record_access(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        resource=f"/cohorts/{area}/members/{crn}",
        crn=crn,
        purpose="view IOM cohort membership",
    )
    return current
