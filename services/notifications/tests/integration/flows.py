"""What the notifications flows publish and wait for: the events, and the helpers that read
its emails, webhooks and notifications."""

from __future__ import annotations

from sqlmodel import col, select

from pathways_shared.events import Event, make_event
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import auth, wait_until

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
REFERRAL_ID = "11111111-1111-4111-8111-111111111111"
NEED_ID = "22222222-2222-4222-8222-222222222222"
OTHER_NEED_ID = "33333333-3333-4333-8333-333333333333"
PROVIDER_REFERRAL_ID = "55555555-5555-4555-8555-555555555555"
PRACTITIONER = "alex.officer@probation.example"
NACRO = "referrals@nacro.example"
SIAS = "referrals@sias.example"
SOLIHULL_HOUSING = "housing.options@solihull.example"
ADMIN = auth("admin")


async def publish(nc, prefix: str, event: Event, *, msg_id: str | None = None) -> None:
    js = nc.jetstream()
    await js.publish(
        f"{prefix}{event.event_type}",
        event.to_json(),
        headers={"Nats-Msg-Id": msg_id or str(event.id)},
    )


def allocated(need_id: str = NEED_ID, provider: str = "NACRO", service: str = "CRS-ACC-M"):
    return make_event(
        "providers.referral.allocated",
        {
            "referralId": REFERRAL_ID,
            "needId": need_id,
            "providerReferralId": PROVIDER_REFERRAL_ID,
            "serviceCode": service,
            "providerCode": provider,
            "programme": "CRS",
            "pathway": "accommodation" if need_id == NEED_ID else "drugs_alcohol",
            "area": SOLIHULL,
            "acknowledgeBy": "2026-11-26T23:59:59.000Z",
            "respondBy": "2026-12-01T23:59:59.000Z",
        },
        crn="X123456",
    )


def submitted(flags=("at_risk_of_homelessness",)):
    return make_event(
        "referrals.referral.submitted",
        {
            "referralId": REFERRAL_ID,
            "area": SOLIHULL,
            "needs": [
                {"needId": NEED_ID, "pathway": "accommodation", "complexity": "medium",
                 "flags": list(flags)},
                {"needId": OTHER_NEED_ID, "pathway": "drugs_alcohol", "complexity": "low",
                 "flags": []},
            ],
            "sex": "male", "ageOnSubmission": 36, "supervisionStatus": "licence",
            "rosh": "medium", "mappaLevel": None,
        },
        crn="X123456",
    )  # fmt: skip


def cohort_selected(area: str = SOLIHULL, crn: str = "X123456"):
    return make_event(
        "cohorts.member.selected",
        {"area": area, "cohort": "fixed", "score": 72, "reviewDueAt": "2027-02-16T00:00:00.000Z"},
        crn=crn,
    )


async def emails_to(smtp_server, address: str, count: int = 1):
    async def arrived():
        found = smtp_server.to(address)
        return found if len(found) >= count else None

    return await wait_until(arrived)


async def notifications(client, **params):
    response = await client.get("/notifications", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def consumed(sessionmaker, *events: Event) -> None:
    """Wait until the service's consumers have taken these events (and their effects)."""
    ids = {str(e.id) for e in events}

    async def taken():
        async with sessionmaker() as session:
            rows = await session.exec(
                select(ProcessedEvent.event_id).where(col(ProcessedEvent.event_id).in_(ids))
            )
            return set(rows.all()) == ids

    await wait_until(taken)


async def settled(client, count: int, **params):
    """The log once ``count`` deliveries have all ended (delivered, failed or cancelled)."""

    async def done():
        rows = await notifications(client, **params)
        ended = [r for r in rows if r["status"] in ("delivered", "failed", "cancelled")]
        return rows if len(rows) >= count and len(ended) == len(rows) else None

    return await wait_until(done)


async def subscribe(client, url: str, event_types: list[str], headers=ADMIN, **extra):
    response = await client.post(
        "/subscriptions", json={"url": url, "event_types": event_types, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()
