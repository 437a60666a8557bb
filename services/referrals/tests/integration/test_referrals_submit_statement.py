"""On PostgreSQL a submission is one statement (data-modifying CTEs), its event and access-log
row included; on SQLite, steps. The two write the same rows, and neither writes anything when
the referral is already stored. The same
for saving a change (a provider event with its access-log row, a withdrawal): one statement
against steps."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from pathways_shared.access import Action
from pathways_shared.auth import Principal
from pathways_shared.clock import utc_now
from pathways_shared.db import deferred_rows, make_engine, make_sessionmaker
from pathways_shared.infra_models import AccessLog, OutboxMessage
from referrals.domain.events import Decision
from referrals.domain.submission import submit_referral
from referrals.repository import HISTORY, NEEDS, REFERRALS, ReferralRepository
from referrals.schemas import ReferralCreate
from referrals.service import _log_access, _publish

NOW = utc_now()
CLIENT = "test-probation"


def _decision(body: dict[str, Any]) -> Decision:
    return submit_referral(ReferralCreate.model_validate(body).to_domain(),
                           actor="test-probation", now=NOW, new_id=uuid.uuid4)


async def _stored(session, referral_id) -> dict[str, Any]:
    """The rows written for a referral, without what differs by construction (ids, keys)."""
    def strip(row, *names) -> dict[str, Any]:
        return {k: v for k, v in row._mapping.items() if k not in names}

    referral = (await session.exec(select(REFERRALS).where(REFERRALS.c.id == referral_id))).one()
    needs = (await session.exec(
        select(NEEDS).where(NEEDS.c.referral_id == referral_id).order_by(NEEDS.c.position))).all()
    history = (await session.exec(
        select(HISTORY).where(HISTORY.c.referral_id == referral_id).order_by(HISTORY.c.id))).all()
    return {
        "referral": strip(referral, "id", "source_reference", "fingerprint"),
        "needs": [strip(n, "id", "referral_id") for n in needs],
        "history": [strip(h, "id", "referral_id", "need_id") for h in history],
    }


async def test_one_statement_and_three_write_the_same_rows(database_url, referral_body):
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    two_needs = referral_body()
    two_needs["needs"] = [*two_needs["needs"], {**two_needs["needs"][0], "pathway": "health",
                                                "details": "GP registration"}]
    try:
        one, three = (_decision({**two_needs, "source_reference": f"CTE-{n}-{uuid.uuid4().hex[:8]}"})
                      for n in (1, 3))
        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            # The PostgreSQL path (one statement) and the SQLite one (in steps), side by side,
            # each with its event and access-log row as the service gives them.
            given_one, given_three = _with_rows(session, one), _with_rows(session, three)
            assert await repo.add(one.referral, fingerprint="f", idempotency_key=None,
                                  client=CLIENT, history=one.history, with_rows=given_one)
            assert await repo._add_in_steps(*_values(three, "f"), given_three)
        async with sessionmaker() as session:
            written_one = await _stored(session, one.referral.id)
            written_three = await _stored(session, three.referral.id)
            # The outbox and access-log rows are stored as given (bytes of the event alike).
            for given in (given_one, given_three):
                assert await _stored_with(session, given) == _without_keys(given)
        assert len(written_one["needs"]) == 2 and written_one["history"]
        assert written_one == written_three

        # A replay (same source reference, a new id): nothing is written, by either path.
        again = _decision({**two_needs, "source_reference": one.referral.source_reference})
        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            given = _with_rows(session, again)
            assert not await repo.add(again.referral, fingerprint="f", idempotency_key=None,
                                      client=CLIENT, history=again.history, with_rows=given)
            assert not await repo._add_in_steps(*_values(again, "f"), given)
        async with sessionmaker() as session:
            for table, column in ((REFERRALS, REFERRALS.c.id), (NEEDS, NEEDS.c.referral_id),
                                  (HISTORY, HISTORY.c.referral_id)):
                assert (await session.exec(
                    select(table).where(column == again.referral.id))).all() == []
            assert await _stored_with(session, given) == {OUTBOX: [], ACCESS_LOG: []}
    finally:
        await engine.dispose()


async def test_one_statement_save_and_three_write_the_same_rows(database_url, referral_body):
    from datetime import timedelta

    import pytest

    from pathways_shared.vocabulary import WithdrawalReason
    from referrals.domain.need_lifecycle import ProviderEvent, ProviderEventKind, apply_to_referral
    from referrals.domain.withdrawal import withdraw_referral
    from referrals.repository import _history_values, _need_changes, _saved_values

    def in_steps(repo, referral, history, with_rows=None):
        values, latest = _saved_values(referral)
        return repo._save_in_steps(
            referral.id, values, latest,
            [{"id": need.id} | _need_changes(need) for need in referral.needs],
            [_history_values(referral.id, entry) for entry in history], with_rows)

    def access_row(session, referral) -> dict:
        """The access-log row the service saves with a provider event's change."""
        with deferred_rows(session) as rows:
            _log_access(session, "providers-service", Action.ALTERATION, referral,
                        "provider event providers.referral.allocated")
        assert len(rows[ACCESS_LOG]) == 1
        return rows

    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    two_needs = referral_body()
    two_needs["needs"] = [*two_needs["needs"], {**two_needs["needs"][0], "pathway": "health",
                                                "details": "GP registration"}]
    try:
        one, three = (_decision({**two_needs, "source_reference": f"SAVE-{n}-{uuid.uuid4().hex[:8]}"})
                      for n in (1, 3))
        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            for made in (one, three):
                assert await repo.add(made.referral, fingerprint="f", idempotency_key=None,
                                      client=CLIENT, history=made.history)
        provider_referral_id = uuid.uuid4()
        given_by: dict[bool, dict | None] = {}
        for step in ("allocated", "withdrawn"):
            async with sessionmaker() as session, session.begin():
                repo = ReferralRepository(session)
                for made, one_statement in ((one, True), (three, False)):
                    referral = await repo.get(made.referral.id, for_update=True)
                    if step == "allocated":  # a provider event: one need changes, no withdrawal
                        decision = apply_to_referral(referral, ProviderEvent(
                            kind=ProviderEventKind.ALLOCATED, occurred_at=NOW,
                            referral_id=referral.id, need_id=referral.needs[0].id,
                            provider_referral_id=provider_referral_id, service_code="CRS-ACC-M",
                            provider_code="CRS", programme="accommodation",
                            acknowledge_by=NOW + timedelta(days=2),
                            respond_by=NOW + timedelta(days=5)), now=NOW)
                    else:
                        decision = withdraw_referral(
                            referral, reason_code=WithdrawalReason.NO_LONGER_REQUIRED,
                            comments="moved away", actor="test-probation",
                            now=NOW + timedelta(minutes=1))
                    # A provider event's change goes with its access-log row; a withdrawal's
                    # access log is written at commit (the service's own order).
                    given = access_row(session, decision.referral) if step == "allocated" else None
                    given_by[one_statement] = given
                    if one_statement:
                        await repo.save(decision.referral, decision.history, with_rows=given)
                    else:
                        await in_steps(repo, decision.referral, decision.history, given)
            async with sessionmaker() as session:
                written_one = await _stored(session, one.referral.id)
                written_three = await _stored(session, three.referral.id)
                for given in given_by.values():
                    if given is not None:
                        assert await _stored_access(session, given) == _without_keys(given)
            assert written_one == written_three
        assert written_one["referral"]["status"] == "withdrawn"
        assert written_one["needs"][0]["service_code"] == "CRS-ACC-M"

        # A referral that is not stored: neither path writes anything.
        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            ghost = _decision({**two_needs, "source_reference": "SAVE-ghost"})
            ghost_access = access_row(session, ghost.referral)
            with pytest.raises(LookupError):
                await repo.save(ghost.referral, ghost.history, with_rows=ghost_access)
        async with sessionmaker() as session, session.begin():
            with pytest.raises(LookupError):
                await in_steps(ReferralRepository(session), ghost.referral, ghost.history,
                               access_row(session, ghost.referral))
        async with sessionmaker() as session:
            assert (await session.exec(
                select(HISTORY).where(HISTORY.c.referral_id == ghost.referral.id))).all() == []
            assert await _stored_access(session, ghost_access) == {ACCESS_LOG: []}
    finally:
        await engine.dispose()


