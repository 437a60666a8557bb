from typing import Any

import httpx

from pathways_shared.testing import auth

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
NOMINAL = {
    "area": SOLIHULL,
    "date_of_birth": "1995-06-01",
    "supervision_status": "licence",
    "mappa_level": 1,
    "pnc_number": "2001/1234567A",
}


async def test_put_creates_then_replaces(client: httpx.AsyncClient, police: dict) -> None:
    created = await client.put("/nominals/X200001", json=NOMINAL, headers=police)
    assert created.status_code == 201, created.text
    assert created.json()["crn"] == "X200001"
    assert created.headers["location"] == "/nominals/X200001"
    replaced = await client.put(
        "/nominals/X200001", json={**NOMINAL, "mappa_level": None}, headers=police
    )
    assert replaced.status_code == 200
    shown = (await client.get("/nominals/X200001", headers=police)).json()
    assert (shown["mappa_level"], shown["pnc_number"], shown["offence_count"]) == (
        None,
        "2001/1234567A",
        0,
    )


async def test_offences_are_added_once(
    client: httpx.AsyncClient, police: dict, days_ago: Any
) -> None:
    await client.put("/nominals/X200002", json=NOMINAL, headers=police)
    body = {"offences": [{"offence_date": days_ago(3), "category": "theft_from_person"}]}
    first = await client.post("/nominals/X200002/offences", json=body, headers=police)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/nominals/X200002/offences"
    assert (first.json()["added"], first.json()["duplicates"]) == (1, 0)
    again = (await client.post("/nominals/X200002/offences", json=body, headers=police)).json()
    assert (again["added"], again["duplicates"]) == (0, 1)
    shown = (await client.get("/nominals/X200002", headers=police)).json()
    assert (shown["offence_count"], shown["last_offence_date"]) == (1, days_ago(3))


async def test_bad_nominals_and_offences_name_the_field(
    client: httpx.AsyncClient, police: dict, days_ago: Any
) -> None:
    cases = [
        ({**NOMINAL, "date_of_birth": "01/06/1995"}, "date_of_birth"),
        ({**NOMINAL, "date_of_birth": days_ago(-2)}, "date_of_birth"),
        ({**NOMINAL, "supervision_status": "parole"}, "supervision_status"),
        ({**NOMINAL, "mappa_level": 4}, "mappa_level"),
        ({**NOMINAL, "pnc_number": "123"}, "pnc_number"),
        ({**NOMINAL, "area": "E00000000"}, "area"),
        ({**NOMINAL, "given_name": "Sam"}, "given_name"),
    ]
    for body, field in cases:
        answer = await client.put("/nominals/X200003", json=body, headers=police)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
    bad_crn = await client.put("/nominals/x1", json=NOMINAL, headers=police)
    assert bad_crn.status_code == 422
    assert [e["field"] for e in bad_crn.json()["errors"]] == ["crn"]

    await client.put("/nominals/X200003", json=NOMINAL, headers=police)
    offence_cases = [
        (
            {"offences": [{"offence_date": days_ago(-1), "category": "other"}]},
            "offences.0.offence_date",
        ),
        ({"offences": [{"offence_date": days_ago(1), "category": "arson"}]}, "offences.0.category"),
        ({"offences": []}, "offences"),
    ]
    for body, field in offence_cases:
        answer = await client.post("/nominals/X200003/offences", json=body, headers=police)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()


async def test_nominals_are_scoped_to_the_callers_areas(
    client: httpx.AsyncClient, police: dict, days_ago: Any
) -> None:
    await client.put("/nominals/X200004", json=NOMINAL, headers=police)
    outsider = auth("police", areas=[BIRMINGHAM])
    assert (await client.get("/nominals/X200004", headers=outsider)).status_code == 404
    assert (await client.get("/nominals/X200099", headers=police)).status_code == 404
    moved = await client.put(
        "/nominals/X200004", json={**NOMINAL, "area": BIRMINGHAM}, headers=police
    )
    assert moved.status_code == 403
    body = {"offences": [{"offence_date": days_ago(1), "category": "other"}]}
    assert (
        await client.post("/nominals/X200004/offences", json=body, headers=outsider)
    ).status_code == 404
    assert (
        await client.get("/nominals/X200004", headers=auth("provider", provider="NACRO"))
    ).status_code == 403


async def test_an_assessment_explains_a_person(
    client: httpx.AsyncClient, police: dict, seed: Any
) -> None:
    await seed("X200005", dob="2004-01-01", offences=[(10, "burglary_domestic")] * 8)
    answer = await client.get("/nominals/X200005/assessment", headers=police)
    assert answer.status_code == 200, answer.text
    a = answer.json()
    assert (a["cohort"], a["prolific"], a["meets"]) == ("fixed", True, ["fixed", "free"])
    assert a["reasons"]
    for bad in ("0001-01-01", "2999-01-01", "soon"):
        refused = await client.get(
            "/nominals/X200005/assessment", params={"as_of": bad}, headers=police
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["as_of"]


async def test_concurrent_first_puts_create_once_and_never_fail(
    client: httpx.AsyncClient, police: dict
) -> None:
    import asyncio

    answers = await asyncio.gather(
        *(client.put("/nominals/X200006", json=NOMINAL, headers=police) for _ in range(6))
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 409}, statuses


async def test_a_number_is_not_a_date_of_birth(client: httpx.AsyncClient, police: dict) -> None:
    r = await client.put("/nominals/X200009", json={**NOMINAL, "date_of_birth": 0}, headers=police)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["date_of_birth"]
