"""Database: async engine and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

The request's session dependency owns the transaction: services never commit; the
dependency commits once when the route returns, or rolls back when it raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import (
    Column,
    Table,
    bindparam,
    cast,
    event,
    func,
    insert,
    select,
    text,
    union_all,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import DATETIME as SQLiteDateTime
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

Session = SQLModelAsyncSession
T = TypeVar("T")


class _UTCSQLiteDateTime(SQLiteDateTime):
    """SQLite keeps no time zone: every time we store is UTC, so read it back as UTC.

    Without this a service on SQLite (`make run`) would answer naive times with no `Z`,
    unlike the same service on PostgreSQL.
    """

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        parse = super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            moment = parse(value) if parse else value
            if isinstance(moment, datetime) and moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment

        return process

    def bind_processor(self, dialect: Any) -> Any:
        store = super().bind_processor(dialect)

        def process(value: Any) -> Any:
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return store(value) if store else value

        return process


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for the URL; SQLite files get their folder, WAL and foreign keys."""
    url = make_url(database_url)
    # An error's text names its statement but not its values (a CRN or a name would reach
    # the log wherever the error is logged: a consumer's retry, say).
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # No pre-ping: it costs a round trip per checkout (bench/README.md). A connection lost
        # to a database restart fails one request with a 503 and is then discarded.
        # At most 2 x pool_size connections, as `pool_size` + as many "overflow" ones, but all
        # kept once opened: an overflow connection is closed when it comes back to a pool
        # holding `pool_size` idle ones, so under a load just above `pool_size` connections
        # were opened and closed over and over (each a TLS attempt, authentication and the
        # driver's codec set-up, then the statements prepared again: 5-8% of the CPU of
        # POST /referrals at concurrency 32, bench/README.md). Only as many are opened as
        # the busiest moment needed.
        kwargs.update(pool_size=2 * pool_size, max_overflow=0, pool_recycle=1800)
    engine = create_async_engine(database_url, **kwargs)
    if url.get_backend_name() == "sqlite":
        dialect = engine.sync_engine.dialect
        dialect.colspecs = {**dialect.colspecs, sqltypes.DateTime: _UTCSQLiteDateTime}

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[SQLModelAsyncSession]:
    return async_sessionmaker(engine, class_=SQLModelAsyncSession, expire_on_commit=False)


def is_postgres(session_or_engine: AsyncSession | AsyncEngine) -> bool:
    bind = session_or_engine.bind if isinstance(session_or_engine, AsyncSession) else session_or_engine
    return bind is not None and bind.dialect.name == "postgresql"


_INSERT_IF_NEW: dict[tuple[str, Table, Column], Any] = {}


async def take_turn(session: AsyncSession, lock_key: int) -> bool:
    """Whether this transaction may do a job that one replica at a time does (a relay pass, a
    scheduler's scan): a PostgreSQL advisory lock held until the transaction ends. On SQLite
    (one process) always yes."""
    if not is_postgres(session):
        return True
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(lock_key))))


