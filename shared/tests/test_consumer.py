"""The idempotent consumer against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio

from sqlalchemy import func
from sqlmodel import select

from pathways_shared.events import make_event, subject_for
from pathways_shared.infra_models import DeadLetter, ProcessedEvent
from pathways_shared.testing import wait_until


async def count(sessionmaker, model, *where) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def publish(js, prefix, event, *, msg_id: str | None = None, raw: bytes | None = None):
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    await js.publish(subject_for(event.event_type, prefix), raw or event.to_json(), headers=headers)


async def test_same_event_delivered_twice_has_one_effect(app, nc, subject_prefix, effect_model):
    Effect = effect_model
    sm = app.state.runtime.sessionmaker
    js = nc.jetstream()
    event = make_event("pathways.test.ping", {"note": "once"})
    # two publishes with no dedup header: JetStream stores both, the consumer sees both
    await publish(js, subject_prefix, event)
    await publish(js, subject_prefix, event)
    marker = make_event("pathways.test.ping", {"note": "after"})
    await publish(js, subject_prefix, marker)
    await wait_until(lambda: count(sm, Effect, Effect.event_id == str(marker.id)))
    assert await count(sm, Effect, Effect.event_id == str(event.id)) == 1
    assert await count(sm, ProcessedEvent, ProcessedEvent.event_id == str(event.id)) == 1


async def test_poison_message_is_dead_lettered_and_the_next_is_processed(app, nc, subject_prefix, effect_model):
    Effect = effect_model
    sm = app.state.runtime.sessionmaker
    js = nc.jetstream()
    await js.publish(f"{subject_prefix}pathways.test.ping", b"{not json")
    good = make_event("pathways.test.ping", {"note": "good"})
    await publish(js, subject_prefix, good)
    await wait_until(lambda: count(sm, Effect, Effect.event_id == str(good.id)))
    async with sm() as session:
        [dead] = (await session.exec(select(DeadLetter))).all()
    assert dead.payload == "{not json" and "unparseable" in dead.error
    assert dead.consumer == "shared-test"


async def test_handler_that_keeps_failing_is_retried_then_dead_lettered(app, nc, subject_prefix, effect_model):
    Effect = effect_model
    sm = app.state.runtime.sessionmaker
    js = nc.jetstream()
    bad = make_event("pathways.test.ping", {"poison": True})
    await publish(js, subject_prefix, bad)
    good = make_event("pathways.test.ping", {"note": "later"})
    await publish(js, subject_prefix, good)
    await wait_until(lambda: count(sm, DeadLetter, DeadLetter.event_id == str(bad.id)), timeout=20)
    await wait_until(lambda: count(sm, Effect, Effect.event_id == str(good.id)))
    async with sm() as session:
        dead = (await session.exec(select(DeadLetter).where(DeadLetter.event_id == str(bad.id)))).one()
    assert dead.deliveries == 3  # consumer_max_deliveries in the test settings
    assert "this event always fails" in dead.error
    # the failed attempts left no effect and no processed record behind
    assert await count(sm, Effect, Effect.event_id == str(bad.id)) == 0
    assert await count(sm, ProcessedEvent, ProcessedEvent.event_id == str(bad.id)) == 0


async def test_consumer_handles_events_published_through_the_outbox(client, app, subject_prefix, effect_model):
    Effect = effect_model
    from pathways_shared.testing import auth

    response = await client.post("/pings", json={"note": "round-trip"}, headers=auth("admin"))
    assert response.status_code == 201, response.text
    event_id = response.json()["id"]
    sm = app.state.runtime.sessionmaker
    await wait_until(lambda: count(sm, Effect, Effect.event_id == event_id))
    # A marker through the same outbox and consumer, after it: once the marker is handled, so
    # is every copy of the first event the stream could hold.
    marker = await client.post("/pings", json={"note": "marker"}, headers=auth("admin"))
    marker_id = marker.json()["id"]
    await wait_until(lambda: count(sm, Effect, Effect.event_id == marker_id))
    assert await count(sm, Effect, Effect.event_id == event_id) == 1


async def test_operator_sees_replays_and_discards_dead_letters(client, app, nc, subject_prefix, effect_model):
    from pathways_shared.testing import auth

    sm = app.state.runtime.sessionmaker
    js = nc.jetstream()
    await js.publish(f"{subject_prefix}pathways.test.ping", b"garbage")
    event = make_event("pathways.test.ping", {"poison": True})
    await publish(js, subject_prefix, event)
    await wait_until(lambda: count(sm, DeadLetter), timeout=20)
    await wait_until(lambda: _dead_count_is(sm, 2), timeout=20)

    assert (await client.get("/admin/dead-letters", headers=auth("probation"))).status_code == 403
    listing = (await client.get("/admin/dead-letters", headers=auth("admin"))).json()
    assert len(listing["data"]) == 2
    garbage, poisoned = listing["data"]
    assert garbage["payload"] == "garbage" and poisoned["event_id"] == str(event.id)

    r = await client.post(f"/admin/dead-letters/{garbage['id']}/discard", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["resolution"] == "discarded"
    again = await client.post(f"/admin/dead-letters/{garbage['id']}/discard", headers=auth("admin"))
    assert again.status_code == 409

    # replayed, the poisoned event fails again and comes back as a new dead letter
    r = await client.post(f"/admin/dead-letters/{poisoned['id']}/replay", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["resolution"] == "replayed"
    await wait_until(lambda: _dead_count_is(sm, 3), timeout=20)
    remaining = (await client.get("/admin/dead-letters", headers=auth("admin"))).json()["data"]
    assert [d["event_id"] for d in remaining] == [str(event.id)]
    assert (await client.post("/admin/dead-letters/999999/discard", headers=auth("admin"))).status_code == 404


async def _dead_count_is(sm, n: int) -> bool:
    return await count(sm, DeadLetter) == n


async def test_a_batch_keeps_each_persons_order_and_does_not_wait_on_another_person(app, nc, subject_prefix):
    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    runtime = app.state.runtime
    finished: list[str] = []

    async def handler(session, event) -> None:
        await asyncio.sleep(event.additional_information.get("sleep", 0))
        finished.append(event.additional_information["note"])

    consumer = Consumer(
        Subscription(stream="PATHWAYS", durable="shared-lanes", handlers={"pathways.test.ping": handler}),
        runtime.sessionmaker, runtime.broker,
    )
    await consumer.declare()
    js = nc.jetstream()
    # In stream order: A's slow event, A's next, then B's. No CRN: the shared lane.
    events = [
        make_event("pathways.test.ping", {"note": "A1", "sleep": 0.6}, crn="A000001"),
        make_event("pathways.test.ping", {"note": "A2"}, crn="A000001"),
        make_event("pathways.test.ping", {"note": "B1"}, crn="B000002"),
        make_event("pathways.test.ping", {"note": "none"}),
    ]
    for event in events:
        await publish(js, subject_prefix, event)
    psub = await js.pull_subscribe_bind("shared-lanes", stream=stream_name("PATHWAYS", subject_prefix))
    messages = await psub.fetch(len(events), timeout=5)
    assert len(messages) == len(events)

    outcomes = await consumer.handle_batch(messages)

    assert outcomes == ["handled"] * len(events)
    # B and the CRN-less event did not wait for A's slow one; A's two stayed in order.
    assert finished.index("B1") < finished.index("A1") < finished.index("A2")
    assert finished.index("none") < finished.index("A1")
    assert len(finished) == len(events)


async def test_a_share_fails_together_then_each_event_is_handled_on_its_own(app, nc, subject_prefix):
    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    from .conftest import record_effect

    runtime = app.state.runtime
    sm = runtime.sessionmaker
    # One worker: the whole batch is one share, tried in one transaction.
    consumer = Consumer(
        Subscription(stream="PATHWAYS", durable="shared-share", handlers={"pathways.test.ping": record_effect}),
        sm, runtime.broker, concurrency=1,
    )
    await consumer.declare()
    js = nc.jetstream()
    good = [make_event("pathways.test.ping", {"note": f"good{n}"}, crn=f"G00000{n}") for n in range(3)]
    bad = make_event("pathways.test.ping", {"poison": True}, crn="P000001")
    events = [good[0], bad, good[1], good[2]]
    for event in events:
        await publish(js, subject_prefix, event)
    psub = await js.pull_subscribe_bind("shared-share", stream=stream_name("PATHWAYS", subject_prefix))
    messages = await psub.fetch(len(events), timeout=5)
    assert len(messages) == len(events)

    outcomes = await consumer.handle_batch(messages)

    # The poisoned event rolled the shared transaction back; each then went on its own.
    assert outcomes == ["handled", "retried", "handled", "handled"]
    for event in good:  # (the app's own consumer also takes these pings: count ours only)
        assert await count(sm, ProcessedEvent, ProcessedEvent.consumer == "shared-share",
                           ProcessedEvent.event_id == str(event.id)) == 1
    assert await count(sm, ProcessedEvent, ProcessedEvent.consumer == "shared-share",
                       ProcessedEvent.event_id == str(bad.id)) == 0

    # A batch of good events only: one transaction, all handled, each recorded once.
    more = [make_event("pathways.test.ping", {"note": f"more{n}"}, crn=f"M00000{n}") for n in range(3)]
    for event in more:
        await publish(js, subject_prefix, event)
    messages = await psub.fetch(3, timeout=5)
    assert [m.metadata.num_delivered for m in messages] == [1, 1, 1]
    assert await consumer.handle_batch(messages) == ["handled"] * 3
    for event in more:
        assert await count(sm, ProcessedEvent, ProcessedEvent.consumer == "shared-share",
                           ProcessedEvent.event_id == str(event.id)) == 1


async def test_a_share_recorded_in_one_statement_settles_as_one_by_one(app, nc, subject_prefix):
    """A share's processed events are recorded in one statement (`mark_processed_many`); the
    outcomes are those of handling the same messages one by one: a second copy of an event in
    the share, and an event handled before, are duplicates."""
    from pathways_shared.consumer import (
        Consumer,
        Subscription,
        mark_processed,
        mark_processed_many,
    )
    from pathways_shared.db import transaction
    from pathways_shared.events import stream_name

    from .conftest import record_effect

    runtime = app.state.runtime
    sm = runtime.sessionmaker
    consumers = {
        durable: Consumer(
            Subscription(stream="PATHWAYS", durable=durable,
                         handlers={"pathways.test.ping": record_effect}),
            sm, runtime.broker, concurrency=1,
        )
        for durable in ("shared-together", "shared-alone")
    }
    js = nc.jetstream()
    e1, e2, e3, before = (make_event("pathways.test.ping", {"note": f"n{n}"}, crn=f"S00000{n}")
                          for n in range(4))
    async with transaction(sm) as session:
        for durable in consumers:
            assert await mark_processed(session, durable, before)
    for consumer in consumers.values():
        await consumer.declare()
    for event in (e1, e2, e1, before, e3):  # no Nats-Msg-Id: e1 is stored twice
        await publish(js, subject_prefix, event)
    outcomes = {}
    for durable, consumer in consumers.items():
        psub = await js.pull_subscribe_bind(durable, stream=stream_name("PATHWAYS", subject_prefix))
        messages = await psub.fetch(5, timeout=5)
        assert [m.metadata.num_delivered for m in messages] == [1] * 5
        if durable == "shared-together":
            outcomes[durable] = await consumer.handle_batch(messages)
        else:
            outcomes[durable] = [await consumer.handle(msg) for msg in messages]

    assert outcomes["shared-together"] == outcomes["shared-alone"] == [
        "handled", "handled", "duplicate", "duplicate", "handled"]
    # (and the share was settled together, not fallen back to one by one)
    async with transaction(sm) as session:
        assert await mark_processed_many(session, "shared-together", [e1, e2, e3, before]) == set()
        assert await mark_processed_many(session, "shared-new", [e1, before, e1]) == {
            str(e1.id), str(before.id)}
    for durable in consumers:
        for event in (e1, e2, e3, before):
            assert await count(sm, ProcessedEvent, ProcessedEvent.consumer == durable,
                               ProcessedEvent.event_id == str(event.id)) == 1


async def test_a_handler_that_outlasts_ack_wait_keeps_its_message(app, nc, subject_prefix):
    """in_progress while handling: no redelivery of a message that is still being worked on."""
    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    runtime = app.state.runtime

    async def slow(session, event) -> None:
        await asyncio.sleep(3.5)

    consumer = Consumer(
        Subscription(stream="PATHWAYS", durable="shared-slow", handlers={"pathways.test.ping": slow}),
        runtime.sessionmaker, runtime.broker, ack_wait_seconds=1.5,
    )
    await consumer.declare()
    js = nc.jetstream()
    stream = stream_name("PATHWAYS", subject_prefix)
    await publish(js, subject_prefix, make_event("pathways.test.ping", {"note": "slow"}))
    psub = await js.pull_subscribe_bind("shared-slow", stream=stream)
    messages = await psub.fetch(1, timeout=5)

    assert await consumer.handle_batch(messages) == ["handled"]

    # the ack travels on the runtime's own connection: wait until the server has it
    async def settled():
        info = await js.consumer_info(stream, "shared-slow")
        return info if info.num_ack_pending == 0 else None

    info = await wait_until(settled, timeout=10)
    assert (info.num_redelivered, info.num_ack_pending, info.delivered.consumer_seq) == (0, 0, 1)


async def test_a_durable_takes_only_its_event_types_and_an_older_one_is_brought_to_that(
    app, nc, subject_prefix
):
    """Filter subjects: the types a subscription has handlers for. A durable declared by an
    older release (the whole stream) is updated at start-up, keeping its place."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    runtime = app.state.runtime
    js = nc.jetstream()
    stream = stream_name("COHORTS", subject_prefix)
    # As an older release left it: the whole stream, one event already taken and acked.
    await js.add_consumer(stream, ConsumerConfig(durable_name="shared-filter",
                                                 ack_policy=AckPolicy.EXPLICIT))
    taken = make_event("cohorts.member.selected", {"n": 0}, crn="F000001")
    await publish(js, subject_prefix, taken)
    psub = await js.pull_subscribe_bind("shared-filter", stream=stream)
    [first] = await psub.fetch(1, timeout=5)
    await first.ack_sync()

    seen: list[str] = []

    async def handler(session, event) -> None:
        seen.append(event.event_type)

    consumer = Consumer(
        Subscription(stream="COHORTS", durable="shared-filter", handlers={
            "cohorts.member.selected": handler, "cohorts.member.deselected": handler}),
        runtime.sessionmaker, runtime.broker,
    )
    assert consumer.subscription.subjects() == ["cohorts.member.deselected",
                                                "cohorts.member.selected"]
    await consumer.declare()
    info = await js.consumer_info(stream, "shared-filter")
    assert sorted(info.config.filter_subjects or []) == [
        f"{subject_prefix}cohorts.member.deselected", f"{subject_prefix}cohorts.member.selected"]
    assert info.delivered.stream_seq == 1  # its place in the stream kept

    events = [make_event(kind, {"n": n}, crn="F000001") for n, kind in enumerate([
        "cohorts.member.review-due", "cohorts.member.deselected",
        "cohorts.selection-run.completed", "cohorts.member.selected"], start=1)]
    for event in events:
        await publish(js, subject_prefix, event)
    messages = await psub.fetch(4, timeout=2)
    assert [m.subject for m in messages] == [
        f"{subject_prefix}cohorts.member.deselected", f"{subject_prefix}cohorts.member.selected"]
    assert await consumer.handle_batch(messages) == ["handled", "handled"]
    assert seen == ["cohorts.member.deselected", "cohorts.member.selected"]


