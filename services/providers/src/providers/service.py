"""Use cases of the providers service: load, decide (domain), save and write the outbox,
all in the caller's one transaction. Services never commit."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.config import ServiceSettings
from pathways_shared.db import defer_insert
from pathways_shared.erasure import subject_access_records
from pathways_shared.event_payloads import SubmittedNeed
from pathways_shared.events import Addressing
from pathways_shared.outbox import publish
from pathways_shared.problems import NotFound
from pathways_shared.vocabulary import (
    Complexity,
    Pathway,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)
from providers.domain.catalogue import Catalogue, Service
from providers.domain.provider_referral import (
    NeedEvent,
    NeedToRoute,
    ProviderReferral,
    ProviderReferralStatus,
    apply_decision,
    declined_services,
    requires_duty_to_refer,
)
from providers.domain.routing import EligibilityQuery, RoutingDecision, route
from providers.domain.working_days import WorkingCalendar
from providers.models import (
    IomMemberRow,
    NeedRow,
    ProviderReferralRow,
    ProviderRow,
    RoutingDecisionRow,
    ServiceRow,
)
from providers.repository import (
    CatalogueRepository,
    IomMembershipRepository,
    NeedRepository,
    ProviderReferralRepository,
    copy_to_row,
    new_referral_row,
    new_referral_values,
    referral_from_row,
    row_values,
    service_from_row,
    service_row,
)

SYSTEM_ACTOR = "system:providers"


@dataclass(frozen=True)
class Context:
    """What every use case needs besides the session: the time, the calendar, our URL."""

    now: datetime
    calendar: WorkingCalendar
    base_url: str


def _publish(session: AsyncSession, event: NeedEvent, crn: str, ctx: Context) -> None:
    """Publish `event` about `crn`; its detail is the provider referral, or the need's routing."""
    provider_referral_id = getattr(event, "provider_referral_id", None)
    detail_url = (
        f"{ctx.base_url}/provider-referrals/{provider_referral_id}"
        if provider_referral_id
        else f"{ctx.base_url}/needs/{event.need_id}/routing"
    )
    publish(session, event, Addressing(crn=crn, detail_url=detail_url, occurred_at=ctx.now))


# ---- the catalogue -------------------------------------------------------------------------


async def list_providers(session: AsyncSession) -> list[tuple[ProviderRow, list[str]]]:
    repo = CatalogueRepository(session)
    services = await repo.services()
    return [
        (p, [s.code for s in services if s.provider_code == p.code]) for p in await repo.providers()
    ]


async def get_provider(session: AsyncSession, code: str) -> tuple[ProviderRow, list[str]]:
    repo = CatalogueRepository(session)
    provider = await repo.provider(code)
    if provider is None:
        raise NotFound(f"no provider {code}")
    return provider, [s.code for s in await repo.services(provider_code=code)]


async def list_services(
    session: AsyncSession,
    *,
    pathway: str | None,
    area: str | None,
    after_code: str | None,
    limit: int,
) -> list[Service]:
    """Services in code order; `area` keeps those covering it (regions expanded)."""
    rows = await CatalogueRepository(session).services(pathway=pathway, after_code=after_code)
    services = [service_from_row(r) for r in rows]
    if area is not None:
        services = [s for s in services if s.covers(area)]
    return services[: limit + 1]


async def get_service(session: AsyncSession, code: str) -> Service:
    row = await CatalogueRepository(session).service(code)
    if row is None:
        raise NotFound(f"no service {code}")
    return service_from_row(row)


async def put_service(
    session: AsyncSession, service: Service, *, principal: Principal, now: datetime
) -> bool:
    """Create or replace a service; True when it was created."""
    repo = CatalogueRepository(session)
    existing = await repo.service(service.code, for_update=True)
    data = service.model_dump(mode="json")
    if existing is None:
        repo.add(ServiceRow(**data, updated_at=now))
        return True
    for name, value in data.items():
        setattr(existing, name, value)
    existing.updated_at = now
    repo.add(existing)
    return False


async def load_catalogue(session: AsyncSession) -> list[Service]:
    return [service_from_row(r) for r in await CatalogueRepository(session).services()]


# The catalogue as last loaded, by its fingerprint (PostgreSQL): routing reads the fingerprint
# with its other reads and loads the services only when it changed (`PUT /services/{code}`).
_CATALOGUES: dict[str, list[Service]] = {}


