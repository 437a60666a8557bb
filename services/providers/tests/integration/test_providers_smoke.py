"""The providers service on real PostgreSQL and NATS: migrated, healthy, its outbox reaches
JetStream and its own consumer machinery sees what arrives."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from pathways_shared.consumer import Consumer, Subscription
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.outbox import add_event
from pathways_shared.testing import stream_events, wait_until


async def test_ready_live_and_metrics(client):
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert "pathways_http_requests_total" in (await client.get("/metrics")).text
    assert (await client.get("/openapi.json")).json()["info"][
        "title"
    ] == "Pathways providers service"


async def test_outbox_reaches_nats_and_a_consumer_sees_it(app, nc, subject_prefix):
    runtime = app.state.runtime
    event = make_event("pathways.test.ping", {"from": "providers"})
    async with transaction(runtime.sessionmaker) as session:
        add_event(session, event)
    [published] = await stream_events(nc.jetstream(), "PATHWAYS", subject_prefix, expect=1)
    assert published.id == event.id

    seen = []

    async def handler(session, received):
        seen.append(received.id)

    consumer = Consumer(
        Subscription(
            stream="PATHWAYS", durable="providers-smoke", handlers={"pathways.test.ping": handler}
        ),
        runtime.sessionmaker,
        runtime.broker,
    )
    await consumer.declare()
    task = __import__("asyncio").create_task(consumer.run())
    try:

        async def processed():
            async with runtime.sessionmaker() as session:
                return await session.scalar(
                    select(func.count())
                    .select_from(ProcessedEvent)
                    .where(ProcessedEvent.event_id == str(event.id))
                )

        assert await wait_until(processed) == 1
        assert seen == [event.id]
    finally:
        task.cancel()
