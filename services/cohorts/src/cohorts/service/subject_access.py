"""Subject access: everything the cohorts service holds about one person."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.repository import CohortsRepository
from cohorts.service.checks import checked_crn
from pathways_shared.auth import Principal
from pathways_shared.config import ServiceSettings
from pathways_shared.erasure import subject_access_records

# --- subject access -------------------------------------------------------------------------


async def subject_access(
    session: AsyncSession, principal: Principal, crn: str, settings: ServiceSettings
) -> dict[str, Any]:
    checked_crn(crn)
    nominal = await CohortsRepository(session).get_nominal(crn)
    offences = await CohortsRepository(session).offences_of(crn)
    memberships = await CohortsRepository(session).memberships_of(crn)
    needs = await CohortsRepository(session).needs_of(crn)
    runs = await CohortsRepository(session).runs_naming(crn)
    log, erasures = await subject_access_records(session, principal, crn, settings)

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
        # What was erased once its retention period ended, and when (pathways_shared.erasure).
        "erasures": [e.model_dump(mode="json") for e in erasures],
    }