async def cached_catalogue(session: AsyncSession, fingerprint: str | None) -> list[Service]:
    """`load_catalogue` for the catalogue whose stored rows have `fingerprint`, loaded once
    per content (None, on SQLite: loaded). Loaded rows are kept under the fingerprint read
    with them in the same statement, so a concurrent change is never kept under an older one."""
    if fingerprint is not None and (services := _CATALOGUES.get(fingerprint)) is not None:
        return services
    rows, loaded = await CatalogueRepository(session).services_and_fingerprint()
    services = [service_from_row(r) for r in rows]
    if loaded is not None:
        _CATALOGUES.clear()  # only the latest catalogue is kept
        _CATALOGUES[loaded] = services
    return services


async def seed_catalogue(session: AsyncSession, catalogue: Catalogue, now: datetime) -> int:
    """Insert the seed providers and services that are missing; never overwrite edits."""
    repo = CatalogueRepository(session)
    added = 0
    for provider in catalogue.providers:
        if await repo.provider(provider.code) is None:
            repo.add(ProviderRow(code=provider.code, name=provider.name))
    await session.flush()
    for service in catalogue.services:
        if await repo.service(service.code) is None:
            repo.add(service_row(service, now))
            added += 1
    return added


# ---- eligibility (no side effects) and routing decisions -----------------------------------


async def check_eligibility(session: AsyncSession, query: EligibilityQuery) -> RoutingDecision:
    return route(await load_catalogue(session), query)


async def routing_decisions(
    session: AsyncSession, principal: Principal, need_id: uuid.UUID
) -> Sequence[RoutingDecisionRow]:
    """Every routing of a need, oldest first: why each service was or was not chosen."""
    need = await NeedRepository(session).get(need_id)
    if need is None:
        raise NotFound("no such need")
    principal.require_area(need.area)
    record_access(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        resource=f"need/{need_id}/routing",
        crn=need.crn,
        purpose="read the routing decisions of a need",
    )
    return await NeedRepository(session).decisions(need_id)


# ---- routing needs -------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmittedReferral:
    referral_id: uuid.UUID
    crn: str
    area: str
    sex: Sex
    age: int
    supervision_status: SupervisionStatus
    needs: tuple[SubmittedNeed, ...]
    submitted_at: datetime


def _query_for(need: NeedRow) -> EligibilityQuery:
    return EligibilityQuery(
        area=need.area,
        pathway=Pathway(need.pathway),
        complexity=Complexity(need.complexity),
        sex=Sex(need.sex),
        age=need.age,
        supervision_status=SupervisionStatus(need.supervision_status),
        flags=frozenset(need.flags),
        iom_member=need.iom_member,
    )


def _to_route(need: NeedRow) -> NeedToRoute:
    return NeedToRoute(
        referral_id=need.referral_id,
        need_id=need.id,
        crn=need.crn,
        area=need.area,
        pathway=Pathway(need.pathway),
        complexity=Complexity(need.complexity),
        flags=tuple(need.flags),
        consent_given=True,  # the referrals service refuses a referral without consent
    )


async def _route_need(
    session: AsyncSession,
    need: NeedRow,
    services: Sequence[Service],
    *,
    declined: frozenset[str],
    trigger: str,
    ctx: Context,
    new: bool = False,
) -> ProviderReferral | None:
    """Route one need, record the decision, create the provider referral, write the event.

    `new`: the need is not stored yet (a submission): it, its decision and its provider
    referral are inserted at commit, one multi-row INSERT per table (`defer_insert`), with
    no ORM object to flush; otherwise (a decline) the loaded need is updated through the ORM.
    """
    decision = route(services, _query_for(need), declined_by=declined)
    provider_referral_id = uuid.uuid4()
    referral, event = apply_decision(
        _to_route(need),
        decision,
        provider_referral_id=provider_referral_id,
        now=ctx.now,
        calendar=ctx.calendar,
    )
    decision_row = {
        "id": uuid.uuid4(),
        "need_id": need.id,
        "crn": need.crn,
        "decided_at": ctx.now,
        "trigger": trigger,
        "chosen_service_code": decision.chosen.code if decision.chosen else None,
        "provider_referral_id": referral.id if referral else None,
        "unallocated_reason": decision.unallocated_reason,
        "iom_member": need.iom_member,
        "assessments": [dataclasses.asdict(a) for a in decision.assessments],
    }
    if referral is not None:
        need.status = "allocated"
        need.status_reason = None
        need.current_provider_referral_id = referral.id
    else:
        need.status = "unallocated"
        need.status_reason = decision.unallocated_reason
        need.current_provider_referral_id = None
    need.updated_at = ctx.now
    if new:
        defer_insert(session, NeedRow.__table__, row_values(need))  # type: ignore[attr-defined]
        defer_insert(session, RoutingDecisionRow.__table__, decision_row)  # type: ignore[attr-defined]
        if referral is not None:
            defer_insert(session, ProviderReferralRow.__table__,  # type: ignore[attr-defined]
                         new_referral_values(referral, ctx.now))
    else:
        NeedRepository(session).add(RoutingDecisionRow(**decision_row))
        if referral is not None:
            ProviderReferralRepository(session).add(new_referral_row(referral, ctx.now))
        session.add(need)
    _publish(session, event, need.crn, ctx)
    return referral


