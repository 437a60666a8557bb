"""The outbox against real PostgreSQL and NATS: in order, exactly once, nothing lost."""

from __future__ import annotations

import asyncio

import nats
import nats.js.errors
import pytest
from sqlalchemy import func
from sqlmodel import select

from pathways_shared.broker import Broker
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import make_event, stream_name
from pathways_shared.infra_models import OutboxMessage
from pathways_shared.outbox import OutboxRelay, add_event, pending_count
from pathways_shared.testing import (
    outbox_published,
    settle_outbox,
    stream_events,
    truncate_database,
    wait_until,
)


async def write_events(sessionmaker, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        async with transaction(sessionmaker) as session:
            event = make_event("pathways.test.ping", {"note": f"n{i}"})
            add_event(session, event)
            ids.append(str(event.id))
    return ids


async def test_event_added_in_a_transaction_reaches_jetstream_with_msg_id(app, nc, subject_prefix):
    runtime = app.state.runtime
    [event_id] = await write_events(runtime.sessionmaker, 1)
    events = await stream_events(nc.jetstream(), "PATHWAYS", subject_prefix, expect=1)
    assert [str(e.id) for e in events] == [event_id]
    assert events[0].event_type == "pathways.test.ping"
    # the header JetStream deduplicates on is the event id
    sub = await nc.jetstream().pull_subscribe(f"{subject_prefix}>", stream=stream_name("PATHWAYS", subject_prefix))
    [msg] = await sub.fetch(1, timeout=2)
    assert msg.headers["Nats-Msg-Id"] == event_id


async def test_rolled_back_transaction_publishes_nothing(app, nc, subject_prefix):
    runtime = app.state.runtime
    try:
        async with transaction(runtime.sessionmaker) as session:
            add_event(session, make_event("pathways.test.ping", {"note": "never"}))
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    await write_events(runtime.sessionmaker, 1)
    sentinel = await settle_outbox(runtime.sessionmaker)  # everything written is out now
    events = await stream_events(nc.jetstream(), "PATHWAYS", subject_prefix)
    assert [e.additional_information["note"] for e in events] == ["n0", "sentinel"]
    assert events[-1].id == sentinel.id


async def test_relay_is_woken_by_the_commit_not_by_its_poll(settings, app_factory, nc, subject_prefix):
    """With a 60-second poll, only the commit's signal can explain a publish within seconds."""
    from pathways_shared.testing import running

    # A row written before the app starts, by a session that wakes no relay: only the relay's
    # first pass publishes it, so once it is marked that pass has taken its rows and is over.
    engine = make_engine(settings.database_url)
    [first_pass] = await write_events(make_sessionmaker(engine), 1)
    await engine.dispose()
    app = app_factory(settings.model_copy(update={"relay_poll_seconds": 60.0}))
    async with running(app):
        runtime = app.state.runtime
        await wait_until(lambda: outbox_published(runtime.sessionmaker, first_pass))
        [woken] = await write_events(runtime.sessionmaker, 1, start=1)
        events = await stream_events(nc.jetstream(), "PATHWAYS", subject_prefix, expect=2, timeout=30)
    assert [str(e.id) for e in events] == [first_pass, woken]


async def test_no_event_lost_when_nats_stops_during_publishing(settings, private_nats):
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = Broker(private_nats.url, name="outage-test", prefix=settings.subject_prefix)
    relay = OutboxRelay(sessionmaker, broker, service_name="outage-test", poll_seconds=0.2,
                        publish_timeout=1.0, max_backoff=0.5)
    broker.start()
    await broker.wait_ready(10)
    task = asyncio.create_task(relay.run())
    try:
        first = await write_events(sessionmaker, 10)
        await wait_until(lambda: _pending_is_zero(sessionmaker), timeout=10)
        private_nats.stop()  # the broker goes away mid-stream
        second = await write_events(sessionmaker, 15, start=10)
        await asyncio.sleep(1.5)
        async with sessionmaker() as session:
            assert await pending_count(session) == 15  # kept safe, not dropped
        private_nats.start()  # same port, same storage
        await wait_until(lambda: _pending_is_zero(sessionmaker), timeout=30)
        check = await nats.connect(private_nats.url)
        events = await stream_events(check.jetstream(), "PATHWAYS", settings.subject_prefix, expect=25)
        await check.close()
        assert [str(e.id) for e in events] == first + second  # all of them, in order, once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broker.close()
        await engine.dispose()


async def _pending_is_zero(sessionmaker) -> bool:
    async with sessionmaker() as session:
        return await pending_count(session) == 0


async def test_relay_killed_between_publish_and_mark_publishes_once(settings, nc):
    """Publish a row as a relay would, 'die' before marking it, then let a relay run."""
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = Broker(settings.nats_url, name="crash-test", prefix=settings.subject_prefix)
    broker.start()
    js = await broker.wait_ready(10)
    try:
        ids = await write_events(sessionmaker, 3)
        async with sessionmaker() as session:
            row = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.seq))).first()
            import json
            await js.publish(settings.subject_prefix + row.subject, row.payload.encode(), headers=json.loads(row.headers))
        relay = OutboxRelay(sessionmaker, broker, service_name="crash-test")
        try:
            assert await relay.publish_pending() == 3
        finally:
            await relay.close()
        events = await stream_events(nc.jetstream(), "PATHWAYS", settings.subject_prefix, expect=3)
        assert [str(e.id) for e in events] == ids
    finally:
        await broker.close()
        await engine.dispose()


