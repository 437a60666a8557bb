"""On PostgreSQL the referrals consumer settles a provider event's first delivery outside any
transaction (`settle_in_one`): the referral read unlocked with the stamps (`xmin`) of its rows,
then one statement that records the event processed and saves the change, its access-log row
included, only if no row was changed in between; the ordinary path does the same in a
transaction with a locked read. Both leave the same rows; a second copy is a duplicate with
nothing written; a change between the read and the statement (committed, or in flight and
waited for) makes the statement write nothing, and the ordinary path then applies the event
on top of that change: no update lost, no effect doubled."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from pathways_shared.broker import Broker
from pathways_shared.consumer import Consumer
from pathways_shared.db import transaction
from pathways_shared.events import Event, iso_z, make_event
from pathways_shared.infra_models import AccessLog, OutboxMessage, ProcessedEvent
from pathways_shared.testing import auth
from referrals import service
from referrals.consumers import subscriptions
from referrals.repository import HISTORY, NEEDS, REFERRALS


async def submit(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/referrals", json=body, headers=auth("probation"))
    assert response.status_code == 201, response.text
    return response.json()


def two_needs(referral_body: Any) -> dict[str, Any]:
    return referral_body(
        source_reference=f"SETTLE-{uuid.uuid4().hex[:12]}",
        needs=[{"pathway": "accommodation", "complexity": "low"},
               {"pathway": "health", "complexity": "medium"}],
    )


def provider_event(kind: str, referral: dict[str, Any], minutes: int, need: int = 0,
                   **extra: Any) -> Event:
    submitted = datetime.fromisoformat(referral["submitted_at"])
    info: dict[str, Any] = {"referralId": referral["id"], "needId": referral["needs"][need]["id"],
                            "providerReferralId": str(uuid.UUID(int=100 + need))}
    if kind == "allocated":
        info |= {"serviceCode": "CRS-ACC-M", "providerCode": "NACRO", "programme": "CRS",
                 "acknowledgeBy": iso_z(submitted + timedelta(days=2)),
                 "respondBy": iso_z(submitted + timedelta(days=7))}
    return make_event(f"providers.referral.{kind}", info | extra,
                      crn=referral["person"]["crn"],
                      occurred_at=submitted + timedelta(minutes=minutes))


@pytest.fixture
def consumer(app: Any, settings: Any) -> Consumer:
    broker = Broker(settings.nats_url, name="referrals-test", prefix=settings.subject_prefix)
    [from_providers] = subscriptions()
    return Consumer(from_providers, app.state.sessionmaker, broker)


async def ordinary(consumer: Consumer, event: Event) -> str:
    """The ordinary path: the event in a transaction, its record and its locked read."""
    try:
        async with transaction(consumer.sessionmaker) as session:
            return "ordinary " + await consumer._apply(session, event)
    except Exception as exc:  # noqa: BLE001  what the consumer would dead-letter
        return type(exc).__name__


async def stored(sessionmaker: Any, referral: dict[str, Any]) -> dict[str, Any]:
    """Every row written for the referral, without what differs by construction: ids, and
    times as offsets from its submission ("now" for those taken from the clock as handled)."""
    submitted = datetime.fromisoformat(referral["submitted_at"])

    def plain(row: Any, *leave_out: str) -> dict[str, Any]:
        out = {}
        for key, value in row._mapping.items():
            if key in leave_out:
                continue
            if isinstance(value, datetime):
                offset = value - submitted
                value = str(offset) if offset >= timedelta(minutes=1) else "now"
            out[key] = value
        return out

    rid = uuid.UUID(referral["id"])
    async with sessionmaker() as session:
        row = (await session.exec(select(REFERRALS).where(REFERRALS.c.id == rid))).one()
        needs = (await session.exec(select(NEEDS).where(NEEDS.c.referral_id == rid)
                                    .order_by(NEEDS.c.position))).all()
        history = (await session.exec(select(HISTORY).where(HISTORY.c.referral_id == rid)
                                      .order_by(HISTORY.c.id))).all()
        access = (await session.exec(select(AccessLog).where(
            AccessLog.resource == f"referrals/{rid}").order_by(AccessLog.id))).scalars().all()
        outbox = (await session.exec(select(OutboxMessage.event_type).where(
            OutboxMessage.payload.contains(str(rid))).order_by(OutboxMessage.seq))).scalars().all()
    return {
        "referral": plain(row, "id", "source_reference", "fingerprint", "idempotency_key"),
        "needs": [plain(n, "id", "referral_id") for n in needs],
        "history": [plain(h, "id", "referral_id", "need_id") for h in history],
        "access": [(a.actor, a.roles, a.action, a.purpose, a.crn, bool(a.correlation_id))
                   for a in access],
        "outbox": list(outbox),
    }


async def recorded(sessionmaker: Any, events: list[Event]) -> list[bool]:
    async with sessionmaker() as session:
        ids = set((await session.exec(select(ProcessedEvent.event_id).where(
            ProcessedEvent.event_id.in_([str(e.id) for e in events])))).scalars().all())
    return [str(e.id) in ids for e in events]


async def counts(sessionmaker: Any) -> tuple[int, int, int]:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(ProcessedEvent)),
                await session.scalar(select(func.count()).select_from(AccessLog)),
                await session.scalar(select(func.count()).select_from(HISTORY)))


async def world(client: Any, consumer: Consumer, referral_body: Any, fast: bool):
    referral = await submit(client, two_needs(referral_body))
    events = [
        provider_event("allocated", referral, 1),
        provider_event("accepted", referral, 2),
        provider_event("allocated", referral, 3, need=1),
        provider_event("acknowledged", referral, 1),  # stale: after accepted, ignored
        provider_event("declined", referral, 4, need=1, reasonCode="capacity"),
        provider_event("started", referral, 5),
        provider_event("completed", referral, 6, outcome="achieved"),
        provider_event("unallocated", referral, 7, need=1, reason="no service left"),
        provider_event("accepted", referral, 8, needId=str(uuid.UUID(int=404))),  # unknown need
        provider_event("accepted", referral, 8, referralId=str(uuid.UUID(int=404))),
    ]
    events.append(events[1])  # a second copy: a duplicate
    outcomes = []
    for event in events:
        outcome = await consumer._settle_in_one(event) if fast else None
        outcomes.append(outcome or await ordinary(consumer, event))
    return outcomes, await stored(consumer.sessionmaker, referral), await recorded(
        consumer.sessionmaker, events)


async def test_settled_in_one_statement_as_by_the_ordinary_path(
    client: Any, consumer: Consumer, referral_body: Any
) -> None:
    fast = await world(client, consumer, referral_body, fast=True)
    plain = await world(client, consumer, referral_body, fast=False)
    assert fast[0] == ["handled"] * 8 + ["PermanentError", "PermanentError", "duplicate"]
    assert plain[0] == ["ordinary handled"] * 8 + [
        "PermanentError", "PermanentError", "ordinary duplicate"]
    assert fast[1] == plain[1]
    assert fast[1]["referral"]["status"] == "closed"
    assert fast[1]["outbox"] == ["referrals.referral.submitted"]  # provider events publish none
    assert len(fast[1]["access"]) == 1 + 7  # the submission, and each change
    assert fast[2] == plain[2] == [True] * 8 + [False, False, True]


async def test_a_second_copy_is_a_duplicate_and_writes_nothing(
    client: Any, consumer: Consumer, referral_body: Any
) -> None:
    referral = await submit(client, two_needs(referral_body))
    event = provider_event("allocated", referral, 1)
    assert await consumer._settle_in_one(event) == "handled"
    before = await stored(consumer.sessionmaker, referral), await counts(consumer.sessionmaker)
    assert await consumer._settle_in_one(event) == "duplicate"
    after = await stored(consumer.sessionmaker, referral), await counts(consumer.sessionmaker)
    assert after == before


async def _change_need(consumer: Consumer, referral: dict[str, Any], how: str) -> Any:
    """Someone else's change of the referral's second need, its transaction left open (the
    caller commits it): an event applied by the ordinary path (the referral's row and the
    need's), or the need's row alone."""
    session = consumer.sessionmaker()
    if how == "event":
        other = provider_event("allocated", referral, 3, need=1)
        assert await consumer._apply(session, other) == "handled"
    else:
        await session.exec(text("UPDATE needs SET details = 'changed' WHERE id = :id"),
                           params={"id": uuid.UUID(referral["needs"][1]["id"])})
    return session


@pytest.mark.parametrize("how", ["event", "row"])
@pytest.mark.parametrize("when", ["committed", "in flight"])
async def test_a_change_between_read_and_statement_leaves_the_event_to_the_ordinary_path(
    client: Any, consumer: Consumer, referral_body: Any, monkeypatch: Any, how: str, when: str
) -> None:
    referral = await submit(client, two_needs(referral_body))
    submitted = await stored(consumer.sessionmaker, referral)
    read_stamped = service.read_stamped
    committing: list[asyncio.Task] = []

    async def read_then_changed(connection: Any, referral_id: Any) -> Any:
        read = await read_stamped(connection, referral_id)
        other = await _change_need(consumer, referral, how)

        async def commit(after: float) -> None:
            await asyncio.sleep(after)
            await other.commit()
            await other.close()

        if when == "committed":
            await commit(0)
        else:  # the statement waits for its locks, then finds the rows changed
            committing.append(asyncio.create_task(commit(0.5)))
        return read

    monkeypatch.setattr(service, "read_stamped", read_then_changed)
    event = provider_event("allocated", referral, 1)
    before = await counts(consumer.sessionmaker)
    started = asyncio.get_running_loop().time()
    assert await consumer._settle_in_one(event) is None
    if committing:
        await committing[0]
        assert asyncio.get_running_loop().time() - started >= 0.5  # it waited for the locks
    changed = 1 if how == "event" else 0  # the other change's own record, access and history
    assert await counts(consumer.sessionmaker) == (
        before[0] + changed, before[1] + changed, before[2] + changed)
    assert await recorded(consumer.sessionmaker, [event]) == [False]
    monkeypatch.undo()

    assert await ordinary(consumer, event) == "ordinary handled"
    after = await stored(consumer.sessionmaker, referral)
    assert [n["status"] for n in after["needs"]] == [
        "allocated", "allocated" if how == "event" else "submitted"]
    assert after["needs"][1]["details"] == ("changed" if how == "row" else None)
    assert [h["event"] for h in after["history"][len(submitted["history"]):]] == [
        *(["allocated"] if how == "event" else []), "allocated"]
    assert await counts(consumer.sessionmaker) == (
        before[0] + changed + 1, before[1] + changed + 1, before[2] + changed + 1)
