"""Fixtures for the insights service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from insights.app import create_app
from insights.config import InsightsSettings
from pathways_shared.events import Event, iso_z, make_event

SERVICE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("insights", SERVICE_ROOT)


@pytest.fixture
def settings(service_settings) -> InsightsSettings:
    return service_settings(InsightsSettings)


@pytest.fixture
def app_factory():
    return create_app


# --- events -----------------------------------------------------------------------------------
# A realistic set of events for a few referrals, timed from the real clock (so the tests hold
# on any day): every step the figures count, across all four streams.

SOLIHULL, BIRMINGHAM = "E08000029", "E08000025"
CRNS = ("X100001", "X100002", "X100003", "X100004")
NOMS = "A1234BC"


class EventFactory:
    """Builds envelopes as the producers do (`make_event`), times relative to `base`."""

    def __init__(self, base: datetime) -> None:
        self.base = base

    def at(self, days: float, hours: float = 0) -> datetime:
        return self.base + timedelta(days=days, hours=hours)

    def event(self, event_type: str, info: dict[str, Any], *, crn: str | None, when: datetime) -> Event:
        return make_event(event_type, info, crn=crn, occurred_at=when,
                          detail_url="http://127.0.0.1:8001/referrals/x")

    def submitted(self, referral_id: str, *, area: str, sex: str, age: int, status: str,
                  needs: list[tuple[str, str, str, list[str]]], crn: str, when: datetime) -> Event:
        return self.event("referrals.referral.submitted", {
            "referralId": referral_id, "area": area, "sex": sex, "ageOnSubmission": age,
            "supervisionStatus": status, "rosh": "medium", "mappaLevel": None,
            "needs": [{"needId": n, "pathway": p, "complexity": c, "flags": f} for n, p, c, f in needs],
        }, crn=crn, when=when)

    def allocated(self, referral_id: str, need_id: str, pr: str, service: str, provider: str,
                  programme: str, *, crn: str, when: datetime, ack_days: int = 2,
                  respond_days: int = 5) -> Event:
        return self.event("providers.referral.allocated", {
            "referralId": referral_id, "needId": need_id, "providerReferralId": pr,
            "serviceCode": service, "providerCode": provider, "programme": programme,
            "acknowledgeBy": iso_z(when + timedelta(days=ack_days)),
            "respondBy": iso_z(when + timedelta(days=respond_days)),
        }, crn=crn, when=when)

    def step(self, kind: str, referral_id: str, need_id: str, pr: str, *, crn: str,
             when: datetime, **extra: Any) -> Event:
        return self.event(f"providers.referral.{kind}", {
            "referralId": referral_id, "needId": need_id, "providerReferralId": pr, **extra,
        }, crn=crn, when=when)

    def scenario(self) -> list[Event]:
        """Three referrals, seven needs, two cohort members: one of everything."""
        r1, r2, r3 = (str(uuid.uuid4()) for _ in range(3))
        acc, ete, fbd, da, hea, atb, cf = (str(uuid.uuid4()) for _ in range(7))
        pa, pb, pc, pd, pe = (str(uuid.uuid4()) for _ in range(5))
        c1, c2, c3 = CRNS[:3]
        e = []
        e.append(self.submitted(r1, area=SOLIHULL, sex="male", age=30, status="licence", crn=c1,
                                when=self.at(0), needs=[
                                    (acc, "accommodation", "medium", ["at_risk_of_homelessness"]),
                                    (ete, "education_training_employment", "high", []),
                                    (atb, "attitudes_thinking_behaviour", "low", [])]))
        e.append(self.allocated(r1, acc, pa, "CRS-ACC-M", "NACRO", "CRS", crn=c1, when=self.at(0, 1)))
        e.append(self.event("notifications.duty-to-refer.sent",
                            {"referralId": r1, "needId": acc, "area": SOLIHULL}, crn=c1, when=self.at(0, 2)))
        e.append(self.step("acknowledged", r1, acc, pa, crn=c1, when=self.at(1)))
        e.append(self.step("accepted", r1, acc, pa, crn=c1, when=self.at(3)))
        e.append(self.step("started", r1, acc, pa, crn=c1, when=self.at(4)))
        e.append(self.step("completed", r1, acc, pa, crn=c1, when=self.at(9), outcome="achieved"))
        e.append(self.allocated(r1, ete, pb, "CRS-ETE-M", "MAXIMUS", "CRS", crn=c1, when=self.at(0, 1)))
        e.append(self.step("declined", r1, ete, pb, crn=c1, when=self.at(2), reasonCode="capacity"))
        e.append(self.allocated(r1, ete, pc, "CFO3-ETE", "IXION", "CFO3", crn=c1, when=self.at(2, 1)))
        e.append(self.step("deadline-missed", r1, ete, pc, crn=c1, when=self.at(6), deadline="acknowledge"))
        e.append(self.step("accepted", r1, ete, pc, crn=c1, when=self.at(7)))
        e.append(self.allocated(r1, atb, pd, "ATB-PS", "PROBATION", "Probation", crn=c1, when=self.at(0, 1)))
        e.append(self.event("referrals.referral.withdrawn",
                            {"referralId": r1, "needIds": [atb], "reasonCode": "sentence_ended"},
                            crn=c1, when=self.at(5)))
        e.append(self.submitted(r2, area=BIRMINGHAM, sex="female", age=52, status="non_statutory",
                                crn=c2, when=self.at(1), needs=[
                                    (da, "drugs_alcohol", "low", []),
                                    (fbd, "finance_benefit_debt", "low", [])]))
        e.append(self.event("providers.referral.unallocated", {
            "referralId": r2, "needId": da, "reason": "no service", "area": BIRMINGHAM,
            "pathway": "drugs_alcohol", "reasons": [{"serviceCode": "DA-SIAS", "criterion": "area"}],
        }, crn=c2, when=self.at(1, 1)))
        e.append(self.event("providers.referral.unallocated", {
            "referralId": r2, "needId": fbd, "reason": "not statutory", "area": BIRMINGHAM,
            "pathway": "finance_benefit_debt", "reasons": [
                {"serviceCode": "CRS-FBD-F", "criterion": "supervision_status"},
                {"serviceCode": "CRS-FBD-M", "criterion": "sex"},
                {"serviceCode": "COMM-FBD", "criterion": "area"}],
        }, crn=c2, when=self.at(1, 1)))
        e.append(self.submitted(r3, area=SOLIHULL, sex="male", age=19, status="community_order",
                                crn=c3, when=self.at(2), needs=[(hea, "health", "medium", []),
                                                                (cf, "children_families", "low", [])]))
        e.append(self.allocated(r3, hea, pe, "ND-IOM", "ND_SERVICE", "Commissioned", crn=c3, when=self.at(2, 1)))
        e.append(self.step("acknowledged", r3, hea, pe, crn=c3, when=self.at(8)))
        e.append(self.step("declined", r3, hea, pe, crn=c3, when=self.at(8, 1), reasonCode="not_eligible"))
        e.append(self.event("providers.referral.unallocated", {
            "referralId": r3, "needId": hea, "reason": "declined", "area": SOLIHULL,
            "pathway": "health", "reasons": [{"serviceCode": "ND-IOM", "criterion": "previously_declined"}],
        }, crn=c3, when=self.at(8, 2)))
        e.append(self.event("cohorts.member.selected", {"area": SOLIHULL, "cohort": "fixed", "score": 60,
                                                        "reviewDueAt": iso_z(self.at(84))},
                            crn=c3, when=self.at(3)))
        e.append(self.event("cohorts.member.pathway-activity", {
            "area": SOLIHULL, "cohort": "fixed", "pathway": "children_families",
            "status": "allocated", "programme": "Community"}, crn=c3, when=self.at(3, 1)))
        e.append(self.event("cohorts.member.selected", {"area": SOLIHULL, "cohort": "flex", "score": 55,
                                                        "reviewDueAt": iso_z(self.at(84))},
                            crn=c1, when=self.at(3)))
        e.append(self.event("cohorts.member.deselected", {"area": SOLIHULL, "cohort": "flex",
                                                          "reason": "desisted"},
                            crn=c1, when=self.at(6)))
        return e


@pytest.fixture
def factory() -> EventFactory:
    """Events from 20 days ago, at 10:00 UTC, so every step is in the default period."""
    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    return EventFactory(today - timedelta(days=20))


@pytest.fixture
def publish(js, subject_prefix) -> Any:
    async def _publish(*events: Event) -> None:
        for event in events:
            await js.publish(f"{subject_prefix}{event.event_type}", event.to_json(),
                             headers={"Nats-Msg-Id": str(event.id)})

    return _publish


@pytest.fixture
def personal_identifiers() -> set[str]:
    """The CRNs and NOMIS number the scenario's people have (none may reach the store)."""
    return {*CRNS, NOMS}
