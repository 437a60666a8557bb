"""Routes of the providers service: parse, authorise, call the service, shape the answer."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from pathways_shared.auth import Principal, require_roles
from pathways_shared.clock import age_on, london_day
from pathways_shared.db import SessionDep
from pathways_shared.events import utc_now
from pathways_shared.inputs import AreaQuery, CrnQuery
from pathways_shared.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    decode_cursor,
    encode_cursor,
)
from pathways_shared.problems import Forbidden, ValidationProblem
from pathways_shared.vocabulary import AREAS, CRN_PATTERN, Pathway, Role
from providers import service
from providers.domain.catalogue import SERVICE_CODE_PATTERN, Service
from providers.domain.provider_referral import ProviderReferralStatus
from providers.domain.routing import EligibilityQuery
from providers.repository import referral_from_row
from providers.schemas import (
    CompleteRequest,
    DeclineRequest,
    EligibilityRequest,
    EligibilityResponse,
    ProviderPublic,
    ProviderReferralDetail,
    ProviderReferralPublic,
    ProviderReferralsPublic,
    ProvidersPublic,
    RoutingDecisionPublic,
    RoutingDecisionsPublic,
    ServiceEligibility,
    ServicePublic,
    ServicePut,
    ServicesPublic,
    StartRequest,
    SubjectAccessPublic,
    problem_responses,
)

router = APIRouter(responses=problem_responses(401, 403, 422))

AnyRole = Annotated[Principal, Depends(require_roles(*Role))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
SubjectAccessAdmin = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, national="a subject access request"))
]
Asker = Annotated[Principal, Depends(require_roles(Role.PROBATION, Role.ADMIN))]
ProviderUser = Annotated[Principal, Depends(require_roles(Role.PROVIDER))]
RoutingReader = Annotated[
    Principal, Depends(require_roles(Role.PROBATION, Role.ADMIN, Role.SERVICE))
]


def context(request: Request) -> service.Context:
    runtime = request.app.state.runtime
    return service.Context(
        now=utc_now(),
        calendar=runtime.extras["calendar"],
        base_url=request.app.state.settings.base_url,
    )


Ctx = Annotated[service.Context, Depends(context)]
# A provider's or a service's code as the catalogue writes them; a well-formed code not in the
# catalogue is a 404.
ProviderCodePath = Annotated[str, Path(
    min_length=1, max_length=40, pattern=r"^[A-Z][A-Z0-9_]*$", examples=["NACRO"],
    description="A provider, by its code: capital letters, digits and `_`",
)]
ServiceCodePath = Annotated[str, Path(
    min_length=1, max_length=32, pattern=SERVICE_CODE_PATTERN, examples=["NACRO-ACCOM-1"],
    description="A service, by its code: capital letters and digits, in parts joined by `-`",
)]


# ---- catalogue -----------------------------------------------------------------------------


@router.get("/providers", response_model=ProvidersPublic, tags=["catalogue"])
async def list_providers(session: SessionDep, _: AnyRole) -> ProvidersPublic:
    rows = await service.list_providers(session)
    return ProvidersPublic(
        data=[ProviderPublic(code=p.code, name=p.name, services=codes) for p, codes in rows]
    )


@router.get(
    "/providers/{code}",
    response_model=ProviderPublic,
    tags=["catalogue"],
    responses=problem_responses(404),
)
async def get_provider(code: ProviderCodePath, session: SessionDep, _: AnyRole) -> ProviderPublic:
    provider, codes = await service.get_provider(session, code)
    return ProviderPublic(code=provider.code, name=provider.name, services=codes)


@router.get("/services", response_model=ServicesPublic, tags=["catalogue"])
async def list_services(
    session: SessionDep,
    _: AnyRole,
    pathway: Pathway | None = None,
    area: AreaQuery = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> ServicesPublic:
    after = decode_cursor(cursor, size=1)
    services = await service.list_services(
        session,
        pathway=pathway,
        area=area,
        after_code=str(after[0]) if after else None,
        limit=limit,
    )
    page = services[:limit]
    next_cursor = encode_cursor([page[-1].code]) if len(services) > limit else None
    return ServicesPublic(data=[ServicePublic.of(s) for s in page], next_cursor=next_cursor)


@router.get(
    "/services/{code}",
    response_model=ServicePublic,
    tags=["catalogue"],
    responses=problem_responses(404),
)
async def get_service(code: ServiceCodePath, session: SessionDep, _: AnyRole) -> ServicePublic:
    return ServicePublic.of(await service.get_service(session, code))


@router.put(
    "/services/{code}",
    response_model=ServicePublic,
    tags=["catalogue"],
    responses={201: {"model": ServicePublic, "description": "The service, created"}},
    operation_id="upsertService",
)
async def put_service(
    code: ServiceCodePath, body: ServicePut, session: SessionDep, principal: Admin, response: Response
) -> ServicePublic:
    if body.code is not None and body.code != code:
        raise ValidationProblem("must be the code in the path", field="code")
    validated = Service.parse(body.model_dump(mode="json") | {"code": code})
    created = await service.put_service(session, validated, principal=principal, now=utc_now())
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/services/{code}"
    return ServicePublic.of(validated)


# ---- eligibility ---------------------------------------------------------------------------


@router.post(
    "/eligibility",
    response_model=EligibilityResponse,
    tags=["routing"],
    operation_id="checkEligibility",
)
async def eligibility(
    body: EligibilityRequest, session: SessionDep, _: Asker
) -> EligibilityResponse:
    if body.area not in AREAS:
        raise ValidationProblem(f"unknown area {body.area}", field="area")
    today = london_day(utc_now())
    if body.person.date_of_birth > today:
        raise ValidationProblem("must not be in the future", field="person.date_of_birth")
    age = age_on(body.person.date_of_birth, today)
    query = EligibilityQuery(
        area=body.area,
        pathway=body.need.pathway,
        complexity=body.need.complexity,
        sex=body.person.sex,
        age=age,
        supervision_status=body.supervision.status,
        flags=frozenset(str(f) for f in body.need.flags),
        iom_member=body.iom_member,
    )
    decision = await service.check_eligibility(session, query)
    return EligibilityResponse(
        chosen=decision.chosen.code if decision.chosen else None,
        age=age,
        reason=decision.unallocated_reason,
        services=[
            ServiceEligibility(
                code=a.service_code, eligible=a.eligible, reason=a.reason, criterion=a.criterion
            )
            for a in decision.assessments
        ],
    )


@router.get(
    "/needs/{need_id}/routing",
    response_model=RoutingDecisionsPublic,
    tags=["routing"],
    responses=problem_responses(404),
    operation_id="getRoutingOfNeed",
)
async def routing_of_need(
    need_id: uuid.UUID, session: SessionDep, principal: RoutingReader
) -> RoutingDecisionsPublic:
    decisions = await service.routing_decisions(session, principal, need_id)
    return RoutingDecisionsPublic(data=[decision_public(d) for d in decisions])


def decision_public(row: Any) -> RoutingDecisionPublic:
    return RoutingDecisionPublic(
        id=row.id,
        need_id=row.need_id,
        decided_at=row.decided_at,
        trigger=row.trigger,
        chosen_service_code=row.chosen_service_code,
        provider_referral_id=row.provider_referral_id,
        unallocated_reason=row.unallocated_reason,
        iom_member=row.iom_member,
        assessments=[
            ServiceEligibility(
                code=a["service_code"],
                eligible=a["eligible"],
                reason=a.get("reason"),
                criterion=a.get("criterion"),
            )
            for a in row.assessments
        ],
    )


# ---- the provider's inbox and actions ------------------------------------------------------


def require_provider(principal: Principal) -> Principal:
    if not principal.provider:
        raise Forbidden("a provider user needs a provider claim")
    return principal


def referral_public(row: Any) -> ProviderReferralPublic:
    return ProviderReferralPublic.model_validate(row, from_attributes=True)


@router.get(
    "/provider-referrals",
    response_model=ProviderReferralsPublic,
    tags=["inbox"],
    operation_id="listProviderReferrals",
)
async def inbox(
    session: SessionDep,
    principal: ProviderUser,
    status: ProviderReferralStatus | None = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> ProviderReferralsPublic:
    require_provider(principal)
    after = decode_cursor(cursor, size=2)
    key = None
    if after is not None:
        try:
            key = (datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1])))
        except ValueError as exc:
            raise ValidationProblem("cursor is not valid", field="cursor") from exc
    rows = await service.inbox(session, principal, status=status, limit=limit, after=key)
    page = list(rows[:limit])
    next_cursor = (
        encode_cursor([page[-1].allocated_at.isoformat(), str(page[-1].id)])
        if len(rows) > limit
        else None
    )
    return ProviderReferralsPublic(data=[referral_public(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/provider-referrals/{provider_referral_id}",
    response_model=ProviderReferralDetail,
    tags=["inbox"],
    responses=problem_responses(404),
)
async def get_provider_referral(
    provider_referral_id: uuid.UUID, request: Request, session: SessionDep, principal: ProviderUser
) -> ProviderReferralDetail:
    require_provider(principal)
    row = await service.get_referral(session, principal, provider_referral_id)
    base = referral_public(row).model_dump()
    days = request.app.state.settings.person_details_days_after_end
    if not referral_from_row(row).shares_person_details(utc_now(), timedelta(days=days)):
        # Ended longer ago than the provider needs the person: the record without them.
        return ProviderReferralDetail(
            **base,
            details_available=False,
            details_message=(
                f"the person's details are no longer shared: this referral ended more than "
                f"{days} days ago"
            ),
        )
    details = await request.app.state.runtime.extras["referrals_client"].person_details(
        row.referral_id, on_behalf_of=principal.actor
    )
    if details is None:
        return ProviderReferralDetail(
            **base,
            details_available=False,
            details_message="the person's details are temporarily unavailable; try again later",
        )
    return ProviderReferralDetail(
        **base, person=details.person, practitioner=details.practitioner, details_available=True
    )


async def _act(
    session: Any,
    principal: Principal,
    provider_referral_id: uuid.UUID,
    action: str,
    ctx: service.Context,
    **arguments: Any,
) -> ProviderReferralPublic:
    require_provider(principal)
    row = await service.act(session, principal, provider_referral_id, action, ctx, **arguments)
    return referral_public(row)


@router.post(
    "/provider-referrals/{provider_referral_id}/acknowledge",
    response_model=ProviderReferralPublic,
    tags=["inbox"],
    responses=problem_responses(404, 409),
    operation_id="acknowledgeReferral",
)
async def acknowledge(
    provider_referral_id: uuid.UUID, session: SessionDep, principal: ProviderUser, ctx: Ctx
) -> ProviderReferralPublic:
    return await _act(session, principal, provider_referral_id, "acknowledge", ctx)


@router.post(
    "/provider-referrals/{provider_referral_id}/accept",
    response_model=ProviderReferralPublic,
    tags=["inbox"],
    responses=problem_responses(404, 409),
    operation_id="acceptReferral",
)
async def accept(
    provider_referral_id: uuid.UUID, session: SessionDep, principal: ProviderUser, ctx: Ctx
) -> ProviderReferralPublic:
    return await _act(session, principal, provider_referral_id, "accept", ctx)


@router.post(
    "/provider-referrals/{provider_referral_id}/decline",
    response_model=ProviderReferralPublic,
    tags=["inbox"],
    responses=problem_responses(404, 409),
    operation_id="declineReferral",
)
async def decline(
    provider_referral_id: uuid.UUID,
    body: DeclineRequest,
    session: SessionDep,
    principal: ProviderUser,
    ctx: Ctx,
) -> ProviderReferralPublic:
    return await _act(
        session,
        principal,
        provider_referral_id,
        "decline",
        ctx,
        reason_code=body.reason_code,
        comments=body.comments,
    )


@router.post(
    "/provider-referrals/{provider_referral_id}/start",
    response_model=ProviderReferralPublic,
    tags=["inbox"],
    responses=problem_responses(404, 409),
    operation_id="startReferral",
)
async def start(
    provider_referral_id: uuid.UUID,
    session: SessionDep,
    principal: ProviderUser,
    ctx: Ctx,
    body: StartRequest | None = None,
) -> ProviderReferralPublic:
    started_at = body.started_at if body is not None else None
    return await _act(session, principal, provider_referral_id, "start", ctx, started_at=started_at)


@router.post(
    "/provider-referrals/{provider_referral_id}/complete",
    response_model=ProviderReferralPublic,
    tags=["inbox"],
    responses=problem_responses(404, 409),
    operation_id="completeReferral",
)
async def complete(
    provider_referral_id: uuid.UUID,
    body: CompleteRequest,
    session: SessionDep,
    principal: ProviderUser,
    ctx: Ctx,
) -> ProviderReferralPublic:
    return await _act(
        session,
        principal,
        provider_referral_id,
        "complete",
        ctx,
        outcome=body.outcome,
        notes=body.notes,
    )


# ---- data protection -----------------------------------------------------------------------


@router.get(
    "/subject-access-requests", tags=["data protection"], response_model=SubjectAccessPublic
)
async def subject_access_request(
    request: Request, session: SessionDep, principal: SubjectAccessAdmin,
    crn: CrnQuery,
) -> dict[str, Any]:
    if not CRN_PATTERN.fullmatch(crn):
        raise ValidationProblem("must be a letter and six digits, e.g. X123456", field="crn")
    return await service.subject_access(session, principal, crn, request.app.state.settings)
