"""Cohort members: panel decisions (adopt, deselect, move), reviews, suggestions, and the
pathway activity consumed from referral and provider events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.membership import (
    Decision,
    MemberEvent,
    adopt,
    deselect,
    deselection_suggestions,
    move,
    pathway_activity,
    review_if_due,
)
from cohorts.domain.policy import SelectionPolicy
from cohorts.models import (
    MembershipRecord,
    ReferralNeedRecord,
)
from cohorts.repository import (
    CohortsRepository,
    NotedNeed,
    membership_from_record,
    record_of_membership,
)
from cohorts.service.checks import checked_crn
from cohorts.service.nominals import assessment_of
from cohorts.service.policies import policy_for
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.clock import london_today
from pathways_shared.consumer import RetryLater
from pathways_shared.events import Addressing
from pathways_shared.outbox import publish
from pathways_shared.problems import Conflict, NotFound, ValidationProblem
from pathways_shared.vocabulary import (
    AREAS,
    Cohort,
    DeselectionReason,
)

# --- members --------------------------------------------------------------------------------


def _publish(session: AsyncSession, events: Iterable[MemberEvent], crn: str, base_url: str,
             now: datetime) -> None:
    """Publish events about the member `crn`; the detail is their membership in the area."""
    for event in events:
        publish(session, event, Addressing(
            crn=crn, detail_url=f"{base_url}/cohorts/{event.area}/members/{crn}", occurred_at=now
        ))


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
        record = record_of_membership(current if same_spell else None, member)
        CohortsRepository(session).add(record)
        saved.append(record)
        # the ended spell must be written before the new active one (one active per area)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict(f"{member.crn} is already a member in {member.area}") from exc
    return saved


async def _record_panel_decision(
    session: AsyncSession,
    principal: Principal,
    decision: Decision,
    current: MembershipRecord | None,
    *,
    resource: str,
    purpose: str,
    base_url: str,
    now: datetime,
) -> list[MembershipRecord]:
    """Save the spells a panel decision writes, add its events to the outbox and log the
    alteration, all in the caller's transaction."""
    saved = await _save(session, decision, current)
    _publish(session, decision.events, decision.crn, base_url, now)
    record_access(
        session,
        actor=principal,
        action=Action.ALTERATION,
        resource=resource,
        crn=decision.memberships[-1].crn,
        purpose=purpose,
    )
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
    nominal = await CohortsRepository(session).get_nominal(crn)
    if nominal is None or not principal.may_see_area(nominal.area):
        # A nominal of an area the caller cannot see is answered as absent: neither its
        # existence nor its area is disclosed.
        raise ValidationProblem(
            f"no nominal {crn}: record it first (PUT /nominals/{crn})", field="crn"
        )
    if nominal.area != area:
        raise ValidationProblem(
            f"{crn} is recorded in area {nominal.area}, not {area}", field="crn"
        )
    current = await CohortsRepository(session).active_membership(crn, area, for_update=True)
    policy, _ = await policy_for(session, area)
    assessment = await assessment_of(session, nominal, london_today(now), policy)
    decision = adopt(
        membership_from_record(current) if current else None,
        crn=crn,
        area=area,
        cohort=cohort,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    (saved,) = await _record_panel_decision(
        session,
        principal,
        decision,
        None,
        resource=f"/cohorts/{area}/members/{crn}",
        purpose=f"IOM panel adoption into {cohort.value}",
        base_url=base_url,
        now=now,
    )
    return saved


async def _current_member(
    session: AsyncSession, principal: Principal, area: str, crn: str
) -> MembershipRecord:
    _area_for_panel(principal, area)
    checked_crn(crn)
    current = await CohortsRepository(session).active_membership(crn, area, for_update=True)
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
        membership_from_record(current), reason=reason, decided_by=decided_by, now=now, comments=comments
    )
    (saved,) = await _record_panel_decision(
        session,
        principal,
        decision,
        current,
        resource=f"/cohorts/{area}/members/{crn}/deselect",
        purpose=f"IOM panel deselection ({reason.value})",
        base_url=base_url,
        now=now,
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
    nominal = await CohortsRepository(session).get_nominal(crn)
    assert nominal is not None
    policy, _ = await policy_for(session, area)
    assessment = await assessment_of(session, nominal, london_today(now), policy)
    decision = move(
        membership_from_record(current),
        to=cohort,
        decided_by=decided_by,
        rationale=rationale,
        now=now,
        policy=policy,
        assessment=assessment,
    )
    _ended, started = await _record_panel_decision(
        session,
        principal,
        decision,
        current,
        resource=f"/cohorts/{area}/members/{crn}/move",
        purpose=f"IOM panel move to {cohort.value}",
        base_url=base_url,
        now=now,
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
    rows = await CohortsRepository(session).list_members(
        area,
        cohort=cohort.value if cohort else None,
        status=status,
        limit=limit,
        after=after,
    )
    await CohortsRepository(session).log_access_many(
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
    records = await CohortsRepository(session).active_members_in(area)
    last = await CohortsRepository(session).last_offence_dates([r.crn for r in records], today)
    by_key = {(r.crn, r.cohort): r for r in records}
    chosen = deselection_suggestions(
        [(membership_from_record(r), last.get(r.crn)) for r in records], today, policy
    )
    await CohortsRepository(session).log_access_many(
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
    due = await CohortsRepository(session).members_due_for_review(now, limit)
    if not due:
        return 0
    published = 0
    today = london_today(now)
    last = await CohortsRepository(session).last_offence_dates(sorted({r.crn for r in due}), today)
    policies: dict[str, SelectionPolicy] = {}
    for record in due:
        if record.area not in policies:
            policies[record.area], _ = await policy_for(session, record.area)
        decision = review_if_due(
            membership_from_record(record),
            last_offence_date=last.get(record.crn),
            now=now,
            today=today,
            policy=policies[record.area],
        )
        if decision is None:
            continue
        record.review_due_at = decision.membership.review_due_at
        CohortsRepository(session).add(record)
        _publish(session, [decision.event], record.crn, base_url, now)
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
    member. Answers how many pathway-activity events were written.

    On PostgreSQL an event that names the person and the pathway stores the need and counts
    the person's active memberships in one statement (`note_need`), and reads the memberships
    only when there are some: most people are not IOM members. Otherwise, the steps one by
    one (a test holds the two equal)."""
    repository = CohortsRepository(session)
    if crn is not None and pathway is not None and repository.can_note_need_in_one(need_id):
        noted = await repository.note_need(
            need_id=need_id, referral_id=referral_id or "", crn=crn, pathway=pathway,
            status=status, programme=programme, now=now,
        )
        if not noted.active_memberships:
            return 0
        return _tell_members(
            session, await repository.active_memberships_of(noted.crn), noted, base_url, now
        )
    need = await CohortsRepository(session).get_need(need_id)
    if need is None:
        if crn is None or pathway is None:
            members = await CohortsRepository(session).active_memberships_of(crn) if crn else []
            if members:
                # The submitted event that names the pathway has not been seen yet: retry.
                raise RetryLater(f"need {need_id} of a member is not known yet")
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
    CohortsRepository(session).add(need)
    return _tell_members(
        session, await CohortsRepository(session).active_memberships_of(need.crn), need, base_url, now
    )


def _tell_members(
    session: AsyncSession,
    members: list[MembershipRecord],
    need: ReferralNeedRecord | NotedNeed,
    base_url: str,
    now: datetime,
) -> int:
    """A pathway-activity event for each current membership; how many were written."""
    published = 0
    for record in members:
        event = pathway_activity(
            membership_from_record(record), pathway=need.pathway, status=need.status, programme=need.programme
        )
        if event is not None:
            _publish(session, [event], record.crn, base_url, now)
            published += 1
    return published


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
