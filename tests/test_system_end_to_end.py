"""End to end through the public APIs and NATS of the four real service processes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlmodel import select

from pathways_shared.db import make_engine, make_sessionmaker
from pathways_shared.event_payloads import FORBIDDEN_KEYS, PAYLOADS
from pathways_shared.events import Event
from pathways_shared.harness import database_url_for
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import (
    auth,
    settle_outbox,
    stream_events,
    wait_until,
)

NACRO = auth("provider", provider="NACRO", sub="nacro-user")
MAXIMUS = auth("provider", provider="MAXIMUS", sub="maximus-user")
IXION = auth("provider", provider="IXION", sub="ixion-user")
PROBATION = auth("probation", sub="alex.officer")
ADMIN = auth("admin", sub="ops")
PANEL = auth("iom_panel", sub="panel-chair", areas=["E08000029"])


def started_at() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat().replace("+00:00", "Z")


def new_crn() -> str:
    return "X" + str(uuid.uuid4().int)[:6]


def referral_body(crn: str, needs: list[dict], **overrides) -> dict:
    body = {
        "source_reference": f"NDELIUS-{uuid.uuid4().hex[:10]}",
        "area": "E08000029",
        "person": {
            "crn": crn, "noms_number": "A1234BC", "pnc_number": None,
            "given_name": "Sam", "family_name": "Example", "date_of_birth": "1990-04-01",
            "sex": "male", "needs_interpreter": False, "interpreter_language": None,
        },
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "medium", "mappa_level": None},
        "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example",
                         "team": "Solihull OMU"},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": needs,
    }
    body.update(overrides)
    return body


async def get_referral(client: httpx.AsyncClient, referrals_url: str, referral_id: str) -> dict:
    r = await client.get(f"{referrals_url}/referrals/{referral_id}", headers=PROBATION)
    assert r.status_code == 200, r.text
    return r.json()


async def need_by_pathway(client, system, referral_id: str, pathway: str) -> dict:
    referral = await get_referral(client, system.url("referrals"), referral_id)
    return next(n for n in referral["needs"] if n["pathway"] == pathway)


async def inbox_entry(client, system, headers, referral_id: str, pathway: str) -> dict | None:
    r = await client.get(f"{system.url('providers')}/provider-referrals", headers=headers,
                         params={"limit": 200})
    assert r.status_code == 200, r.text
    return next((e for e in r.json()["data"]
                 if e["referral_id"] == referral_id and e["pathway"] == pathway), None)


async def test_a_referral_is_routed_need_by_need_and_followed_to_its_end(system):
    crn = new_crn()
    needs = [
        {"pathway": "accommodation", "complexity": "medium", "details": "No fixed abode",
         "flags": ["at_risk_of_homelessness"]},
        {"pathway": "education_training_employment", "complexity": "high", "details": "Retrain"},
        {"pathway": "finance_benefit_debt", "complexity": "medium", "details": "Rent arrears"},
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{system.url('referrals')}/referrals", json=referral_body(crn, needs),
                              headers=PROBATION)
        assert r.status_code == 201, r.text
        referral_id = r.json()["id"]

        async def all_allocated():
            referral = await get_referral(client, system.url("referrals"), referral_id)
            return referral if all(n["status"] == "allocated" for n in referral["needs"]) else None

        referral = await wait_until(all_allocated, timeout=30)
        by_pathway = {n["pathway"]: n for n in referral["needs"]}
        assert by_pathway["accommodation"]["service_code"] == "CRS-ACC-M"
        assert by_pathway["accommodation"]["provider_code"] == "NACRO"
        assert by_pathway["education_training_employment"]["service_code"] == "CRS-ETE-M"
        assert by_pathway["finance_benefit_debt"]["provider_code"] == "INGEUS"

        # NACRO takes accommodation through to the end
        entry = await wait_until(lambda: inbox_entry(client, system, NACRO, referral_id, "accommodation"))
        base = f"{system.url('providers')}/provider-referrals/{entry['id']}"
        for action, body in [("acknowledge", None), ("accept", None),
                             ("start", {"started_at": started_at()}),
                             ("complete", {"outcome": "achieved", "notes": "Housed"})]:
            r = await client.post(f"{base}/{action}", json=body or {}, headers=NACRO)
            assert r.status_code == 200, (action, r.text)
        # another provider cannot see or touch it
        assert (await client.get(base, headers=MAXIMUS)).status_code == 404
        assert (await client.post(f"{base}/accept", json={}, headers=MAXIMUS)).status_code == 404

        # MAXIMUS declines ETE: the need moves to CFO3 (Ixion)
        ete = await wait_until(lambda: inbox_entry(client, system, MAXIMUS, referral_id, "education_training_employment"))
        r = await client.post(f"{system.url('providers')}/provider-referrals/{ete['id']}/decline",
                              json={"reason_code": "capacity", "comments": "Caseload full"}, headers=MAXIMUS)
        assert r.status_code == 200, r.text

        async def moved_to_cfo3():
            need = await need_by_pathway(client, system, referral_id, "education_training_employment")
            return need if need["status"] == "allocated" and need["service_code"] == "CFO3-ETE" else None

        moved = await wait_until(moved_to_cfo3, timeout=30)
        assert moved["provider_code"] == "IXION"
        assert await wait_until(lambda: inbox_entry(client, system, IXION, referral_id, "education_training_employment"))

        async def accommodation_completed():
            need = await need_by_pathway(client, system, referral_id, "accommodation")
            return need["status"] == "completed"

        await wait_until(accommodation_completed, timeout=30)

        # the practitioner withdraws what is left
        r = await client.post(f"{system.url('referrals')}/referrals/{referral_id}/withdraw",
                              json={"reason_code": "moved_out_of_area", "comments": "Moved to Leeds"},
                              headers=PROBATION)
        assert r.status_code == 200, r.text
        final = await get_referral(client, system.url("referrals"), referral_id)
        assert final["status"] == "withdrawn"
        statuses = {n["pathway"]: n["status"] for n in final["needs"]}
        assert statuses == {"accommodation": "completed", "education_training_employment": "withdrawn",
                            "finance_benefit_debt": "withdrawn"}
        again = await client.post(f"{system.url('referrals')}/referrals/{referral_id}/withdraw",
                                  json={"reason_code": "other", "comments": "again"}, headers=PROBATION)
        assert again.status_code == 409

        # the provider's copy is closed too: no more actions on the withdrawn ETE need
        ixion = await inbox_entry(client, system, IXION, referral_id, "education_training_employment")

        async def ixion_closed():
            entry = await inbox_entry(client, system, IXION, referral_id, "education_training_employment")
            return entry["status"] == "withdrawn"

        await wait_until(ixion_closed, timeout=30)
        r = await client.post(f"{system.url('providers')}/provider-referrals/{ixion['id']}/accept",
                              json={}, headers=IXION)
        assert r.status_code == 409

        history = (await client.get(f"{system.url('referrals')}/referrals/{referral_id}/history",
                                    headers=PROBATION)).json()
        entries = history["data"] if isinstance(history, dict) else history
        assert entries[0]["actor"] == "alex.officer"
        times = [e["at"] for e in entries]
        assert times == sorted(times)
        assert len(entries) >= 10  # submitted, allocations, four NACRO steps, decline, re-allocation, withdrawal

        # emails: each sent once (distinct Message-IDs); the housing team got a Duty to Refer
        def mentions(message, text: str) -> bool:
            return text in str(message["Subject"]) or text in str(message.get_payload())

        async def duty_to_refer_sent():
            return [m for m in system.emails() if "housing" in str(m["To"]) and mentions(m, crn)]

        [notice] = await wait_until(duty_to_refer_sent, timeout=30)
        assert "1990-04-01" not in str(notice["Subject"])
        ids = [m["Message-ID"] for m in system.emails()]
        assert len(ids) == len(set(ids))


async def outsider_settled_in_cohorts(system, js, crn: str) -> None:
    """A sentinel instead of a sleep: once the cohorts service has handled the allocation of
    this person's need (its processed-event record is written with any effect) and its outbox
    has published a marker written after that, whatever it would say of the person is out."""
    async def allocation():
        events = await stream_events(js, "PROVIDERS", system.prefix)
        return [e for e in events
                if e.event_type == "providers.referral.allocated" and e.crn == crn]

    [allocated] = await wait_until(allocation, timeout=40)
    engine = make_engine(database_url_for(system.databases["cohorts"]), pool_size=1)
    try:
        cohorts_db = make_sessionmaker(engine)

        async def handled():
            async with cohorts_db() as session:
                return await session.scalar(select(ProcessedEvent.event_id).where(
                    ProcessedEvent.event_id == str(allocated.id)))

        await wait_until(handled, timeout=40)
        await settle_outbox(cohorts_db, timeout=40)
    finally:
        await engine.dispose()


async def test_police_see_members_and_their_pathway_activity_only(system):
    member, outsider = new_crn(), new_crn()
    prefix = system.prefix
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    from pathways_shared.events import stream_name

    # the police cohort tool: a plain durable consumer on cohorts.>
    sub = await js.pull_subscribe(
        f"{prefix}cohorts.>", durable=f"police-tool-{uuid.uuid4().hex[:6]}",
        stream=stream_name("COHORTS", prefix),
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW),
    )
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{system.url('notifications')}/subscriptions", headers=ADMIN, json={
            "url": system.webhook_url, "event_types": ["cohorts.member.*"],
            "description": "police cohort tool"})
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]

        for crn in (member, outsider):
            r = await client.put(f"{system.url('cohorts')}/nominals/{crn}", headers=PANEL, json={
                "area": "E08000029", "date_of_birth": "1995-02-01",
                "supervision_status": "licence", "mappa_level": None, "pnc_number": None})
            assert r.status_code in (200, 201), r.text
        r = await client.post(f"{system.url('cohorts')}/cohorts/E08000029/members", headers=PANEL, json={
            "crn": member, "cohort": "free", "decided_by": "DI Panel Chair",
            "rationale": "Partner nomination"})
        assert r.status_code in (200, 201), r.text

        for crn in (member, outsider):
            r = await client.post(f"{system.url('referrals')}/referrals", headers=PROBATION, json=referral_body(
                crn, [{"pathway": "accommodation", "complexity": "low", "details": "Needs a room"}]))
            assert r.status_code == 201, r.text

        seen: list[Event] = []

        async def member_activity_seen():
            with contextlib_suppress():
                for msg in await sub.fetch(50, timeout=0.5):
                    seen.append(Event.from_json(msg.data))
                    await msg.ack()
            kinds = {(e.event_type, e.crn) for e in seen}
            return ("cohorts.member.selected", member) in kinds and any(
                e.event_type == "cohorts.member.pathway-activity" and e.crn == member
                and e.additional_information.get("status") == "allocated" for e in seen)

        await wait_until(member_activity_seen, timeout=40)
        await outsider_settled_in_cohorts(system, js, outsider)
        await member_activity_seen()
        assert all(e.crn != outsider for e in seen), "the police must learn nothing of non-members"
        for event in seen:
            PAYLOADS[event.event_type].model_validate(event.additional_information)
            activity = event.additional_information
            if event.event_type == "cohorts.member.pathway-activity":
                assert set(activity) <= {"area", "cohort", "pathway", "status", "programme"}

        # the webhook subscriber got the same, signed, once each
        async def webhook_selected():
            return [w for w in system.webhooks() if member in w["body"]
                    and "cohorts.member.selected" in w["body"]]

        [delivery] = await wait_until(webhook_selected, timeout=40)
        headers = delivery["headers"]
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{delivery['body']}".encode()
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert f"v1,{expected}" in headers["webhook-signature"].split(" ")
        assert json.loads(delivery["body"])["id"] == headers["webhook-id"]
        webhook_ids = [w["headers"]["webhook-id"] for w in system.webhooks()]
        assert len(webhook_ids) == len(set(webhook_ids))
        assert all(outsider not in w["body"] for w in system.webhooks())
    await nc.close()


class contextlib_suppress:
    """Suppress a fetch timeout (nothing new yet)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, (TimeoutError, nats.errors.TimeoutError))


