"""A partnership's worth of events, as the other four services' relays would publish them:
referrals submitted, routed (allocated or unallocated with their structured reasons),
acknowledged, accepted or declined, started, completed; Duty to Refer notices; IOM cohort
adoptions and deselections. Deterministic (a seeded generator), all within the last 240 days
of whatever day the test runs, so the dashboard's default period holds every one of them."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pathways_shared.event_payloads import PAYLOADS
from pathways_shared.events import Event, make_event

SOLIHULL, COVENTRY, DUDLEY = "E08000029", "E08000026", "E08000027"
SERVICES = {  # pathway -> (service, provider, programme)
    "accommodation": ("CRS-ACC-M", "NACRO", "CRS"),
    "finance_benefit_debt": ("CRS-FBD-M", "INGEUS", "CRS"),
    "education_training_employment": ("CRS-ETE-M", "MAXIMUS", "CRS"),
    "drugs_alcohol": ("DA-SIAS", "SIAS", "Community"),
    "children_families": ("EH-SMBC", "SMBC_EARLY_HELP", "Community"),
    "attitudes_thinking_behaviour": ("ATB-PS", "PROBATION", "Probation"),
    "health": ("ND-IOM", "ND_SERVICE", "Commissioned"),
}
STATUSES = ["licence", "community_order", "post_sentence_supervision", "non_statutory"]


def _event(event_type: str, info: dict[str, Any], at: datetime, crn: str | None = None) -> Event:
    payload = PAYLOADS[event_type].model_validate(info)
    return make_event(event_type, payload.model_dump(mode="json", by_alias=True, exclude_none=True),
                      crn=crn, occurred_at=at)


@dataclass
class Feed:
    events: list[Event] = field(default_factory=list)
    needs: int = 0
    allocations: int = 0
    adoptions: int = 0
    notices: int = 0


def partnership_events(now: datetime | None = None, *, needs: int = 320, seed: int = 16) -> Feed:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    feed = Feed()
    for n in range(needs):
        area = rng.choices([SOLIHULL, COVENTRY, DUDLEY], weights=[6, 4, 1])[0]
        pathway = rng.choices(list(SERVICES), weights=[5, 3, 3, 2, 1, 2, 1])[0]
        sex = rng.choices(["male", "female"], weights=[3, 1])[0]
        status = rng.choice(STATUSES)
        at_risk = pathway == "accommodation" and rng.random() < 0.6
        crn = f"X{100000 + n}"
        referral_id, need_id = str(uuid.uuid4()), str(uuid.uuid4())
        submitted = now - timedelta(days=rng.randint(3, 240), hours=rng.randint(0, 12))
        feed.events.append(_event("referrals.referral.submitted", {
            "referralId": referral_id, "area": area, "sex": sex,
            "ageOnSubmission": rng.choice([19, 23, 28, 31, 38, 44, 52, 58, 67]),
            "supervisionStatus": status,
            "needs": [{"needId": need_id, "pathway": pathway,
                       "complexity": rng.choice(["low", "medium", "high"]),
                       "flags": ["at_risk_of_homelessness"] if at_risk else []}],
        }, submitted, crn))
        feed.needs += 1
        ref = {"referralId": referral_id, "needId": need_id}
        if at_risk and rng.random() < 0.85:
            feed.events.append(_event("notifications.duty-to-refer.sent",
                                      {**ref, "area": area}, submitted + timedelta(minutes=2)))
            feed.notices += 1
        service, provider, programme = SERVICES[pathway]
        routed = submitted + timedelta(minutes=1)
        if status == "non_statutory" and pathway in ("accommodation", "finance_benefit_debt"):
            feed.events.append(_event("providers.referral.unallocated", {
                **ref, "reason": "no eligible service", "area": area, "pathway": pathway,
                "reasons": [{"serviceCode": service, "criterion": "supervision_status"}],
            }, routed))
            continue
        if pathway == "health" and rng.random() < 0.7:
            feed.events.append(_event("providers.referral.unallocated", {
                **ref, "reason": "no eligible service", "area": area, "pathway": pathway,
                "reasons": [{"serviceCode": service, "criterion": "iom_membership"}],
            }, routed))
            continue
        pr = {**ref, "providerReferralId": str(uuid.uuid4())}
        feed.events.append(_event("providers.referral.allocated", {
            **pr, "serviceCode": service, "providerCode": provider, "programme": programme,
            "acknowledgeBy": (routed + timedelta(days=2)).isoformat(),
            "respondBy": (routed + timedelta(days=7)).isoformat(),
        }, routed))
        feed.allocations += 1
        step = routed + timedelta(hours=rng.choice([3, 20, 30, 80]))
        feed.events.append(_event("providers.referral.acknowledged", pr, step))
        decision = rng.choices(["accept", "decline", "none"], weights=[7, 2, 1])[0]
        step += timedelta(days=rng.choice([1, 2, 4, 9]))
        if decision == "decline":
            feed.events.append(_event("providers.referral.declined",
                                      {**pr, "reasonCode": rng.choice(["capacity", "risk_too_high"])}, step))
            feed.events.append(_event("providers.referral.unallocated", {
                **ref, "reason": "every eligible service declined", "area": area, "pathway": pathway,
                "reasons": [{"serviceCode": service, "criterion": "previously_declined"}],
            }, step + timedelta(minutes=1)))
            continue
        if decision == "none":
            continue
        feed.events.append(_event("providers.referral.accepted", pr, step))
        if rng.random() < 0.8:
            step += timedelta(days=2)
            feed.events.append(_event("providers.referral.started", pr, step))
            if rng.random() < 0.6 and step + timedelta(days=20) < now:
                feed.events.append(_event("providers.referral.completed", {
                    **pr, "outcome": rng.choices(
                        ["achieved", "partially_achieved", "not_achieved"], weights=[5, 3, 2])[0],
                }, step + timedelta(days=20)))
    for m in range(60):
        area = rng.choice([SOLIHULL, SOLIHULL, COVENTRY])
        cohort = rng.choice(["fixed", "flex", "flex", "free"])
        crn = f"Y{200000 + m}"
        adopted = now - timedelta(days=rng.randint(20, 280))
        feed.events.append(_event("cohorts.member.selected", {
            "area": area, "cohort": cohort, "score": rng.randint(10, 90),
            "reviewDueAt": (adopted + timedelta(days=90)).isoformat(),
        }, adopted, crn))
        feed.adoptions += 1
        if m % 2 == 0:
            feed.events.append(_event("cohorts.member.pathway-activity", {
                "area": area, "cohort": cohort, "pathway": rng.choice(list(SERVICES)),
                "status": "allocated",
            }, adopted + timedelta(days=3), crn))
        if m % 4 == 0:
            feed.events.append(_event("cohorts.member.deselected", {
                "area": area, "cohort": cohort, "reason": rng.choice(["desisted", "sentence_ended"]),
            }, adopted + timedelta(days=15), crn))
    return feed
