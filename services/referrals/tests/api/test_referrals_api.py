"""The referrals HTTP API against real PostgreSQL and NATS: submission, validation, roles and
areas, reading (withdrawal, history and the DPA in `test_referrals_records_api.py`)."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func
from sqlmodel import select

from pathways_shared.testing import (
    age_today,
    assert_problem,
    auth,
    london_today,
    settle_outbox,
    stream_events,
    years_before,
)
from referrals.models import ReferralRow


async def submit(client: Any, body: dict[str, Any], **headers: str) -> Any:
    return await client.post("/referrals", json=body, headers={**auth("probation"), **headers})


async def count_referrals(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(ReferralRow))


# ----------------------------------------------------------------------------- submission


async def test_submit_answers_201_with_location_and_the_referral(client, referral_body):
    response = await submit(client, referral_body())
    assert response.status_code == 201, response.text
    referral = response.json()
    assert response.headers["location"] == f"/referrals/{referral['id']}"
    assert referral["status"] == "open"
    assert referral["source_reference"] == "NDELIUS-000123"
    assert referral["area"] == "E08000029"
    assert referral["submitted_at"].endswith("Z")
    assert referral["person"]["date_of_birth"] == "1990-04-01"
    [need] = referral["needs"]
    assert {
        "id",
        "pathway",
        "complexity",
        "flags",
        "status",
        "service_code",
        "provider_code",
        "programme",
        "status_reason",
        "allocated_at",
        "updated_at",
    } <= need.keys()
    assert (need["pathway"], need["status"], need["flags"]) == (
        "accommodation",
        "submitted",
        ["at_risk_of_homelessness"],
    )
    fetched = await client.get(response.headers["location"], headers=auth("probation"))
    assert fetched.json() == referral
    # Byte for byte what the response model writes (as GET, through FastAPI's serialization).
    assert response.content == fetched.content
    assert response.headers["content-type"] == fetched.headers["content-type"]


async def test_the_submitted_event_reaches_jetstream_with_routing_facts_only(
    client, referral_body, js, subject_prefix
):
    body = referral_body(
        needs=[
            {
                "pathway": "accommodation",
                "complexity": "medium",
                "flags": ["at_risk_of_homelessness"],
            },
            {"pathway": "education_training_employment", "complexity": "low"},
        ],
        risk={"rosh": "high", "mappa_level": 1},
    )
    referral = (await submit(client, body)).json()
    [event] = await stream_events(js, "REFERRALS", subject_prefix, expect=1)
    assert event.event_type == "referrals.referral.submitted"
    assert event.version == 1
    assert event.detail_url.endswith(f"/referrals/{referral['id']}")
    assert event.crn == "X123456"
    assert event.additional_information == {
        "referralId": referral["id"],
        "area": "E08000029",
        "needs": [
            {
                "needId": referral["needs"][0]["id"],
                "pathway": "accommodation",
                "complexity": "medium",
                "flags": ["at_risk_of_homelessness"],
            },
            {
                "needId": referral["needs"][1]["id"],
                "pathway": "education_training_employment",
                "complexity": "low",
                "flags": [],
            },
        ],
        "sex": "male",
        "ageOnSubmission": event.additional_information["ageOnSubmission"],
        "supervisionStatus": "licence",
        "rosh": "high",
        "mappaLevel": 1,
    }
    assert event.additional_information["ageOnSubmission"] == age_today(date(1990, 4, 1))
    wire = event.to_json().decode()
    assert json.loads(wire)["occurredAt"].endswith("Z")
    for personal in ("Sam", "Example", "1990-04-01", "alex.officer", "Solihull OMU", "No fixed"):
        assert personal not in wire


async def test_the_same_body_again_answers_200_and_creates_nothing(
    client, referral_body, sessionmaker, js, subject_prefix
):
    first = await submit(client, referral_body())
    again = await submit(client, referral_body())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert await count_referrals(sessionmaker) == 1
    await settle_outbox(sessionmaker)  # a second event, had it been written, is out by now
    assert len(await stream_events(js, "REFERRALS", subject_prefix)) == 1


async def test_an_idempotency_key_replays_and_refuses_a_different_body(
    client, referral_body, sessionmaker
):
    first = await submit(client, referral_body(), **{"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    # Same key and body: the same referral.
    again = await submit(client, referral_body(), **{"Idempotency-Key": "key-1"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    # Same key, another body: refused on the header.
    other = referral_body(source_reference="NDELIUS-999")
    assert_problem(
        await submit(client, other, **{"Idempotency-Key": "key-1"}), 422, "Idempotency-Key"
    )
    assert await count_referrals(sessionmaker) == 1


async def test_the_same_source_reference_with_another_body_is_refused(client, referral_body):
    assert (await submit(client, referral_body())).status_code == 201
    changed = referral_body(risk={"rosh": "high", "mappa_level": None})
    assert_problem(await submit(client, changed), 422, "source_reference")


async def test_keys_belong_to_the_submitting_client_and_area(client, referral_body, sessionmaker):
    """Another client reusing a source reference or Idempotency-Key neither collides with nor
    learns of the first client's referral: it is answered as if that did not exist."""
    first = await submit(client, referral_body(), **{"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    changed = referral_body(risk={"rosh": "high", "mappa_level": None})
    for n, (body, headers) in enumerate((
        (referral_body(), {}),  # the same body: not a replay of someone else's referral
        (changed, {}),  # another body: no "already submitted" hint
        (referral_body(source_reference="NDELIUS-777"), {"Idempotency-Key": "key-1"}),
    )):
        other_client = auth("probation", sub=f"another-case-system-{n}")
        response = await client.post(
            "/referrals", json=body, headers={**other_client, **headers}
        )
        assert response.status_code in (200, 201), response.text
        assert response.json()["id"] != first.json()["id"]
    # The same client in another area has keys of its own there too.
    elsewhere = await submit(client, referral_body(area="E08000025"))
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]
    # And the first client still replays its own.
    again = await submit(client, referral_body(), **{"Idempotency-Key": "key-1"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert await count_referrals(sessionmaker) == 5


async def test_key_order_and_spacing_do_not_make_a_different_body(client, referral_body):
    body = referral_body()
    first = await submit(client, body)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    again = await client.post(
        "/referrals",
        content=reordered,
        headers={**auth("probation"), "content-type": "application/json"},
    )
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.parametrize("header", [None, "race-key"])
async def test_identical_submissions_racing_create_one_referral(
    client, referral_body, sessionmaker, js, subject_prefix, header
):
    headers = {"Idempotency-Key": header} if header else {}
    responses = await asyncio.gather(
        *(submit(client, referral_body(), **headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_referrals(sessionmaker) == 1
    await settle_outbox(sessionmaker)
    assert len(await stream_events(js, "REFERRALS", subject_prefix)) == 1


# ----------------------------------------------------------------------------- validation


# derived from the clock, so that the case stays at the edge on any day (29 February included)
EIGHTEEN_TOMORROW = (years_before(london_today(), 18) + timedelta(days=1)).isoformat()

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("bad CRN", {"person": {"crn": "12345"}}, "person.crn"),
    ("bad NOMS number", {"person": {"noms_number": "A12BC"}}, "person.noms_number"),
    ("bad PNC number", {"person": {"pnc_number": "PNC"}}, "person.pnc_number"),
    (
        "under 18 (18 tomorrow)",
        {"person": {"date_of_birth": EIGHTEEN_TOMORROW}},
        "person.date_of_birth",
    ),
    ("born in the future", {"person": {"date_of_birth": "2099-01-01"}}, "person.date_of_birth"),
    ("not a date", {"person": {"date_of_birth": "01/04/1990"}}, "person.date_of_birth"),
    ("unknown sex", {"person": {"sex": "unknown"}}, "person.sex"),
    ("interpreter", {"person": {"needs_interpreter": True}}, "person.interpreter_language"),
    ("too long", {"person": {"given_name": "x" * 201}}, "person.given_name"),
    ("unknown person field", {"person": {"nickname": "Sammy"}}, "person.nickname"),
    ("unknown top-level field", {"priority": "high"}, "priority"),
    ("unknown area", {"area": "E09000001"}, "area"),
    ("unknown status", {"supervision": {"status": "bail"}}, "supervision.status"),
    (
        "custody without release date",
        {"supervision": {"status": "custody_pre_release", "expected_release_date": None}},
        "supervision.expected_release_date",
    ),
    (
        "custody released in the past",
        {"supervision": {"status": "custody_pre_release", "expected_release_date": "2020-01-01"}},
        "supervision.expected_release_date",
    ),
    (
        "licence with a release date",
        {"supervision": {"status": "licence", "expected_release_date": "2099-01-01"}},
        "supervision.expected_release_date",
    ),
    ("unknown rosh", {"risk": {"rosh": "extreme", "mappa_level": None}}, "risk.rosh"),
    ("mappa 4", {"risk": {"rosh": "low", "mappa_level": 4}}, "risk.mappa_level"),
    ("no consent", {"consent": {"given": False, "recorded_at": None}}, "consent.given"),
    ("missing consent", {"consent": None}, "consent"),
    ("no needs", {"needs": []}, "needs"),
    (
        "eight needs",
        {
            "needs": [
                {"pathway": p, "complexity": "low"}
                for p in [
                    "accommodation",
                    "education_training_employment",
                    "finance_benefit_debt",
                    "children_families",
                    "drugs_alcohol",
                    "health",
                    "attitudes_thinking_behaviour",
                    "accommodation",
                ]
            ]
        },
        "needs",
    ),
    (
        "unknown pathway",
        {
            "needs": [
                {"pathway": "accommodation", "complexity": "low"},
                {"pathway": "housing", "complexity": "low"},
            ]
        },
        "needs.1.pathway",
    ),
    (
        "duplicate pathway",
        {
            "needs": [
                {"pathway": "health", "complexity": "low"},
                {"pathway": "health", "complexity": "high"},
            ]
        },
        "needs.1.pathway",
    ),
    (
        "unknown flag",
        {"needs": [{"pathway": "health", "complexity": "low", "flags": ["vip"]}]},
        "needs.0.flags.0",
    ),
    (
        "unknown need field",
        {"needs": [{"pathway": "health", "complexity": "low", "urgent": True}]},
        "needs.0.urgent",
    ),
    ("blank source reference", {"source_reference": " "}, "source_reference"),
    (
        "bad practitioner email",
        {"practitioner": {"name": "A", "email": "nope"}},
        "practitioner.email",
    ),
]


@pytest.mark.parametrize(("case", "changes", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_submissions_are_refused_with_the_field_at_fault(
    client, referral_body, sessionmaker, case, changes, field
):
    body = referral_body()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    assert_problem(await submit(client, body), 422, field)
    assert await count_referrals(sessionmaker) == 0


async def test_a_body_that_is_not_json_is_a_422_not_a_500(client):
    response = await client.post(
        "/referrals",
        content=b"{not json",
        headers={**auth("probation"), "content-type": "application/json"},
    )
    assert_problem(response, 422)


# ----------------------------------------------------------------------------- roles, areas


@pytest.mark.parametrize(
    ("method", "path", "role", "status"),
    [
        ("post", "/referrals", None, 401),
        ("post", "/referrals", "provider", 403),
        ("post", "/referrals", "service", 403),
        ("post", "/referrals", "police", 403),
        ("get", "/referrals", None, 401),
        ("get", "/referrals", "police", 403),
        ("get", "/referrals", "provider", 403),
        ("get", "/referrals", "service", 200),
        ("get", "/referrals", "probation", 200),
        ("get", "/pathways", None, 401),
        ("get", "/pathways", "police", 200),
        ("get", "/subject-access-requests?crn=X123456", "probation", 403),
        ("get", "/subject-access-requests?crn=X123456", "admin", 200),
    ],
)
async def test_role_checks(client, referral_body, method, path, role, status):
    headers = auth(role) if role else {}
    kwargs = {"json": referral_body()} if method == "post" else {}
    response = await getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    if status >= 400:
        assert_problem(response, status)


async def test_a_bad_token_is_401(client):
    response = await client.get("/referrals", headers={"Authorization": "Bearer not.a.token"})
    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("method", "suffix", "role"),
    [
        ("get", "", "provider"),
        ("get", "/history", "police"),
        ("post", "/withdraw", "service"),
    ],
)
async def test_one_referral_is_closed_to_other_roles(client, referral_body, method, suffix, role):
    referral = (await submit(client, referral_body())).json()
    kwargs = {"json": {"reason_code": "duplicate"}} if method == "post" else {}
    response = await getattr(client, method)(
        f"/referrals/{referral['id']}{suffix}", headers=auth(role), **kwargs
    )
    assert_problem(response, 403)


async def test_a_caller_sees_only_the_areas_in_its_claims(client, referral_body):
    solihull = (await submit(client, referral_body())).json()
    birmingham_body = referral_body(source_reference="NDELIUS-B", area="E08000025")
    birmingham = (await submit(client, birmingham_body)).json()

    in_birmingham = auth("probation", areas=["E08000025"])
    listed = (await client.get("/referrals", headers=in_birmingham)).json()
    assert [r["id"] for r in listed["data"]] == [birmingham["id"]]
    # Asking for another area by filter does not widen what the caller sees.
    asked = await client.get("/referrals", params={"area": "E08000029"}, headers=in_birmingham)
    assert asked.json()["data"] == []
    for suffix in ("", "/history"):
        hidden = await client.get(f"/referrals/{solihull['id']}{suffix}", headers=in_birmingham)
        assert_problem(hidden, 404)
    withdraw = await client.post(
        f"/referrals/{solihull['id']}/withdraw",
        json={"reason_code": "duplicate"},
        headers=in_birmingham,
    )
    assert_problem(withdraw, 404)
    refused = await client.post(
        "/referrals",
        json=referral_body(source_reference="NDELIUS-C"),
        headers=in_birmingham,
    )
    assert_problem(refused, 403, "area")
    # A national caller (no areas claim) sees both.
    everything = (await client.get("/referrals", headers=auth("probation"))).json()
    assert len(everything["data"]) == 2


# ----------------------------------------------------------------------------- reading


async def test_unknown_and_malformed_ids(client):
    missing = await client.get(f"/referrals/{UUID(int=5)}", headers=auth("probation"))
    assert_problem(missing, 404)
    malformed = await client.get("/referrals/not-a-uuid", headers=auth("probation"))
    assert_problem(malformed, 422, "referral_id")


async def make_referrals(client, referral_body, count: int) -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        body = referral_body(
            source_reference=f"NDELIUS-{i:03}",
            person={**referral_body()["person"], "crn": f"X{i:06}"},
            area="E08000029" if i % 2 == 0 else "E08000025",
            needs=[{"pathway": "health" if i % 3 == 0 else "drugs_alcohol", "complexity": "low"}],
        )
        response = await submit(client, body)
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def test_listing_pages_newest_first_with_a_cursor(client, referral_body):
    made = await make_referrals(client, referral_body, 5)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/referrals", params=params, headers=auth("probation"))).json()
        seen += [r["id"] for r in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [r["id"] for r in reversed(made)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"crn": "X000003"}, [3]),
        ({"area": "E08000025"}, [3, 1]),
        ({"pathway": "health"}, [3, 0]),
        ({"status": "open"}, [4, 3, 2, 1, 0]),
        ({"status": "withdrawn"}, []),
        ({"area": "E08000029", "pathway": "drugs_alcohol"}, [4, 2]),
        ({"provider_code": "NACRO"}, []),
    ],
)
async def test_listing_filters(client, referral_body, params, expected):
    made = await make_referrals(client, referral_body, 5)
    page = (await client.get("/referrals", params=params, headers=auth("service"))).json()
    assert [r["id"] for r in page["data"]] == [made[i]["id"] for i in expected]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"status": "lost"}, "status"),
        ({"pathway": "housing"}, "pathway"),
    ],
)
async def test_bad_list_parameters_are_422_on_the_parameter(client, params, field):
    response = await client.get("/referrals", params=params, headers=auth("probation"))
    assert_problem(response, 422, field)


@pytest.mark.parametrize(
    "values",
    [
        ["2026-11-24T10:00:00", "00000000-0000-0000-0000-000000000001"],  # no zone
        ["yesterday", "00000000-0000-0000-0000-000000000001"],
        ["2026-11-24T10:00:00+00:00", "not-a-uuid"],
        [1, 2],
        [None, None],
        ["2026-11-24T10:00:00+00:00"],
        {"a": 1},
    ],
)
@pytest.mark.parametrize("path", ["/referrals", "/referrals/{id}/history"])
async def test_a_forged_cursor_is_422_not_500(client, referral_body, values, path):
    from pathways_shared.pagination import encode_cursor

    referral = (await submit(client, referral_body())).json()
    response = await client.get(
        path.format(id=referral["id"]),
        params={"cursor": encode_cursor(values)},
        headers=auth("probation"),
    )
    assert_problem(response, 422, "cursor")


async def test_pathways_lists_the_seven(client):
    body = (await client.get("/pathways", headers=auth("probation"))).json()
    assert [p["code"] for p in body["data"]] == [
        "accommodation",
        "education_training_employment",
        "finance_benefit_debt",
        "children_families",
        "drugs_alcohol",
        "health",
        "attitudes_thinking_behaviour",
    ]
    assert body["next_cursor"] is None
