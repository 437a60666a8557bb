"""Routes: parse, authorise, call the service, shape the response (JSON, or CSV when asked
with `Accept: text/csv` or `format=csv`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from insights import service
from insights.domain.figures import DEFINITIONS, FigureKind
from insights.schemas import FiguresAnswer, SubjectAccessPublic, problem_responses
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal, require_roles
from pathways_shared.db import SessionDep
from pathways_shared.events import utc_now
from pathways_shared.inputs import CrnQuery, InputDate
from pathways_shared.vocabulary import Role
from pathways_shared.working_days import london_day

router = APIRouter(tags=["figures"], responses=problem_responses(401, 403, 422))

Analyst = Annotated[Principal, Depends(require_roles(Role.PARTNERSHIP, Role.ADMIN))]
NO_NUL = r"^[^\x00]*$"
AreaParam = Annotated[
    list[Annotated[str, Query(max_length=40, pattern=NO_NUL)]] | None,
    Query(description="GSS code (repeatable) or `west-midlands`; default: every area you may see"),
]
FromParam = Annotated[InputDate | None, Query(alias="from", description="first London day (default: 364 days before `to`)")]
ToParam = Annotated[InputDate | None, Query(alias="to", description="last London day, included (default: today)")]
ByParam = Annotated[
    str | None,
    Query(max_length=200, pattern=NO_NUL, description="up to two dimensions, comma-separated"),
]
PathwayParam = Annotated[str | None, Query(max_length=60, pattern=NO_NUL)]
ProviderParam = Annotated[str | None, Query(max_length=60, pattern=NO_NUL)]
FormatParam = Annotated[Literal["json", "csv"] | None, Query(description="`csv` for CSV")]

CSV = "text/csv"
CSV_RESPONSE = {200: {"content": {CSV: {"schema": {"type": "string"}}},
                      "description": "The figures (JSON, or CSV when asked)"}}


async def _answer(
    kind: FigureKind, request: Request, session: SessionDep, principal: Principal,
    area: list[str] | None, start: date | None, end: date | None, by: str | None,
    pathway: str | None, provider: str | None, fmt: str | None,
) -> FiguresAnswer | Response:
    areas = service.resolve_areas(principal, area or [])
    query = service.parse_query(
        kind, areas=areas, start=start, end=end, by=by, pathway=pathway, provider=provider,
        today=london_day(utc_now()),
    )
    threshold = request.app.state.settings.suppression_threshold
    answer = await service.figures(session, kind, query, threshold=threshold)
    wants_csv = fmt == "csv" or (fmt is None and CSV in request.headers.get("accept", ""))
    if wants_csv:
        filename = f"pathways-{kind}-{query.from_}-{query.to}.csv"
        return Response(
            service.render_csv(answer), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return answer


def _route(kind: FigureKind, summary: str) -> None:
    async def endpoint(
        request: Request, session: SessionDep, principal: Analyst,
        area: AreaParam = None, start: FromParam = None, end: ToParam = None,
        by: ByParam = None, pathway: PathwayParam = None, provider: ProviderParam = None,
        format: FormatParam = None,
    ) -> FiguresAnswer | Response:
        return await _answer(kind, request, session, principal, area, start, end, by,
                             pathway, provider, format)

    endpoint.__name__ = f"figures_{kind.value.replace('-', '_')}"
    definition = DEFINITIONS[kind]
    description = (
        f"Per row (and in `total`): {', '.join(f'`{c}`' for c in definition.counts)}"
        + (f"; derived: {', '.join(f'`{c}`' for c in definition.derived)}" if definition.derived else "")
        + "".join(
            f". `{b.prefix}<code>` counts `{b.prefix.rstrip('_')}` by {b.measure.replace('_', ' ')}"
            f" code ({', '.join(b.categories)}); an unknown code counts under `{b.fallback}`"
            for b in definition.breakdowns
        )
        + f". Dimensions for `by`: {', '.join(f'`{d}`' for d in definition.dimensions)}."
        " Small numbers suppressed (a null count, named in its row's `suppressed`)."
    )
    router.add_api_route(
        f"/figures/{kind.value}", endpoint, methods=["GET"], summary=summary,
        description=description,
        response_model=FiguresAnswer, response_model_by_alias=True, responses=CSV_RESPONSE,
    )


SubjectAccessAdmin = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, national="a subject access request"))
]
CrnParam = CrnQuery


@router.get(
    "/subject-access-requests", tags=["data protection"], response_model=SubjectAccessPublic
)
async def subject_access_request(
    request: Request, session: SessionDep, principal: SubjectAccessAdmin, crn: CrnParam
) -> dict:
    """Everything the service holds on a person (DPA 2018 s.45): cohort events only, kept under
    a keyed pseudonym; the disclosure is logged (s.62) under that pseudonym, not the CRN."""
    answer = await service.subject_access(session, crn, request.app.state.settings)
    record_access(session, actor=principal, action=Action.DISCLOSURE,
                  resource=f"subject-access-request:{answer['pseudonym']}", crn=None,
                  purpose="subject access request")
    return answer


_route(FigureKind.NEEDS, "Needs: submitted, allocated, ... by up to two dimensions")
_route(FigureKind.UNMET_NEED, "Unmet need: unallocated needs, by reason and other dimensions")
_route(FigureKind.SERVICE_LEVELS,
       "Service levels: on time, medians, acceptance, outcomes, declines by reason code")
_route(FigureKind.COHORTS, "IOM cohorts: members, adoptions, deselections, open needs")
_route(FigureKind.DUTY_TO_REFER, "Duty to Refer: accommodation needs at risk, notices sent")
