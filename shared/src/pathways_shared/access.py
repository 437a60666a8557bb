"""Data protection logging (DPA 2018 Part 3, s.62): every collection, alteration,
consultation, disclosure, combination and erasure of a person's record, with who and when.

The row is written in the same transaction as the read or write it records: it is queued on
the session and inserted, with every other row of that transaction, when it commits.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Header
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.auth import Principal
from pathways_shared.db import defer_insert
from pathways_shared.infra_models import AccessLog
from pathways_shared.observability import current_correlation_id
from pathways_shared.outputs import stored_form

# One entry of the s.62 log as a subject access request discloses it.
AccessLogStored = stored_form(
    AccessLog, "AccessLogStored", "One entry of the log of who read or changed the record (DPA 2018 s.62)"
)


class Action(StrEnum):
    """The one vocabulary of s.62 actions, for every service: a row with any other is refused."""

    COLLECTION = "collection"
    ALTERATION = "alteration"
    CONSULTATION = "consultation"
    DISCLOSURE = "disclosure"
    COMBINATION = "combination"
    ERASURE = "erasure"


# Why the caller looks at or changes the record (DPA 2018 s.62), as every route that reads or
# writes personal records takes it; each route has a default for a caller that does not say.
PURPOSE_HEADER = "X-Purpose"
PURPOSE_MAX_LENGTH = 300
Purpose = Annotated[
    str | None,
    Header(
        alias=PURPOSE_HEADER, max_length=PURPOSE_MAX_LENGTH,
        description="Why the caller reads or changes the record; written to the access log "
        "(DPA 2018 s.62). Each route has a default.",
    ),
]


# The request's X-Purpose (set by the request middleware, `pathways_shared.runtime`): it is
# the purpose of every access the request records, in every service; a route's own words
# are the default when the caller says nothing.
requested_purpose: ContextVar[str | None] = ContextVar("requested_purpose", default=None)


def purpose_of(default: str) -> str:
    """The caller's stated purpose (X-Purpose), else the route's `default`; at most 300."""
    return (requested_purpose.get() or default)[:300]


def record_access(
    session: AsyncSession,
    *,
    actor: Principal | str,
    action: Action,
    resource: str,
    crn: str | None,
    purpose: str,
) -> None:
    principal = actor if isinstance(actor, Principal) else None
    defer_insert(
        session,
        AccessLog.__table__,
        {
            "at": datetime.now(UTC),
            "actor": principal.actor if principal else str(actor),
            "roles": ",".join(sorted(principal.roles)) if principal else "system",
            "action": Action(action).value,  # ValueError for a word outside the vocabulary
            "resource": resource[:300],
            "crn": crn,
            "purpose": purpose_of(purpose),
            "correlation_id": current_correlation_id(),
        },
    )


async def access_log_for(session: AsyncSession, crn: str) -> list[AccessLog]:
    rows = await session.exec(select(AccessLog).where(AccessLog.crn == crn).order_by(AccessLog.id))
    return list(rows.all())
