"""The projection's fast path (a fetched batch in one transaction, `ProjectionConsumer`) gives
exactly the aggregates of the one-event-at-a-time path, and a batch with a bad event in it
falls back to one at a time: the bad one dead-lettered, every other one projected once."""

from __future__ import annotations

from sqlalchemy import func, select, text

from insights.consumers import DURABLES, ProjectionConsumer, Projector, subscriptions
from insights.models import FigureCell, FigureDetail
from insights.repository import InsightsRepository
from pathways_shared.broker import Broker
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import make_event, stream_name
from pathways_shared.infra_models import DeadLetter, ProcessedEvent


async def aggregates(sessionmaker) -> tuple[list, list]:
    async with sessionmaker() as session:
        cells = (await session.exec(text(
            "SELECT * FROM figure_cells ORDER BY cube, grain, period, area, pathway, complexity,"
            " sex, age_band, supervision, service_code, provider_code, programme"))).all()
        details = (await session.exec(text(
            "SELECT * FROM figure_details ORDER BY cube, grain, period, area, pathway, complexity,"
            " sex, age_band, supervision, service_code, provider_code, programme, measure,"
            " detail"))).all()
    # A row whose counts all went back to zero (an implied acknowledgement retracted when the
    # real one arrived later) is no figure: the same as no row.
    key = len(FigureCell.__table__.primary_key.columns)  # type: ignore[attr-defined]
    return ([tuple(r) for r in cells if any(r[key:])],
            [tuple(r) for r in details if r[-1]])


async def test_a_batch_projects_as_one_event_at_a_time_does_and_survives_a_bad_event(
    settings, factory
):
    events = factory.scenario()
    # Not a valid allocation (no service): it can never succeed.
    bad = make_event("providers.referral.allocated",
                     {"referralId": "r", "needId": "n", "providerReferralId": "p"},
                     crn="X100009", occurred_at=events[0].occurred_at)
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = Broker(settings.nats_url, name="insights-test", prefix=settings.subject_prefix)
    broker.start()
    try:
        js = await broker.wait_ready(30)
        for event in [*events[:5], bad, *events[5:]]:
            await js.publish(f"{settings.subject_prefix}{event.event_type}", event.to_json(),
                             headers={"Nats-Msg-Id": str(event.id)})
        consumers = [ProjectionConsumer(sub, sessionmaker, broker) for sub in subscriptions(settings)]
        outcomes = []
        for consumer in consumers:
            await consumer.declare()
            subscription = await js.pull_subscribe_bind(consumer.name, stream=consumer.stream)
            messages = await subscription.fetch(100, timeout=5)
            outcomes += await consumer.handle_batch(messages)
        assert sorted(outcomes) == sorted(["handled"] * len(events) + ["dead_lettered"])
        fast = await aggregates(sessionmaker)
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(FigureCell)) > 0
            assert await session.scalar(select(func.count()).select_from(FigureDetail)) > 0
            assert await session.scalar(select(func.count()).select_from(ProcessedEvent)) == len(events)
            dead = (await session.exec(select(DeadLetter.event_id))).all()  # type: ignore[call-overload]
            assert [row[0] for row in dead] == [str(bad.id)]

        # Redelivered as a batch again: nothing changes (each event once).
        for consumer in consumers:
            assert set(await _again(js, consumer, settings.subject_prefix)) <= {"duplicate"}
        assert await aggregates(sessionmaker) == fast

        # The same events one at a time, each in its own transaction: the same aggregates.
        async with transaction(sessionmaker) as session:
            await InsightsRepository(session).clear(list(DURABLES.values()))
        handlers = Projector(settings).handlers()
        for event in events:
            async with transaction(sessionmaker) as session:
                await handlers[event.event_type.split(".", 1)[0].upper()][event.event_type](
                    session, event)
        assert await aggregates(sessionmaker) == fast
    finally:
        await broker.close()
        await engine.dispose()


async def _again(js, consumer: ProjectionConsumer, prefix: str) -> list[str]:
    """Every message of the consumer's stream handled again as one batch (a replay)."""
    stream = stream_name(consumer.subscription.stream, prefix)
    replay = await js.pull_subscribe("", durable=None, stream=stream)
    messages = await replay.fetch(100, timeout=5)
    await replay.unsubscribe()
    return [o for o in await consumer.handle_batch(messages) if o != "dead_lettered"]
