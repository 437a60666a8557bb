"""The referrals HTTP API against real PostgreSQL and NATS: withdrawal, history, the access log
and subject access requests, the published document and crafted inputs."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import structlog.testing
from sqlmodel import select

from pathways_shared.testing import (
    assert_problem,
    auth,
    stream_events,
)
from referrals.models import NeedRow, ReferralRow


async def submit(client: Any, body: dict[str, Any], **headers: str) -> Any:
    return await client.post("/referrals", json=body, headers={**auth("probation"), **headers})


# ----------------------------------------------------------------------------- withdrawal


async def test_withdrawal_withdraws_every_open_need_and_publishes(
    client, referral_body, js, subject_prefix
):
    body = referral_body(
        needs=[
            {"pathway": "health", "complexity": "low"},
            {"pathway": "drugs_alcohol", "complexity": "high"},
        ]
    )
    referral = (await submit(client, body)).json()
    response = await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "moved_out_of_area", "comments": "Moved to Leeds"},
        headers=auth("probation"),
    )
    assert response.status_code == 200, response.text
    withdrawn = response.json()
    assert withdrawn["status"] == "withdrawn"
    assert [n["status"] for n in withdrawn["needs"]] == ["withdrawn", "withdrawn"]
    assert [n["status_reason"] for n in withdrawn["needs"]] == ["moved_out_of_area"] * 2
    events = await stream_events(js, "REFERRALS", subject_prefix, expect=2)
    assert [e.event_type for e in events] == [
        "referrals.referral.submitted",
        "referrals.referral.withdrawn",
    ]
    assert events[1].additional_information == {
        "referralId": referral["id"],
        "needIds": [n["id"] for n in referral["needs"]],
        "reasonCode": "moved_out_of_area",
    }
    assert "Leeds" not in events[1].to_json().decode()

    again = await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "duplicate"},
        headers=auth("probation"),
    )
    assert_problem(again, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason_code": "bored"}, "reason_code"),
        ({"reason_code": "other"}, "comments"),
        ({"reason_code": "other", "comments": "  "}, "comments"),
        ({"reason_code": "duplicate", "extra": 1}, "extra"),
        ({}, "reason_code"),
    ],
)
async def test_bad_withdrawals_are_422(client, referral_body, body, field):
    referral = (await submit(client, referral_body())).json()
    response = await client.post(
        f"/referrals/{referral['id']}/withdraw", json=body, headers=auth("probation")
    )
    assert_problem(response, 422, field)
    still = await client.get(f"/referrals/{referral['id']}", headers=auth("probation"))
    assert still.json()["status"] == "open"


async def test_withdrawing_an_unknown_referral_is_404(client):
    response = await client.post(
        f"/referrals/{UUID(int=9)}/withdraw",
        json={"reason_code": "duplicate"},
        headers=auth("probation"),
    )
    assert_problem(response, 404)


async def test_withdrawing_a_closed_referral_is_409(client, referral_body, sessionmaker):
    referral = (await submit(client, referral_body())).json()
    async with sessionmaker() as session:
        need = await session.get(NeedRow, UUID(referral["needs"][0]["id"]))
        need.status = "completed"
        row = await session.get(ReferralRow, UUID(referral["id"]))
        row.status = "closed"
        await session.commit()
    response = await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "duplicate"},
        headers=auth("probation"),
    )
    body = assert_problem(response, 409)
    assert "closed" in body["title"].lower()


# ----------------------------------------------------------------------------- history, DPA


async def test_history_lists_every_change_oldest_first(client, referral_body):
    referral = (await submit(client, referral_body())).json()
    await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "deceased"},
        headers=auth("probation", sub="officer-7"),
    )
    history = (
        await client.get(f"/referrals/{referral['id']}/history", headers=auth("service"))
    ).json()
    need_id = referral["needs"][0]["id"]
    assert [(h["event"], h["need_id"]) for h in history["data"]] == [
        ("submitted", None),
        ("need-submitted", need_id),
        ("withdrawn", None),
        ("need-withdrawn", need_id),
    ]
    assert history["data"][0]["actor"] == "test-probation"
    assert history["data"][2]["actor"] == "officer-7"
    assert history["data"][2]["detail"]["reason_code"] == "deceased"
    assert all(h["at"].endswith("Z") for h in history["data"])
    # Pages too.
    first = (
        await client.get(
            f"/referrals/{referral['id']}/history", params={"limit": 3}, headers=auth("service")
        )
    ).json()
    rest = (
        await client.get(
            f"/referrals/{referral['id']}/history",
            params={"limit": 3, "cursor": first["next_cursor"]},
            headers=auth("service"),
        )
    ).json()
    assert [h["event"] for h in first["data"] + rest["data"]] == [
        h["event"] for h in history["data"]
    ]
    assert rest["next_cursor"] is None


async def access_rows(sessionmaker: Any) -> list[Any]:
    from pathways_shared.infra_models import AccessLog

    async with sessionmaker() as session:
        result = await session.exec(select(AccessLog).order_by(AccessLog.id))
        return list(result)


async def test_every_read_and_write_of_a_record_is_logged(client, referral_body, sessionmaker):
    referral = (await submit(client, referral_body())).json()
    rid = referral["id"]
    await client.get(f"/referrals/{rid}", headers={**auth("service"), "X-Purpose": "allocation"})
    await client.get("/referrals", headers=auth("probation"))
    await client.get(f"/referrals/{rid}/history", headers=auth("probation"))
    await client.post(
        f"/referrals/{rid}/withdraw", json={"reason_code": "duplicate"}, headers=auth("probation")
    )
    rows = await access_rows(sessionmaker)
    assert [(r.action, r.actor, r.crn) for r in rows] == [
        ("collection", "test-probation", "X123456"),
        ("consultation", "test-service", "X123456"),
        ("consultation", "test-probation", "X123456"),
        ("consultation", "test-probation", "X123456"),
        ("alteration", "test-probation", "X123456"),
    ]
    assert rows[1].purpose == "allocation"
    assert rows[3].resource.endswith("/history")
    assert all(r.at is not None and r.purpose for r in rows)


async def test_a_peer_service_read_is_logged_for_its_user_under_their_correlation_id(
    client, referral_body, sessionmaker
):
    """The providers service fetching a person's details for a provider user: the access log
    names the user it was for and joins the provider's request by its correlation id. The
    header is honoured only from a service token."""
    rid = (await submit(client, referral_body())).json()["id"]
    peer = {
        **auth("service", sub="providers-service"),
        "X-On-Behalf-Of": "nacro-user@NACRO",
        "X-Correlation-ID": "provider-request-1",
    }
    with structlog.testing.capture_logs() as logged:
        assert (await client.get(f"/referrals/{rid}", headers=peer)).status_code == 200
    claimed = {**auth("probation"), "X-On-Behalf-Of": "someone-else"}
    assert (await client.get(f"/referrals/{rid}", headers=claimed)).status_code == 200
    _, peer_read, own_read = await access_rows(sessionmaker)
    assert (peer_read.actor, peer_read.correlation_id) == (
        "providers-service for nacro-user@NACRO", "provider-request-1"
    )
    assert own_read.actor == "test-probation"
    [line] = [e for e in logged if e["event"] == "referral.read_on_behalf"]
    assert line["on_behalf_of"] == "nacro-user@NACRO" and line["caller"] == "providers-service"


async def test_a_refused_request_logs_nothing(client, referral_body, sessionmaker):
    await submit(client, referral_body(needs=[]))
    assert await access_rows(sessionmaker) == []


async def test_subject_access_request_answers_everything_held(client, referral_body, sessionmaker):
    referral = (await submit(client, referral_body())).json()
    other = referral_body(
        source_reference="NDELIUS-OTHER", person={**referral_body()["person"], "crn": "Y654321"}
    )
    await submit(client, other)
    await client.get(f"/referrals/{referral['id']}", headers=auth("probation"))

    response = await client.get(
        "/subject-access-requests", params={"crn": "X123456"}, headers=auth("admin")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["crn"] == "X123456"
    [held] = body["referrals"]
    assert held["referral"]["id"] == referral["id"]
    assert held["referral"]["person"]["given_name"] == "Sam"
    assert [h["event"] for h in held["history"]] == ["submitted", "need-submitted"]
    assert [a["action"] for a in body["access_log"]] == ["collection", "consultation"]
    # The disclosure itself is logged.
    rows = await access_rows(sessionmaker)
    assert (rows[-1].action, rows[-1].crn) == ("disclosure", "X123456")


async def test_subject_access_request_is_for_national_admins_only(client):
    response = await client.get(
        "/subject-access-requests",
        params={"crn": "X123456"},
        headers=auth("admin", areas=["E08000029"]),
    )
    assert_problem(response, 403)


@pytest.mark.parametrize("crn", ["bad", "x123456", ""])
async def test_subject_access_request_needs_a_valid_crn(client, crn):
    response = await client.get(
        "/subject-access-requests", params={"crn": crn}, headers=auth("admin")
    )
    assert_problem(response, 422, "crn")


async def test_subject_access_request_without_crn_is_422(client):
    assert_problem(await client.get("/subject-access-requests", headers=auth("admin")), 422, "crn")


async def test_openapi_documents_every_route_of_the_contract(client):
    spec = (await client.get("/openapi.json")).json()
    expected = {
        ("/referrals", "post"),
        ("/referrals", "get"),
        ("/referrals/{referral_id}", "get"),
        ("/referrals/{referral_id}/history", "get"),
        ("/referrals/{referral_id}/withdraw", "post"),
        ("/pathways", "get"),
        ("/subject-access-requests", "get"),
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert expected <= documented
    withdraw = spec["paths"]["/referrals/{referral_id}/withdraw"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "422"} <= withdraw.keys()
    assert "application/problem+json" in withdraw["409"]["content"]


@pytest.mark.parametrize(
    ("section", "key", "value", "field"),
    [
        ("person", "date_of_birth", 0, "person.date_of_birth"),
        ("person", "date_of_birth", "1990-04-01T00:00:00", "person.date_of_birth"),
        ("person", "needs_interpreter", "no", "person.needs_interpreter"),
        ("consent", "given", "yes", "consent.given"),
        ("consent", "given", 1, "consent.given"),
    ],
)
async def test_no_string_or_number_becomes_a_date_or_a_boolean(client, referral_body, section, key, value, field):
    body = referral_body()
    body[section][key] = value
    r = await client.post("/referrals", json=body, headers=auth("probation"))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_crafted_times_and_cursors_are_422_naming_the_field(client, referral_body):
    body = referral_body(consent={"given": True, "recorded_at": "0001-01-01T00:00:00+05:00"})
    assert_problem(await submit(client, body), 422, "consent.recorded_at")
    probation = auth("probation")
    for raw in ("[1e30,1]", '[Infinity,"x"]', "[NaN,1]", '["0001-01-01T00:00:00+05:00","x"]',
                '[1,"00000000-0000-0000-0000-000000000000"]', "{}", "garbage"):
        import base64

        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        answer = await client.get("/referrals", params={"cursor": cursor}, headers=probation)
        assert_problem(answer, 422, "cursor")


@pytest.mark.parametrize(
    "email", ["alex@pro_bation.example", "alex(officer)@probation.example", "a@b.c\n"]
)
async def test_a_practitioner_address_notifications_would_refuse_is_refused_at_submission(
    client, referral_body, email
):
    from pathways_shared.vocabulary import is_email_address  # what notifications sends to

    assert not is_email_address(email)
    body = referral_body(
        practitioner={"name": "Alex Officer", "email": email, "team": "OMU"}
    )
    assert_problem(await submit(client, body), 422, "practitioner.email")
