"""On PostgreSQL the cohorts consumer settles a need event of a person who is no current
member in one statement outside any transaction (`settle_in_one`: the event recorded processed
and the need stored, or nothing written); the handlers' path does it in a transaction. Both
leave the same needs, outcomes and pathway activity, a second copy of an event is a duplicate
on both, and a member's event (or one that does not validate) goes the handlers' path."""

import json
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from cohorts.consumers import subscriptions
from cohorts.models import ReferralNeedRecord
from pathways_shared.broker import Broker
from pathways_shared.consumer import Consumer
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.infra_models import OutboxMessage, ProcessedEvent

SOLIHULL = "E08000029"


def submitted(crn: str, needs: list[tuple[str, str]]) -> Any:
    return make_event("referrals.referral.submitted", {
        "referralId": str(uuid.uuid4()), "area": SOLIHULL,
        "needs": [{"needId": n, "pathway": p, "complexity": "medium", "flags": []}
                  for n, p in needs],
        "sex": "male", "ageOnSubmission": 30, "supervisionStatus": "licence", "rosh": "medium",
        "mappaLevel": None,
    }, crn=crn)  # fmt: skip


def provider(kind: str, crn: str, need_id: str, pathway: str | None, programme: str = "CRS") -> Any:
    body = {"referralId": "r-1", "needId": need_id, "providerReferralId": str(uuid.uuid4()),
            "serviceCode": "CRS-ACC-M", "providerCode": "NACRO", "programme": programme,
            "acknowledgeBy": "2026-11-26T23:59:59Z", "respondBy": "2026-12-01T23:59:59Z"}
    if pathway:
        body["pathway"] = pathway
    return make_event(f"providers.referral.{kind}", body, crn=crn)


async def world(app: Any, consumers: dict[str, Consumer], member: str, other: str, fast: bool):
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    events = [
        submitted(member, [(a, "accommodation")]),
        submitted(other, [(b, "health")]),
        provider("allocated", member, a, "accommodation"),
        provider("allocated", other, b, "health"),
        provider("accepted", other, b, "health", programme=""),
        provider("started", other, b, None, programme=""),
        submitted(other, [(c, "finance_benefit_debt"), (d, "drugs_alcohol")]),
        provider("allocated", other, "x" * 40, "health"),  # too long a needId: dead-lettered
    ]
    events.append(events[3])  # a second copy: a duplicate
    outcomes = []
    for event in events:
        consumer = consumers[event.event_type.split(".")[0]]
        outcome = await consumer._settle_in_one(event) if fast else None
        if outcome is None:
            try:
                async with transaction(app.state.sessionmaker) as session:
                    outcome = "ordinary " + await consumer._apply(session, event)
            except Exception as exc:  # noqa: BLE001  what the consumer would dead-letter
                outcome = type(exc).__name__
        outcomes.append(outcome)
    ids = {a: "a", b: "b", c: "c", d: "d"}
    async with app.state.sessionmaker() as session:
        needs = (await session.exec(select(ReferralNeedRecord).where(
            ReferralNeedRecord.need_id.in_(list(ids))))).scalars().all()
        processed = set((await session.exec(select(ProcessedEvent.event_id).where(
            ProcessedEvent.event_id.in_([str(e.id) for e in events])))).scalars().all())
        outbox = (await session.exec(select(OutboxMessage.payload).where(
            OutboxMessage.event_type == "cohorts.member.pathway-activity"))).scalars().all()
    rows = sorted((ids[r.need_id], r.crn == member, r.pathway, r.status, r.programme,
                   bool(r.referral_id)) for r in needs)
    activity = [json.loads(p)["additionalInformation"] for p in outbox
                if json.loads(p)["personReference"]["identifiers"][0]["value"] == member]
    return [str(e.id) in processed for e in events], rows, activity, outcomes


async def test_settled_in_one_statement_as_by_the_handlers(
    app: Any, client: httpx.AsyncClient, seed: Any, panel: dict, settings: Any
) -> None:
    for crn in ("X320001", "X320002", "X320003", "X320004"):
        await seed(crn)
    for crn in ("X320001", "X320003"):
        adopted = await client.post(
            f"/cohorts/{SOLIHULL}/members",
            json={"crn": crn, "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"},
            headers=panel,
        )
        assert adopted.status_code == 201, adopted.text
    broker = Broker(settings.nats_url, name="cohorts-test", prefix=settings.subject_prefix)
    from_referrals, from_providers = subscriptions(settings)
    consumers = {"referrals": Consumer(from_referrals, app.state.sessionmaker, broker),
                 "providers": Consumer(from_providers, app.state.sessionmaker, broker)}
    fast = await world(app, consumers, "X320001", "X320002", fast=True)
    plain = await world(app, consumers, "X320003", "X320004", fast=False)
    assert fast[:3] == plain[:3]
    assert fast[2]  # the member's activity was published
    assert fast[3] == [
        "ordinary handled", "handled", "ordinary handled", "handled", "handled", "ordinary handled",
        "ordinary handled", "PermanentError", "duplicate",
    ]
    assert plain[3] == [
        "ordinary handled"] * 7 + ["PermanentError", "ordinary duplicate"]
