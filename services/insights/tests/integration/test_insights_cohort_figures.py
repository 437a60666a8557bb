"""The cohort figures counted by the database (`cohort_stock`, a few rows) equal the rule
applied to every cohort fact in Python (`cohort_rows`, the reference), for random histories
with ties, re-adoptions and activity, by every breakdown."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from insights.domain.cohorts import (
    ACTIVITY,
    DESELECTED,
    SELECTED,
    CohortFact,
    cohort_answer,
    cohort_rows,
    periods_of,
)
from insights.domain.dimensions import Dimension
from insights.repository import COHORT_FACTS, InsightsRepository
from pathways_shared.clock import london_today, utc_now
from pathways_shared.db import make_engine, make_sessionmaker, transaction

AREAS = ("E08000025", "E08000029")


def history(seed: int) -> list[CohortFact]:
    rng = random.Random(seed)
    now = utc_now().replace(microsecond=0)
    facts = []
    for m in range(60):
        member = f"member-{m}"
        for _ in range(rng.randint(1, 6)):
            # Whole days and hours: many facts share an instant (ties broken as the rule says).
            at = now - timedelta(days=rng.randint(0, 500), hours=rng.choice((0, 0, 5, 23)))
            kind = rng.choice((SELECTED, SELECTED, DESELECTED, ACTIVITY, ACTIVITY))
            facts.append(CohortFact(
                str(uuid.UUID(int=rng.getrandbits(128))), kind, member, rng.choice(AREAS),
                rng.choice(("fixed", "flex")), at,
                reason=rng.choice(("desisted", "panel_decision")) if kind == DESELECTED else None,
                pathway=rng.choice(("accommodation", "health", None)) if kind == ACTIVITY else None,
                status=rng.choice(("allocated", "completed", "unallocated", None))
                if kind == ACTIVITY else None,
            ))
    return facts


async def test_counted_by_the_database_as_by_the_rule(settings):
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    today = london_today()
    try:
        for seed in (1, 2):
            facts = history(seed)
            async with transaction(sessionmaker) as session:
                await session.exec(COHORT_FACTS.delete())
                await session.exec(COHORT_FACTS.insert(), params=[f._asdict() for f in facts])
            for start, end in ((today - timedelta(days=364), today),
                               (today - timedelta(days=200), today - timedelta(days=40))):
                for by in ((), (Dimension.COHORT, Dimension.REASON), (Dimension.AREA,),
                           (Dimension.MONTH,), (Dimension.MONTH, Dimension.COHORT)):
                    async with sessionmaker() as session:
                        repository = InsightsRepository(session)
                        stock = await repository.cohort_stock(AREAS, periods_of(start, end, by))
                        flows = await repository.cohort_flows(AREAS, start, end)
                    fast, fast_total = cohort_answer(stock, flows, start, end, by)
                    rule, rule_total = cohort_rows(facts, start, end, by)
                    assert fast_total == rule_total, (seed, by)
                    assert {r.key: r.counts for r in fast} == {r.key: r.counts for r in rule}, (
                        seed, start, by)
                    assert rule_total["members"] > 0
    finally:
        await engine.dispose()
