"""Counts read as whole months less the days outside the period (`period_terms`) equal the
reference: the daily rows of the period's days summed, for random periods, by every kind of
breakdown, in `figure_cells` and `figure_details`."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta

from insights.domain.dimensions import Dimension
from insights.repository import CELLS, DETAILS, InsightsRepository
from pathways_shared.db import make_engine, make_sessionmaker, transaction

AREAS = ("E08000025", "E08000029")
SERVICES = (("CRS-ACC-M", "NACRO"), ("CRS-ETE-M", "MAXIMUS"), ("DA-SIAS", "SIAS"))
FIRST = date(2025, 1, 1)


def daily_rows(rng: random.Random) -> tuple[list[dict], list[dict]]:
    cells, details = [], []
    for offset in range(500):
        day = FIRST + timedelta(days=offset)
        for area in AREAS:
            for service, provider in SERVICES:
                if rng.random() < 0.3:
                    continue
                key = {"cube": "S", "grain": "D", "period": day, "month": day.strftime("%Y-%m"),
                       "area": area, "pathway": "accommodation", "complexity": "", "sex": "",
                       "age_band": "", "supervision": "", "service_code": service,
                       "provider_code": provider, "programme": "CRS"}
                cells.append(key | {"allocated": rng.randint(0, 5), "declined": rng.randint(0, 2)})
                for detail in ("1", "2", "4"):
                    if rng.random() < 0.6:
                        details.append(key | {"measure": "working_days_to_acknowledge",
                                              "detail": detail, "count": rng.randint(1, 3)})
    return cells, details


def monthly(rows: list[dict], measures: tuple[str, ...]) -> list[dict]:
    sums: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(measures, 0))
    for row in rows:
        key = tuple((k, v.replace(day=1) if k == "period" else v)
                    for k, v in row.items() if k not in measures and k != "grain")
        for m in measures:
            sums[key][m] += row[m]
    return [dict(key) | {"grain": "M"} | counts for key, counts in sums.items()]


async def test_months_less_days_read_as_the_days_summed(settings):
    rng = random.Random(11)
    cells, details = daily_rows(rng)
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with transaction(sessionmaker) as session:
            await session.exec(CELLS.delete())
            await session.exec(DETAILS.delete())
            await session.exec(CELLS.insert(), params=[
                *cells, *monthly(cells, ("allocated", "declined"))])
            await session.exec(DETAILS.insert(), params=[*details, *monthly(details, ("count",))])
        for _ in range(12):
            start = FIRST + timedelta(days=rng.randint(0, 300))
            end = min(start + timedelta(days=rng.choice((3, 17, 45, 200))), FIRST + timedelta(days=499))
            inside = [r for r in cells if start <= r["period"] <= end]
            inside_details = [r for r in details if start <= r["period"] <= end]
            for by in ((), (Dimension.PROVIDER,), (Dimension.SERVICE, Dimension.MONTH),
                       (Dimension.AREA,)):
                names = {Dimension.PROVIDER: "provider_code", Dimension.SERVICE: "service_code",
                         Dimension.MONTH: "month", Dimension.AREA: "area"}
                expected: dict[tuple, dict[str, int]] = defaultdict(lambda: {"allocated": 0,
                                                                             "declined": 0})
                for r in inside:
                    key = tuple(r[names[d]] for d in by)
                    expected[key]["allocated"] += r["allocated"]
                    expected[key]["declined"] += r["declined"]
                expected_details: dict[tuple, int] = defaultdict(int)
                for r in inside_details:
                    expected_details[(tuple(r[names[d]] for d in by), r["detail"])] += r["count"]
                async with sessionmaker() as session:
                    repository = InsightsRepository(session)
                    read = await repository.read_counts(
                        ("allocated", "declined"), areas=AREAS, start=start, end=end, by=by)
                    read_details = await repository.read_details(
                        ["working_days_to_acknowledge"], areas=AREAS, start=start, end=end, by=by)
                assert {r.key: r.counts for r in read} == {
                    k: v for k, v in expected.items() if any(v.values())}, (start, end, by)
                assert {(key, detail): n for _, key, detail, n in read_details} == {
                    k: n for k, n in expected_details.items() if n}, (start, end, by)
    finally:
        await engine.dispose()