async def test_an_event_without_a_handler_is_settled_without_a_transaction(app, nc, subject_prefix):
    """An event type a subscription has no handler for (delivered by a filter it does not
    control, e.g. `filter_subject`) is acked at once: nothing recorded, no transaction."""
    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    runtime = app.state.runtime
    opened = 0
    real = runtime.sessionmaker

    def counting_sessionmaker():
        nonlocal opened
        opened += 1
        return real()

    async def handler(session, event) -> None:
        pass

    consumer = Consumer(
        Subscription(stream="COHORTS", durable="shared-noop", filter_subject="cohorts.>",
                     handlers={"cohorts.member.selected": handler}),
        counting_sessionmaker, runtime.broker,  # type: ignore[arg-type]
    )
    await consumer.declare()
    js = nc.jetstream()
    events = [make_event("cohorts.member.review-due", {"n": n}, crn=f"N00000{n}") for n in range(3)]
    events.append(make_event("cohorts.member.selected", {"n": 3}, crn="N000009"))
    for event in events:
        await publish(js, subject_prefix, event)
    psub = await js.pull_subscribe_bind("shared-noop", stream=stream_name("COHORTS", subject_prefix))
    messages = await psub.fetch(4, timeout=5)
    assert await consumer.handle_batch(messages) == ["ignored"] * 3 + ["handled"]
    assert opened == 1  # the handled event's transaction only
    assert await count(real, ProcessedEvent, ProcessedEvent.consumer == "shared-noop") == 1


