"""On PostgreSQL a consumed need event is stored, and its person's memberships counted, in one
statement (`CohortsRepository.note_need`); the plain path reads the need, changes it and reads
the memberships. Both leave the same needs and publish the same pathway activity, including
when the need was loaded earlier in the same transaction."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cohorts.models import ReferralNeedRecord
from cohorts.repository import CohortsRepository
from cohorts.service import members
from pathways_shared.db import transaction
from pathways_shared.infra_models import OutboxMessage

SOLIHULL = "E08000029"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def world(app: Any, member: str, other: str) -> tuple[list, list]:
    """A member's and a non-member's needs through submitted, allocated, started (no
    programme), withdrawn; a need first seen without its pathway; and a need read, then noted
    again, in one transaction. Answers the needs and the pathway activity, by position."""
    ids = {name: str(uuid.uuid4()) for name in ("a", "b", "c", "d")}
    steps: list[list[dict[str, Any]]] = [
        [{"crn": member, "need_id": ids["a"], "status": "submitted", "referral_id": "r1",
          "pathway": "accommodation"}],
        [{"crn": other, "need_id": ids["b"], "status": "submitted", "referral_id": "r2",
          "pathway": "health"}],
        [{"crn": member, "need_id": ids["a"], "status": "allocated", "referral_id": "r1",
          "pathway": "accommodation", "programme": "CRS"}],
        [{"crn": other, "need_id": ids["b"], "status": "allocated", "pathway": "health",
          "programme": "NHS"}],
        [{"crn": member, "need_id": ids["a"], "status": "in_progress", "pathway": None}],
        [{"crn": member, "need_id": ids["a"], "status": "completed", "pathway": "accommodation",
          "programme": ""}],
        [{"crn": other, "need_id": ids["c"], "status": "allocated", "pathway": None}],
        # read by the plain path, then noted again in the same transaction
        [{"crn": None, "need_id": ids["b"], "status": "withdrawn"},
         {"crn": other, "need_id": ids["b"], "status": "accepted", "pathway": "health"}],
        [{"crn": member, "need_id": ids["d"], "status": "submitted", "referral_id": "r3",
          "pathway": "finance_benefit_debt"},
         {"crn": member, "need_id": ids["d"], "status": "allocated", "pathway": "finance_benefit_debt"}],
    ]
    published = []
    for n, step in enumerate(steps):
        async with transaction(app.state.sessionmaker) as session:
            for call in step:
                published.append(await members.note_need_activity(
                    session, now=NOW + timedelta(minutes=n), base_url="http://cohorts", **call))
    by_id = {v: k for k, v in ids.items()}
    async with app.state.sessionmaker() as session:
        needs = (await session.exec(select(ReferralNeedRecord).where(
            ReferralNeedRecord.need_id.in_(list(ids.values()))))).scalars().all()
        rows = sorted((by_id[r.need_id], r.referral_id, r.crn == member, r.pathway, r.status,
                       r.programme, r.updated_at) for r in needs)
        outbox = (await session.exec(select(OutboxMessage).where(
            OutboxMessage.event_type == "cohorts.member.pathway-activity").order_by(
            OutboxMessage.seq))).scalars().all()
    activity = [json.loads(m.payload)["additionalInformation"] for m in outbox
                if json.loads(m.payload)["personReference"]["identifiers"][0]["value"] == member]
    return [published, rows], activity


async def test_needs_noted_in_one_statement_as_step_by_step(
    app: Any, client: httpx.AsyncClient, seed: Any, panel: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for crn in ("X310001", "X310002", "X310003", "X310004"):
        await seed(crn)
    for crn in ("X310001", "X310003"):
        adopted = await client.post(
            f"/cohorts/{SOLIHULL}/members",
            json={"crn": crn, "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"},
            headers=panel,
        )
        assert adopted.status_code == 201, adopted.text
    used = []
    in_one = CohortsRepository.note_need

    async def counted(self, **kwargs):
        used.append(kwargs["status"])
        return await in_one(self, **kwargs)

    monkeypatch.setattr(CohortsRepository, "note_need", counted)
    fast = await world(app, "X310001", "X310002")
    assert used  # the one-statement path was taken (PostgreSQL)
    monkeypatch.setattr(CohortsRepository, "can_note_need_in_one", lambda self, need_id: False)
    plain = await world(app, "X310003", "X310004")
    assert fast == plain
    assert fast[1]  # the member's activity was published
