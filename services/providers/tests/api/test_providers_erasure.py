"""Personal data the providers service holds, erased once its record has ended and the period
has passed (issue 18; DOMAIN.md, "Keeping data no longer than necessary")."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import select

from pathways_shared.db import transaction
from pathways_shared.erasure import ErasureRecord, erase_personal_data
from pathways_shared.events import utc_now
from pathways_shared.infra_models import AccessLog
from pathways_shared.testing import auth
from providers import service
from providers.erasure import ERASERS
from providers.models import IomMemberRow, NeedRow, ProviderReferralRow, RoutingDecisionRow

CRN = "S111222"
MAXIMUS = auth("provider", provider="MAXIMUS")
NACRO = auth("provider", provider="NACRO")


async def allocate(app: Any, pathway: str, complexity: str) -> ProviderReferralRow:
    sessionmaker = app.state.runtime.sessionmaker
    need_id = uuid.uuid4()
    ctx = service.Context(now=utc_now(), calendar=app.state.runtime.extras["calendar"],
                          base_url="http://p")
    submitted = service.SubmittedReferral(
        referral_id=uuid.uuid4(), crn=CRN, area="E08000029", sex="male", age=30,
        supervision_status="licence",
        needs=(service.SubmittedNeed(need_id=need_id, pathway=pathway, complexity=complexity,
                                     flags=()),),
        submitted_at=ctx.now)
    async with transaction(sessionmaker) as session:
        await service.route_submitted_referral(session, submitted, ctx)
    async with sessionmaker() as session:
        return (await session.exec(
            select(ProviderReferralRow).where(ProviderReferralRow.need_id == need_id))).one()


async def erase(app: Any, days_after: int) -> dict[str, int]:
    runtime = app.state.runtime
    return await erase_personal_data(
        runtime.sessionmaker, ERASERS, runtime.settings, utc_now() + timedelta(days=days_after))


async def test_ended_records_are_erased_after_the_period_and_live_ones_kept(app, client):
    sessionmaker = app.state.runtime.sessionmaker
    declined = await allocate(app, "education_training_employment", "high")  # MAXIMUS
    response = await client.post(f"/provider-referrals/{declined.id}/decline",
                                 json={"reason_code": "capacity", "comments": "caseload full"},
                                 headers=MAXIMUS)
    assert response.status_code == 200, response.text  # re-routed: a live referral at IXION
    completed = await allocate(app, "accommodation", "medium")  # NACRO
    for action, body in (("accept", None), ("start", {"started_at": utc_now().isoformat()}),
                         ("complete", {"outcome": "achieved", "notes": "housed at 1 High St"})):
        response = await client.post(f"/provider-referrals/{completed.id}/{action}", json=body,
                                     headers=NACRO)
        assert response.status_code == 200, response.text
    left = IomMemberRow(crn=CRN, area="E08000029", cohort="fixed", member=False,
                        changed_at=utc_now())
    async with transaction(sessionmaker) as session:
        session.add(left)
    period = app.state.runtime.settings.erase_personal_data_after_days

    nothing = {"provider-referral": 0, "need": 0, "iom-membership": 0}
    assert await erase(app, period - 1) == nothing
    assert await erase(app, period + 1) == {"provider-referral": 2, "need": 1, "iom-membership": 1}
    assert await erase(app, period + 2) == nothing

    async with sessionmaker() as session:
        referrals = {r.id: r for r in (await session.exec(select(ProviderReferralRow))).all()}
        assert (referrals[declined.id].crn, referrals[declined.id].decline_comments) == (None, None)
        assert (referrals[declined.id].status, referrals[declined.id].decline_reason) == (
            "declined", "capacity")
        assert (referrals[completed.id].crn, referrals[completed.id].outcome_notes) == (None, None)
        [live] = [r for r in referrals.values() if r.id not in (declined.id, completed.id)]
        assert (live.crn, live.status, live.erased_at) == (CRN, "allocated", None)
        needs = {n.id: n for n in (await session.exec(select(NeedRow))).all()}
        assert needs[completed.need_id].crn is None and needs[declined.need_id].crn == CRN
        decisions = (await session.exec(select(RoutingDecisionRow))).all()
        assert {(d.need_id, d.crn) for d in decisions} == {
            (completed.need_id, None), (declined.need_id, CRN)}
        assert (await session.exec(select(IomMemberRow.crn))).all() == [None]

        logged = (await session.exec(select(AccessLog).where(AccessLog.action == "erasure"))).all()
        assert sorted(a.resource for a in logged) == sorted([
            f"provider-referral/{declined.id}", f"provider-referral/{completed.id}",
            f"need/{completed.need_id}", f"iom-membership/{left.id}"])
        assert all((a.actor, a.crn) == ("system:erasure", None) for a in logged)
        register = (await session.exec(select(ErasureRecord))).all()
        for row in [*logged, *register]:
            text = " ".join(str(v) for v in row.model_dump().values())
            assert CRN not in text and "caseload" not in text and "High St" not in text

    # The skeleton is still served, with no CRN.
    inbox = (await client.get("/provider-referrals", headers=MAXIMUS)).json()["data"]
    assert [(r["id"], r["crn"], r["status"]) for r in inbox] == [
        (str(declined.id), None, "declined")]

    sar = (await client.get(f"/subject-access-requests?crn={CRN}", headers=auth("admin"))).json()
    assert [r["id"] for r in sar["provider_referrals"]] == [str(live.id)]
    assert sorted(e["record_type"] for e in sar["erasures"]) == [
        "iom-membership", "need", "provider-referral", "provider-referral"]
    assert all(e["erased_at"].endswith("Z") for e in sar["erasures"])
