"""Every query of the cohorts service: `CohortsRepository(session)`.

The selection run's heavy lifting is `summaries`: one aggregate over the area's offences that
gives each nominal's `NominalSummary` (see `cohorts.domain.selection`), so a run never loads offences
into Python. Its date bounds come from `summary_windows`, the same as `summarise` uses.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.dates import shift_years
from cohorts.domain.membership import Membership, MembershipStatus
from cohorts.domain.policy import MIN_AGE, SelectionPolicy
from cohorts.domain.selection import MAPPA_EXCLUDED_LEVELS, Nominal, NominalSummary, summary_windows
from cohorts.models import (
    MembershipRecord,
    NominalRecord,
    OffenceImportRecord,
    OffenceRecord,
    PolicyRecord,
    ReferralNeedRecord,
    SelectionRunRecord,
)
from pathways_shared.access import Action, purpose_of
from pathways_shared.auth import Principal
from pathways_shared.db import is_postgres
from pathways_shared.infra_models import AccessLog, ProcessedEvent
from pathways_shared.observability import current_correlation_id
from pathways_shared.pagination import newest_first
from pathways_shared.vocabulary import (
    NEIGHBOURHOOD_CRIME,
    STATUTORY_STATUSES,
    Cohort,
    DeselectionReason,
    OffenceCategory,
    SupervisionStatus,
)

_STATUSES = {s.value: s for s in SupervisionStatus}


class NotedNeed(NamedTuple):
    """A need as `note_need` left it, and its person's count of active memberships."""

    crn: str
    pathway: str
    status: str
    programme: str | None
    active_memberships: int


def _need_upsert(insert: Any, needs: Any) -> Any:
    """The need's row inserted, or its status, programme (when given) and time updated: what
    `note_need` stores, in both one-statement forms."""
    return insert.on_conflict_do_update(
        index_elements=[needs.c.need_id],
        set_={
            "status": insert.excluded.status,
            "programme": func.coalesce(insert.excluded.programme, needs.c.programme),
            "updated_at": insert.excluded.updated_at,
        },
    )


@functools.cache
def _settle_need() -> Any:
    """One statement: record `consumer`'s event processed and store the need as `_note_need`
    does, both only when the need's person (its stored CRN, else the event's) is no current
    member; then whether it was recorded, and whether it had been before."""
    processed = ProcessedEvent.__table__  # type: ignore[attr-defined]
    needs = ReferralNeedRecord.__table__  # type: ignore[attr-defined]
    memberships = MembershipRecord.__table__  # type: ignore[attr-defined]
    person = func.coalesce(
        select(needs.c.crn).where(needs.c.need_id == bindparam("new_need_id")).scalar_subquery(),
        bindparam("new_crn", type_=needs.c.crn.type),
    )
    no_member = ~exists().where(memberships.c.crn == person, memberships.c.status == "active")
    marked = (
        postgresql.insert(processed)
        .from_select(
            ["consumer", "event_id", "event_type", "processed_at"],
            select(*(bindparam(name, type_=processed.c[column].type) for name, column in (
                ("consumer", "consumer"), ("event_id", "event_id"), ("event_type", "event_type"),
                ("new_updated_at", "processed_at")))).where(no_member),
        )
        .on_conflict_do_nothing()
        .returning(processed.c.id)
        .cte("marked")
    )
    columns = [c.name for c in needs.columns]
    insert = postgresql.insert(needs).from_select(
        columns,
        select(*(bindparam(f"new_{c}", type_=needs.c[c].type) for c in columns)).where(
            exists().select_from(marked)
        ),
    )
    stored = _need_upsert(insert, needs).returning(needs.c.need_id).cte("stored")
    seen = exists().where(
        processed.c.consumer == bindparam("consumer", type_=processed.c.consumer.type),
        processed.c.event_id == bindparam("event_id", type_=processed.c.event_id.type),
    )
    return select(
        select(func.count()).select_from(marked).scalar_subquery(),
        select(func.count()).select_from(stored).scalar_subquery(),
        seen,
    )