async def test_the_take_on_duty_equals_the_stepwise_take(settings):
    """PostgreSQL takes a relay pass's batch on the relay's own connection while it holds the
    session-level lock (no FOR UPDATE); SQLite's stepwise path (a transaction's advisory lock,
    then the rows) must take the same: the same rows in the same order, nothing when another
    relay has the turn, nothing when nothing is pending; and the two locks exclude each other."""
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    relay = OutboxRelay(sessionmaker, None, service_name="take-test", batch_size=4)  # type: ignore[arg-type]
    fields = ("seq", "subject", "payload", "headers", "created_at")  # what a pass reads

    def shown(rows) -> list[tuple] | None:
        return None if rows is None else [tuple(getattr(row, name) for name in fields) for row in rows]

    async def stepwise() -> list[tuple] | None:
        async with sessionmaker() as session, session.begin():
            return shown(await relay._take_stepwise(session))

    try:
        assert await stepwise() == []
        assert shown(await relay._take_on_duty()) == [] and relay.on_duty
        await relay.close()
        await write_events(sessionmaker, 6)
        expected = await stepwise()
        on_duty = shown(await relay._take_on_duty())
        assert on_duty == expected and len(on_duty) == 4
        assert [row[0] for row in on_duty] == sorted(row[0] for row in on_duty)
        assert await stepwise() is None  # the session lock keeps a transaction's turn out
        await relay.close()
        async with sessionmaker() as other, other.begin():  # another relay holds the turn
            assert shown(await relay._take_stepwise(other)) == expected
            assert await relay._take_on_duty() is None and not relay.on_duty
            async with sessionmaker() as third, third.begin():
                assert await relay._take_stepwise(third) is None
        assert shown(await relay._take_on_duty()) == expected  # free again: on duty
    finally:
        await relay.close()
        await engine.dispose()


class _FailingJetStream:
    """A JetStream whose every publish is refused (the ack never comes: an error instead)."""

    async def publish_async(self, subject, payload, headers=None):
        future = asyncio.get_running_loop().create_future()
        future.set_exception(nats.js.errors.NoStreamResponseError())
        return future


async def test_a_failed_publish_is_marked_on_the_rows_alike_on_both_paths(settings):
    """A publish that fails marks its rows (attempts + 1, last_error), publishes none, and
    raises: on duty (PostgreSQL's path) as in a session transaction (SQLite's)."""
    from types import SimpleNamespace

    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = SimpleNamespace(js=_FailingJetStream(), prefix=settings.subject_prefix)
    relay = OutboxRelay(sessionmaker, broker, service_name="fail-test", batch_size=2)  # type: ignore[arg-type]
    stepwise = OutboxRelay(sessionmaker, broker, service_name="fail-test-2", batch_size=2)  # type: ignore[arg-type]
    stepwise._engine = None  # the session path, as on SQLite

    async def marks() -> list[tuple]:
        async with sessionmaker() as session:
            return [tuple(row) for row in (await session.exec(
                select(OutboxMessage.attempts, OutboxMessage.last_error, OutboxMessage.published_at)
                .order_by(OutboxMessage.seq))).all()]

    try:
        await write_events(sessionmaker, 3)
        for _ in range(2):
            with pytest.raises(nats.js.errors.NoStreamResponseError):
                await relay.publish_pending()
        assert relay.on_duty  # a broker's failure keeps the duty (and the connection)
        on_duty = await marks()
        await truncate_database(settings.database_url)
        await write_events(sessionmaker, 3)
        for _ in range(2):
            with pytest.raises(nats.js.errors.NoStreamResponseError):
                await stepwise.publish_pending()
        assert on_duty == await marks()
        assert [attempts for attempts, _, _ in on_duty] == [2, 2, 0]
        assert on_duty[0][1] == "NoStreamResponseError: nats: no response from stream"
        assert all(published is None for _, _, published in on_duty)
    finally:
        await relay.close()
        await engine.dispose()


