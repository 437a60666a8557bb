"""`make run` keeps the insights store in SQLite: the same projection and figures work there."""

from __future__ import annotations

import asyncio

from insights.config import InsightsSettings
from insights.consumers import Projector
from insights.domain.dimensions import Dimension
from insights.domain.figures import FigureKind
from insights.schemas import FiguresQuery
from insights.service import default_period, figures
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import utc_now
from pathways_shared.migrations import upgrade
from pathways_shared.testing import TEST_JWT_SECRET
from pathways_shared.vocabulary import AREAS
from pathways_shared.working_days import london_day

SERVICE_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


async def test_projection_and_figures_on_sqlite(tmp_path, factory):
    url = f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}"
    await asyncio.to_thread(upgrade, SERVICE_ROOT, url)  # alembic runs its own event loop
    settings = InsightsSettings(environment="test", database_url=url, jwt_secret=TEST_JWT_SECRET)
    handlers = Projector(settings).handlers()
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    try:
        events = factory.scenario()
        for event in [*reversed(events), *events]:
            async with transaction(sessionmaker) as session:
                await handlers[event.event_type.split(".", 1)[0].upper()][event.event_type](session, event)
        start, end = default_period(london_day(utc_now()))
        query = FiguresQuery(areas=tuple(sorted(AREAS)), **{"from": start}, to=end,
                             by=(Dimension.PROVIDER,))
        async with sessionmaker() as session:
            needs = await figures(session, FigureKind.NEEDS, query, threshold=1)
            levels = await figures(session, FigureKind.SERVICE_LEVELS, query, threshold=1)
            cohorts = await figures(session, FigureKind.COHORTS, query.model_copy(update={"by": ()}),
                                    threshold=1)
        assert (needs.total["submitted"], needs.total["allocated"], needs.total["withdrawn"]) == (7, 5, 1)
        assert needs.total["acknowledged_late"] == 2 and needs.total["responded_on_time"] == 3
        nacro = next(r for r in levels.rows if r["provider"] == "NACRO")
        assert nacro["median_working_days_to_acknowledge"] is not None
        assert cohorts.total["members"] == 1
    finally:
        await engine.dispose()
