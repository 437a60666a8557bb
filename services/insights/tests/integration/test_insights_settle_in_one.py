"""On PostgreSQL the insights consumer settles a submission of new needs, or a cohort event,
in one statement outside any transaction (`settle_in_one`: the event recorded processed, its
facts stored and its counts added, or nothing written); every other event, and a submission
of a need already known, goes the handlers' path in a transaction. Both paths leave the same
facts and aggregates, a second copy is a duplicate with nothing written, a statement that
fails writes nothing (the handlers' path then applies the event once), and a need a
transaction is projecting makes the one statement wait, then write nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from insights import repository
from insights.consumers import DURABLES, ProjectionConsumer, subscriptions
from insights.models import PROJECTION_TABLES
from insights.repository import LOCK_NEEDS, InsightsRepository
from pathways_shared.broker import Broker
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import Event


@pytest.fixture
async def consumers(settings) -> Any:
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = Broker(settings.nats_url, name="insights-test", prefix=settings.subject_prefix)
    by_stream = {sub.stream: ProjectionConsumer(sub, sessionmaker, broker)
                 for sub in subscriptions(settings)}
    yield sessionmaker, by_stream
    await engine.dispose()


def consumer_of(by_stream: dict, event: Event) -> ProjectionConsumer:
    return by_stream[event.event_type.split(".", 1)[0].upper()]


async def settle(sessionmaker, by_stream, events: list[Event], *, fast: bool) -> list[str]:
    """Each event as the consumer handles a first delivery on its own: the one statement if
    `fast` (and it takes the event), else the handlers' path in a transaction."""
    outcomes = []
    for event in events:
        consumer = consumer_of(by_stream, event)
        outcome = await consumer._settle_in_one(event) if fast else None
        if outcome is None:
            async with transaction(sessionmaker) as session:
                outcome = "ordinary " + await consumer._apply(session, event)
        outcomes.append(outcome)
    return outcomes


async def tables(sessionmaker) -> dict[str, list[tuple]]:
    """Every projection table, rows sorted (a row of aggregates all zero is no figure), and
    which events are recorded processed."""
    out = {}
    async with sessionmaker() as session:
        for name in (*PROJECTION_TABLES, "processed_events"):
            columns = "consumer, event_id, event_type" if name == "processed_events" else "*"
            rows = (await session.exec(text(f"SELECT {columns} FROM {name}"))).all()
            kept = [tuple(r) for r in rows]
            if name in ("figure_cells", "figure_details"):
                kept = [r for r in kept if any(isinstance(v, int) and v for v in r)]
            out[name] = sorted(kept, key=repr)
    return out


async def clear(sessionmaker) -> None:
    async with transaction(sessionmaker) as session:
        await InsightsRepository(session).clear(list(DURABLES.values()))


async def test_one_statement_and_the_handlers_leave_the_same_tables(consumers, factory):
    sessionmaker, by_stream = consumers
    events = factory.scenario()
    # An allocation before its submission (the streams are not ordered with each other): the
    # submission's need is then known, so it goes the handlers' path.
    r3_submitted = next(i for i, e in enumerate(events) if e.event_type.endswith("submitted")
                        and e.crn == "X100003")
    r3_allocated = next(i for i, e in enumerate(events) if e.event_type.endswith("allocated")
                        and e.crn == "X100003")
    events.insert(r3_submitted, events.pop(r3_allocated))
    events += [events[0], events[-1]]  # second copies of a submission and a cohort event

    fast = await settle(sessionmaker, by_stream, events, fast=True)
    after_fast = await tables(sessionmaker)
    await clear(sessionmaker)
    plain = await settle(sessionmaker, by_stream, events, fast=False)
    after_plain = await tables(sessionmaker)

    assert after_fast == after_plain
    assert after_fast["figure_cells"] and after_fast["figure_details"]
    assert after_fast["cohort_facts"] and after_fast["need_claims"]
    assert plain == ["ordinary handled"] * (len(events) - 2) + ["ordinary duplicate"] * 2
    expected = [
        ("handled" if e.event_type in ("referrals.referral.submitted", "cohorts.member.selected",
                                        "cohorts.member.deselected",
                                        "cohorts.member.pathway-activity")
         else "ordinary handled")
        for e in events[:-2]
    ]
    expected[r3_submitted + 1] = "ordinary handled"  # its need was known
    assert fast == [*expected, "duplicate", "duplicate"]


async def test_a_failing_statement_writes_nothing_and_the_handlers_apply_the_event_once(
    consumers, factory, monkeypatch
):
    sessionmaker, by_stream = consumers
    submission = factory.scenario()[0]
    empty = await tables(sessionmaker)
    good = repository._json
    # The aggregates' rows do not fit (a period that is no date): the statement fails after
    # claiming the needs and recording the event, so none of it may be kept.
    monkeypatch.setattr(repository, "_json", lambda rows: good(rows).replace(
        '"period":"', '"period":"x'))
    assert await consumer_of(by_stream, submission)._settle_in_one(submission) is None
    assert await tables(sessionmaker) == empty
    monkeypatch.setattr(repository, "_json", good)

    assert await settle(sessionmaker, by_stream, [submission], fast=False) == ["ordinary handled"]
    once = await tables(sessionmaker)
    assert len(once["processed_events"]) == 1
    assert await settle(sessionmaker, by_stream, [submission], fast=True) == ["duplicate"]
    assert await tables(sessionmaker) == once
    await clear(sessionmaker)
    assert await settle(sessionmaker, by_stream, [submission], fast=True) == ["handled"]
    assert await tables(sessionmaker) == once


async def test_a_need_being_projected_in_a_transaction_is_left_to_it(consumers, factory):
    sessionmaker, by_stream = consumers
    events = factory.scenario()
    submission, allocation = events[0], events[1]
    need_id = allocation.additional_information["needId"]
    async with transaction(sessionmaker) as session:
        # What a transaction projecting the allocation does first: lock and claim the need.
        await session.exec(LOCK_NEEDS, params={"keys": [f"insights-need:{need_id}"],
                                                "need_ids": [need_id]})
        fast = asyncio.create_task(consumer_of(by_stream, submission)._settle_in_one(submission))
        await asyncio.sleep(0.5)
        assert not fast.done()  # it waits for the transaction's claim
        await consumer_of(by_stream, allocation)._apply(session, allocation)
    assert await fast is None  # the need was claimed: nothing written, the handlers' path
    async with sessionmaker() as session:
        processed = (await session.exec(text("SELECT event_id FROM processed_events"))).all()
    assert [row[0] for row in processed] == [str(allocation.id)]
    assert await settle(sessionmaker, by_stream, [submission], fast=False) == ["ordinary handled"]