async def test_a_locked_read_in_one_statement_sees_what_a_concurrent_change_committed(
    database_url, referral_body
):
    """On PostgreSQL `get(for_update=True)` reads the referral and its needs in one statement.
    It reads what the plain read does, and, when it had to wait for another transaction's
    lock, the needs as that transaction left them (not as they were when it started)."""
    import asyncio
    from datetime import timedelta

    from referrals.domain.need_lifecycle import ProviderEvent, ProviderEventKind, apply_to_referral

    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    two_needs = referral_body()
    two_needs["needs"] = [*two_needs["needs"], {**two_needs["needs"][0], "pathway": "health",
                                                "details": "GP registration"}]
    try:
        made = _decision({**two_needs, "source_reference": f"LOCK-{uuid.uuid4().hex[:8]}"})
        async with sessionmaker() as session, session.begin():
            assert await ReferralRepository(session).add(
                made.referral, fingerprint="f", idempotency_key=None, client=CLIENT,
                history=made.history)
        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            locked = await repo.get(made.referral.id, for_update=True)
            assert locked == await repo.get(made.referral.id) == made.referral
            assert await repo.get(uuid.uuid4(), for_update=True) is None

        async def locked_read(started: asyncio.Event):
            async with sessionmaker() as session, session.begin():
                started.set()
                return await ReferralRepository(session).get(made.referral.id, for_update=True)

        async with sessionmaker() as session, session.begin():
            repo = ReferralRepository(session)
            referral = await repo.get(made.referral.id, for_update=True)
            decision = apply_to_referral(referral, ProviderEvent(
                kind=ProviderEventKind.ALLOCATED, occurred_at=NOW, referral_id=referral.id,
                need_id=referral.needs[1].id, provider_referral_id=uuid.uuid4(),
                service_code="HH-SIAS", provider_code="HH", programme="health",
                acknowledge_by=NOW + timedelta(days=2), respond_by=NOW + timedelta(days=5)),
                now=NOW)
            await repo.save(decision.referral, decision.history)
            started = asyncio.Event()
            waiting = asyncio.create_task(locked_read(started))
            await started.wait()
            await asyncio.sleep(0.3)  # the other read is now waiting for our lock
            assert not waiting.done()
        seen = await asyncio.wait_for(waiting, 10)
        assert seen == decision.referral
        assert seen.needs[1].service_code == "HH-SIAS"
    finally:
        await engine.dispose()


