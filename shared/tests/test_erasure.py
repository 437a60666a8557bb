"""The shared erasure mechanism against real PostgreSQL (issue 18): batches under
`FOR UPDATE SKIP LOCKED`, the s.62 entry and the register line per record, the register found
by the CRN and nothing else, and the guards."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.config import ServiceSettings
from pathways_shared.db import make_engine, make_sessionmaker
from pathways_shared.erasure import (
    Erasable,
    ErasureRecord,
    erase_personal_data,
    erasures_for,
    lock_due,
    register_key,
    subject_key,
)
from pathways_shared.infra_models import AccessLog
from pathways_shared.testing import TEST_JWT_SECRET

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


class Person(SQLModel, table=True):
    __tablename__ = "erasure_test_people"
    id: int | None = Field(default=None, primary_key=True)
    crn: str | None = None
    name: str | None = None
    ended_at: datetime | None = None
    erased_at: datetime | None = None


class PersonEraser:
    record_type = "person"
    fields = ("crn", "name")

    def __init__(self, *, marks: bool = True) -> None:
        self.marks = marks

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        p = Person.__table__.c
        query = lock_due(select(p.id, p.crn, p.ended_at).where(
            p.erased_at.is_(None), p.ended_at < ended_before).order_by(p.id).limit(limit),
            Person.__table__)
        return [Erasable(str(r.id), r.crn, r.ended_at) for r in (await session.exec(query)).all()]

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        if self.marks:
            ids = [int(r.record_id) for r in records]
            await session.exec(update(Person.__table__).where(Person.__table__.c.id.in_(ids))
                               .values(crn=None, name=None, erased_at=now))


@pytest.fixture
async def sm(settings):
    engine = make_engine(settings.database_url)
    tables = [Person.__table__, ErasureRecord.__table__]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=tables))
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
    yield make_sessionmaker(engine)
    await engine.dispose()


def test_an_erasure_period_shorter_than_the_replay_window_is_refused():
    with pytest.raises(ValidationError, match="replay window"):
        ServiceSettings(service_name="x", jwt_secret=TEST_JWT_SECRET, database_url="sqlite://",
                        replay_window_days=14, erase_personal_data_after_days=7)
    assert ServiceSettings(service_name="x", jwt_secret=TEST_JWT_SECRET,
                           database_url="sqlite://").erase_personal_data_after_days == 2192


def test_the_register_key_is_its_own_or_derived_and_hides_the_crn():
    settings = ServiceSettings(service_name="x", jwt_secret=TEST_JWT_SECRET, database_url="sqlite://")
    key = register_key(settings)
    assert key != TEST_JWT_SECRET and register_key(
        settings.model_copy(update={"erasure_register_key": "k" * 32})) == "k" * 32
    assert subject_key("X123456", key) == subject_key(" x123456 ", key)
    assert "X123456" not in subject_key("X123456", key)
    assert subject_key("X123456", key) != subject_key("X123456", "another key")


async def test_due_records_are_erased_in_batches_logged_and_registered(sm, settings):
    settings = settings.model_copy(update={"erasure_batch_size": 2})
    old = NOW - timedelta(days=2193)
    async with sm() as session, session.begin():
        session.add_all([Person(crn="X123456", name="Sam Example", ended_at=old),
                         Person(crn="X123456", name="Sam Example", ended_at=old),
                         Person(crn="Y654321", name="Jo Other", ended_at=old),
                         Person(crn="Z111111", name="Still Here", ended_at=NOW - timedelta(days=2191)),
                         Person(crn="Z222222", name="Still Open", ended_at=None)])
    assert await erase_personal_data(sm, [PersonEraser()], settings, NOW, dry_run=True) == {
        "person": 3}
    assert await erase_personal_data(sm, [PersonEraser()], settings, NOW) == {"person": 3}
    assert await erase_personal_data(sm, [PersonEraser()], settings, NOW) == {"person": 0}
    async with sm() as session:
        people = (await session.exec(select(Person).order_by(Person.id))).all()
        assert [(p.crn, p.name) for p in people] == [
            (None, None), (None, None), (None, None), ("Z111111", "Still Here"),
            ("Z222222", "Still Open")]
        logged = (await session.exec(select(AccessLog).where(
            AccessLog.action == "erasure", AccessLog.resource.like("person/%")))).all()
        assert sorted(a.resource for a in logged)[-3:] == ["person/1", "person/2", "person/3"]
        mine = await erasures_for(session, "X123456", settings)
        assert [(e.record_type, e.record_id, e.fields) for e in mine] == [
            ("person", "1", ["crn", "name"]), ("person", "2", ["crn", "name"])]
        assert mine[0].erased_at == NOW and mine[0].ended_at == old
        assert [e.record_id for e in await erasures_for(session, "Y654321", settings)] == ["3"]
        assert await erasures_for(session, "Z111111", settings) == []
        assert await erasures_for(
            session, "X123456", settings.model_copy(update={"erasure_register_key": "x" * 32})) == []


async def test_rows_another_transaction_holds_are_skipped_not_waited_for(sm, settings):
    old = NOW - timedelta(days=2193)
    async with sm() as session, session.begin():
        session.add_all([Person(crn="X123456", ended_at=old), Person(crn="Y654321", ended_at=old)])
    async with sm() as holder, holder.begin():
        await holder.exec(select(Person).where(Person.crn == "X123456").with_for_update())
        done = await asyncio.wait_for(
            erase_personal_data(sm, [PersonEraser()], settings, NOW), timeout=10)
        assert done == {"person": 1}
    assert await erase_personal_data(sm, [PersonEraser()], settings, NOW) == {"person": 1}


async def test_an_eraser_that_marks_nothing_is_stopped_not_looped(sm, settings):
    settings = settings.model_copy(update={"erasure_batch_size": 1})
    old = NOW - timedelta(days=2193)
    async with sm() as session, session.begin():
        session.add_all([Person(crn="X123456", ended_at=old), Person(crn="Y654321", ended_at=old)])
    with pytest.raises(RuntimeError, match="came back as due"):
        await erase_personal_data(sm, [PersonEraser(marks=False)], settings, NOW)
