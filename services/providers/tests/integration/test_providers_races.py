"""A provider's decline racing probation's withdrawal of the same need, on real PostgreSQL:
whichever wins, nothing is left open for a withdrawn need, and nothing deadlocks."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlmodel import select

from pathways_shared.auth import Principal
from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from providers import service
from providers.errors import IllegalTransition
from providers.models import NeedRow, ProviderReferralRow

MAXIMUS = Principal(sub="maximus-user", roles=frozenset({"provider"}), provider="MAXIMUS")


@pytest.mark.parametrize("round_", range(4))
async def test_decline_racing_withdrawal_leaves_nothing_open(app, sessionmaker, round_):
    calendar = app.state.runtime.extras["calendar"]
    referral_id, need_id = uuid.uuid4(), uuid.uuid4()

    def ctx() -> service.Context:
        return service.Context(now=utc_now(), calendar=calendar, base_url="http://p")

    submitted = service.SubmittedReferral(
        referral_id=referral_id,
        crn="R123456",
        area="E08000029",
        sex="male",
        age=30,
        supervision_status="licence",
        needs=(
            service.SubmittedNeed(
                need_id=need_id,
                pathway="education_training_employment",
                complexity="high",
                flags=(),
            ),
        ),
        submitted_at=utc_now(),
    )
    async with transaction(sessionmaker) as session:
        await service.route_submitted_referral(session, submitted, ctx())
    async with sessionmaker() as session:
        [first] = (await session.exec(select(ProviderReferralRow))).all()

    async def decline() -> str:
        try:
            async with transaction(sessionmaker) as session:
                await service.act(
                    session, MAXIMUS, first.id, "decline", ctx(), reason_code="capacity"
                )
        except IllegalTransition:
            return "too late"
        return "declined"

    async def withdraw() -> None:
        async with transaction(sessionmaker) as session:
            await service.withdraw_needs(
                session,
                referral_id=referral_id,
                need_ids=[need_id],
                reason_code="sentence_ended",
                ctx=ctx(),
            )

    tasks = [decline(), withdraw()] if round_ % 2 == 0 else [withdraw(), decline()]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)

    async with sessionmaker() as session:
        referrals = (await session.exec(select(ProviderReferralRow))).all()
        need = await session.get(NeedRow, need_id)
    assert need.status == "withdrawn"
    assert {r.status for r in referrals} <= {"declined", "withdrawn"}


@pytest.mark.parametrize("round_", range(4))
async def test_submission_racing_withdrawal_leaves_nothing_open(app, sessionmaker, round_):
    calendar = app.state.runtime.extras["calendar"]
    referral_id, need_id = uuid.uuid4(), uuid.uuid4()

    def ctx() -> service.Context:
        return service.Context(now=utc_now(), calendar=calendar, base_url="http://p")

    submitted = service.SubmittedReferral(
        referral_id=referral_id,
        crn="R654321",
        area="E08000029",
        sex="female",
        age=40,
        supervision_status="community_order",
        needs=(
            service.SubmittedNeed(
                need_id=need_id, pathway="accommodation", complexity="low", flags=()
            ),
        ),
        submitted_at=utc_now(),
    )

    async def submit() -> None:
        async with transaction(sessionmaker) as session:
            await service.route_submitted_referral(session, submitted, ctx())

    async def withdraw() -> None:
        async with transaction(sessionmaker) as session:
            await service.withdraw_needs(
                session,
                referral_id=referral_id,
                need_ids=[need_id],
                reason_code="duplicate",
                ctx=ctx(),
            )

    tasks = [submit(), withdraw()] if round_ % 2 == 0 else [withdraw(), submit()]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)

    async with sessionmaker() as session:
        referrals = (await session.exec(select(ProviderReferralRow))).all()
        need = await session.get(NeedRow, need_id)
    assert need is not None and need.status == "withdrawn"
    assert all(r.status == "withdrawn" for r in referrals)
