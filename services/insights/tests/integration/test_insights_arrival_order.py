"""Every figure is the same whatever order the events arrive in, however often each arrives:
a property test over arrival orders (with repetitions) of a realistic set of events, applied
through the real handlers to the real PostgreSQL store, and a test of events applied at once
from many transactions (the per-need lock)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insights.consumers import Projector
from insights.domain.dimensions import Dimension
from insights.domain.figures import FigureKind
from insights.repository import InsightsRepository
from insights.schemas import FiguresQuery
from insights.service import default_period, figures
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import Event, utc_now
from pathways_shared.vocabulary import AREAS
from pathways_shared.working_days import london_day

QUESTIONS: list[tuple[FigureKind, tuple[Dimension, ...]]] = [
    (FigureKind.NEEDS, ()),
    (FigureKind.NEEDS, (Dimension.PROVIDER, Dimension.MONTH)),
    (FigureKind.NEEDS, (Dimension.PATHWAY, Dimension.SEX)),
    (FigureKind.UNMET_NEED, (Dimension.REASON, Dimension.AREA)),
    (FigureKind.SERVICE_LEVELS, (Dimension.SERVICE,)),
    (FigureKind.SERVICE_LEVELS, (Dimension.AGE_BAND, Dimension.SUPERVISION)),
    (FigureKind.COHORTS, (Dimension.COHORT, Dimension.REASON)),
    (FigureKind.DUTY_TO_REFER, (Dimension.AREA,)),
]


@pytest.fixture
async def store(settings) -> Any:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine), Projector(settings).handlers()
    await engine.dispose()


async def apply(sessionmaker, handlers, event: Event) -> None:
    handler = handlers[event.event_type.split(".", 1)[0].upper()][event.event_type]
    async with transaction(sessionmaker) as session:
        await handler(session, event)


async def snapshot(sessionmaker) -> dict:
    start, end = default_period(london_day(utc_now()))
    out = {}
    async with sessionmaker() as session:
        for kind, by in QUESTIONS:
            query = FiguresQuery(areas=tuple(sorted(AREAS)), **{"from": start}, to=end, by=by)
            answer = await figures(session, kind, query, threshold=1)
            out[(kind, by)] = (answer.rows, answer.total)
    return out


async def clear(sessionmaker) -> None:
    async with transaction(sessionmaker) as session:
        await InsightsRepository(session).clear([])


@pytest.fixture
async def in_order(store, factory) -> tuple[list[Event], dict]:
    sessionmaker, handlers = store
    events = factory.scenario()
    for event in events:
        await apply(sessionmaker, handlers, event)
    expected = await snapshot(sessionmaker)
    assert expected[(FigureKind.NEEDS, ())][1]["submitted"] == 7
    return events, expected


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_every_arrival_order_gives_the_same_figures(store, in_order, data):
    sessionmaker, handlers = store
    events, expected = in_order
    order = data.draw(st.permutations(events), label="arrival order")
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=8), label="redelivered")
    arrivals = list(order)
    for event in repeats:
        arrivals.insert(data.draw(st.integers(0, len(arrivals)), label="at"), event)
    await clear(sessionmaker)
    for event in arrivals:
        await apply(sessionmaker, handlers, event)
    assert await snapshot(sessionmaker) == expected


async def test_events_applied_at_once_give_the_same_figures(store, in_order):
    sessionmaker, handlers = store
    events, expected = in_order
    await clear(sessionmaker)
    # Every event (twice) in its own concurrent transaction: the per-need lock orders them.
    await asyncio.gather(*(apply(sessionmaker, handlers, e) for e in [*events, *reversed(events)]))
    assert await snapshot(sessionmaker) == expected