OUTBOX, ACCESS_LOG = OutboxMessage.__table__, AccessLog.__table__
# The columns of those rows that their table gives (an identity) or that are not yet set.
_TABLE_MADE = ("seq", "id", "published_at", "last_error")


def _with_rows(session, decision: Decision) -> dict:
    """The outbox and access-log rows the service writes with a submission."""
    principal = Principal(sub=CLIENT, roles=frozenset({"probation"}))
    with deferred_rows(session) as rows:
        _publish(session, decision, "http://referrals.test")
        _log_access(session, principal, Action.COLLECTION, decision.referral, "a test")
    assert len(rows[OUTBOX]) == len(decision.events) and len(rows[ACCESS_LOG]) == 1
    return rows


def _without_keys(rows: dict) -> dict:
    return {table: [{k: v for k, v in row.items() if k not in _TABLE_MADE} for row in given]
            for table, given in rows.items()}


async def _stored_with(session, given: dict) -> dict:
    """The stored outbox rows of the given events and access-log rows of the given
    resources, as `_without_keys`."""
    outbox = (await session.exec(select(OUTBOX).where(
        OUTBOX.c.event_id.in_([row["event_id"] for row in given[OUTBOX]]))
        .order_by(OUTBOX.c.seq))).all()
    access = (await session.exec(select(ACCESS_LOG).where(
        ACCESS_LOG.c.resource.in_([row["resource"] for row in given[ACCESS_LOG]]))
        .order_by(ACCESS_LOG.c.id))).all()
    return _without_keys({OUTBOX: [dict(r._mapping) for r in outbox],
                          ACCESS_LOG: [dict(r._mapping) for r in access]})


async def _stored_access(session, given: dict) -> dict:
    """The stored access-log rows of the given resources, as `_without_keys`."""
    access = (await session.exec(select(ACCESS_LOG).where(
        ACCESS_LOG.c.resource.in_([row["resource"] for row in given[ACCESS_LOG]]))
        .order_by(ACCESS_LOG.c.id))).all()
    return _without_keys({ACCESS_LOG: [dict(r._mapping) for r in access]})


def _values(decision: Decision, fingerprint: str):
    from referrals.repository import _history_values, _need_values, _referral_values

    referral = decision.referral
    return (
        _referral_values(referral, fingerprint, None, CLIENT),
        [_need_values(referral.id, n, need) for n, need in enumerate(referral.needs)],
        [_history_values(referral.id, entry) for entry in decision.history],
    )
