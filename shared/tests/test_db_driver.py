"""`db.run_on_driver`: a fixed statement run on the asyncpg connection writes what the same
statement through `session.exec` writes; alone (a transaction's first statement) it is
atomic and needs no commit, after another statement it is part of that transaction; its
errors are SQLAlchemy's. `db.deferred_rows` takes the rows deferred inside its block."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from pathways_shared.access import Action, record_access
from pathways_shared.db import (
    DriverStatement,
    deferred_rows,
    make_engine,
    make_sessionmaker,
    run_on_driver,
)
from pathways_shared.infra_models import AccessLog

from .conftest import Effect

EFFECTS = Effect.__table__
ACCESS_LOG = AccessLog.__table__
# Two rows in one statement (data-modifying CTE): both or neither.
_TWO = insert(EFFECTS).from_select(
    ["event_id", "note"],
    select(bindparam("event_id", type_=EFFECTS.c.event_id.type), bindparam("note", type_=EFFECTS.c.note.type))
    .union_all(select(bindparam("event_id", type_=EFFECTS.c.event_id.type), bindparam("second", type_=EFFECTS.c.note.type))),
).returning(EFFECTS.c.id)


async def _notes(sessionmaker, event_id: str) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.exec(
            select(EFFECTS.c.note).where(EFFECTS.c.event_id == event_id).order_by(EFFECTS.c.id)
        )).scalars())


async def test_a_statement_on_the_driver_writes_what_session_exec_writes(database_url):
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    statement = DriverStatement(_TWO)
    try:
        driver_id, orm_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with sessionmaker() as session:  # alone: committed as it ends, no commit needed
            rows = await run_on_driver(
                session, statement, {"event_id": driver_id, "note": "one", "second": "two"})
            assert len(rows) == 2
        async with sessionmaker() as session, session.begin():
            await session.exec(_TWO, params={"event_id": orm_id, "note": "one", "second": "two"})
        assert await _notes(sessionmaker, driver_id) == await _notes(sessionmaker, orm_id) == [
            "one", "two"]

        # After another statement it is in that transaction: a rollback undoes it.
        undone = str(uuid.uuid4())
        async with sessionmaker() as session:
            await session.exec(text("SELECT 1"))
            await run_on_driver(session, statement, {"event_id": undone, "note": "a", "second": "b"})
            await session.rollback()
        assert await _notes(sessionmaker, undone) == []

        # Rows deferred before it (an access-log row) share its transaction: a rollback
        # forgets both.
        deferred = str(uuid.uuid4())
        async with sessionmaker() as session:
            record_access(session, actor="test", action=Action.CONSULTATION,
                          resource=f"effects/{deferred}", crn=None, purpose="a test")
            await run_on_driver(session, statement, {"event_id": deferred, "note": "a", "second": "b"})
            await session.rollback()
        assert await _notes(sessionmaker, deferred) == []

        # An error is SQLAlchemy's, as `session.exec` raises it (a value PostgreSQL refuses),
        # and nothing of the statement is written.
        refused = str(uuid.uuid4())
        bad = {"event_id": refused, "note": "ok", "second": "nul\x00"}
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError) as by_driver:
                await run_on_driver(session, statement, bad)
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError) as by_session:
                await session.exec(_TWO, params=bad)
        assert type(by_driver.value) is type(by_session.value)
        assert type(by_driver.value.orig) is type(by_session.value.orig)
        assert await _notes(sessionmaker, refused) == []

        # A connection lost (its backend ended): the error says it was invalidated (a 503),
        # the pool drops it, and the next session works.
        async with sessionmaker() as session:
            await run_on_driver(session, statement, {"event_id": refused, "note": "a", "second": "b"})
            pid = (await session.connection()).sync_connection.connection.driver_connection.get_server_pid()
            async with sessionmaker() as other, other.begin():
                await other.exec(select(func.pg_terminate_backend(pid)))
            with pytest.raises(DBAPIError) as lost:
                await run_on_driver(session, statement, {"event_id": refused, "note": "c", "second": "d"})
            assert lost.value.connection_invalidated
        async with sessionmaker() as session:
            assert len(await run_on_driver(
                session, statement, {"event_id": refused, "note": "e", "second": "f"})) == 2
    finally:
        await engine.dispose()


async def test_deferred_rows_takes_the_rows_deferred_in_its_block(database_url):
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    resource = f"effects/{uuid.uuid4()}"
    try:
        async with sessionmaker() as session:
            record_access(session, actor="test", action=Action.CONSULTATION,
                          resource=f"{resource}/before", crn=None, purpose="a test")
            with deferred_rows(session) as taken:
                record_access(session, actor="test", action=Action.COLLECTION,
                              resource=f"{resource}/inside", crn=None, purpose="a test")
            assert [row["resource"] for row in taken[ACCESS_LOG]] == [f"{resource}/inside"]
            await session.commit()
        async with sessionmaker() as session:
            stored = (await session.exec(
                select(ACCESS_LOG.c.resource).where(ACCESS_LOG.c.resource.like(f"{resource}/%"))
            )).scalars().all()
        assert stored == [f"{resource}/before"]  # the taken row is the caller's to write
    finally:
        await engine.dispose()


async def test_rows_deferred_to_several_tables_go_in_one_statement_equal_to_one_per_table(
    database_url,
):
    """At commit on PostgreSQL the deferred rows of several tables are one INSERT (one CTE per
    table), writing what one INSERT per table writes (a table's rows on their own take that
    path): the same values, in the order deferred, with the columns' database defaults."""
    from sqlalchemy import event as sa_event

    from pathways_shared.db import defer_insert, deferred_statement
    from pathways_shared.events import make_event
    from pathways_shared.infra_models import OutboxMessage
    from pathways_shared.outbox import add_event

    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    inserts: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "WITH")):
            inserts.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", count)
    outbox = OutboxMessage.__table__
    together, apart = str(uuid.uuid4()), str(uuid.uuid4())
    events = {run: [make_event("pathways.test.ping", {"note": f"n{n}"}, crn="X123456")
                    for n in range(3)] for run in (together, apart)}

    def defer(session, run: str, tables: set[str]) -> None:
        for n, event in enumerate(events[run]):
            if "outbox" in tables:
                add_event(session, event)
            if "access_log" in tables:
                record_access(session, actor="test", action=Action.COLLECTION,
                              resource=f"effects/{run}/{n}", crn=None, purpose="a test")
            if "effects" in tables:
                defer_insert(session, EFFECTS, {"event_id": run, "note": f"note {n}"})

    try:
        async with sessionmaker() as session:
            defer(session, together, {"outbox", "access_log", "effects"})
            await session.commit()
        assert len(inserts) == 1, inserts  # three tables, one statement
        for table in ("outbox", "access_log", "effects"):  # one table at a time: the plain path
            async with sessionmaker() as session:
                defer(session, apart, {table})
                await session.commit()
        assert len(inserts) == 4

        async def stored(run: str) -> tuple[list, list, list]:
            async with sessionmaker() as session:
                ids = [str(e.id) for e in events[run]]
                sent = (await session.exec(
                    select(outbox.c.event_id, outbox.c.event_type, outbox.c.subject,
                           outbox.c.attempts, outbox.c.published_at, outbox.c.last_error)
                    .where(outbox.c.event_id.in_(ids)).order_by(outbox.c.seq))).all()
                logged = (await session.exec(
                    select(ACCESS_LOG.c.actor, ACCESS_LOG.c.roles, ACCESS_LOG.c.action,
                           ACCESS_LOG.c.resource, ACCESS_LOG.c.crn, ACCESS_LOG.c.purpose)
                    .where(ACCESS_LOG.c.resource.like(f"effects/{run}/%"))
                    .order_by(ACCESS_LOG.c.id))).all()
                noted = (await session.exec(
                    select(EFFECTS.c.note).where(EFFECTS.c.event_id == run)
                    .order_by(EFFECTS.c.id))).scalars().all()
            return ([(str(e), *rest) for e, *rest in sent],
                    [tuple(r) for r in logged], list(noted))

        got, expected = await stored(together), await stored(apart)
        assert [row[0] for row in got[0]] == [str(e.id) for e in events[together]]  # in order
        assert [row[1:] for row in got[0]] == [row[1:] for row in expected[0]]
        assert [row[:3] + (row[3].replace(together, apart),) + row[4:] for row in got[1]] \
            == expected[1]
        assert got[2] == expected[2] == ["note 0", "note 1", "note 2"]

        # A table whose rows leave out a column with a Python-side default keeps the plain path.
        assert deferred_statement({EFFECTS: [{"event_id": "a", "note": "b"}],
                                   outbox: [{"event_id": "a"}]}) is None
        assert deferred_statement({EFFECTS: [{"event_id": "a", "note": "b"},
                                             {"event_id": "a"}], ACCESS_LOG: [{"actor": "x"}]}) is None

        # All or nothing: a row refused in one table (NULL in a NOT NULL column) writes none.
        refused = str(uuid.uuid4())
        with pytest.raises(DBAPIError):
            async with sessionmaker() as session:
                defer_insert(session, EFFECTS, {"event_id": refused, "note": "kept?"})
                record_access(session, actor="test", action=Action.COLLECTION,
                              resource=f"effects/{refused}/0", crn=None, purpose="a test")
                defer_insert(session, EFFECTS, {"event_id": None, "note": "refused"})
                await session.commit()
        assert await _notes(sessionmaker, refused) == []
        async with sessionmaker() as session:
            assert (await session.exec(select(func.count()).select_from(ACCESS_LOG).where(
                ACCESS_LOG.c.resource.like(f"effects/{refused}/%")))).one()[0] == 0
    finally:
        await engine.dispose()