async def settle_need(
    connection: Any, *, consumer: str, event: Any, need_id: str, referral_id: str, crn: str,
    pathway: str, status: str, programme: str | None, now: datetime,
) -> str | None:
    """PostgreSQL, one statement (for a connection outside any transaction): a need event of
    a person who is no current member recorded processed and the need stored (as
    `CohortsRepository.note_need`); "handled", "duplicate" if it had been recorded, or None
    (nothing written) when the person is a member: the ordinary path publishes for them."""
    marked, stored, seen = (await connection.execute(_settle_need(), {
        "consumer": consumer, "event_id": str(event.id), "event_type": event.event_type,
        "new_need_id": need_id, "new_referral_id": referral_id, "new_crn": crn,
        "new_pathway": pathway, "new_status": status, "new_programme": programme or None,
        "new_updated_at": now,
    })).one()
    if marked:
        assert stored == 1, "a recorded event stores its need in the same statement"
        return "handled"
    return "duplicate" if seen else None


@functools.cache
def _note_need() -> Any:
    needs = ReferralNeedRecord.__table__  # type: ignore[attr-defined]
    memberships = MembershipRecord.__table__  # type: ignore[attr-defined]
    insert = postgresql.insert(needs).values(
        {c.name: bindparam(f"new_{c.name}") for c in needs.columns}
    )
    need = _need_upsert(insert, needs).returning(
        needs.c.crn, needs.c.pathway, needs.c.status, needs.c.programme).cte("need")
    members = (
        select(func.count())
        .where(memberships.c.crn == need.c.crn, memberships.c.status == "active")
        .scalar_subquery()
    )
    return select(need.c.crn, need.c.pathway, need.c.status, need.c.programme, members)


# --- rows and domain values ---------------------------------------------------------------


def membership_from_record(record: MembershipRecord) -> Membership:
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


def record_of_membership(record: MembershipRecord | None, member: Membership) -> MembershipRecord:
    """`record` (a new one when None) holding `member`."""
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


def _insert(session: AsyncSession):
    return postgresql.insert if is_postgres(session) else sqlite.insert


# On PostgreSQL a batch goes in as one array per column: one statement, nothing to compile
# per row, thousands of rows in milliseconds.
_INSERT_OFFENCES = text(
    """
    WITH added AS (
        INSERT INTO offences (crn, offence_date, category, description, recorded_at, import_id)
        SELECT * FROM unnest(
            CAST(:crns AS varchar[]), CAST(:dates AS date[]), CAST(:categories AS varchar[]),
            CAST(:descriptions AS text[]), CAST(:recorded AS timestamptz[]),
            CAST(:imports AS varchar[])
        )
        ON CONFLICT ON CONSTRAINT uq_offences_natural DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM added
    """
)


def _summary_statement(
    area: str | None, as_of: date, policy: SelectionPolicy, crns: Sequence[str] | None
):
    w = summary_windows(as_of, policy)
    offences, nominals = OffenceRecord.__table__, NominalRecord.__table__
    o, n = offences.c, nominals.c
    upto = o.offence_date <= as_of
    in_window = and_(o.offence_date >= w.score_from, upto)
    in_candidacy = and_(o.offence_date >= w.candidacy_from, upto)
    weight = case(
        {c.value: policy.score.gravity_weight(c) for c in OffenceCategory},
        value=o.category,
        else_=policy.score.gravity_default_weight,
    )
    nbh = sorted(c.value for c in NEIGHBOURHOOD_CRIME)
    flex = sorted(c.value for c in policy.flex_categories)
    last = func.max(case((upto, o.offence_date)))
    total = func.count(case((upto, 1)))
    window_count = func.count(case((in_window, 1)))
    window_gravity = func.coalesce(func.sum(case((in_window, weight), else_=0)), 0)
    recent_nbh = func.max(case((and_(in_candidacy, o.category.in_(nbh)), 1), else_=0))
    recent_flex = func.max(case((and_(in_candidacy, o.category.in_(flex)), 1), else_=0))
    statement = (
        select(
            n.crn,
            n.date_of_birth,
            n.supervision_status,
            n.mappa_level,
            total.label("total"),
            window_count.label("window_count"),
            window_gravity.label("window_gravity"),
            last.label("last_date"),
            recent_nbh.label("nbh"),
            recent_flex.label("flex"),
        )
        .select_from(nominals)
        .outerjoin(offences, o.crn == n.crn)
        .group_by(n.crn, n.date_of_birth, n.supervision_status, n.mappa_level)
    )
    if area is not None:
        statement = statement.where(n.area == area)
    if crns is not None:
        statement = statement.where(n.crn.in_(list(crns)))
    else:
        statement = statement.having(
            _may_figure(
                policy, as_of, n, last, total, window_count, window_gravity, recent_nbh, recent_flex
            )
        )
    return statement