async def test_an_event_settled_in_one_statement_skips_the_transaction_or_falls_back(
    app, nc, subject_prefix
):
    """`settle_in_one` runs on an autocommit connection (no BEGIN/COMMIT) for a first
    delivery; what it settles is acked with its outcome and no handler runs; when it declines
    (None) or fails, the event goes the ordinary path (handled once, recorded processed)."""
    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.events import stream_name

    runtime = app.state.runtime
    handled: list[str] = []
    autocommit: list[bool] = []

    async def handler(session, event) -> None:
        handled.append(event.additional_information["n"])

    async def settle(connection, consumer, event):
        autocommit.append(connection.sync_connection.connection.dbapi_connection.autocommit)
        assert consumer == "shared-in-one"
        answer = event.additional_information["answer"]
        if answer == "fail":
            raise RuntimeError("the statement failed")
        return answer

    consumer = Consumer(
        Subscription(stream="COHORTS", durable="shared-in-one", filter_subject="cohorts.>",
                     handlers={"cohorts.member.selected": handler}, settle_in_one=settle),
        runtime.sessionmaker, runtime.broker,
    )
    await consumer.declare()
    js = nc.jetstream()
    answers = ["handled", "duplicate", None, "fail"]
    events = [make_event("cohorts.member.selected", {"n": n, "answer": a}, crn=f"N10000{n}")
              for n, a in enumerate(answers)]
    for event in events:
        await publish(js, subject_prefix, event)
    psub = await js.pull_subscribe_bind("shared-in-one",
                                        stream=stream_name("COHORTS", subject_prefix))
    messages = await psub.fetch(4, timeout=5)
    outcomes = [await consumer.handle(msg) for msg in messages]  # one by one: first deliveries
    assert outcomes == ["handled", "duplicate", "handled", "handled"]
    assert handled == [2, 3]  # only those the hook did not settle
    assert autocommit == [True] * 4
    recorded = await count(runtime.sessionmaker, ProcessedEvent,
                           ProcessedEvent.consumer == "shared-in-one")
    assert recorded == 2  # the hook records its own (this one records nothing)
