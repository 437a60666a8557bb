import httpx

from pathways_shared.testing import auth

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"


async def test_an_area_starts_with_the_defaults(client: httpx.AsyncClient, police: dict) -> None:
    answer = await client.get(f"/policies/{SOLIHULL}", headers=police)
    assert answer.status_code == 200, answer.text
    policy = answer.json()
    assert (policy["area"], policy["version"], policy["updated_by"]) == (SOLIHULL, 0, None)
    assert policy["flex_categories"] == [
        "domestic_abuse",
        "drugs_supply",
        "violence_with_injury",
        "weapons_possession",
    ]
    assert policy["thresholds"] == {"fixed": 50, "flex": 50, "free": 40}
    assert policy["review_interval_weeks"] == 12
    assert policy["score"]["gravity_weights"]["robbery_personal"] == 5


async def test_admin_replaces_a_policy_and_each_change_is_a_version(
    client: httpx.AsyncClient, admin: dict
) -> None:
    first = await client.put(
        f"/policies/{SOLIHULL}",
        json={"flex_categories": ["shoplifting"], "review_interval_weeks": 8},
        headers=admin,
    )
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["flex_categories"]) == (1, ["shoplifting"])
    assert first.json()["updated_by"] == "test-admin"
    current = (await client.get(f"/policies/{SOLIHULL}", headers=admin)).json()
    current["capacities"]["free"] = 3
    second = await client.put(f"/policies/{SOLIHULL}", json=current, headers=admin)
    assert second.status_code == 200, second.text
    assert (second.json()["version"], second.json()["capacities"]["free"]) == (2, 3)
    assert second.json()["review_interval_weeks"] == 8
    stale = await client.put(f"/policies/{SOLIHULL}", json=current, headers=admin)
    assert stale.status_code == 409
    other = (await client.get(f"/policies/{BIRMINGHAM}", headers=admin)).json()
    assert other["version"] == 0


async def test_an_invalid_policy_names_every_field_at_fault(
    client: httpx.AsyncClient, admin: dict
) -> None:
    answer = await client.put(
        f"/policies/{SOLIHULL}",
        json={
            "flex_categories": ["burglary_domestic"],
            "thresholds": {"fixed": 120},
            "score": {"frequency_cap": 60},
            "prolific_bands": [{"min_age": 16, "max_age": None, "min_offences": 8}],
        },
        headers=admin,
    )
    assert answer.status_code == 422, answer.text
    fields = {e["field"] for e in answer.json()["errors"]}
    assert {"flex_categories", "thresholds.fixed", "score", "prolific_bands.0.min_age"} <= fields
    unknown = await client.put(f"/policies/{SOLIHULL}", json={"weights": {}}, headers=admin)
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["weights"]
    wrong_area = await client.put(f"/policies/{SOLIHULL}", json={"area": BIRMINGHAM}, headers=admin)
    assert wrong_area.status_code == 422
    assert [e["field"] for e in wrong_area.json()["errors"]] == ["area"]


async def test_only_admin_changes_policies(client: httpx.AsyncClient, panel: dict) -> None:
    assert (await client.put(f"/policies/{SOLIHULL}", json={}, headers=panel)).status_code == 403
    assert (await client.get(f"/policies/{SOLIHULL}")).status_code == 401
    outsider = auth("police", areas=[BIRMINGHAM])
    assert (await client.get(f"/policies/{SOLIHULL}", headers=outsider)).status_code == 403
    # an area the document does not list is refused before anything is looked up (issue 15)
    unknown = await client.get("/policies/E00000000", headers=auth("admin"))
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["area"]
