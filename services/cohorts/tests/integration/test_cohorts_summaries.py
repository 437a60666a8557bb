"""The SQL aggregate behind a selection run gives the same summaries as the pure
`summarise` over the same offences, on the window edges too."""

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cohorts.domain.policy import SelectionPolicy, default_policy
from cohorts.domain.selection import Nominal, Offence, select, summarise, summary_windows
from cohorts.models import NominalRecord
from cohorts.repository import CohortsRepository
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.vocabulary import OffenceCategory, SupervisionStatus

AS_OF = date(2026, 11, 24)
AREA = "E08000029"


async def load(url: str, people: list[Nominal], history: dict[str, list[Offence]]) -> Any:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with transaction(sessionmaker) as session:
        for p in people:
            session.add(
                NominalRecord(
                    crn=p.crn,
                    area=AREA,
                    date_of_birth=p.date_of_birth,
                    supervision_status=p.supervision_status.value,
                    mappa_level=p.mappa_level,
                    created_at=now,
                    updated_at=now,
                )
            )
        await session.flush()
        rows = [
            {
                "crn": crn,
                "offence_date": o.offence_date,
                "category": o.category.value,
                "description": f"#{i}",
                "recorded_at": now,
            }
            for crn, offences in history.items()
            for i, o in enumerate(offences)
        ]
        for start in range(0, len(rows), 1000):
            await CohortsRepository(session).insert_offences(rows[start : start + 1000])
    return engine, sessionmaker


def population(rng: random.Random) -> tuple[list[Nominal], dict[str, list[Offence]]]:
    windows = summary_windows(AS_OF, default_policy())
    edges = [
        windows.score_from,
        windows.score_from - timedelta(days=1),
        windows.candidacy_from,
        windows.candidacy_from - timedelta(days=1),
        AS_OF,
        AS_OF + timedelta(days=1),
        AS_OF - timedelta(days=90),
        AS_OF - timedelta(days=91),
        AS_OF - timedelta(days=365),
        AS_OF - timedelta(days=366),
    ]
    people, history = [], {}
    for i in range(400):
        crn = f"S{i:06d}"
        people.append(
            Nominal(
                crn,
                AS_OF - timedelta(days=rng.randint(16 * 365, 70 * 365)),
                rng.choice(list(SupervisionStatus)),
                rng.choice([None, None, None, 1, 2, 3]),
            )
        )
        history[crn] = [
            Offence(
                rng.choice(edges)
                if rng.random() < 0.3
                else AS_OF - timedelta(days=rng.randint(-20, 4000)),
                rng.choice(list(OffenceCategory)),
            )
            for _ in range(rng.choice([0, 1, 2, 5, 9, 17, 30]))
        ]
    return people, history


async def test_sql_summaries_match_the_pure_ones(settings: Any) -> None:
    rng = random.Random(2026)
    people, history = population(rng)
    engine, sessionmaker = await load(settings.database_url, people, history)
    left_in_sql: list[int] = []
    try:
        for policy in (
            default_policy(),
            SelectionPolicy.from_dict(
                {
                    "flex_categories": ["shoplifting", "fraud"],
                    "score": {"window_years": 2, "gravity_weights": {"fraud": 7}},
                    "candidacy_window_years": 1,
                    "thresholds": {"fixed": 0, "flex": 0, "free": 0},
                }
            ),
        ):
            async with sessionmaker() as session:
                sql = await CohortsRepository(session).summaries(AS_OF, policy, area=AREA)
            pure = [summarise(p, history[p.crn], AS_OF, policy) for p in people]
            by_crn = {s.crn: s for s in sql}
            # Everyone the SQL left out could be neither a candidate nor excluded.
            for s in pure:
                if s.crn in by_crn:
                    assert by_crn[s.crn] == s, s.crn
            sql_run = select(sql, AS_OF, policy, area=AREA, policy_version=1)
            pure_run = select(pure, AS_OF, policy, area=AREA, policy_version=1)
            assert sql_run == pure_run
            assert len(sql_run.candidates) > 20 and len(sql_run.excluded) > 20
            left_in_sql.append(len(pure) - len(sql))
        # The default policy's filter leaves people in SQL; thresholds of 0 leave nobody.
        assert left_in_sql[0] > 50 and left_in_sql[1] == 0
    finally:
        await engine.dispose()


async def test_one_persons_summary_is_never_filtered(settings: Any) -> None:
    person = Nominal("S999999", date(1980, 1, 1), SupervisionStatus.NON_STATUTORY)
    old = [Offence(date(2001, 1, 1), OffenceCategory.OTHER)]
    engine, sessionmaker = await load(settings.database_url, [person], {person.crn: old})
    try:
        async with sessionmaker() as session:
            found = await CohortsRepository(session).summaries(AS_OF, default_policy(), crns=[person.crn])
            in_area = await CohortsRepository(session).summaries(AS_OF, default_policy(), area=AREA)
        assert found == [summarise(person, old, AS_OF, default_policy())]
        assert in_area == []
    finally:
        await engine.dispose()
