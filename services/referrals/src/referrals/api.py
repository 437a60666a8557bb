"""Routes: parse, authorise, call the service, shape the response."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from pathways_shared.access import PURPOSE_HEADER, PURPOSE_MAX_LENGTH, Purpose
from pathways_shared.auth import HONOURS_ON_BEHALF_OF, Principal, require_roles
from pathways_shared.db import SessionDep, transaction
from pathways_shared.events import utc_now
from pathways_shared.inputs import CrnQuery
from pathways_shared.pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from pathways_shared.runtime import media_type
from pathways_shared.vocabulary import PATHWAY_NAMES, Pathway, Role
from referrals import service
from referrals.domain.referral import ReferralStatus
from referrals.repository import ReferralFilter
from referrals.schemas import (
    AccessLogPublic,
    HistoryEntryPublic,
    HistoryPublic,
    PathwayPublic,
    PathwaysPublic,
    ReferralCreate,
    ReferralPublic,
    ReferralsPublic,
    SubjectAccessPublic,
    SubjectAccessReferral,
    WithdrawalCreate,
    problem_responses,
)

router = APIRouter(tags=["referrals"], responses=problem_responses(401, 403, 422))

Submitter = Annotated[Principal, Depends(require_roles(Role.PROBATION))]
Reader = Annotated[Principal, Depends(require_roles(Role.PROBATION, Role.SERVICE))]
Authenticated = Annotated[Principal, Depends(require_roles(*Role))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
SubjectAccessAdmin = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, national="a subject access request"))
]
# Text filters reach PostgreSQL, which refuses a NUL character: a 422 here, not a 500.
NO_NUL = r"^[^\x00]*$"
IDEMPOTENCY_KEY_MAX_LENGTH = 200
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH),
]


def _base_url(request: Request) -> str:
    return request.app.state.settings.base_url


@router.post(
    "/referrals",
    response_model=ReferralPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ReferralPublic, "description": "The same referral, already made"}},
)
async def submit_referral(
    body: ReferralCreate,
    request: Request,
    session: SessionDep,
    principal: Submitter,
    idempotency_key: IdempotencyKey = None,
    purpose: Purpose = None,
) -> Response:
    submitted = await service.submit(
        session,
        principal,
        body,
        idempotency_key=idempotency_key,
        now=utc_now(),
        base_url=_base_url(request),
        purpose=purpose or SUBMIT_PURPOSE,
    )
    return _submitted_response(submitted)


SUBMIT_PURPOSE = "referral submitted by probation"


async def submit_referral_fast(request: Request, body: bytes) -> Response | None:
    """`submit_referral` for the usual request, without FastAPI's dependency solving and
    request validation (a third of the route's CPU, bench/README.md): a probation token, a
    JSON body that `ReferralCreate` takes, at most one of each optional header, within its
    limits. Anything else is declined (None) and goes the ordinary way, which answers it
    (422, 403, ...) as the contract says. A test holds the two ways' answers and rows equal
    (tests/api/test_referrals_fast_path.py). The token was verified before the body was read
    (`pathways_shared.runtime`)."""
    headers = request.headers
    principal: Principal | None = getattr(request.state, "principal", None)
    if (
        principal is None
        or not principal.has(Role.PROBATION)
        or media_type(headers) != "application/json"
    ):
        return None
    optional = {}
    for name, most in (("idempotency-key", IDEMPOTENCY_KEY_MAX_LENGTH),
                       (PURPOSE_HEADER.lower(), PURPOSE_MAX_LENGTH)):
        values = headers.getlist(name)
        if len(values) > 1 or (values and not 1 <= len(values[0]) <= most):
            return None
        optional[name] = values[0] if values else None
    try:
        referral = ReferralCreate.model_validate_json(body)
    except ValueError:
        return None
    async with transaction(request.app.state.sessionmaker) as session:
        submitted = await service.submit(
            session,
            principal,
            referral,
            idempotency_key=optional["idempotency-key"],
            now=utc_now(),
            base_url=_base_url(request),
            purpose=optional[PURPOSE_HEADER.lower()] or SUBMIT_PURPOSE,
        )
    return _submitted_response(submitted)


def _submitted_response(submitted: service.Submitted) -> Response:
    # The model is built from the domain's values (`ReferralPublic.of`) and written as JSON
    # here, as the response model would write it, without FastAPI validating it again.
    return Response(
        ReferralPublic.of(submitted.referral).model_dump_json(by_alias=True),
        status_code=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        headers={"Location": f"/referrals/{submitted.referral.id}"},
        media_type="application/json",
    )


@router.get("/referrals", response_model=ReferralsPublic, dependencies=HONOURS_ON_BEHALF_OF)
async def list_referrals(
    session: SessionDep,
    principal: Reader,
    crn: Annotated[str | None, Query(max_length=20, pattern=NO_NUL)] = None,
    area: Annotated[str | None, Query(max_length=20, pattern=NO_NUL)] = None,
    status_: Annotated[ReferralStatus | None, Query(alias="status")] = None,
    pathway: Pathway | None = None,
    provider_code: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
    purpose: Purpose = None,
) -> Response:
    documents, next_cursor = await service.list_referrals(
        session,
        principal,
        ReferralFilter(
            crn=crn,
            area=area,
            status=status_.value if status_ else None,
            pathway=pathway.value if pathway else None,
            provider_code=provider_code,
        ),
        limit=limit,
        cursor=cursor,
        purpose=purpose or "referral search",
    )
    # Built as JSON straight from the rows (see `referral_document`), so not validated again.
    return Response(
        orjson.dumps({"data": documents, "next_cursor": next_cursor}),
        media_type="application/json",
    )


@router.get(
    "/referrals/{referral_id}", response_model=ReferralPublic, responses=problem_responses(404),
    dependencies=HONOURS_ON_BEHALF_OF,
)
async def get_referral(
    referral_id: UUID, session: SessionDep, principal: Reader, purpose: Purpose = None
) -> ReferralPublic:
    referral = await service.get(
        session, principal, referral_id, purpose=purpose or "referral read"
    )
    return ReferralPublic.of(referral)


@router.get(
    "/referrals/{referral_id}/history",
    response_model=HistoryPublic,
    responses=problem_responses(404),
    dependencies=HONOURS_ON_BEHALF_OF,
    operation_id="getReferralHistory",
)
async def referral_history(
    referral_id: UUID,
    session: SessionDep,
    principal: Reader,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
    purpose: Purpose = None,
) -> HistoryPublic:
    entries, next_cursor = await service.history(
        session,
        principal,
        referral_id,
        limit=limit,
        cursor=cursor,
        purpose=purpose or "referral history read",
    )
    return HistoryPublic(data=[HistoryEntryPublic.of(e) for e in entries], next_cursor=next_cursor)


@router.post(
    "/referrals/{referral_id}/withdraw",
    response_model=ReferralPublic,
    responses=problem_responses(404, 409),
)
async def withdraw_referral(
    referral_id: UUID,
    body: WithdrawalCreate,
    request: Request,
    session: SessionDep,
    principal: Submitter,
    purpose: Purpose = None,
) -> ReferralPublic:
    referral = await service.withdraw(
        session,
        principal,
        referral_id,
        body,
        now=utc_now(),
        base_url=_base_url(request),
        purpose=purpose or "referral withdrawn by probation",
    )
    return ReferralPublic.of(referral)


@router.get("/pathways", response_model=PathwaysPublic, operation_id="listPathways")
async def pathways(principal: Authenticated) -> PathwaysPublic:
    return PathwaysPublic(data=[PathwayPublic(code=p, name=PATHWAY_NAMES[p]) for p in Pathway])


@router.get("/subject-access-requests", response_model=SubjectAccessPublic)
async def subject_access_request(
    request: Request,
    session: SessionDep,
    principal: SubjectAccessAdmin,
    crn: CrnQuery,
    purpose: Purpose = None,
) -> SubjectAccessPublic:
    found = await service.subject_access(
        session, principal, crn, purpose=purpose or "subject access request",
        settings=request.app.state.settings,
    )
    return SubjectAccessPublic(
        crn=found.crn,
        generated_at=utc_now(),
        referrals=[
            SubjectAccessReferral(
                referral=ReferralPublic.of(referral),
                history=[HistoryEntryPublic.of(e) for e in entries],
            )
            for referral, entries in found.referrals
        ],
        access_log=[AccessLogPublic.of(row) for row in found.access_log],
        erasures=found.erasures,
    )