async def route_submitted_referral(
    session: AsyncSession, submitted: SubmittedReferral, ctx: Context
) -> int:
    """Route every need of a submitted referral not seen before; returns how many."""
    needs = NeedRepository(session)
    await needs.lock_referral(submitted.referral_id)
    reads = await needs.routing_reads(submitted.crn, [item.need_id for item in submitted.needs])
    iom_member = reads.iom_member
    services = await cached_catalogue(session, reads.catalogue)
    routed = 0
    seen = set(reads.known)
    for item in submitted.needs:
        if item.need_id in seen:
            continue
        seen.add(item.need_id)
        withdrawn = item.need_id in reads.withdrawn
        need = NeedRow(
            id=item.need_id,
            referral_id=submitted.referral_id,
            crn=submitted.crn,
            area=submitted.area,
            pathway=str(item.pathway),
            complexity=str(item.complexity),
            flags=list(item.flags),
            sex=str(submitted.sex),
            age=submitted.age,
            supervision_status=str(submitted.supervision_status),
            iom_member=iom_member,
            duty_to_refer=requires_duty_to_refer(item.pathway, item.flags, True),
            status="withdrawn" if withdrawn else "submitted",
            submitted_at=submitted.submitted_at,
            updated_at=ctx.now,
        )
        record_access(
            session,
            actor=SYSTEM_ACTOR,
            action=Action.COLLECTION,
            resource=f"need/{item.need_id}",
            crn=submitted.crn,
            purpose="route a submitted need to a commissioned service",
        )
        if withdrawn:  # withdrawn before it reached us: stored, nothing to route
            defer_insert(session, NeedRow.__table__, row_values(need))  # type: ignore[attr-defined]
            continue
        await _route_need(
            session, need, services, declined=frozenset(), trigger="submitted", ctx=ctx,
            new=True,
        )
        routed += 1
    return routed


async def withdraw_needs(
    session: AsyncSession,
    *,
    referral_id: uuid.UUID,
    need_ids: Sequence[uuid.UUID],
    reason_code: str,
    ctx: Context,
) -> int:
    """Close the open provider referrals of withdrawn needs; their clocks stop."""
    known = {str(r) for r in WithdrawalReason}
    reason = reason_code if reason_code in known else str(WithdrawalReason.OTHER)
    needs = NeedRepository(session)
    await needs.lock_referral(referral_id)
    locked = {need_id: await needs.get(need_id, for_update=True) for need_id in sorted(need_ids)}
    closed = 0
    for row in await ProviderReferralRepository(session).of_needs(need_ids, for_update=True):
        referral = referral_from_row(row)
        if referral.ended:
            continue
        withdrawn, event = referral.withdraw(ctx.now, reason)
        copy_to_row(withdrawn, row, ctx.now)
        session.add(row)
        _publish(session, event, referral.crn, ctx)
        closed += 1
    for need_id, need in locked.items():
        if need is None:
            await needs.remember_withdrawn(need_id, referral_id, reason, ctx.now)
            continue
        if need.status != "withdrawn":
            need.status = "withdrawn"
            need.status_reason = reason
            need.updated_at = ctx.now
            session.add(need)
    return closed


# ---- the provider's inbox and actions ------------------------------------------------------


async def _own_referral(
    session: AsyncSession,
    principal: Principal,
    provider_referral_id: uuid.UUID,
    *,
    for_update: bool,
) -> ProviderReferralRow:
    """The provider referral when it belongs to the caller's provider (and, for an
    area-limited token, to one of its areas); 404 otherwise."""
    row = await ProviderReferralRepository(session).get(provider_referral_id, for_update=for_update)
    if (row is None or row.provider_code != principal.provider
            or not principal.may_see_area(row.area)):
        raise NotFound("no such provider referral")
    return row


