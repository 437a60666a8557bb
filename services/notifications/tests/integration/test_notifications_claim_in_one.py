"""On PostgreSQL the delivery worker claims what is due in one statement outside any
transaction (`claim_due_in_one`); the ordinary claim does it in a transaction. Both claim the
same deliveries and leave the same rows (each sending, one attempt more, its lease, its attempt
row); an interrupted attempt among the due makes the one statement write nothing, and the
ordinary claim then closes it and claims them all, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import select

from notifications import service
from notifications.app import create_app
from notifications.models import DeliveryAttemptRow, NotificationRow
from notifications.scheduler import Deliverer
from pathways_shared.db import transaction
from pathways_shared.testing import running

from .test_notifications_rounds import allocated, submitted

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def state(sessionmaker, event_ids):
    async with sessionmaker() as session:
        rows = (await session.exec(select(NotificationRow).where(
            NotificationRow.event_id.in_(event_ids)))).all()
        attempts = (await session.exec(select(DeliveryAttemptRow).where(
            DeliveryAttemptRow.notification_id.in_([r.id for r in rows])))).all()
    kinds = {row.id: (row.kind, row.event_type) for row in rows}
    return (
        sorted(((kinds[r.id], r.status, r.attempts, r.next_attempt_at, r.lease_expires_at,
                r.updated_at, r.last_error) for r in rows), key=str),
        sorted(((kinds[a.notification_id], a.number, a.started_at, a.finished_at, a.outcome)
               for a in attempts), key=str),
    )


async def world(make_settings, monkeypatch, *, fast: bool, interrupted: bool = False):
    """Three due deliveries (one of them retrying, due; with `interrupted`, one an attempt
    whose lease expired) and one not due yet, claimed at NOW: in one statement where it can
    (fast), else, as the worker then does, the ordinary way; then claimed again."""

    async def declined(self, now):
        return None

    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(Deliverer, "_claim_in_one", declined)
        settings = make_settings(run_workers=False)
        application = create_app(settings)
        async with running(application), httpx.AsyncClient(timeout=5) as http:
            sessionmaker = application.state.sessionmaker
            events = [allocated(), submitted()]
            event_ids = [e.id for e in events]
            async with transaction(sessionmaker) as session:
                await service.take_event(session, events[0], now=NOW - timedelta(minutes=5))
                await service.take_event(session, events[1], now=NOW - timedelta(minutes=4))
            async with transaction(sessionmaker) as session:
                rows = (await session.exec(select(NotificationRow).where(
                    NotificationRow.event_id.in_(event_ids)).order_by(
                    NotificationRow.created_at, NotificationRow.kind))).all()
                rows[0].status, rows[0].attempts = "retrying", 1
                rows[0].next_attempt_at, rows[0].last_error = NOW - timedelta(seconds=1), "451"
                rows[1].next_attempt_at = NOW + timedelta(minutes=1)  # not due yet
                if interrupted:
                    rows[2].status, rows[2].attempts = "sending", 1
                    rows[2].lease_expires_at = NOW - timedelta(seconds=1)
                    session.add(DeliveryAttemptRow(notification_id=rows[2].id, number=1,
                                                   started_at=NOW - timedelta(minutes=3)))
            deliverer = Deliverer(sessionmaker, settings, http=http, clock=lambda: NOW)
            before = await state(sessionmaker, event_ids)
            in_one = await deliverer._claim_in_one(NOW)
            if fast and not interrupted:
                assert in_one is not None
                claimed = in_one
            else:
                assert in_one is None
                assert await state(sessionmaker, event_ids) == before  # nothing written
                claimed = await deliverer._claim()
            after = await state(sessionmaker, event_ids)
            again = await deliverer._claim()
    lease = NOW + timedelta(seconds=settings.delivery_lease_seconds)
    return ([(r.kind, r.status, r.attempts, r.lease_expires_at == lease, r.next_attempt_at,
              r.last_error, event_ids.index(r.event_id), r.event_payload == events[
              event_ids.index(r.event_id)].to_json().decode())
             for r in claimed], after, again)


async def test_claimed_in_one_statement_as_by_the_ordinary_claim(make_settings, monkeypatch):
    fast = await world(make_settings, monkeypatch, fast=True)
    plain = await world(make_settings, monkeypatch, fast=False)
    assert fast == plain
    claimed, (_rows, attempts), again = fast
    assert [(kind, status, n) for kind, status, n, *_ in claimed] == [
        ("referral_allocated", "sending", 2), ("duty_to_refer", "sending", 1)]
    assert all(row[3] for row in claimed)  # the lease from NOW
    assert len(attempts) == 2
    assert again == []  # nothing left due: each claimed once


async def test_an_interrupted_attempt_leaves_the_claim_to_the_ordinary_way(
    make_settings, monkeypatch
):
    fast = await world(make_settings, monkeypatch, fast=True, interrupted=True)
    plain = await world(make_settings, monkeypatch, fast=False, interrupted=True)
    assert fast == plain
    claimed, (_rows, attempts), again = fast
    assert [(kind, n) for kind, _, n, *_ in claimed] == [
        ("referral_allocated", 2), ("duty_to_refer", 2)]
    assert [a[4] for a in attempts].count("interrupted") == 1
    assert again == []