def _capped(value: Any, cap: int) -> Any:
    return case((value > cap, cap), else_=value)


def _may_figure(
    policy: SelectionPolicy,
    as_of: date,
    n: Any,
    last: Any,
    total: Any,
    window_count: Any,
    window_gravity: Any,
    recent_nbh: Any,
    recent_flex: Any,
) -> Any:
    """A filter no candidate and no excluded person fails, so that the rest (most of an
    area) stay in SQL. It may let through some who are neither: the pure rules decide; the
    integration tests check that a run over the filtered summaries equals one over all."""
    weights = policy.score
    recency = case(
        *[
            (last >= as_of - timedelta(days=band.max_days), band.points)
            for band in weights.recency_bands
        ],
        else_=0,
    )
    score = (
        recency
        + _capped(window_count * weights.frequency_points_per_offence, weights.frequency_cap)
        + _capped(window_gravity, weights.gravity_cap)
    )
    fewest_for_prolific = min(band.min_offences for band in policy.prolific_bands)
    statutory = sorted(s.value for s in STATUTORY_STATUSES)
    return or_(
        score >= min(policy.thresholds.fixed, policy.thresholds.flex, policy.thresholds.free),
        and_(
            n.supervision_status.in_(statutory),
            or_(recent_nbh == 1, recent_flex == 1),
            total >= fewest_for_prolific,
        ),
        n.date_of_birth > shift_years(as_of, -MIN_AGE),
        n.mappa_level.in_(sorted(MAPPA_EXCLUDED_LEVELS)),
    )


_LOG_MANY = text(
    """
    INSERT INTO access_log (at, actor, roles, action, resource, crn, purpose, correlation_id)
    SELECT :at, :actor, :roles, :action, :resource, crn, :purpose, :correlation_id
    FROM unnest(CAST(:crns AS varchar[])) AS crn
    """
)