async def test_a_relay_not_on_duty_wakes_the_one_that_is(settings):
    """A replica's commit reaches the relay on duty at once: the replica's pass, finding the
    lock held, NOTIFYs the holder, which LISTENs; a pass of its poll does not."""
    engines = [make_engine(settings.database_url) for _ in range(2)]
    relays = [OutboxRelay(make_sessionmaker(e), None, service_name="nudge-test")  # type: ignore[arg-type]
              for e in engines]
    try:
        assert await relays[0]._take_on_duty() == []
        relays[0]._wake.clear()
        assert await relays[1]._take_on_duty() is None  # a poll
        await asyncio.sleep(0.5)
        assert not relays[0]._wake.is_set()
        relays[1].notify()  # a commit
        assert await relays[1]._take_on_duty() is None
        await asyncio.wait_for(relays[0]._wake.wait(), 5)
    finally:
        for relay in relays:
            await relay.close()
        for engine in engines:
            await engine.dispose()


async def test_the_relay_on_duty_losing_its_connection_hands_over(settings, nc):
    """Two relays on one outbox; the one on duty has its connection killed (by the server):
    the other takes over, and every event reaches the stream once, in order."""
    engines = [make_engine(settings.database_url) for _ in range(2)]
    makers = [make_sessionmaker(e) for e in engines]
    brokers = [Broker(settings.nats_url, name=f"handover-{i}", prefix=settings.subject_prefix)
               for i in range(2)]
    for b in brokers:
        b.start()
        await b.wait_ready(10)
    relays = [OutboxRelay(m, b, service_name="handover", poll_seconds=0.05, batch_size=5)
              for m, b in zip(makers, brokers)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        ids = await write_events(makers[0], 20)
        await wait_until(lambda: _pending_is_zero(makers[0]), timeout=30)
        [holder] = [r for r in relays if r.on_duty]
        [other] = [r for r in relays if r is not holder]
        # From now on nothing wakes the holder (no commit of its own, its poll a minute): once
        # its connection is gone only the other can publish the rows written next.
        holder.poll_seconds = 60
        await asyncio.sleep(0.3)
        raw = await holder._connection.get_raw_connection()
        pid = raw.driver_connection.get_server_pid()
        async with other.sessionmaker() as session:
            assert await session.scalar(select(func.pg_terminate_backend(pid)))
        ids += await write_events(other.sessionmaker, 40, start=20)
        await wait_until(lambda: _pending_is_zero(makers[0]), timeout=30)
        assert other.on_duty
        events = await stream_events(nc.jetstream(), "PATHWAYS", settings.subject_prefix, expect=60, timeout=20)
        assert [str(e.id) for e in events] == ids  # all, once, in order
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r._connection is None and not r.on_duty for r in relays)  # closed on shutdown
        for b in brokers:
            await b.close()
        for e in engines:
            await e.dispose()


