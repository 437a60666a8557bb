"""Operator endpoints every service has: see, replay and discard dead letters (role `admin`).

Replaying republishes the stored message to its subject; every consumer records event ids,
so consumers that had already handled it do nothing, and the one that failed tries again.

Dead letters hold events, so people's records: each one listed is logged as a consultation,
a replay or a discard as an alteration (DPA 2018 s.62), with the caller's `X-Purpose`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from sqlmodel import select

from pathways_shared.access import Action, Purpose, record_access
from pathways_shared.auth import Principal, require_roles
from pathways_shared.db import SessionDep
from pathways_shared.infra_models import DeadLetter
from pathways_shared.pagination import CursorParam, LimitParam, Page, decode_cursor, page_of
from pathways_shared.problems import Conflict, NotFound, ServiceUnavailable, ValidationProblem

# Dead letters carry events of every area: a national token only.
AdminDep = Annotated[Principal, Depends(require_roles("admin", national="dead letters"))]
# A BIGINT key: an id past its range is a 422, not a database error (a 500).
DeadLetterId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class DeadLetterPublic(BaseModel):
    id: int
    consumer: str
    stream: str
    subject: str
    event_id: str | None
    error: str
    deliveries: int
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    payload: str


def _log(session, principal: Principal, action: Action, rows: list[DeadLetter], purpose: str) -> None:
    for row in rows:
        record_access(session, actor=principal, action=action,
                      resource=f"admin/dead-letters/{row.id}", crn=None, purpose=purpose)


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["operator"])

    @router.get("/dead-letters", response_model=Page[DeadLetterPublic])
    async def list_dead_letters(
        session: SessionDep, principal: AdminDep,
        unresolved: Annotated[bool, Query()] = True,
        limit: LimitParam = 50, cursor: CursorParam = None, purpose: Purpose = None,
    ) -> Page[DeadLetterPublic]:
        query = select(DeadLetter).order_by(DeadLetter.id).limit(limit + 1)
        if unresolved:
            query = query.where(DeadLetter.resolved_at.is_(None))
        if (after := decode_cursor(cursor, size=1)) is not None:
            if not isinstance(after[0], int):
                raise ValidationProblem("cursor is not valid", field="cursor")
            query = query.where(DeadLetter.id > after[0])
        rows = list((await session.exec(query)).all())
        page, next_cursor = page_of(rows, limit, lambda r: [r.id])
        _log(session, principal, Action.CONSULTATION, page, purpose or "dead letter review")
        return Page(data=[DeadLetterPublic.model_validate(r, from_attributes=True) for r in page],
                    next_cursor=next_cursor)

    async def _unresolved(session, dead_letter_id: int) -> DeadLetter:
        row = await session.get(DeadLetter, dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        if row.resolved_at is not None:
            raise Conflict(f"dead letter {dead_letter_id} was already {row.resolution}")
        return row

    @router.post("/dead-letters/{dead_letter_id}/replay", response_model=DeadLetterPublic)
    async def replay(
        dead_letter_id: DeadLetterId, request: Request, session: SessionDep,
        principal: AdminDep, purpose: Purpose = None,
    ) -> DeadLetterPublic:
        row = await _unresolved(session, dead_letter_id)
        broker = request.app.state.runtime.broker
        if not broker.connected:
            raise ServiceUnavailable("NATS is not reachable; try again")
        headers = {k: v for k, v in json.loads(row.headers or "{}").items() if k != "Nats-Msg-Id"}
        # a fresh message id, or the broker would drop it as a duplicate of the original
        headers["Nats-Msg-Id"] = f"{row.event_id or 'raw'}-replay-{row.id}"
        await broker.js.publish(row.subject, row.payload.encode(), headers=headers)
        row.resolved_at, row.resolution = datetime.now(UTC), "replayed"
        _log(session, principal, Action.ALTERATION, [row], purpose or "dead letter replayed")
        return DeadLetterPublic.model_validate(row, from_attributes=True)

    @router.post("/dead-letters/{dead_letter_id}/discard", response_model=DeadLetterPublic)
    async def discard(
        dead_letter_id: DeadLetterId, session: SessionDep, principal: AdminDep,
        purpose: Purpose = None,
    ) -> DeadLetterPublic:
        row = await _unresolved(session, dead_letter_id)
        row.resolved_at, row.resolution = datetime.now(UTC), "discarded"
        _log(session, principal, Action.ALTERATION, [row], purpose or "dead letter discarded")
        return DeadLetterPublic.model_validate(row, from_attributes=True)

    return router
