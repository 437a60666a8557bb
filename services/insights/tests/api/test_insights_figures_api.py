"""The figures API: roles and areas, parameters and their errors, JSON and CSV, suppression."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import auth, wait_until

KINDS = ("needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer")
SOLIHULL, BIRMINGHAM = "E08000029", "E08000025"


@pytest.fixture
async def projected(app, sessionmaker, factory, publish):
    events = factory.scenario()
    await publish(*events)

    async def done() -> bool:
        async with sessionmaker() as session:
            return (await session.scalar(select(func.count()).select_from(ProcessedEvent))) >= len(events)

    await wait_until(done, timeout=30)
    return events


def problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize("kind", KINDS)
async def test_each_route_answers_the_contract_shape(client, projected, kind):
    r = await client.get(f"/figures/{kind}", headers=auth("admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"areas", "from", "to", "by", "suppression", "rows", "total"}
    assert body["suppression"] == {"threshold": 5} and body["by"] == []
    assert len(body["areas"]) == 7 and len(body["rows"]) == 1
    assert body["rows"][0] == body["total"] and "suppressed" in body["total"]


@pytest.mark.parametrize("role", ["probation", "provider", "police", "iom_panel", "service"])
async def test_other_roles_are_refused(client, role):
    problem(await client.get("/figures/needs", headers=auth(role)), 403)


async def test_no_token_is_401(client):
    problem(await client.get("/figures/needs"), 401)


async def test_a_partnership_sees_its_own_areas_only(client, projected):
    headers = auth("partnership", areas=[SOLIHULL])
    r = await client.get("/figures/needs", headers=headers, params={"by": "area"})
    assert r.json()["areas"] == [SOLIHULL]
    assert [row["area"] for row in r.json()["rows"]] == [SOLIHULL]
    problem(await client.get("/figures/needs", headers=headers, params={"area": BIRMINGHAM}), 403)
    problem(await client.get("/figures/needs", headers=headers,
                             params={"area": "west-midlands"}), 403)
    everywhere = auth("partnership", areas=[SOLIHULL, BIRMINGHAM])
    r = await client.get("/figures/needs", headers=everywhere,
                         params=[("area", SOLIHULL), ("area", BIRMINGHAM)])
    assert r.json()["areas"] == [BIRMINGHAM, SOLIHULL]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "colour"}, "by"),
        ({"by": "pathway,area,sex"}, "by"),
        ({"by": "pathway,pathway"}, "by"),
        ({"by": "reason"}, "by"),  # reason is a dimension of unmet need, not of needs
        ({"area": "E99999999"}, "area"),
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "0"}, "from"),  # a number is not a date (lax parsing read it as 1970-01-01)
        ({"from": "2026-06-02", "to": "2026-06-01"}, "from"),
        ({"from": "1990-01-01", "to": "2026-01-01"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
        ({"pathway": "knitting"}, "pathway"),
        ({"provider": "ACME"}, "provider"),
        ({"format": "xml"}, "format"),
        ({"by": "pathway\x00"}, "by"),
    ],
)
async def test_bad_parameters_are_422_naming_them(client, params, field):
    problem(await client.get("/figures/needs", headers=auth("admin"), params=params), 422, field)


async def test_unmet_need_and_cohorts_have_their_own_dimensions(client, projected):
    r = await client.get("/figures/unmet-need", headers=auth("admin"), params={"by": "reason"})
    assert r.status_code == 200 and {row["reason"] for row in r.json()["rows"]} == {
        "no_service", "supervision_status", "all_declined"}
    r = await client.get("/figures/cohorts", headers=auth("admin"), params={"by": "cohort,month"})
    assert r.status_code == 200, r.text
    problem(await client.get("/figures/cohorts", headers=auth("admin"), params={"by": "pathway"}),
            422, "by")


async def test_small_numbers_are_suppressed_and_named(client, projected):
    r = await client.get("/figures/needs", headers=auth("admin"), params={"by": "pathway"})
    body = r.json()
    total = body["total"]
    assert total["submitted"] == 7 and total["allocated"] == 5  # shown: 5 or more
    assert total["unallocated"] is None and "unallocated" in total["suppressed"]  # 3
    assert total["withdrawn"] is None  # 1
    for row in body["rows"]:  # one or two needs a pathway: every non-zero count hidden
        for column, value in row.items():
            if column in ("pathway", "suppressed"):
                continue
            assert value == 0 or (value is None and column in row["suppressed"])
    levels = (await client.get("/figures/service-levels", headers=auth("admin"))).json()["total"]
    assert levels["acceptance_rate"] is None  # from 2 accepted, 2 declined
    assert levels["allocated"] == 5 and levels["median_working_days_to_acknowledge"] is None


async def test_csv_by_accept_header_or_format(client, projected):
    r = await client.get("/figures/needs", headers={**auth("admin"), "Accept": "text/csv"},
                         params={"by": "sex"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["sex", "submitted", "allocated"]
    by_sex = {row[0]: row for row in rows[1:]}
    # 2 women: suppressed; then 5 men too, or the total of 7 would give the 2 away.
    assert by_sex["female"][1] == "" and by_sex["male"][1] == ""
    assert by_sex["male"][2] == "5" and by_sex["female"][2] == "0"  # allocated: a true zero
    same = await client.get("/figures/needs", headers=auth("admin"),
                            params={"by": "sex", "format": "csv"})
    assert same.text == r.text
    assert "attachment" in same.headers["content-disposition"]


async def test_an_empty_period_shows_true_zeros(client, projected):
    r = await client.get("/figures/needs", headers=auth("admin"),
                         params={"from": "2020-01-01", "to": "2020-12-31"})
    total = r.json()["total"]
    assert total["submitted"] == 0 and total["suppressed"] == []


async def test_service_levels_count_declines_by_reason_code(client, projected, sessionmaker):
    from datetime import timedelta

    from insights.domain.dimensions import Dimension
    from insights.schemas import FiguresQuery
    from insights.service import figures
    from pathways_shared.clock import london_today
    from pathways_shared.vocabulary import AREAS

    # Below the threshold (one decline each): in the CSV's columns, every cell suppressed.
    r = await client.get("/figures/service-levels", headers=auth("admin"),
                         params={"by": "provider", "format": "csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {"declined", "declined_capacity", "declined_not_eligible", "declined_other"} <= set(rows[0])
    by_provider = {row["provider"]: row for row in rows}
    assert by_provider["MAXIMUS"]["declined_capacity"] == "" and by_provider["MAXIMUS"]["declined"] == ""
    assert by_provider["NACRO"]["declined_capacity"] == "0"  # a true zero

    # With a threshold of 1 (nothing small): each decline under its provider and reason code.
    today = london_today()
    query = FiguresQuery(areas=tuple(sorted(AREAS)), **{"from": today - timedelta(days=364)},
                         to=today, by=(Dimension.PROVIDER,))
    async with sessionmaker() as session:
        answer = await figures(session, "service-levels", query, threshold=1)
    shown = {row["provider"]: row for row in answer.rows}
    assert (shown["MAXIMUS"]["declined"], shown["MAXIMUS"]["declined_capacity"]) == (1, 1)
    assert (shown["ND_SERVICE"]["declined"], shown["ND_SERVICE"]["declined_not_eligible"]) == (1, 1)
    assert shown["ND_SERVICE"]["declined_capacity"] == 0
    assert answer.total["declined"] == 2 and answer.total["declined_other"] == 0
