"""Events published on the real NATS reach the projection through the durable consumers, and
the figures count every step once, with no personal identifier stored."""

from __future__ import annotations

import asyncpg
from sqlalchemy import func, select

from insights.domain.dimensions import Dimension
from insights.domain.figures import FigureKind
from insights.schemas import FiguresQuery
from insights.service import default_period, figures
from pathways_shared.events import utc_now
from pathways_shared.harness import asyncpg_dsn as _asyncpg_dsn
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import auth, wait_until
from pathways_shared.vocabulary import AREAS
from pathways_shared.working_days import london_day

ALL_AREAS = tuple(sorted(AREAS))
CRNS = ("X100001", "X100002", "X100003")  # the scenario's people (conftest)


async def projected(sessionmaker, expected: int) -> None:
    async def count() -> bool:
        async with sessionmaker() as session:
            n = await session.scalar(select(func.count()).select_from(ProcessedEvent))
            return n >= expected

    await wait_until(count, timeout=30)


def question(*by: Dimension, **filters) -> FiguresQuery:
    start, end = default_period(london_day(utc_now()))
    return FiguresQuery(areas=ALL_AREAS, **{"from": start}, to=end, by=by, **filters)


async def answer(sessionmaker, kind: FigureKind, *by: Dimension, **filters):
    async with sessionmaker() as session:
        return await figures(session, kind, question(*by, **filters), threshold=1)


async def test_every_step_is_counted_once_from_the_streams(app, sessionmaker, factory, publish):
    events = factory.scenario()
    await publish(*events)
    await publish(*events[:5])  # published again (another id window): no second effect
    await projected(sessionmaker, len(events))

    needs = (await answer(sessionmaker, FigureKind.NEEDS)).total
    assert {k: needs[k] for k in (
        "submitted", "allocated", "unallocated", "declined", "accepted", "started", "completed",
        "withdrawn", "acknowledged_on_time", "acknowledged_late", "responded_on_time",
        "responded_late", "outcome_achieved", "outcome_partially_achieved",
        "outcome_not_achieved", "duty_to_refer_sent",
    )} == {
        "submitted": 7, "allocated": 5, "unallocated": 3, "declined": 2, "accepted": 2,
        "started": 1, "completed": 1, "withdrawn": 1, "acknowledged_on_time": 2,
        "acknowledged_late": 2, "responded_on_time": 3, "responded_late": 1,
        "outcome_achieved": 1, "outcome_partially_achieved": 0, "outcome_not_achieved": 0,
        "duty_to_refer_sent": 1,
    }

    unmet = await answer(sessionmaker, FigureKind.UNMET_NEED, Dimension.REASON)
    assert {r["reason"]: r["unallocated"] for r in unmet.rows} == {
        "no_service": 1, "supervision_status": 1, "all_declined": 1,
    }

    by_provider = await answer(sessionmaker, FigureKind.SERVICE_LEVELS, Dimension.PROVIDER)
    rows = {r["provider"]: r for r in by_provider.rows}
    assert rows["NACRO"]["allocated"] == 1 and rows["NACRO"]["acknowledged_on_time"] == 1
    assert rows["NACRO"]["achievement_score"] == 1.0 and rows["NACRO"]["acceptance_rate"] == 1.0
    assert rows["MAXIMUS"]["acceptance_rate"] == 0.0
    assert rows["IXION"]["acknowledged_late"] == 1 and rows["IXION"]["deadlines_missed"] == 1
    assert rows["NACRO"]["median_working_days_to_acknowledge"] is not None

    withdrawn = await answer(sessionmaker, FigureKind.NEEDS, Dimension.PROVIDER)
    assert {r["provider"]: r["withdrawn"] for r in withdrawn.rows}["PROBATION"] == 1

    duty = (await answer(sessionmaker, FigureKind.DUTY_TO_REFER)).total
    assert (duty["accommodation_at_risk"], duty["duty_to_refer_sent"]) == (1, 1)

    cohorts = await answer(sessionmaker, FigureKind.COHORTS, Dimension.COHORT)
    assert cohorts.total["members"] == 1 and cohorts.total["adopted"] == 2
    assert cohorts.total["deselected"] == 1 and cohorts.total["members_with_open_need"] == 1
    assert {r["cohort"]: r["members"] for r in cohorts.rows} == {"fixed": 1, "flex": 0}

    by_sex = await answer(sessionmaker, FigureKind.NEEDS, Dimension.SEX, Dimension.AGE_BAND)
    assert {(r["sex"], r["age_band"]): r["submitted"] for r in by_sex.rows} == {
        ("male", "25-34"): 3, ("female", "50-64"): 2, ("male", "18-24"): 2,
    }
    filtered = await answer(sessionmaker, FigureKind.NEEDS, Dimension.PATHWAY, provider="IXION")
    assert [(r["pathway"], r["allocated"]) for r in filtered.rows] == [
        ("education_training_employment", 1)]


async def test_no_personal_identifier_reaches_the_database(
    app, client, sessionmaker, factory, publish, database_url, personal_identifiers
):
    events = factory.scenario()
    await publish(*events)
    await projected(sessionmaker, len(events))
    identifiers = personal_identifiers
    # A subject access request is answered (and logged) without storing the CRN either.
    sar = await client.get("/subject-access-requests", params={"crn": CRNS[2]}, headers=auth("admin"))
    assert sar.status_code == 200, sar.text
    assert [e["kind"] for e in sar.json()["cohort_events"]] == ["selected", "activity"]
    none = await client.get("/subject-access-requests", params={"crn": "Z999999"}, headers=auth("admin"))
    assert none.json()["cohort_events"] == []
    assert (await client.get("/subject-access-requests", params={"crn": CRNS[2]},
                             headers=auth("partnership"))).status_code == 403
    assert (await client.get("/subject-access-requests", params={"crn": "nope"},
                             headers=auth("admin"))).status_code == 422
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "need_facts" in tables and "cohort_facts" in tables
        scanned = 0
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                scanned += 1
                for column, value in row.items():
                    text = str(value)
                    assert not any(i in text for i in identifiers), (table, column)
        assert scanned > len(events)
    finally:
        await conn.close()
