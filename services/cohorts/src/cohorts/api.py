"""HTTP routes of the cohorts service: parse, authorise, call the service, shape the answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from cohorts import service
from cohorts.models import MembershipRecord, NominalRecord, OffenceImportRecord, SelectionRunRecord
from cohorts.schemas import (
    AssessmentPublic,
    DeselectionSuggestion,
    ImportPublic,
    ImportStarted,
    MemberCreate,
    MemberDeselect,
    MemberMove,
    MemberPublic,
    NominalPublic,
    NominalUpsert,
    OffencePublic,
    OffencesAdded,
    OffencesCreate,
    PolicyPublic,
    PolicyPut,
    SelectionRunCreate,
    SelectionRunPublic,
    SelectionRunSummary,
    SubjectAccessPublic,
)
from pathways_shared.access import Purpose
from pathways_shared.auth import Principal, require_roles
from pathways_shared.db import SessionDep
from pathways_shared.events import iso_z
from pathways_shared.inputs import AreaPath, AreaQuery, CrnPath, CrnQuery, IdPath, InputDate
from pathways_shared.observability import get_logger
from pathways_shared.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    Page,
    decode_cursor,
    page_of,
)
from pathways_shared.problems import ValidationProblem, problem_responses
from pathways_shared.vocabulary import Cohort, Role

log = get_logger(__name__)
router = APIRouter()

Writer = Annotated[Principal, Depends(require_roles(Role.POLICE, Role.IOM_PANEL, Role.SERVICE))]
Reader = Annotated[
    Principal, Depends(require_roles(Role.POLICE, Role.IOM_PANEL, Role.SERVICE, Role.ADMIN))
]
CohortReader = Annotated[Principal, Depends(require_roles(Role.POLICE, Role.IOM_PANEL))]
Panel = Annotated[Principal, Depends(require_roles(Role.IOM_PANEL))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
SubjectAccessAdmin = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, national="a subject access request"))
]
PolicyReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.POLICE, Role.IOM_PANEL))]


def _now() -> datetime:
    return datetime.now(UTC)


def _base_url(request: Request) -> str:
    return request.app.state.settings.base_url


def _cursor(cursor: str | None, *kinds: Any) -> list[Any] | None:
    """The sort key in a cursor, each part parsed as it was written; 422 on `cursor` if not."""
    values = decode_cursor(cursor, size=len(kinds))
    if values is None:
        return None
    try:
        parsed = [kind(str(value)) for kind, value in zip(kinds, values, strict=True)]
    except (TypeError, ValueError) as exc:
        raise ValidationProblem("cursor is not valid", field="cursor") from exc
    if any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in parsed):
        raise ValidationProblem("cursor is not valid", field="cursor")  # past BIGINT: a 500
    return parsed


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


def nominal_view(record: NominalRecord, count: int = 0, last: date | None = None) -> dict[str, Any]:
    return _dump(
        NominalPublic.model_validate(
            {**record.model_dump(), "offence_count": count, "last_offence_date": last}
        )
    )


def member_view(record: MembershipRecord) -> dict[str, Any]:
    return _dump(MemberPublic.model_validate(record))


def run_view(record: SelectionRunRecord, *, full: bool = True) -> dict[str, Any]:
    view = {
        "id": record.id,
        "area": record.area,
        "as_of": record.as_of.isoformat(),
        "policy_version": record.policy_version,
        "created_at": iso_z(record.created_at),
        "created_by": record.created_by,
        "counts": record.counts,
        "duration_ms": record.duration_ms,
    }
    if full:
        view["candidates"] = record.candidates
        view["excluded"] = record.excluded
    return view


def import_view(record: OffenceImportRecord) -> dict[str, Any]:
    view = _dump(ImportPublic.model_validate(record))
    view["rejected_not_listed"] = max(0, record.rejected - len({e["line"] for e in record.errors}))
    return view


# --- nominals and offences ------------------------------------------------------------------


@router.put(
    "/nominals/{crn}",
    tags=["nominals"],
    response_model=NominalPublic,
    responses={201: {"model": NominalPublic, "description": "The nominal, created"},
               **problem_responses(None, 409)},
    operation_id="upsertNominal",
)
async def put_nominal(
    crn: CrnPath, body: NominalUpsert, session: SessionDep, principal: Writer
) -> JSONResponse:
    record, created = await service.upsert_nominal(
        session,
        principal,
        crn,
        area=body.area,
        date_of_birth=body.date_of_birth,
        supervision_status=body.supervision_status,
        mappa_level=body.mappa_level,
        pnc_number=body.pnc_number,
        now=_now(),
    )
    if created:
        return JSONResponse(
            nominal_view(record), status_code=201, headers={"Location": f"/nominals/{crn}"}
        )
    return JSONResponse(nominal_view(record))


@router.get("/nominals/{crn}", tags=["nominals"], response_model=NominalPublic)
async def get_nominal(crn: CrnPath, session: SessionDep, principal: Reader) -> dict[str, Any]:
    record, count, last = await service.read_nominal(session, principal, crn)
    return nominal_view(record, count, last)


@router.post(
    "/nominals/{crn}/offences", tags=["nominals"], status_code=201, response_model=OffencesAdded,
    operation_id="addOffences",
)
async def post_offences(
    crn: CrnPath, body: OffencesCreate, response: Response, session: SessionDep, principal: Writer
) -> dict[str, Any]:
    added, duplicates = await service.add_offences(
        session, principal, crn, [o.model_dump() for o in body.offences], now=_now()
    )
    response.headers["Location"] = f"/nominals/{crn}/offences"
    return {"crn": crn, "added": added, "duplicates": duplicates}


@router.get(
    "/nominals/{crn}/offences",
    tags=["nominals"],
    response_model=Page[OffencePublic],
    operation_id="listOffences",
)
async def get_offences(
    crn: CrnPath,
    session: SessionDep,
    principal: Reader,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> dict[str, Any]:
    after = _cursor(cursor, date.fromisoformat, int)
    rows = await service.list_offences(session, principal, crn, limit=limit, after=after)
    page, next_cursor = page_of(rows, limit, lambda r: [r.offence_date.isoformat(), r.id])
    return {
        "data": [
            {
                "offence_date": r.offence_date.isoformat(),
                "category": r.category,
                "description": r.description or None,
                "recorded_at": iso_z(r.recorded_at),
            }
            for r in page
        ],
        "next_cursor": next_cursor,
    }


@router.get(
    "/nominals/{crn}/assessment",
    tags=["nominals"],
    response_model=AssessmentPublic,
    operation_id="getNominalAssessment",
)
async def get_assessment(
    crn: CrnPath, session: SessionDep, principal: CohortReader, as_of: InputDate | None = None
) -> dict[str, Any]:
    a = await service.assess_nominal(session, principal, crn, as_of=as_of, now=_now())
    return {
        "crn": a.crn,
        "as_of": a.as_of.isoformat(),
        "age": a.age,
        "cohort": a.cohort.value if a.cohort else None,
        "meets": [c.value for c in Cohort if c in a.meets],
        "score": a.score.total,
        "recency": a.score.recency,
        "frequency": a.score.frequency,
        "gravity": a.score.gravity,
        "prolific": a.prolific,
        "last_offence_date": a.last_offence_date.isoformat() if a.last_offence_date else None,
        "excluded": a.exclusion.reason.value if a.exclusion else None,
        "reasons": list(a.reasons),
    }


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "crn,offence_date,category,description\nX123456,2026-01-31,burglary_domestic,\n",
            }
        },
    }
}


@router.post(
    "/offences:import",
    tags=["nominals"],
    response_model=ImportPublic,
    openapi_extra=_CSV_BODY,
    responses={
        202: {
            "model": ImportStarted,
            "description": "Accepted: follow the import at /offence-imports/{id}",
        }
    },
)
async def import_offences(
    request: Request,
    principal: Writer,
    wait: Annotated[
        bool, Query(description="false: answer 202 at once and load in the background")
    ] = True,
) -> JSONResponse:
    # The CSV is read as it arrives, never held whole: parsed and checked on the way in
    # (wait=true), or spooled to a temporary file for the background import (wait=false).
    sessionmaker = request.app.state.sessionmaker
    settings = request.app.state.settings
    now = _now()
    limits = {
        "batch_size": settings.import_batch_size,
        "max_listed_errors": settings.import_max_listed_errors,
    }
    if wait:
        import_id = await service.import_arriving(
            sessionmaker, principal, request.stream(), now=now, **limits
        )
        async with sessionmaker() as session:
            record = await service.get_import(session, principal, import_id)
        return JSONResponse(import_view(record))
    spool = await service.spool_body(request.stream())
    try:
        import_id = await service.start_import(sessionmaker, principal, now=now)
    except BaseException:
        spool.close()
        raise
    job = service.run_import(sessionmaker, principal, import_id, spool, now=now, **limits)
    tasks: set[asyncio.Task] | None = getattr(request.app.state, "import_tasks", None)
    if tasks is None:
        tasks = request.app.state.import_tasks = set()
    task = asyncio.create_task(_in_background(job, import_id), name=f"import-{import_id}")
    tasks.add(task)  # held until done, so the task is not garbage-collected mid-way
    task.add_done_callback(tasks.discard)
    return JSONResponse(
        {"id": import_id, "status": "running"},
        status_code=202,
        headers={"Location": f"/offence-imports/{import_id}"},
    )


async def _in_background(job: Any, import_id: str) -> None:
    """A background import records its own failure on the import; here it is only logged."""
    try:
        await job
    except Exception as exc:  # noqa: BLE001  (nobody awaits a background task: log it)
        log.warning("import.failed", import_id=import_id, error=str(exc))


@router.get(
    "/offence-imports/{import_id}",
    tags=["nominals"],
    response_model=ImportPublic,
    operation_id="getOffenceImport",
)
async def get_import(
    import_id: IdPath, session: SessionDep, principal: Reader, purpose: Purpose = None
) -> dict[str, Any]:
    return import_view(await service.get_import(
        session, principal, str(import_id), purpose=purpose or "offence import report read"
    ))


# --- policies -------------------------------------------------------------------------------


@router.get(
    "/policies/{area}",
    tags=["policies"],
    response_model=PolicyPublic,
    operation_id="getSelectionPolicy",
)
async def get_policy(area: AreaPath, session: SessionDep, principal: PolicyReader) -> dict[str, Any]:
    return await service.read_policy(session, principal, area)


@router.put(
    "/policies/{area}",
    tags=["policies"],
    response_model=PolicyPublic,
    operation_id="replaceSelectionPolicy",
    responses=problem_responses(None, 409),
)
async def put_policy(
    area: AreaPath, body: PolicyPut, session: SessionDep, principal: Admin
) -> dict[str, Any]:
    return await service.replace_policy(
        session,
        principal,
        area,
        body.policy_data(),
        expected_version=body.version,
        body_area=body.area,
        now=_now(),
    )


# --- selection runs -------------------------------------------------------------------------


@router.post(
    "/selection-runs", tags=["selection"], status_code=201, response_model=SelectionRunPublic,
    operation_id="runSelection",
)
async def post_selection_run(
    body: SelectionRunCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: Panel,
) -> dict[str, Any]:
    record = await service.run_selection(
        session,
        principal,
        area=body.area,
        as_of=body.as_of,
        now=_now(),
        base_url=_base_url(request),
    )
    response.headers["Location"] = f"/selection-runs/{record.id}"
    return run_view(record)


@router.get("/selection-runs", tags=["selection"], response_model=Page[SelectionRunSummary])
async def list_selection_runs(
    session: SessionDep,
    principal: CohortReader,
    area: AreaQuery = None,
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> dict[str, Any]:
    rows = await service.list_runs(
        session,
        principal,
        area=area,
        limit=limit,
        after=_cursor(cursor, datetime.fromisoformat, str),
    )
    page, next_cursor = page_of(rows, limit, lambda r: [r.created_at.isoformat(), r.id])
    return {"data": [run_view(r, full=False) for r in page], "next_cursor": next_cursor}


@router.get("/selection-runs/{run_id}", tags=["selection"], response_model=SelectionRunPublic)
async def get_selection_run(
    run_id: IdPath, session: SessionDep, principal: CohortReader
) -> dict[str, Any]:
    return run_view(await service.read_run(session, principal, str(run_id)))


# --- members --------------------------------------------------------------------------------


@router.post(
    "/cohorts/{area}/members", tags=["cohorts"], status_code=201, response_model=MemberPublic,
    operation_id="adoptMember", responses=problem_responses(None, 409),
)
async def post_member(
    area: AreaPath,
    body: MemberCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: Panel,
) -> dict[str, Any]:
    record = await service.adopt_member(
        session,
        principal,
        area,
        crn=body.crn,
        cohort=body.cohort,
        decided_by=body.decided_by,
        rationale=body.rationale,
        now=_now(),
        base_url=_base_url(request),
    )
    response.headers["Location"] = f"/cohorts/{area}/members/{record.crn}"
    return member_view(record)


@router.get(
    "/cohorts/{area}/members",
    tags=["cohorts"],
    response_model=Page[MemberPublic],
    operation_id="listMembers",
)
async def get_members(
    area: AreaPath,
    session: SessionDep,
    principal: CohortReader,
    cohort: Cohort | None = None,
    status: Annotated[str, Query(pattern="^(active|deselected|all)$")] = "active",
    limit: LimitParam = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> dict[str, Any]:
    rows = await service.list_members(
        session,
        principal,
        area,
        cohort=cohort,
        status=None if status == "all" else status,
        limit=limit,
        after=_cursor(cursor, str, datetime.fromisoformat, str),
    )
    page, next_cursor = page_of(rows, limit, lambda r: [r.crn, r.adopted_at.isoformat(), r.id])
    return {"data": [member_view(r) for r in page], "next_cursor": next_cursor}


@router.get("/cohorts/{area}/members/{crn}", tags=["cohorts"], response_model=MemberPublic)
async def get_member(
    area: AreaPath, crn: CrnPath, session: SessionDep, principal: CohortReader
) -> dict[str, Any]:
    return member_view(await service.read_member(session, principal, area, crn))


@router.post(
    "/cohorts/{area}/members/{crn}/deselect", tags=["cohorts"], response_model=MemberPublic,
    operation_id="deselectMember", responses=problem_responses(None, 409),
)
async def post_deselect(
    area: AreaPath,
    crn: CrnPath,
    body: MemberDeselect,
    request: Request,
    session: SessionDep,
    principal: Panel,
) -> dict[str, Any]:
    record = await service.deselect_member(
        session,
        principal,
        area,
        crn,
        reason=body.reason,
        decided_by=body.decided_by,
        comments=body.comments,
        now=_now(),
        base_url=_base_url(request),
    )
    return member_view(record)


@router.post(
    "/cohorts/{area}/members/{crn}/move",
    tags=["cohorts"],
    response_model=MemberPublic,
    operation_id="moveMember",
    responses=problem_responses(None, 409),
)
async def post_move(
    area: AreaPath, crn: CrnPath, body: MemberMove, request: Request, session: SessionDep, principal: Panel
) -> dict[str, Any]:
    record = await service.move_member(
        session,
        principal,
        area,
        crn,
        cohort=body.cohort,
        decided_by=body.decided_by,
        rationale=body.rationale,
        now=_now(),
        base_url=_base_url(request),
    )
    return member_view(record)


@router.get(
    "/cohorts/{area}/deselection-suggestions",
    tags=["cohorts"],
    response_model=Page[DeselectionSuggestion],
    operation_id="listDeselectionSuggestions",
)
async def get_deselection_suggestions(
    area: AreaPath, session: SessionDep, principal: CohortReader
) -> dict[str, Any]:
    found = await service.suggestions(session, principal, area, now=_now())
    return {
        "data": [
            {
                "crn": r.crn,
                "cohort": r.cohort,
                "adopted_at": iso_z(r.adopted_at),
                "last_offence_date": last.isoformat() if last else None,
            }
            for r, last in found
        ],
        "next_cursor": None,
    }


# --- subject access -------------------------------------------------------------------------


@router.get(
    "/subject-access-requests",
    tags=["data protection"],
    response_model=SubjectAccessPublic,
    operation_id="subjectAccessRequest",
)
async def get_subject_access(
    request: Request, crn: CrnQuery, session: SessionDep, principal: SubjectAccessAdmin
) -> dict[str, Any]:
    return await service.subject_access(session, principal, crn, request.app.state.settings)
