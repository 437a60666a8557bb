"""Selection runs: the rules over every nominal of an area, the run kept, and read back."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.membership import (
    run_completed,
)
from cohorts.domain.selection import (
    select,
)
from cohorts.models import (
    SelectionRunRecord,
)
from cohorts.repository import CohortsRepository
from cohorts.service.checks import check_as_of, known_area
from cohorts.service.policies import policy_for
from pathways_shared.access import Action
from pathways_shared.auth import Principal
from pathways_shared.events import Addressing
from pathways_shared.outbox import publish
from pathways_shared.problems import NotFound

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
    known_area(area)
    principal.require_area(area, hide=False)
    check_as_of(as_of, now)
    started = time.perf_counter()
    policy, record = await policy_for(session, area)
    version = record.version if record else 0
    summaries = await CohortsRepository(session).summaries(as_of, policy, area=area)
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
    CohortsRepository(session).add(stored)
    publish(session, run_completed(run, run_id), Addressing(
        detail_url=f"{base_url}/selection-runs/{run_id}", occurred_at=now
    ))
    await CohortsRepository(session).log_access_many(
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
    record = await CohortsRepository(session).get_run(run_id)
    if record is None or not principal.may_see_area(record.area):
        raise NotFound(f"no selection run {run_id}")
    await CohortsRepository(session).log_access_many(
        actor=principal,
        action=Action.CONSULTATION,
        crns=_crns_of(record),
        resource=f"/selection-runs/{run_id}",
        purpose="view an IOM selection run",
    )
    return record


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    *,
    area: str | None,
    limit: int,
    after: list[Any] | None,
) -> list[SelectionRunRecord]:
    if area is not None and not principal.may_see_area(known_area(area)):
        return []
    return await CohortsRepository(session).list_runs(principal.areas, area, limit, after)
