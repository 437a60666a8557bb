"""Nominals: the police's record of a person, their offences, and the assessment of both."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.offences import (
    check_nominal,
    check_offence,
)
from cohorts.domain.policy import SelectionPolicy
from cohorts.domain.selection import (
    Assessment,
    Nominal,
    NominalSummary,
    assess,
)
from cohorts.models import (
    NominalRecord,
)
from cohorts.repository import CohortsRepository
from cohorts.service.checks import check_as_of, checked_crn
from cohorts.service.policies import policy_for
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.clock import london_today
from pathways_shared.problems import Conflict, NotFound
from pathways_shared.vocabulary import (
    SupervisionStatus,
)

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
    checked_crn(crn)
    check_nominal(
        crn=crn,
        area=area,
        date_of_birth=date_of_birth,
        mappa_level=mappa_level,
        pnc_number=pnc_number,
        today=london_today(now),
    )
    principal.require_area(area, hide=False)
    record = await CohortsRepository(session).get_nominal(crn, for_update=True)
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
        CohortsRepository(session).add(record)
    else:
        principal.require_area(record.area, hide=False)
        record.area = area
        record.date_of_birth = date_of_birth
        record.supervision_status = supervision_status.value
        record.mappa_level = mappa_level
        record.pnc_number = pnc_number
        record.updated_at = now
        CohortsRepository(session).add(record)
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
    checked_crn(crn)
    record = await CohortsRepository(session).get_nominal(crn)
    if record is None or not principal.may_see_area(record.area):
        raise NotFound(f"no nominal {crn}")
    return record


async def read_nominal(
    session: AsyncSession, principal: Principal, crn: str
) -> tuple[NominalRecord, int, date | None]:
    record = await visible_nominal(session, principal, crn)
    count, last = await CohortsRepository(session).offence_count_and_last(crn)
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
    added = await CohortsRepository(session).insert_offences(rows)
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
    rows = await CohortsRepository(session).offences_page(crn, limit=limit, after=after)
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
    check_as_of(as_of, now)
    policy, _ = await policy_for(session, record.area)
    assessment = await assessment_of(session, record, as_of, policy)
    record_access(
        session,
        actor=principal,
        action=Action.COMBINATION,
        resource=f"/nominals/{crn}/assessment",
        crn=crn,
        purpose="assess an IOM nominal against the selection policy",
    )
    return assessment


async def assessment_of(
    session: AsyncSession, record: NominalRecord, as_of: date, policy: SelectionPolicy
) -> Assessment:
    found = await CohortsRepository(session).summaries(as_of, policy, crns=[record.crn])
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