class CohortsRepository:
    """Every query of the cohorts service, on the caller's session (the caller owns the
    transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- nominals and offences ------------------------------------------------------------------
    async def get_nominal(self, crn: str, *, for_update: bool = False) -> NominalRecord | None:
        query = select(NominalRecord).where(NominalRecord.crn == crn)
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).scalar_one_or_none()

    def add(self, record: Any) -> None:
        self.session.add(record)

    async def areas_of(self, crns: Sequence[str]) -> dict[str, str]:
        if not crns:
            return {}
        if is_postgres(self.session):
            wanted = NominalRecord.crn == any_(cast(list(crns), ARRAY(String)))
        else:
            wanted = NominalRecord.crn.in_(list(crns))
        rows = await self.session.exec(select(NominalRecord.crn, NominalRecord.area).where(wanted))
        return {crn: area for crn, area in rows.all()}

    async def insert_offences(self, rows: list[dict[str, Any]]) -> int:
        """Insert offences, skipping any already recorded; answers how many were new."""
        if not rows:
            return 0
        if is_postgres(self.session):
            result = await self.session.exec(
                _INSERT_OFFENCES,
                params={
                    "crns": [r["crn"] for r in rows],
                    "dates": [r["offence_date"] for r in rows],
                    "categories": [r["category"] for r in rows],
                    "descriptions": [r.get("description") or "" for r in rows],
                    "recorded": [r["recorded_at"] for r in rows],
                    "imports": [r.get("import_id") for r in rows],
                },
            )
            return int(result.scalar_one())
        statement = (
            sqlite.insert(OffenceRecord)
            .values(rows)
            .on_conflict_do_nothing(
                index_elements=["crn", "offence_date", "category", "description"]
            )
            .returning(OffenceRecord.id)
        )
        return len((await self.session.exec(statement)).all())

    async def offences_of(self, crn: str) -> list[OffenceRecord]:
        rows = await self.session.exec(
            select(OffenceRecord)
            .where(OffenceRecord.crn == crn)
            .order_by(OffenceRecord.offence_date.desc(), OffenceRecord.id.desc())
        )
        return list(rows.scalars().all())

    async def last_offence_dates(self, crns: Sequence[str], up_to: date) -> dict[str, date]:
        if not crns:
            return {}
        rows = await self.session.exec(
            select(OffenceRecord.crn, func.max(OffenceRecord.offence_date))
            .where(OffenceRecord.crn.in_(list(crns)), OffenceRecord.offence_date <= up_to)
            .group_by(OffenceRecord.crn)
        )
        return {crn: last for crn, last in rows.all()}

    # --- the selection aggregate ----------------------------------------------------------------
    async def summaries(
        self,
        as_of: date,
        policy: SelectionPolicy,
        *,
        area: str | None = None,
        crns: Sequence[str] | None = None,
    ) -> list[NominalSummary]:
        """The `NominalSummary` of every nominal of the area (or of `crns`) who could figure in a
        run on `as_of`: candidates and the excluded; the rest cannot and are left in SQL."""
        rows = await self.session.exec(_summary_statement(area, as_of, policy, crns))
        return [
            NominalSummary(
                nominal=Nominal(
                    r.crn, r.date_of_birth, _STATUSES[r.supervision_status], r.mappa_level
                ),
                total_offences=r.total,
                window_offences=r.window_count,
                window_gravity=int(r.window_gravity),
                last_offence_date=r.last_date,
                neighbourhood_recent=bool(r.nbh),
                flex_recent=bool(r.flex),
            )
            for r in rows.all()
        ]

    # --- policies -------------------------------------------------------------------------------
    async def current_policy(self, area: str, *, for_update: bool = False) -> PolicyRecord | None:
        query = (
            select(PolicyRecord)
            .where(PolicyRecord.area == area)
            .order_by(PolicyRecord.version.desc())
            .limit(1)
        )
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).scalar_one_or_none()

    # --- selection runs -------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> SelectionRunRecord | None:
        return await self.session.get(SelectionRunRecord, run_id)

    async def list_runs(
        self,
        areas: frozenset[str] | None,
        area: str | None,
        limit: int,
        after: list[Any] | None,
    ) -> list[SelectionRunRecord]:
        r = SelectionRunRecord
        query = select(r)
        if area is not None:
            query = query.where(r.area == area)
        if areas is not None:
            query = query.where(r.area.in_(sorted(areas)))
        query = newest_first(query, r.created_at, r.id, after, limit)
        return list((await self.session.exec(query)).scalars().all())

    async def runs_naming(self, crn: str) -> list[SelectionRunRecord]:
        """Runs that list the person, as a candidate or excluded (for subject access)."""
        r = SelectionRunRecord
        if is_postgres(self.session):
            probe = [{"crn": crn}]
            condition = or_(
                type_coerce(r.candidates, JSONB).contains(probe),
                type_coerce(r.excluded, JSONB).contains(probe),
            )
            query = select(r).where(condition).order_by(r.created_at)
            return list((await self.session.exec(query)).scalars().all())
        rows = (await self.session.exec(select(r).order_by(r.created_at))).scalars().all()
        return [
            run
            for run in rows
            if any(c.get("crn") == crn for c in [*run.candidates, *run.excluded])
        ]

    # --- memberships ----------------------------------------------------------------------------
    async def active_membership(
        self, crn: str, area: str, *, for_update: bool = False
    ) -> MembershipRecord | None:
        m = MembershipRecord
        query = select(m).where(m.crn == crn, m.area == area, m.status == "active")
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).scalars().first()

    async def active_memberships_of(self, crn: str) -> list[MembershipRecord]:
        m = MembershipRecord
        query = select(m).where(m.crn == crn, m.status == "active").order_by(m.area)
        return list((await self.session.exec(query)).scalars().all())

    async def memberships_of(self, crn: str) -> list[MembershipRecord]:
        m = MembershipRecord
        query = select(m).where(m.crn == crn).order_by(m.adopted_at)
        return list((await self.session.exec(query)).scalars().all())

    async def list_members(
        self,
        area: str,
        *,
        cohort: str | None,
        status: str | None,
        limit: int,
        after: list[Any] | None,
    ) -> list[MembershipRecord]:
        m = MembershipRecord
        query = (
            select(m).where(m.area == area, m.erased_at.is_(None))  # erased: not listed
            .order_by(m.crn, m.adopted_at, m.id).limit(limit + 1)
        )
        if cohort is not None:
            query = query.where(m.cohort == cohort)
        if status is not None:
            query = query.where(m.status == status)
        if after is not None:
            crn, adopted_at, member_id = after
            query = query.where(
                or_(
                    m.crn > crn,
                    and_(m.crn == crn, m.adopted_at > adopted_at),
                    and_(m.crn == crn, m.adopted_at == adopted_at, m.id > member_id),
                )
            )
        return list((await self.session.exec(query)).scalars().all())

    async def active_members_in(self, area: str) -> list[MembershipRecord]:
        m = MembershipRecord
        query = select(m).where(m.area == area, m.status == "active").order_by(m.crn)
        return list((await self.session.exec(query)).scalars().all())

    async def members_due_for_review(self, now: datetime, limit: int) -> list[MembershipRecord]:
        m = MembershipRecord
        query = (
            select(m)
            .where(m.status == "active", m.review_due_at <= now)
            .order_by(m.review_due_at, m.id)
            .limit(limit)
        )
        if is_postgres(self.session):
            query = query.with_for_update(skip_locked=True)
        return list((await self.session.exec(query)).scalars().all())

    # --- referral needs (for members' pathway activity) -----------------------------------------
    async def get_need(self, need_id: str) -> ReferralNeedRecord | None:
        return await self.session.get(ReferralNeedRecord, need_id)

    def can_note_need_in_one(self, need_id: str) -> bool:
        """Whether `note_need` may write this need: PostgreSQL, and the session holds no model
        of it (one loaded earlier in the transaction would not see the statement's change)."""
        if not is_postgres(self.session):
            return False
        sync = self.session.sync_session
        return sync.identity_key(ReferralNeedRecord, need_id) not in sync.identity_map and not any(
            isinstance(o, ReferralNeedRecord) and o.need_id == need_id for o in sync.new
        )

    async def note_need(
        self, *, need_id: str, referral_id: str, crn: str, pathway: str, status: str,
        programme: str | None, now: datetime,
    ) -> NotedNeed:
        """PostgreSQL, one round trip: the need stored (a new one as given; a known one keeps
        its person, referral and pathway, takes the status, and the programme when one is
        given) and how many active memberships its person has. What `get_need`, changing the
        model and `active_memberships_of` do in three."""
        row = (await (await self.session.connection()).execute(_note_need(), {
            "new_need_id": need_id, "new_referral_id": referral_id, "new_crn": crn,
            "new_pathway": pathway, "new_status": status, "new_programme": programme or None,
            "new_updated_at": now,
        })).one()
        return NotedNeed(*row)

    async def needs_of(self, crn: str) -> list[ReferralNeedRecord]:
        n = ReferralNeedRecord
        return list(
            (await self.session.exec(select(n).where(n.crn == crn).order_by(n.updated_at)))
            .scalars()
            .all()
        )

    # --- imports --------------------------------------------------------------------------------
    async def get_import(self, import_id: str) -> OffenceImportRecord | None:
        return await self.session.get(OffenceImportRecord, import_id)

    async def offence_count_and_last(self, crn: str) -> tuple[int, date | None]:
        row = (
            await self.session.exec(
                select(func.count(), func.max(OffenceRecord.offence_date)).where(
                    OffenceRecord.crn == crn
                )
            )
        ).one()
        return int(row[0]), row[1]

    async def offences_page(
        self, crn: str, *, limit: int, after: list[Any] | None
    ) -> list[OffenceRecord]:
        o = OffenceRecord
        query = (
            select(o)
            .where(o.crn == crn)
            .order_by(o.offence_date.desc(), o.id.desc())
            .limit(limit + 1)
        )
        if after is not None:
            day, offence_id = after
            query = query.where(
                or_(o.offence_date < day, and_(o.offence_date == day, o.id < offence_id))
            )
        return list((await self.session.exec(query)).scalars().all())

    async def log_access_many(
        self,
        *,
        actor: Principal,
        action: Action,
        crns: Sequence[str],
        resource: str,
        purpose: str,
    ) -> None:
        """One access-log row per person whose record a bulk read or write touched, in one
        statement (a selection run combines thousands of records)."""
        if not crns:
            return
        values = {
            "at": datetime.now(UTC),
            "actor": actor.actor,
            "roles": ",".join(sorted(actor.roles)),
            "action": action.value,
            "resource": resource[:300],
            "purpose": purpose_of(purpose),
            "correlation_id": current_correlation_id(),
        }
        if is_postgres(self.session):
            await self.session.exec(_LOG_MANY, params={**values, "crns": list(crns)})
            return
        await self.session.exec(insert(AccessLog), params=[{**values, "crn": crn} for crn in crns])
