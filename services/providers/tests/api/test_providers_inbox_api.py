"""The provider's inbox and actions over HTTP: strict scoping, the state machine (409),
reason codes (422), re-routing after a decline, details from the referrals service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from pathways_shared.infra_models import AccessLog
from pathways_shared.testing import auth
from providers import service
from providers.models import NeedRow, ProviderReferralRow
from providers.referrals_client import ReferralsClient

NACRO = auth("provider", provider="NACRO", sub="nacro-user")
MAXIMUS = auth("provider", provider="MAXIMUS")
IXION = auth("provider", provider="IXION")
CHANGING_LIVES = auth("provider", provider="CHANGING_LIVES")


@pytest.fixture
def allocate(app, sessionmaker):
    """Route a submitted need now (as the consumer would); answers its provider referral."""

    async def _allocate(
        pathway: str = "accommodation",
        *,
        sex: str = "male",
        complexity: str = "medium",
        crn: str = "X123456",
        referral_id: uuid.UUID | None = None,
    ) -> ProviderReferralRow | NeedRow:
        need_id = uuid.uuid4()
        ctx = service.Context(
            now=utc_now(), calendar=app.state.runtime.extras["calendar"], base_url="http://p"
        )
        submitted = service.SubmittedReferral(
            referral_id=referral_id or uuid.uuid4(),
            crn=crn,
            area="E08000029",
            sex=sex,
            age=30,
            supervision_status="licence",
            needs=(
                service.SubmittedNeed(
                    need_id=need_id, pathway=pathway, complexity=complexity, flags=()
                ),
            ),
            submitted_at=ctx.now,
        )
        async with transaction(sessionmaker) as session:
            await service.route_submitted_referral(session, submitted, ctx)
        async with sessionmaker() as session:
            row = (
                await session.exec(
                    select(ProviderReferralRow).where(ProviderReferralRow.need_id == need_id)
                )
            ).first()
            return row if row is not None else await session.get(NeedRow, need_id)

    return _allocate


async def test_the_inbox_lists_the_providers_own_referrals_only(client, allocate):
    mine = await allocate("accommodation", sex="male")
    theirs = await allocate("accommodation", sex="female")
    response = await client.get("/provider-referrals", headers=NACRO)
    assert response.status_code == 200
    body = response.json()
    assert [r["id"] for r in body["data"]] == [str(mine.id)]
    entry = body["data"][0]
    for field in (
        "id",
        "referral_id",
        "need_id",
        "crn",
        "area",
        "pathway",
        "complexity",
        "flags",
        "service_code",
        "status",
        "allocated_at",
        "acknowledge_by",
        "respond_by",
    ):
        assert field in entry
    assert (entry["crn"], entry["service_code"], entry["status"]) == (
        "X123456",
        "CRS-ACC-M",
        "allocated",
    )
    assert entry["allocated_at"].endswith("Z") and entry["respond_by"].endswith("Z")
    other = (await client.get("/provider-referrals", headers=CHANGING_LIVES)).json()
    assert [r["id"] for r in other["data"]] == [str(theirs.id)]


@pytest.mark.parametrize(
    "action", ["", "/acknowledge", "/accept", "/start", "/complete", "/decline"]
)
async def test_another_providers_referral_is_404(client, allocate, action):
    theirs = await allocate("accommodation", sex="female")
    path = f"/provider-referrals/{theirs.id}{action}"
    body = {"decline": {"reason_code": "capacity"}, "complete": {"outcome": "achieved"}}
    if action:
        response = await client.post(path, json=body.get(action.strip("/")), headers=NACRO)
    else:
        response = await client.get(path, headers=NACRO)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_or_malformed_ids(client):
    assert (
        await client.get(f"/provider-referrals/{uuid.uuid4()}", headers=NACRO)
    ).status_code == 404
    bad = await client.get("/provider-referrals/not-a-uuid", headers=NACRO)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "provider_referral_id"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nonsense"}, 401),
        (auth("probation"), 403),
        (auth("admin"), 403),
        (auth("provider"), 403),  # a provider user without a provider claim
    ],
)
async def test_the_inbox_is_for_provider_users(client, headers, status):
    assert (await client.get("/provider-referrals", headers=headers)).status_code == status


async def test_the_whole_lifecycle_publishes_each_step(client, allocate, provider_events):
    referral = await allocate("accommodation")
    base = f"/provider-referrals/{referral.id}"
    for action, status in (("acknowledge", "acknowledged"), ("accept", "accepted")):
        response = await client.post(f"{base}/{action}", headers=NACRO)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    started = await client.post(
        f"{base}/start", json={"started_at": utc_now().isoformat()}, headers=NACRO
    )
    assert started.json()["status"] == "in_progress"
    done = await client.post(
        f"{base}/complete", json={"outcome": "achieved", "notes": "housed"}, headers=NACRO
    )
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["outcome"], done.json()["outcome_notes"]) == (
        "completed",
        "achieved",
        "housed",
    )
    events = await provider_events(expect=5)
    assert [e.event_type.rsplit(".", 1)[1] for e in events] == [
        "allocated",
        "acknowledged",
        "accepted",
        "started",
        "completed",
    ]
    assert events[-1].additional_information["outcome"] == "achieved"
    assert all(e.additional_information["providerReferralId"] == str(referral.id) for e in events)


@pytest.mark.parametrize(
    ("steps", "action", "body"),
    [
        ([], "start", None),
        ([], "complete", {"outcome": "achieved"}),
        (["acknowledge"], "acknowledge", None),
        (["accept"], "accept", None),
        (["accept"], "decline", {"reason_code": "capacity"}),
        (["accept", "start"], "accept", None),
        (["decline"], "accept", None),
        (["decline"], "decline", {"reason_code": "capacity"}),
    ],
)
async def test_transitions_the_state_machine_forbids_are_409(client, allocate, steps, action, body):
    referral = await allocate("accommodation")
    base = f"/provider-referrals/{referral.id}"
    for step in steps:
        payload = {"reason_code": "capacity"} if step == "decline" else None
        assert (await client.post(f"{base}/{step}", json=payload, headers=NACRO)).status_code == 200
    response = await client.post(f"{base}/{action}", json=body, headers=NACRO)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason_code": "bored"}, "reason_code"),
        ({"reason_code": "other"}, "comments"),
        ({"reason_code": "other", "comments": "   "}, "comments"),
        ({}, "reason_code"),
        ({"reason_code": "capacity", "colour": "red"}, "colour"),
        ({"reason_code": "capacity", "comments": "x" * 4001}, "comments"),
    ],
)
async def test_decline_reasons_are_validated(client, allocate, body, field):
    referral = await allocate("accommodation")
    response = await client.post(
        f"/provider-referrals/{referral.id}/decline", json=body, headers=NACRO
    )
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    still = (await client.get(f"/provider-referrals/{referral.id}", headers=NACRO)).json()
    assert still["status"] == "allocated"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"started_at": "2999-01-01T00:00:00Z"}, "started_at"),
        ({"started_at": "2020-01-01T00:00:00Z"}, "started_at"),
        ({"started_at": "2026-11-24T10:00:00"}, "started_at"),
        ({"started_at": "yesterday"}, "started_at"),
    ],
)
async def test_start_times_are_validated(client, allocate, body, field):
    referral = await allocate("accommodation")
    await client.post(f"/provider-referrals/{referral.id}/accept", headers=NACRO)
    response = await client.post(
        f"/provider-referrals/{referral.id}/start", json=body, headers=NACRO
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(
    "body", [{"outcome": "success"}, {}, {"outcome": "achieved", "grade": "A"}]
)
async def test_completion_outcomes_are_validated(client, allocate, body):
    referral = await allocate("accommodation")
    for step in ("accept", "start"):
        await client.post(f"/provider-referrals/{referral.id}/{step}", headers=NACRO)
    response = await client.post(
        f"/provider-referrals/{referral.id}/complete", json=body, headers=NACRO
    )
    assert response.status_code == 422


async def test_a_declined_crs_ete_need_goes_to_cfo3_then_unallocated(
    client, allocate, provider_events, sessionmaker
):
    referral = await allocate("education_training_employment", complexity="high")
    assert referral.service_code == "CRS-ETE-M"
    declined = await client.post(
        f"/provider-referrals/{referral.id}/decline",
        json={"reason_code": "capacity", "comments": "caseload full"},
        headers=MAXIMUS,
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    assert declined.json()["decline_reason"] == "capacity"
    ixion = (await client.get("/provider-referrals", headers=IXION)).json()["data"]
    assert [(r["need_id"], r["service_code"], r["status"]) for r in ixion] == [
        (str(referral.need_id), "CFO3-ETE", "allocated")
    ]
    events = await provider_events(expect=3)
    assert [e.event_type.rsplit(".", 1)[1] for e in events] == [
        "allocated",
        "declined",
        "allocated",
    ]
    assert events[1].additional_information["reasonCode"] == "capacity"
    assert events[2].additional_information["serviceCode"] == "CFO3-ETE"
    assert (
        events[1].occurred_at == events[2].occurred_at
    )  # one clock reading for decline and re-route

    other = await client.post(
        f"/provider-referrals/{ixion[0]['id']}/decline",
        json={"reason_code": "other", "comments": "no places this term"},
        headers=IXION,
    )
    assert other.status_code == 200
    events = await provider_events(expect=5)
    assert events[-1].event_type == "providers.referral.unallocated"
    assert "already declined" in events[-1].additional_information["reason"]
    async with sessionmaker() as session:
        need = await session.get(NeedRow, referral.need_id)
        assert need.status == "unallocated"

    routing = await client.get(f"/needs/{referral.need_id}/routing", headers=auth("probation"))
    assert routing.status_code == 200
    decisions = routing.json()["data"]
    assert [d["chosen_service_code"] for d in decisions] == ["CRS-ETE-M", "CFO3-ETE", None]
    assert [d["trigger"] for d in decisions] == ["submitted", "declined", "declined"]


async def test_routing_decisions_are_not_for_providers(client, allocate):
    referral = await allocate("accommodation")
    assert (
        await client.get(f"/needs/{referral.need_id}/routing", headers=NACRO)
    ).status_code == 403
    assert (
        await client.get(f"/needs/{uuid.uuid4()}/routing", headers=auth("probation"))
    ).status_code == 404


async def test_details_are_temporarily_unavailable_when_referrals_is_down(client, allocate):
    referral = await allocate("accommodation")
    response = await client.get(f"/provider-referrals/{referral.id}", headers=NACRO)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(referral.id) and body["status"] == "allocated"
    assert body["details_available"] is False
    assert "temporarily unavailable" in body["details_message"]
    assert body["person"] is None and body["practitioner"] is None


async def test_details_come_from_the_referrals_service_with_a_service_token(app, client, allocate):
    referral = await allocate("accommodation")
    seen: list[httpx.Request] = []

    def referrals_service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "id": str(referral.referral_id),
                "person": {
                    "crn": "X123456",
                    "given_name": "Sam",
                    "family_name": "Example",
                    "date_of_birth": "1990-04-01",
                    "sex": "male",
                },
                "practitioner": {
                    "name": "Alex Officer",
                    "email": "alex@probation.example",
                    "team": "OMU",
                },
                "risk": {"rosh": "high"},
            },
        )

    runtime = app.state.runtime
    original = runtime.extras["referrals_client"]
    runtime.extras["referrals_client"] = ReferralsClient(
        app.state.settings,
        "http://referrals.test",
        transport=httpx.MockTransport(referrals_service),
    )
    try:
        body = (await client.get(
            f"/provider-referrals/{referral.id}",
            headers={**NACRO, "X-Correlation-ID": "provider-request-1"},
        )).json()
    finally:
        await runtime.extras["referrals_client"].close()
        runtime.extras["referrals_client"] = original
    assert body["details_available"] is True
    assert body["person"]["given_name"] == "Sam" and body["practitioner"]["team"] == "OMU"
    assert "risk" not in body
    [request] = seen
    assert request.url.path == f"/referrals/{referral.referral_id}"
    token = request.headers["authorization"].removeprefix("Bearer ")
    principal = app.state.authenticator.verify(token)
    assert principal.roles == {"service"}
    # The fetch carries the provider user's request: its correlation id and who it is for.
    assert request.headers["x-correlation-id"] == "provider-request-1"
    assert request.headers["x-on-behalf-of"] == "nacro-user@NACRO"


async def test_the_inbox_pages_newest_first_and_filters_by_status(client, allocate):
    made = [await allocate("accommodation") for _ in range(3)]
    await client.post(f"/provider-referrals/{made[0].id}/accept", headers=NACRO)
    first = (await client.get("/provider-referrals?limit=2", headers=NACRO)).json()
    second = (
        await client.get(
            f"/provider-referrals?limit=2&cursor={first['next_cursor']}", headers=NACRO
        )
    ).json()
    assert [r["id"] for r in first["data"] + second["data"]] == [str(m.id) for m in reversed(made)]
    assert second["next_cursor"] is None
    accepted = (await client.get("/provider-referrals?status=accepted", headers=NACRO)).json()
    assert [r["id"] for r in accepted["data"]] == [str(made[0].id)]
    bad = await client.get("/provider-referrals?status=lost", headers=NACRO)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    forged = await client.get("/provider-referrals?cursor=WyJ4Il0", headers=NACRO)
    assert forged.status_code == 422 and forged.json()["errors"][0]["field"] == "cursor"


async def test_reads_and_writes_are_logged_with_who_and_why(client, allocate, sessionmaker):
    referral = await allocate("accommodation", crn="L654321")
    await client.get("/provider-referrals", headers=NACRO)
    await client.get(f"/provider-referrals/{referral.id}", headers=NACRO)
    await client.post(f"/provider-referrals/{referral.id}/acknowledge", headers=NACRO)
    async with sessionmaker() as session:
        rows = (
            await session.exec(
                select(AccessLog).where(AccessLog.crn == "L654321").order_by(AccessLog.id)
            )
        ).all()
    assert [r.action for r in rows] == ["collection", "consultation", "consultation", "alteration"]
    assert rows[0].actor == "system:providers"
    assert {r.actor for r in rows[1:]} == {"nacro-user@NACRO"}


async def test_subject_access_request_answers_everything_held(client, allocate):
    referral = await allocate("accommodation", crn="S111222")
    await client.post(f"/provider-referrals/{referral.id}/accept", headers=NACRO)
    response = await client.get("/subject-access-requests?crn=S111222", headers=auth("admin"))
    assert response.status_code == 200
    body = response.json()
    assert body["crn"] == "S111222"
    assert [r["id"] for r in body["provider_referrals"]] == [str(referral.id)]
    assert body["provider_referrals"][0]["status"] == "accepted"
    assert len(body["needs"]) == 1 and len(body["routing_decisions"]) == 1
    assert len(body["access_log"]) >= 2
    assert (
        await client.get("/subject-access-requests?crn=S111222", headers=NACRO)
    ).status_code == 403
    bad = await client.get("/subject-access-requests?crn=nope", headers=auth("admin"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "crn"


async def test_deadlines_in_the_inbox_are_working_days_from_allocation(client, allocate):
    referral = await allocate("accommodation")
    entry = (await client.get(f"/provider-referrals/{referral.id}", headers=NACRO)).json()
    allocated = datetime.fromisoformat(entry["allocated_at"])
    acknowledge_by = datetime.fromisoformat(entry["acknowledge_by"])
    respond_by = datetime.fromisoformat(entry["respond_by"])
    assert allocated < acknowledge_by < respond_by
    assert timedelta(days=1) < acknowledge_by - allocated < timedelta(days=8)
    assert acknowledge_by.tzinfo is not None and acknowledge_by.utcoffset() == UTC.utcoffset(None)


async def test_person_details_are_shared_only_until_a_set_period_after_the_end(
    app, client, allocate, sessionmaker
):
    """Least knowledge: once the provider referral has ended (here declined), its person's
    details are served for `person_details_days_after_end` (30) days, then not at all; the
    rest of the record stays, and referrals is not even asked."""
    referral = await allocate("accommodation")
    declined = await client.post(
        f"/provider-referrals/{referral.id}/decline",
        json={"reason_code": "capacity"},
        headers=NACRO,
    )
    assert declined.status_code == 200, declined.text
    asked: list[httpx.Request] = []

    def referrals_service(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"person": {"given_name": "Sam"}, "practitioner": {}})

    async def read_ended_days_ago(days: float) -> dict:
        async with transaction(sessionmaker) as session:
            row = await session.get(ProviderReferralRow, referral.id)
            row.responded_at = utc_now() - timedelta(days=days)
        response = await client.get(f"/provider-referrals/{referral.id}", headers=NACRO)
        assert response.status_code == 200, response.text
        return response.json()

    runtime = app.state.runtime
    original = runtime.extras["referrals_client"]
    runtime.extras["referrals_client"] = ReferralsClient(
        app.state.settings, "http://referrals.test",
        transport=httpx.MockTransport(referrals_service),
    )
    try:
        recent = await read_ended_days_ago(29)
        long_ago = await read_ended_days_ago(31)
    finally:
        await runtime.extras["referrals_client"].close()
        runtime.extras["referrals_client"] = original
    assert recent["details_available"] is True and recent["person"] == {"given_name": "Sam"}
    assert long_ago["details_available"] is False and long_ago["person"] is None
    assert "no longer shared" in long_ago["details_message"]
    assert long_ago["status"] == "declined" and long_ago["id"] == str(referral.id)
    assert len(asked) == 1  # only while the details were still shared
