"""The catalogue and eligibility over HTTP: roles, validation as problem+json, no 500s."""

from __future__ import annotations

from typing import Any

import pytest

from pathways_shared.testing import auth, london_today, years_before

ADMIN = auth("admin")
PROBATION = auth("probation")


def service_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Housing First pilot",
        "provider_code": "NACRO",
        "programme": "Pilot",
        "pathway": "accommodation",
        "areas": ["E08000029"],
        "priority": 5,
        "eligibility": {"sexes": None, "min_age": 25, "max_age": 60},
        "acknowledge_days": 1,
        "respond_days": 3,
        "active": True,
    }
    body.update(changes)
    return body


def eligibility_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "area": "E08000029",
        "person": {"date_of_birth": "1990-04-01", "sex": "male"},
        "supervision": {"status": "licence"},
        "need": {"pathway": "education_training_employment", "complexity": "medium", "flags": []},
    }
    body.update(changes)
    return body


async def test_providers_are_listed_with_their_services(client):
    response = await client.get("/providers", headers=auth("provider", provider="NACRO"))
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    providers = {p["code"]: p for p in body["data"]}
    assert len(providers) == 10
    assert providers["CHANGING_LIVES"]["services"] == ["CRS-ACC-F", "CRS-ETE-F", "CRS-FBD-F"]
    one = await client.get("/providers/SIAS", headers=auth("police"))
    assert one.json() == {
        "code": "SIAS",
        "name": "SIAS (Solihull Integrated Addiction Services)",
        "services": ["DA-SIAS", "HH-SIAS"],
    }


async def test_unknown_provider_or_service_is_404_problem(client):
    for path in ("/providers/ACME", "/services/NOPE"):
        response = await client.get(path, headers=PROBATION)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/providers", "/services", "/services/CRS-ACC-M"])
async def test_the_catalogue_needs_a_token(client, path):
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "codes"),
    [
        ("pathway=finance_benefit_debt", ["COMM-FBD", "CRS-FBD-F", "CRS-FBD-M"]),
        ("pathway=finance_benefit_debt&area=E08000025", ["CRS-FBD-F", "CRS-FBD-M"]),
        (
            "area=E08000031",
            [
                "ATB-PS",
                "CFO3-ETE",
                "CRS-ACC-F",
                "CRS-ACC-M",
                "CRS-ETE-F",
                "CRS-ETE-M",
                "CRS-FBD-F",
                "CRS-FBD-M",
            ],
        ),
        ("pathway=health", ["ND-IOM"]),
    ],
)
async def test_services_filtered_by_pathway_and_area(client, query, codes):
    response = await client.get(f"/services?{query}", headers=PROBATION)
    assert response.status_code == 200
    assert [s["code"] for s in response.json()["data"]] == codes


async def test_a_service_shows_its_whole_contract(client):
    body = (await client.get("/services/HH-SIAS", headers=PROBATION)).json()
    assert body == {
        "code": "HH-SIAS",
        "name": "Hidden Harm",
        "provider_code": "SIAS",
        "programme": "Hidden Harm",
        "pathway": "children_families",
        "areas": ["E08000029"],
        "priority": 10,
        "eligibility": {
            "sexes": None,
            "min_age": 18,
            "max_age": None,
            "supervision_statuses": None,
            "complexities": None,
            "required_flags": ["parental_substance_misuse"],
            "requires_iom_membership": False,
        },
        "acknowledge_days": 2,
        "respond_days": 5,
        "active": True,
    }


