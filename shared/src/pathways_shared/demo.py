"""`pathways demo`: submit sample referrals to a running system (`make run`) and show, step
by step, each need routed, acknowledged, accepted or declined, and the events and emails
that followed. It talks to the services only through their HTTP APIs and NATS, as an
outside system would."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from pathways_shared.auth import mint_token


@dataclass
class Endpoints:
    referrals: str = "http://127.0.0.1:8001"
    providers: str = "http://127.0.0.1:8002"
    cohorts: str = "http://127.0.0.1:8003"
    notifications: str = "http://127.0.0.1:8004"
    insights: str = "http://127.0.0.1:8005"


SAMPLES: list[dict[str, Any]] = [
    {"area": "E08000029", "sex": "male", "dob": "1990-04-01", "status": "licence", "needs": [
        ("accommodation", "medium", ["at_risk_of_homelessness"], "No fixed abode on release"),
        ("education_training_employment", "high", [], "Wants to retrain as an electrician"),
        ("finance_benefit_debt", "low", [], "Rent arrears; no bank account")]},
    {"area": "E08000025", "sex": "female", "dob": "1985-09-12", "status": "community_order", "needs": [
        ("accommodation", "low", [], "Sofa surfing"),
        ("education_training_employment", "medium", [], "Back to work after a long gap")]},
    {"area": "E08000029", "sex": "male", "dob": "1979-01-20", "status": "non_statutory", "needs": [
        ("children_families", "medium", ["parental_substance_misuse"], "Children at home"),
        ("drugs_alcohol", "high", [], "Alcohol dependency"),
        ("health", "medium", [], "Suspected ADHD, not assessed")]},
]


def settled_after_decline(need: dict[str, Any], declined_service: str) -> bool:
    """Whether the referrals service has seen a decline through: the need routed again to
    another service, or unallocated (a service that declined is never chosen again). Until
    the decline reaches it, the need still shows the service that declined."""
    if need["status"] == "unallocated":
        return True
    return need["status"] != "declined" and need.get("service_code") not in (None, declined_service)


def after_decline(need: dict[str, Any], declined_service: str) -> str:
    """What became of a declined need, as the referrals service tells it."""
    if need["status"] == "unallocated":
        return f"unallocated: {need.get('status_reason') or 'no reason given'}"
    if settled_after_decline(need, declined_service):
        return (f"routed again: {need['service_code']} ({need.get('provider_code')}, "
                f"{need.get('programme')}), {need['status']}")
    return f"not settled yet: still {need['status']} with {need.get('service_code') or 'no service'}"


def say(text: str = "", *, indent: int = 0) -> None:
    print(" " * indent + text, flush=True)


class Demo:
    def __init__(self, secret: str, endpoints: Endpoints, nats_url: str, prefix: str = "") -> None:
        self.secret = secret
        self.at = endpoints
        self.nats_url = nats_url
        self.prefix = prefix
        self.client = httpx.AsyncClient(timeout=10)
        self.events: list[Any] = []

    def headers(self, role: str, **claims: Any) -> dict[str, str]:
        token = mint_token(self.secret, roles=[role], sub=claims.pop("sub", f"demo-{role}"), **claims)
        return {"Authorization": f"Bearer {token}"}

    async def check_ready(self) -> None:
        for name, url in vars(self.at).items():
            try:
                r = await self.client.get(f"{url}/health/ready")
            except httpx.HTTPError:
                sys.exit(f"{name} does not answer at {url}: start the system with `make run` first")
            if r.status_code != 200:
                sys.exit(f"{name} at {url} is not ready ({r.status_code}): {r.text[:200]}")

    async def watch_events(self) -> Any:
        import nats
        from nats.js.api import DeliverPolicy

        from pathways_shared.events import Event

        nc = await nats.connect(self.nats_url, connect_timeout=2)
        js = nc.jetstream()

        async def keep(msg) -> None:
            try:
                self.events.append(Event.from_json(msg.data))
            except ValueError:
                pass

        for stream in ("referrals", "providers", "cohorts", "notifications"):
            await js.subscribe(f"{self.prefix}{stream}.>", cb=keep, deliver_policy=DeliverPolicy.NEW,
                               ordered_consumer=True)
        return nc

    async def submit(self, sample: dict[str, Any]) -> dict[str, Any]:
        crn = f"D{random.randint(0, 999999):06d}"
        body = {
            "source_reference": f"DEMO-{uuid.uuid4().hex[:8].upper()}",
            "area": sample["area"],
            "person": {"crn": crn, "noms_number": None, "pnc_number": None, "given_name": "Demo",
                       "family_name": "Person", "date_of_birth": sample["dob"], "sex": sample["sex"],
                       "needs_interpreter": False, "interpreter_language": None},
            "supervision": {"status": sample["status"], "expected_release_date": None},
            "risk": {"rosh": "medium", "mappa_level": None},
            "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example",
                             "team": "Demo OMU"},
            "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
            "needs": [{"pathway": p, "complexity": c, "flags": f, "details": d}
                      for p, c, f, d in sample["needs"]],
        }
        r = await self.client.post(f"{self.at.referrals}/referrals", json=body,
                                   headers=self.headers("probation", sub="alex.officer"))
        if r.status_code != 201:
            sys.exit(f"the referral was refused ({r.status_code}): {r.text}")
        return r.json()

    async def referral(self, referral_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{self.at.referrals}/referrals/{referral_id}",
                                  headers=self.headers("probation"))
        r.raise_for_status()
        return r.json()

    async def until_routed(self, referral_id: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            referral = await self.referral(referral_id)
            if all(n["status"] not in ("submitted", "declined") for n in referral["needs"]):
                return referral
            if time.monotonic() > deadline:
                return referral
            await asyncio.sleep(0.2)

    async def until_settled_after_decline(
        self, referral_id: str, need_id: str, declined_service: str, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            referral = await self.referral(referral_id)
            need = next(n for n in referral["needs"] if n["id"] == need_id)
            if settled_after_decline(need, declined_service) or time.monotonic() > deadline:
                return need
            await asyncio.sleep(0.2)

    async def inbox_entry(self, provider: str, need_id: str) -> dict[str, Any] | None:
        r = await self.client.get(f"{self.at.providers}/provider-referrals", params={"limit": 200},
                                  headers=self.headers("provider", provider=provider))
        r.raise_for_status()
        return next((e for e in r.json()["data"] if e["need_id"] == need_id), None)

    async def act(self, provider: str, entry_id: str, action: str, body: dict | None = None) -> None:
        r = await self.client.post(f"{self.at.providers}/provider-referrals/{entry_id}/{action}",
                                   json=body or {}, headers=self.headers("provider", provider=provider))
        verdict = "ok" if r.status_code == 200 else f"refused {r.status_code}: {r.json().get('detail')}"
        say(f"{provider} {action}s ... {verdict}", indent=6)

    async def run(self) -> None:
        await self.check_ready()
        nc = await self.watch_events()
        say("Pathways demo: three referrals from the seed areas\n")
        declined_once = False
        referral_ids = []
        for number, sample in enumerate(SAMPLES, 1):
            submitted = await self.submit(sample)
            referral_ids.append(submitted["id"])
            person = submitted["person"]
            say(f"[{number}] referral {submitted['id']} for {person['crn']} ({sample['sex']}, "
                f"{sample['status']}) in {sample['area']}: {len(sample['needs'])} needs")
            referral = await self.until_routed(submitted["id"])
            for need in referral["needs"]:
                if need["status"] == "unallocated":
                    say(f"- {need['pathway']} ({need['complexity']}): UNALLOCATED, "
                        f"{need.get('status_reason')}", indent=3)
                    continue
                say(f"- {need['pathway']} ({need['complexity']}): routed to {need['service_code']} "
                    f"({need['provider_code']}, {need['programme']})", indent=3)
                provider = need["provider_code"]
                entry = await self.inbox_entry(provider, need["id"])
                if entry is None:
                    say("(not in the provider's inbox yet)", indent=6)
                    continue
                say(f"acknowledge by {entry['acknowledge_by']}, respond by {entry['respond_by']}", indent=6)
                await self.act(provider, entry["id"], "acknowledge")
                if need["programme"] == "CRS" and not declined_once:
                    declined_once = True
                    await self.act(provider, entry["id"], "decline",
                                   {"reason_code": "capacity", "comments": "Caseload full this month"})
                    again = await self.until_settled_after_decline(
                        submitted["id"], need["id"], need["service_code"])
                    say(f"-> {after_decline(again, need['service_code'])}", indent=6)
                else:
                    await self.act(provider, entry["id"], "accept")
            say()
        await asyncio.sleep(1.5)
        await nc.close()
        say(f"Events that followed ({len(self.events)}):")
        for event in self.events:
            info = event.additional_information
            summary = ", ".join(f"{k}={v}" for k, v in info.items() if k in (
                "serviceCode", "providerCode", "reasonCode", "reason", "deadline", "area", "cohort"))
            say(f"{event.occurred_at:%H:%M:%S} {event.event_type:<36} {event.crn or '':<8} {summary}", indent=2)
        say()
        say("Emails and webhooks (the notifications delivery log):")
        for referral_id in referral_ids:
            r = await self.client.get(f"{self.at.notifications}/notifications",
                                      params={"referral_id": referral_id, "limit": 50},
                                      headers=self.headers("admin"))
            if r.status_code != 200:
                say(f"(delivery log unavailable: {r.status_code})", indent=2)
                continue
            for n in r.json()["data"]:
                say(f"{n['kind']:<28} to {n['recipient_role']:<14} {n['channel']:<8} {n['status']}", indent=2)
        say()
        say("The messages themselves are in .data/mail/ (make run's mail sink).")
        await self.show_figures(sum(len(sample["needs"]) for sample in SAMPLES))
        await self.client.aclose()

    async def show_figures(self, needs: int, timeout: float = 20) -> None:
        """The partnership's figures for today, once the insights projection has the demo's
        needs, and where the dashboard is."""
        from datetime import datetime
        from zoneinfo import ZoneInfo

        today = datetime.now(ZoneInfo("Europe/London")).date().isoformat()
        url = f"{self.at.insights}/figures/needs"
        params = {"from": today, "to": today, "area": "west-midlands"}
        deadline = time.monotonic() + timeout
        while True:
            r = await self.client.get(url, params=params, headers=self.headers("admin"))
            if r.status_code != 200:
                say(f"(figures unavailable: {r.status_code} {r.text[:200]})")
                return
            total = r.json()["total"]
            if (total.get("submitted") or 0) >= needs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        threshold = r.json()["suppression"]["threshold"]
        say()
        say(f"The partnership's figures for today, all West Midlands areas ({url}):")
        for name, value in total.items():
            if name == "suppressed":
                continue
            shown = value if value is not None else f"suppressed (1 to {threshold - 1}, or would reveal one)"
            say(f"{name:<28} {shown}", indent=2)
        say()
        say(f"The dashboard: {self.at.insights}/")