def insert_if_new(session: AsyncSession, table: Table, returning: Column) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING returning` in this session's dialect.

    One round trip for "insert unless a unique key already holds a row": no row comes back
    when one did. A conflicting row another transaction has not yet committed is waited for.
    """
    name = session.bind.dialect.name
    key = (name, table, returning)
    if key not in _INSERT_IF_NEW:
        dialect = postgresql if name == "postgresql" else sqlite
        _INSERT_IF_NEW[key] = dialect.insert(table).on_conflict_do_nothing().returning(returning)
    return _INSERT_IF_NEW[key]


class DriverStatement:
    """A fixed Core statement, to run with `run_on_driver`: compiled once, by the first
    connection's dialect (asyncpg), into its SQL and, in the compiled order, its parameters'
    names with their types' bind processors."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self.sql = ""
        self.parameters: list[tuple[str, Any]] = []

    def compiled(self, dialect: Any) -> DriverStatement:
        if not self.sql:
            compiled = self.statement.compile(dialect=dialect)
            processors = compiled._bind_processors
            self.parameters = [(name, processors.get(name))
                               for name in compiled.positiontup or ()]
            self.sql = compiled.string
        return self

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [process(params[name]) if process else params[name]
                for name, process in self.parameters]


async def connect_apart(engine: AsyncEngine) -> AsyncConnection:
    """A connection of its own to `engine`'s database, for a job that keeps one (the outbox
    relay on duty): outside the engine's pool, so the pool keeps every slot for requests, and
    in autocommit, so each statement commits as it ends, without BEGIN and COMMIT. Closing
    it closes it (no pool keeps it).

    Its server side probes a quiet client (TCP keepalive, 10 s then every 5 s, 3 misses)
    and gives up on unacknowledged data after 30 s: what the session holds (an advisory lock)
    is let go within about half a minute of its client's machine vanishing, not the system
    default of two hours. A live client's kernel answers the probes, however long it stays
    quiet."""
    apart = create_async_engine(
        engine.url, poolclass=NullPool, hide_parameters=True, isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": {
            "tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3", "tcp_user_timeout": "30000",
        }},
    )
    return await apart.connect()


async def run_on_driver(
    session: AsyncSession | AsyncConnection, statement: DriverStatement, params: dict[str, Any]
) -> list[Any]:
    """PostgreSQL: `statement` run straight on the session's asyncpg connection, its rows as
    the driver's records: no SQLAlchemy compile-cache look-up, execution context or result
    per call (a fixed statement on a hot path: bench/README.md).

    When it is the first thing the session's transaction sends (no statement before it,
    nothing deferred to commit) it runs on its own, committed by PostgreSQL as it ends (one
    statement: all its rows or none), so without the BEGIN and COMMIT round trips; the
    session goes on as usual after it (a later statement begins a transaction). Otherwise it
    is part of the open transaction. Its errors are SQLAlchemy's, as `session.exec` raises
    them (a lost connection invalidated, so the pool drops it).

    Given a connection rather than a session (`connect_apart`'s), it runs on that one."""
    if isinstance(session, AsyncConnection):
        connection = session
    else:
        if session.sync_session.info.get(DEFERRED_KEY):
            # Rows waiting for the commit must share a transaction with this statement.
            await session.exec(text("SELECT 1"))  # begins it (SQLAlchemy sends BEGIN first)
        connection = await session.connection()
    fairy = await connection.get_raw_connection()
    adapted, driver = fairy.dbapi_connection, fairy.driver_connection
    statement = statement.compiled(connection.dialect)
    arguments = statement.arguments(params)
    try:
        return await driver.fetch(statement.sql, *arguments)
    except Exception as error:
        dialect = connection.dialect
        try:
            adapted._handle_exception(error)  # raises the driver's error as the DBAPI one
        except dialect.loaded_dbapi.Error as dbapi_error:
            invalidated = dialect.is_disconnect(dbapi_error, adapted, None)
            if invalidated:
                await connection.invalidate()
            raise DBAPIError.instance(
                statement.sql, arguments, dbapi_error, dialect.loaded_dbapi.Error,
                hide_parameters=True, connection_invalidated=invalidated, dialect=dialect,
            ) from error
        raise


async def run_autocommit(
    sessionmaker: async_sessionmaker[Any], run: Callable[[AsyncConnection], Awaitable[T]]
) -> T | None:
    """PostgreSQL: `run` on one of the pool's connections in autocommit (each statement
    committed as it ends: no BEGIN, no COMMIT round trips), for work done in one statement
    (`Subscription.settle_in_one`, notifications' claim); None on SQLite, which keeps the
    ordinary transaction. Errors are the caller's to handle."""
    engine = sessionmaker.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        return await run(connection)


DEFERRED_KEY = "pathways_deferred_rows"


def defer_insert(session: AsyncSession | SyncSession, table: Table, row: dict[str, Any]) -> None:
    """Insert `row` into `table` when the session commits, in the same transaction.

    Rows many callers write as a side effect (access log, outbox) go this way: all the rows of
    one table in one multi-row INSERT at commit, with no ORM object per row (bench/README.md).
    A rolled-back transaction forgets them. Not visible to queries before the commit.
    """
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    if not sync.in_transaction():
        sync.begin()  # no I/O: it makes the rollback that would forget these rows a real one
    sync.info.setdefault(DEFERRED_KEY, {}).setdefault(table, []).append(row)


@contextmanager
def deferred_rows(session: AsyncSession) -> Iterator[dict[Table, list[dict[str, Any]]]]:
    """The rows `defer_insert` is given inside the block, by table, instead of being inserted
    at commit: the caller writes them itself, with the change they go with (in one statement,
    say: `referrals.repository`), or not at all when that change is not made. Rows deferred
    before the block stay deferred, so are inserted after these."""
    sync = session.sync_session
    before = sync.info.pop(DEFERRED_KEY, None)
    taken: dict[Table, list[dict[str, Any]]] = {}
    try:
        yield taken
    finally:
        taken.update(sync.info.pop(DEFERRED_KEY, None) or {})
        if before is not None:
            sync.info[DEFERRED_KEY] = before


def bound_rows(table: Table, names: tuple[str, ...], count: int, prefix: str) -> Any:
    """`count` rows of the columns `names` as bound parameters `<prefix><n>_<column>`, typed as
    `table`'s columns, to INSERT ... SELECT from: one SELECT per row, UNION ALL. Unlike a
    multi-row VALUES, a statement built of these is cached, so compiled once (and a column
    of NULLs is not taken for text)."""
    rows = [
        select(*[cast(bindparam(f"{prefix}{n}_{name}", type_=table.c[name].type),
                      table.c[name].type).label(name) for name in names])
        for n in range(count)
    ]
    return rows[0] if count == 1 else union_all(*rows)


def bound_values(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The parameters of `bound_rows` for `rows`."""
    return {f"{prefix}{n}_{name}": value for n, row in enumerate(rows) for name, value in row.items()}


@event.listens_for(SyncSession, "before_commit")
def _insert_deferred(session: SyncSession) -> None:
    # Runs inside AsyncSession.commit's greenlet, so the synchronous execute is fine here.
    while deferred := session.info.pop(DEFERRED_KEY, None):
        connection = session.connection()
        together = (
            deferred_statement(deferred)
            if connection.dialect.name == "postgresql" and len(deferred) > 1 else None
        )
        if together is not None:
            connection.execute(*together)
            continue
        for table, rows in deferred.items():
            connection.execute(insert(table), rows)


_DEFERRED_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_DEFERRED_SHAPES_KEPT = 256


def deferred_statement(
    deferred: dict[Table, list[dict[str, Any]]],
) -> tuple[Any, dict[str, Any]] | None:
    """PostgreSQL: the rows of several tables (`defer_insert`'s, at commit) in one statement,
    one data-modifying CTE per table (`bound_rows`), instead of one INSERT per table: one
    round trip. Each table's rows go in in the order given (its serial numbers follow it, the
    outbox's order with them); foreign keys are checked as the statement ends, so a row may
    refer to another table's row of the same statement. None (one INSERT per table, as on
    SQLite) when a table's rows do not all give the same columns, or leave out a column with
    a Python-side default (which `insert(table)` would fill in). One statement per shape of
    tables, columns and counts, built once (and so compiled once); a test holds its rows equal
    to the per-table INSERTs'."""
    shape = []
    for table, rows in deferred.items():
        names = tuple(rows[0])
        given = set(names)
        if any(row.keys() != given for row in rows[1:]) or any(
            column.default is not None and column.name not in given for column in table.c
        ):
            return None
        shape.append((table, names, len(rows)))
    key = tuple(shape)
    statement = _DEFERRED_STATEMENTS.get(key)
    if statement is None:
        inserts = [
            insert(table).from_select(names, bound_rows(table, names, count, f"d{n}_"))
            for n, (table, names, count) in enumerate(shape)
        ]
        statement = inserts[-1]
        for n, earlier in enumerate(inserts[:-1]):
            statement = statement.add_cte(earlier.cte(f"deferred_{n}"))
        if len(_DEFERRED_STATEMENTS) < _DEFERRED_SHAPES_KEPT:
            _DEFERRED_STATEMENTS[key] = statement
    params: dict[str, Any] = {}
    for n, rows in enumerate(deferred.values()):
        params.update(bound_values(rows, f"d{n}_"))
    return statement, params


@event.listens_for(SyncSession, "after_soft_rollback")
def _forget_deferred(session: SyncSession, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint
        session.info.pop(DEFERRED_KEY, None)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[SQLModelAsyncSession],
) -> AsyncIterator[SQLModelAsyncSession]:
    """One unit of work: commit on success, roll back on any exception."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def get_session(request: Request) -> AsyncIterator[SQLModelAsyncSession]:
    """The request-scoped session: one transaction for the whole request."""
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


# scope="function": commit before the response is sent, so a failed commit is never a 2xx.
SessionDep = Annotated[SQLModelAsyncSession, Depends(get_session, scope="function")]