async def test_services_are_paged_by_code(client):
    first = (await client.get("/services?limit=5", headers=PROBATION)).json()
    assert len(first["data"]) == 5 and first["next_cursor"]
    codes = [s["code"] for s in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (await client.get(f"/services?limit=5&cursor={cursor}", headers=PROBATION)).json()
        codes += [s["code"] for s in page["data"]]
        cursor = page["next_cursor"]
    assert codes == sorted(codes) and len(codes) == 13


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("pathway=housing", "pathway"),
        ("area=E09000001", "area"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=%%%", "cursor"),
    ],
)
async def test_bad_service_queries_are_422_on_the_parameter(client, query, field):
    response = await client.get(f"/services?{query}", headers=PROBATION)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_admin_creates_then_replaces_a_service(client):
    created = await client.put("/services/HF-PILOT", json=service_body(), headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == "HF-PILOT"
    assert created.headers["location"] == "/services/HF-PILOT"
    assert created.json()["eligibility"]["min_age"] == 25
    replaced = await client.put(
        "/services/HF-PILOT", json=service_body(active=False, code="HF-PILOT"), headers=ADMIN
    )
    assert replaced.status_code == 200
    assert "location" not in replaced.headers
    refused = await client.delete("/services/HF-PILOT", headers=ADMIN)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, PUT"
    stored = (await client.get("/services/HF-PILOT", headers=PROBATION)).json()
    assert stored["active"] is False and stored["respond_days"] == 3
    nacro = (await client.get("/providers/NACRO", headers=PROBATION)).json()
    assert "HF-PILOT" in nacro["services"]


async def test_a_replaced_service_changes_routing(client):
    body = service_body(areas=["west-midlands"], priority=1, eligibility={})
    assert (await client.put("/services/HF-PILOT", json=body, headers=ADMIN)).status_code == 201
    answer = await client.post(
        "/eligibility",
        json=eligibility_body(need={"pathway": "accommodation", "complexity": "low"}),
        headers=PROBATION,
    )
    assert answer.json()["chosen"] == "HF-PILOT"


@pytest.mark.parametrize("role", ["probation", "provider", "police", "service"])
async def test_only_admin_may_change_the_catalogue(client, role):
    response = await client.put("/services/HF-PILOT", json=service_body(), headers=auth(role))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("path_code", "body", "field"),
    [
        ("HF-PILOT", service_body(provider_code="ACME"), "provider_code"),
        ("HF-PILOT", service_body(pathway="housing"), "pathway"),
        ("HF-PILOT", service_body(areas=["E09000001"]), "areas"),
        ("HF-PILOT", service_body(areas=[]), "areas"),
        ("HF-PILOT", service_body(priority=-1), "priority"),
        ("HF-PILOT", service_body(acknowledge_days=4, respond_days=2), "respond_days"),
        ("HF-PILOT", service_body(eligibility={"min_age": 16}), "eligibility.min_age"),
        (
            "HF-PILOT",
            service_body(eligibility={"min_age": 40, "max_age": 30}),
            "eligibility.max_age",
        ),
        ("HF-PILOT", service_body(eligibility={"sexes": ["other"]}), "eligibility.sexes.0"),
        ("HF-PILOT", service_body(eligibility={"sexes": []}), "eligibility.sexes"),
        (
            "HF-PILOT",
            service_body(eligibility={"required_flags": ["vip"]}),
            "eligibility.required_flags.0",
        ),
        ("HF-PILOT", service_body(eligibility={"colour": "red"}), "eligibility.colour"),
        ("HF-PILOT", service_body(surprise=True), "surprise"),
        ("HF-PILOT", service_body(code="OTHER"), "code"),
        ("lower-case", service_body(), "code"),
        ("HF-PILOT", {k: v for k, v in service_body().items() if k != "name"}, "name"),
    ],
)
async def test_invalid_services_are_422_with_the_field(client, path_code, body, field):
    response = await client.put(f"/services/{path_code}", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_a_body_that_is_not_json_is_422(client):
    response = await client.put(
        "/services/HF-PILOT",
        content=b"{not json",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert response.status_code == 422


# ---- eligibility ---------------------------------------------------------------------------


async def test_eligibility_answers_every_service_of_the_pathway_with_reasons(client):
    response = await client.post("/eligibility", json=eligibility_body(), headers=PROBATION)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["chosen"] == "CRS-ETE-M"
    services = {s["code"]: s for s in body["services"]}
    assert list(services) == ["CRS-ETE-F", "CRS-ETE-M", "CFO3-ETE"]
    assert services["CRS-ETE-F"]["eligible"] is False
    assert "female" in services["CRS-ETE-F"]["reason"]
    assert services["CRS-ETE-M"] == {
        "code": "CRS-ETE-M",
        "eligible": True,
        "reason": None,
        "criterion": None,
    }
    assert services["CFO3-ETE"]["eligible"] is True


@pytest.mark.parametrize(
    ("changes", "chosen"),
    [
        ({"need": {"pathway": "education_training_employment", "complexity": "low"}}, "CFO3-ETE"),
        ({"need": {"pathway": "health", "complexity": "low"}}, None),
        ({"need": {"pathway": "health", "complexity": "low"}, "iom_member": True}, "ND-IOM"),
        (
            {
                "need": {
                    "pathway": "children_families",
                    "complexity": "low",
                    "flags": ["parental_substance_misuse"],
                }
            },
            "HH-SIAS",
        ),
        ({"need": {"pathway": "children_families", "complexity": "low"}}, "EH-SMBC"),
        (
            {
                "supervision": {"status": "non_statutory"},
                "need": {"pathway": "finance_benefit_debt", "complexity": "high"},
            },
            "COMM-FBD",
        ),
        (
            {
                "person": {"date_of_birth": "1990-04-01", "sex": "female"},
                "need": {"pathway": "accommodation", "complexity": "low"},
            },
            "CRS-ACC-F",
        ),
    ],
)
async def test_eligibility_chooses_by_the_routing_rule(client, changes, chosen):
    response = await client.post(
        "/eligibility", json=eligibility_body(**changes), headers=PROBATION
    )
    assert response.status_code == 200, response.text
    assert response.json()["chosen"] == chosen


async def test_eligibility_for_someone_under_18_says_why(client):
    born = years_before(london_today(), 17)  # 17 today (or yesterday, on 29 February)
    body = eligibility_body(person={"date_of_birth": born.isoformat(), "sex": "male"})
    answer = (await client.post("/eligibility", json=body, headers=PROBATION)).json()
    assert answer["chosen"] is None and answer["age"] == 17
    assert all(s["criterion"] == "min_age" for s in answer["services"] if s["code"] != "CRS-ETE-F")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (eligibility_body(area="E09000001"), "area"),
        (
            eligibility_body(person={"date_of_birth": "2999-01-01", "sex": "male"}),
            "person.date_of_birth",
        ),
        (
            eligibility_body(person={"date_of_birth": "1990-02-30", "sex": "male"}),
            "person.date_of_birth",
        ),
        (eligibility_body(person={"date_of_birth": "1990-01-01", "sex": "x"}), "person.sex"),
        (eligibility_body(supervision={"status": "bail"}), "supervision.status"),
        (eligibility_body(need={"pathway": "housing", "complexity": "low"}), "need.pathway"),
        (eligibility_body(need={"pathway": "health", "complexity": "extreme"}), "need.complexity"),
        (
            eligibility_body(need={"pathway": "health", "complexity": "low", "flags": ["vip"]}),
            "need.flags.0",
        ),
        (eligibility_body(iom_member="maybe"), "iom_member"),
        (eligibility_body(extra=1), "extra"),
        ({k: v for k, v in eligibility_body().items() if k != "need"}, "need"),
    ],
)
async def test_bad_eligibility_questions_are_422_with_the_field(client, body, field):
    response = await client.post("/eligibility", json=body, headers=PROBATION)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("role", "status"), [("admin", 200), ("probation", 200), ("provider", 403), ("police", 403)]
)
async def test_eligibility_roles(client, role, status):
    response = await client.post("/eligibility", json=eligibility_body(), headers=auth(role))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"person": {"date_of_birth": 0, "sex": "male"}}, "person.date_of_birth"),
        ({"iom_member": "yes"}, "iom_member"),
        ({"iom_member": 1}, "iom_member"),
    ],
)
async def test_eligibility_takes_no_number_as_a_date_or_a_boolean(client, changes, field):
    response = await client.post("/eligibility", json=eligibility_body(**changes), headers=PROBATION)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/providers/nacro", "code"),
        ("/providers/NACRO%0A", "code"),
        ("/services/crs-acc-m", "code"),
        ("/services/CRS-ACC-M%0A", "code"),
        ("/services/CRS--M", "code"),
        ("/needs/not-a-uuid/routing", "need_id"),
        ("/provider-referrals/42", "provider_referral_id"),
        ("/subject-access-requests?crn=X123456%0A", "crn"),
    ],
)
async def test_a_path_parameter_that_does_not_match_is_a_422_naming_it(client, path, field):
    response = await client.get(path, headers=auth(["admin", "probation", "provider"], provider="NACRO"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field], response.text
