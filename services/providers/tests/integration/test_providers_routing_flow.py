"""Consumed referral events routed to services, on real PostgreSQL and NATS: the decision
recorded, the provider referral created, `allocated` / `unallocated` published once."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlmodel import select

from pathways_shared.events import make_event
from pathways_shared.infra_models import DeadLetter, ProcessedEvent
from pathways_shared.testing import wait_until
from providers.models import NeedRow, ProviderReferralRow, RoutingDecisionRow


async def _rows(sessionmaker, model, *where):
    async with sessionmaker() as session:
        return list((await session.exec(select(model).where(*where))).all())


async def _processed(sessionmaker, event_id) -> bool:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.event_id == str(event_id))
        )
        return bool(count)


async def test_each_need_is_allocated_or_unallocated_with_reasons(
    app, sessionmaker, publish, make_submitted, provider_events
):
    accommodation, drugs = uuid.uuid4(), uuid.uuid4()
    event = make_submitted(
        area="E08000025",  # Birmingham: no drugs and alcohol service there
        needs=[
            {
                "needId": str(accommodation),
                "pathway": "accommodation",
                "complexity": "high",
                "flags": ["at_risk_of_homelessness"],
            },
            {"needId": str(drugs), "pathway": "drugs_alcohol", "complexity": "low"},
        ],
    )
    await publish(event)
    events = await provider_events(expect=2)
    by_type = {e.event_type: e for e in events}
    assert set(by_type) == {"providers.referral.allocated", "providers.referral.unallocated"}

    allocated = by_type["providers.referral.allocated"]
    info = allocated.additional_information
    assert info["needId"] == str(accommodation)
    assert (info["serviceCode"], info["providerCode"], info["programme"]) == (
        "CRS-ACC-M",
        "NACRO",
        "CRS",
    )
    assert info["dutyToRefer"] is True
    assert info["acknowledgeBy"].endswith("Z") and info["respondBy"].endswith("Z")
    assert allocated.crn == "X123456"
    assert allocated.detail_url.endswith(f"/provider-referrals/{info['providerReferralId']}")
    assert "date_of_birth" not in allocated.to_json().decode()

    unallocated = by_type["providers.referral.unallocated"].additional_information
    assert unallocated["needId"] == str(drugs)
    assert "Birmingham" in unallocated["reason"]
    assert unallocated["reasons"] == [{"serviceCode": "DA-SIAS", "criterion": "area"}]
    assert (unallocated["area"], unallocated["pathway"]) == ("E08000025", "drugs_alcohol")

    [referral] = await _rows(sessionmaker, ProviderReferralRow)
    assert (referral.need_id, referral.status, referral.service_code) == (
        accommodation,
        "allocated",
        "CRS-ACC-M",
    )
    assert referral.acknowledge_by < referral.respond_by
    decisions = await _rows(
        sessionmaker, RoutingDecisionRow, RoutingDecisionRow.need_id == accommodation
    )
    assert [d.chosen_service_code for d in decisions] == ["CRS-ACC-M"]
    reasons = {a["service_code"]: a["reason"] for a in decisions[0].assessments}
    assert reasons["CRS-ACC-M"] is None
    assert "female people only" in reasons["CRS-ACC-F"]
    needs = {n.id: n for n in await _rows(sessionmaker, NeedRow)}
    assert needs[drugs].status == "unallocated" and "Birmingham" in needs[drugs].status_reason


async def test_a_redelivered_or_repeated_submission_routes_nothing_twice(
    app, sessionmaker, publish, make_submitted, provider_events
):
    need_id = uuid.uuid4()
    event = make_submitted(
        needs=[{"needId": str(need_id), "pathway": "drugs_alcohol", "complexity": "low"}]
    )
    await publish(event)
    await provider_events(expect=1)
    # the same message again is absorbed; the same needs under a new event id route nothing
    await publish(event)
    again = make_event("referrals.referral.submitted", event.additional_information, crn=event.crn)
    await publish(again)
    await wait_until(lambda: _processed(sessionmaker, again.id))
    assert len(await provider_events()) == 1
    assert len(await _rows(sessionmaker, ProviderReferralRow)) == 1


async def test_the_iom_only_service_takes_cohort_members_only(
    app, sessionmaker, publish, make_submitted, provider_events
):
    member = make_event(
        "cohorts.member.selected",
        {
            "area": "E08000029",
            "cohort": "fixed",
            "score": 60,
            "reviewDueAt": "2027-02-16T00:00:00Z",
        },
        crn="M111111",
    )
    await publish(member)
    await wait_until(lambda: _processed(sessionmaker, member.id))
    await publish(make_submitted(crn="M111111", needs=[{"pathway": "health", "complexity": "low"}]))
    await publish(make_submitted(crn="N222222", needs=[{"pathway": "health", "complexity": "low"}]))
    events = await provider_events(expect=2)
    outcome = {e.crn: (e.event_type, e.additional_information.get("serviceCode")) for e in events}
    assert outcome["M111111"] == ("providers.referral.allocated", "ND-IOM")
    assert outcome["N222222"] == ("providers.referral.unallocated", None)


async def test_deselection_ends_membership_for_later_referrals(
    app, sessionmaker, publish, make_submitted, provider_events
):
    selected = make_event(
        "cohorts.member.selected",
        {"area": "E08000029", "cohort": "flex", "reviewDueAt": "2027-02-16T00:00:00Z"},
        crn="M333333",
    )
    deselected = make_event(
        "cohorts.member.deselected",
        {"area": "E08000029", "cohort": "flex", "reason": "desisted"},
        crn="M333333",
    )
    for event in (selected, deselected):
        await publish(event)
    await wait_until(lambda: _processed(sessionmaker, deselected.id))
    await publish(make_submitted(crn="M333333", needs=[{"pathway": "health", "complexity": "low"}]))
    [event] = await provider_events(expect=1)
    assert event.event_type == "providers.referral.unallocated"
    assert "IOM cohort" in event.additional_information["reason"]


async def test_withdrawal_closes_open_provider_referrals(
    app, sessionmaker, publish, make_submitted, provider_events
):
    referral_id, need_id = uuid.uuid4(), uuid.uuid4()
    await publish(
        make_submitted(
            referral_id=referral_id,
            needs=[{"needId": str(need_id), "pathway": "accommodation", "complexity": "low"}],
        )
    )
    await provider_events(expect=1)
    withdrawn = make_event(
        "referrals.referral.withdrawn",
        {
            "referralId": str(referral_id),
            "needIds": [str(need_id)],
            "reasonCode": "recalled_to_custody",
        },
        crn="X123456",
    )
    await publish(withdrawn)
    events = await provider_events(expect=2)
    assert events[1].event_type == "providers.referral.withdrawn"
    assert events[1].additional_information["reasonCode"] == "recalled_to_custody"
    [row] = await _rows(sessionmaker, ProviderReferralRow)
    assert (row.status, row.withdrawal_reason) == ("withdrawn", "recalled_to_custody")
    [need] = await _rows(sessionmaker, NeedRow)
    assert need.status == "withdrawn"


async def test_a_need_withdrawn_before_its_submission_arrives_is_never_routed(
    app, sessionmaker, publish, make_submitted, provider_events
):
    referral_id, need_id = uuid.uuid4(), uuid.uuid4()
    withdrawn = make_event(
        "referrals.referral.withdrawn",
        {"referralId": str(referral_id), "needIds": [str(need_id)], "reasonCode": "duplicate"},
        crn="X123456",
    )
    await publish(withdrawn)
    await wait_until(lambda: _processed(sessionmaker, withdrawn.id))
    submitted = make_submitted(
        referral_id=referral_id,
        needs=[{"needId": str(need_id), "pathway": "accommodation", "complexity": "low"}],
    )
    await publish(submitted)
    await wait_until(lambda: _processed(sessionmaker, submitted.id))
    assert await provider_events() == []
    [need] = await _rows(sessionmaker, NeedRow)
    assert need.status == "withdrawn"
    assert await _rows(sessionmaker, ProviderReferralRow) == []


async def test_an_unreadable_event_is_dead_lettered_and_the_stream_goes_on(
    app, sessionmaker, publish, make_submitted, provider_events
):
    broken = make_event(
        "referrals.referral.submitted", {"referralId": "not-a-uuid", "needs": []}, crn="X123456"
    )
    await publish(broken)
    await publish(make_submitted(needs=[{"pathway": "drugs_alcohol", "complexity": "low"}]))
    await provider_events(expect=1)

    async def dead_lettered():
        return await _rows(sessionmaker, DeadLetter, DeadLetter.event_id == str(broken.id))

    [letter] = await wait_until(dead_lettered)
    assert "referralId" in letter.error