async def test_no_personal_details_cross_the_bus(system):
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    from pathways_shared.events import STREAMS, stream_name

    checked = 0
    for stream in STREAMS:
        name = stream_name(stream, system.prefix)
        try:
            info = await js.stream_info(name)
        except Exception:  # noqa: BLE001, S112  a stream this run never made: nothing to check
            continue
        if not info.state.messages:
            continue
        psub = await js.pull_subscribe(f"{system.prefix}>", stream=name, config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
        for msg in await psub.fetch(info.state.messages, timeout=5):
            raw = json.loads(msg.data)
            event = Event.from_json(msg.data)

            def keys(node):
                if isinstance(node, dict):
                    for k, v in node.items():
                        yield k
                        yield from keys(v)
                elif isinstance(node, list):
                    for v in node:
                        yield from keys(v)

            assert not (set(keys(raw)) & FORBIDDEN_KEYS), raw
            assert "Sam" not in msg.data.decode() and "1990-04-01" not in msg.data.decode()
            if event.event_type in PAYLOADS:
                PAYLOADS[event.event_type].model_validate(event.additional_information)
            assert msg.headers["Nats-Msg-Id"] == str(event.id)
            checked += 1
    await nc.close()
    assert checked > 0


pytestmark = pytest.mark.timeout(240)
