"""A submitted need, its routing decision and its provider referral are inserted at commit
(`defer_insert`, one multi-row INSERT per table, no ORM object); a decline's routing goes
through the ORM. Both store the same rows for the same need."""

from __future__ import annotations

import uuid

from sqlmodel import select

from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from providers import service
from providers.models import NeedRow, ProviderReferralRow, RoutingDecisionRow

IDS = {"id", "need_id", "provider_referral_id", "current_provider_referral_id"}


def _need(need_id: uuid.UUID, referral_id: uuid.UUID, now) -> NeedRow:
    return NeedRow(
        id=need_id, referral_id=referral_id, crn="W123456", area="E08000029",
        pathway="accommodation", complexity="medium", flags=["at_risk_of_homelessness"],
        sex="male", age=30, supervision_status="licence", iom_member=True, duty_to_refer=True,
        status="submitted", submitted_at=now, updated_at=now,
    )


async def _stored(sessionmaker, need_id: uuid.UUID) -> tuple[dict, dict, dict]:
    async with sessionmaker() as session:
        need = (await session.exec(select(NeedRow).where(NeedRow.id == need_id))).one()
        decision = (await session.exec(
            select(RoutingDecisionRow).where(RoutingDecisionRow.need_id == need_id))).one()
        referral = (await session.exec(
            select(ProviderReferralRow).where(ProviderReferralRow.need_id == need_id))).one()
    assert need.current_provider_referral_id == decision.provider_referral_id == referral.id
    return tuple(row.model_dump(exclude=IDS) for row in (need, decision, referral))


async def test_deferred_rows_equal_the_orm_rows(app, sessionmaker):
    ctx = service.Context(now=utc_now(), calendar=app.state.runtime.extras["calendar"],
                          base_url="http://p")
    referral_id = uuid.uuid4()
    deferred, orm = uuid.uuid4(), uuid.uuid4()
    for need_id, new in ((deferred, True), (orm, False)):
        async with transaction(sessionmaker) as session:
            services = await service.load_catalogue(session)
            routed = await service._route_need(
                session, _need(need_id, referral_id, ctx.now), services,
                declined=frozenset(), trigger="submitted", ctx=ctx, new=new,
            )
            assert routed is not None
    one, other = await _stored(sessionmaker, deferred), await _stored(sessionmaker, orm)
    assert one == other
    assert one[0]["status"] == "allocated" and one[1]["iom_member"] is True