async def test_two_relays_on_one_outbox_publish_each_event_exactly_once(settings, nc):
    engines = [make_engine(settings.database_url) for _ in range(2)]
    makers = [make_sessionmaker(e) for e in engines]
    brokers = [Broker(settings.nats_url, name=f"replica-{i}", prefix=settings.subject_prefix) for i in range(2)]
    for b in brokers:
        b.start()
        await b.wait_ready(10)
    relays = [OutboxRelay(m, b, service_name="replicated", poll_seconds=0.05, batch_size=7)
              for m, b in zip(makers, brokers)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        writers = [write_events(makers[i % 2], 30, start=i * 30) for i in range(4)]
        chunks = await asyncio.gather(*writers)
        await wait_until(lambda: _pending_is_zero(makers[0]), timeout=30)
        events = await stream_events(nc.jetstream(), "PATHWAYS", settings.subject_prefix, expect=120, timeout=20)
        published = [str(e.id) for e in events]
        assert len(published) == 120
        assert set(published) == {i for chunk in chunks for i in chunk}
        # each writer's events reach the stream in the order it committed them (concurrent
        # writers' commits may interleave with the sequence, so only per-writer order is a promise)
        position = {event_id: n for n, event_id in enumerate(published)}
        for chunk in chunks:
            assert [position[i] for i in chunk] == sorted(position[i] for i in chunk)
        async with makers[0]() as session:
            assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 120
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for b in brokers:
            await b.close()
        for e in engines:
            await e.dispose()


async def test_deferred_rows_are_written_at_commit_and_forgotten_on_rollback(app):
    from pathways_shared.access import Action, record_access
    from pathways_shared.infra_models import AccessLog

    sm = app.state.runtime.sessionmaker

    async def logged() -> list[str]:
        async with sm() as session:
            return [row.resource for row in (await session.exec(select(AccessLog).order_by(AccessLog.id))).all()]

    async with sm() as session:
        for n in range(3):
            record_access(session, actor="tester", action=Action.CONSULTATION,
                          resource=f"things/{n}", crn="X123456", purpose="test")
        assert await logged() == []  # nothing before the commit
        await session.commit()
    assert await logged() == ["things/0", "things/1", "things/2"]  # in the order recorded

    async with sm() as session:
        record_access(session, actor="tester", action=Action.CONSULTATION,
                      resource="things/rolled-back", crn="X123456", purpose="test")
        await session.rollback()
        await session.commit()  # the same session goes on: the rolled-back row stays gone
    assert await logged() == ["things/0", "things/1", "things/2"]



async def test_resend_after_the_broker_lost_the_tail_gives_each_effect_once(
    client, app, nc, subject_prefix, database_url, effect_model,
):
    """The relay sent six events and the consumer applied them; then the broker loses the last
    three (deleted from the stream; it still remembers their ids for the duplicate window).
    `pathways outbox resend --since` sends them again: a consumer that had not seen them gets
    each once, the one that had applies nothing twice."""
    import subprocess
    import sys

    from nats.js.api import AckPolicy, ConsumerConfig

    from pathways_shared.infra_models import DeadLetter, ProcessedEvent
    from pathways_shared.testing import auth

    Effect = effect_model
    sm = app.state.runtime.sessionmaker
    js = nc.jetstream(timeout=10)
    stream = stream_name("PATHWAYS", subject_prefix)
    await wait_until(lambda: _has_stream(js, stream))
    await js.add_consumer(stream, ConsumerConfig(durable_name="late", ack_policy=AckPolicy.EXPLICIT))
    ids = []
    for i in range(6):
        response = await client.post("/pings", json={"note": f"r{i}"}, headers=auth("admin"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    async def count(model, *where) -> int:
        async with sm() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    await wait_until(lambda: _equals(count(Effect), 6))
    await wait_until(lambda: _equals(count(OutboxMessage, OutboxMessage.published_at.is_(None)), 0))
    async with sm() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
    since = rows[3].created_at
    last = (await js.stream_info(stream)).state.last_seq
    for seq in range(last - 2, last + 1):  # the broker loses the tail
        await js.delete_msg(stream, seq)
    late = await js.pull_subscribe_bind("late", stream)
    seen = await late.fetch(10, timeout=2)
    assert [event_id_of(m) for m in seen] == ids[:3]

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pathways_shared.cli", "outbox", "resend", "--service", "referrals",
         "--since", since.isoformat(), "--url", database_url],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "3 outbox rows" in done.stdout

    for message in seen:
        await message.ack()
    again: list = []
    for _ in range(50):
        try:
            again += await late.fetch(10, timeout=0.5)
        except nats.errors.TimeoutError:
            pass
        if len(again) >= 3:
            break
    for message in again:
        await message.ack()
    assert sorted(event_id_of(m) for m in again) == sorted(ids[3:])
    await wait_until(lambda: _equals(count(OutboxMessage, OutboxMessage.published_at.is_(None)), 0))
    await asyncio.sleep(1)  # the app's own consumer has had the resent three
    for event_id in ids:
        assert await count(Effect, Effect.event_id == event_id) == 1
        assert await count(ProcessedEvent, ProcessedEvent.event_id == event_id) == 1
    assert await count(DeadLetter) == 0
    info = await js.consumer_info(stream, "shared-test")
    assert info.num_pending == 0 and info.num_ack_pending == 0


def event_id_of(message) -> str:
    import json

    return json.loads(message.data)["id"]


async def _has_stream(js, name) -> bool:
    try:
        await js.stream_info(name)
    except Exception:  # noqa: BLE001
        return False
    return True


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected
