"""Selection policies: each area's, read and replaced."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.policy import SelectionPolicy
from cohorts.models import (
    PolicyRecord,
)
from cohorts.repository import CohortsRepository
from pathways_shared.auth import Principal
from pathways_shared.events import iso_z
from pathways_shared.problems import Conflict, NotFound, ValidationProblem
from pathways_shared.vocabulary import (
    AREAS,
)

# --- policies -------------------------------------------------------------------------------


async def policy_for(
    session: AsyncSession, area: str
) -> tuple[SelectionPolicy, PolicyRecord | None]:
    """The area's current policy; version 0 is the defaults of DOMAIN.md, never stored."""
    record = await CohortsRepository(session).current_policy(area)
    if record is None:
        return SelectionPolicy(), None
    return SelectionPolicy.from_dict(record.body), record


def policy_view(area: str, policy: SelectionPolicy, record: PolicyRecord | None) -> dict[str, Any]:
    return {
        "area": area,
        "version": record.version if record else 0,
        "updated_at": iso_z(record.created_at) if record else None,
        "updated_by": record.created_by if record else None,
        **policy.to_dict(),
    }


async def read_policy(session: AsyncSession, principal: Principal, area: str) -> dict[str, Any]:
    if area not in AREAS:
        raise NotFound(f"no area {area}")
    principal.require_area(area, hide=False)
    policy, record = await policy_for(session, area)
    return policy_view(area, policy, record)


async def replace_policy(
    session: AsyncSession,
    principal: Principal,
    area: str,
    data: dict[str, Any],
    *,
    expected_version: int | None,
    body_area: str | None,
    now: datetime,
) -> dict[str, Any]:
    if area not in AREAS:
        raise NotFound(f"no area {area}")
    principal.require_area(area, hide=False)
    if body_area is not None and body_area != area:
        raise ValidationProblem(
            f"the body is for area {body_area}, the path for {area}", field="area"
        )
    policy = SelectionPolicy.from_dict(data)
    current = await CohortsRepository(session).current_policy(area, for_update=True)
    version = current.version if current else 0
    if expected_version is not None and expected_version != version:
        raise Conflict(
            f"the policy of {area} is at version {version}, not {expected_version}; "
            "read it again and reapply your change"
        )
    record = PolicyRecord(
        area=area,
        version=version + 1,
        body=policy.to_dict(),
        created_at=now,
        created_by=principal.actor,
    )
    CohortsRepository(session).add(record)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the policy of {area} changed at the same time; try again") from exc
    return policy_view(area, policy, record)