async def inbox(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[ProviderReferralRow]:
    assert principal.provider is not None
    rows = await ProviderReferralRepository(session).inbox(
        principal.provider, status=status, limit=limit, after=after, areas=principal.areas
    )
    for row in rows[:limit]:
        record_access(
            session,
            actor=principal,
            action=Action.CONSULTATION,
            resource=f"provider-referral/{row.id}",
            crn=row.crn,
            purpose="provider inbox",
        )
    return rows


async def get_referral(
    session: AsyncSession, principal: Principal, provider_referral_id: uuid.UUID
) -> ProviderReferralRow:
    row = await _own_referral(session, principal, provider_referral_id, for_update=False)
    record_access(
        session,
        actor=principal,
        action=Action.CONSULTATION,
        resource=f"provider-referral/{row.id}",
        crn=row.crn,
        purpose="provider reads a referral allocated to it",
    )
    return row


async def act(
    session: AsyncSession,
    principal: Principal,
    provider_referral_id: uuid.UUID,
    action: str,
    ctx: Context,
    **arguments: Any,
) -> ProviderReferralRow:
    """Apply one provider action; a decline routes the need again in the same transaction.

    Locks are taken need first, then provider referral, as withdrawal does, so a decline
    racing a withdrawal neither deadlocks nor leaves a re-routed referral open.
    """
    found = await _own_referral(session, principal, provider_referral_id, for_update=False)
    await NeedRepository(session).get(found.need_id, for_update=True)
    row = await _own_referral(session, principal, provider_referral_id, for_update=True)
    referral = referral_from_row(row)
    method = getattr(referral, action)
    updated, event = method(ctx.now, **arguments)
    copy_to_row(updated, row, ctx.now)
    session.add(row)
    _publish(session, event, referral.crn, ctx)
    record_access(
        session,
        actor=principal,
        action=Action.ALTERATION,
        resource=f"provider-referral/{row.id}",
        crn=row.crn,
        purpose=f"provider {action}s the referral",
    )
    if updated.status == ProviderReferralStatus.DECLINED:
        await _reroute_after_decline(session, row, ctx)
    return row


async def _reroute_after_decline(
    session: AsyncSession, declined_row: ProviderReferralRow, ctx: Context
) -> None:
    need = await NeedRepository(session).get(declined_row.need_id, for_update=True)
    if need is None or need.status == "withdrawn":
        return
    await session.flush()
    history = [
        referral_from_row(r) for r in await ProviderReferralRepository(session).of_need(need.id)
    ]
    await _route_need(
        session,
        need,
        await load_catalogue(session),
        declined=declined_services(history),
        trigger="declined",
        ctx=ctx,
    )


# ---- service levels ------------------------------------------------------------------------


async def report_missed_deadlines(
    session: AsyncSession, ctx: Context, *, batch: int = 100
) -> tuple[int, int]:
    """Publish `deadline-missed` once per missed deadline: (events published, rows seen)."""
    rows = await ProviderReferralRepository(session).with_deadlines_due(ctx.now, batch)
    published = 0
    for row in rows:
        referral = referral_from_row(row)
        reported = []
        if row.acknowledge_missed_at is not None:
            reported.append("acknowledge")
        if row.respond_missed_at is not None:
            reported.append("respond")
        for event in referral.missed_deadlines(ctx.now, reported):
            if event.deadline == "acknowledge":
                row.acknowledge_missed_at = ctx.now
            else:
                row.respond_missed_at = ctx.now
            _publish(session, event, referral.crn, ctx)
            published += 1
        session.add(row)
    return published, len(rows)


# ---- IOM membership projection -------------------------------------------------------------


async def record_membership(
    session: AsyncSession,
    *,
    crn: str,
    area: str,
    cohort: str | None,
    member: bool,
    occurred_at: datetime,
) -> None:
    """Apply a selected/deselected event; an older event never overrides a newer one."""
    repo = IomMembershipRepository(session)
    row = await repo.get(crn, area)
    if row is None:
        repo.add(
            IomMemberRow(crn=crn, area=area, cohort=cohort, member=member, changed_at=occurred_at)
        )
        return
    if occurred_at < row.changed_at:
        return
    row.member = member
    row.cohort = cohort if member else row.cohort
    row.changed_at = occurred_at
    repo.add(row)


# ---- subject access ------------------------------------------------------------------------


async def subject_access(
    session: AsyncSession, principal: Principal, crn: str, settings: ServiceSettings
) -> dict[str, Any]:
    needs = await NeedRepository(session).for_crn(crn)
    decisions = await NeedRepository(session).decisions_for_crn(crn)
    referrals = await ProviderReferralRepository(session).for_crn(crn)
    memberships = await IomMembershipRepository(session).for_crn(crn)
    log, erasures = await subject_access_records(session, principal, crn, settings)
    return {
        "crn": crn,
        "needs": [n.model_dump(mode="json") for n in needs],
        "routing_decisions": [d.model_dump(mode="json") for d in decisions],
        "provider_referrals": [r.model_dump(mode="json") for r in referrals],
        "iom_membership": [m.model_dump(mode="json") for m in memberships],
        "access_log": [entry.model_dump(mode="json") for entry in log],
        # What was erased once its retention period ended, and when (pathways_shared.erasure).
        "erasures": [e.model_dump(mode="json") for e in erasures],
    }
