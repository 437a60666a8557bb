"""Pytest plugin (loaded with `-p pathways_shared.testing`): real PostgreSQL and NATS for tests.

- `make_database(name, service_root)`: a PostgreSQL database made and migrated once per test
  session (named per process, dropped at the end); `truncate_database(url)` empties it
  between tests, which is fast and lets relays and consumers use their own connections.
- `subject_prefix`: a prefix unique to each test, so its streams, subjects and durable
  consumers are its own; the streams are deleted afterwards.
- `nc`: a live NATS connection; `token(...)`/`auth(...)`: bearer tokens for any role.
- `london_today()`, `years_before(day, n)`, `age_today(dob)`: dates derived from the clock,
  for tests that go through it (never a fixed date that the calendar will overtake).
- `running(app)`: run an app's lifespan (relay, consumers) around a block.
- `NatsServer`: a private nats-server process that a fault test may stop and start.
- The calendar pass: with `PATHWAYS_TEST_CLOCK=2028-02-29T12:00:00Z` the whole session runs
  on a Python clock moved to that instant (time-machine, ticking), so every test that reads
  the real clock meets that day. PostgreSQL's `now()` and nats-server keep the real time.
  A test that cannot hold on a moved clock says why with `@pytest.mark.real_clock("reason")`
  and is left out of that pass only.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import make_url

from pathways_shared.auth import mint_token
from pathways_shared.events import STREAMS, Event, stream_name
from pathways_shared.migrations import upgrade

TEST_JWT_SECRET = "pathways-test-secret-0123456789abcdef0123"  # 41 bytes
PG_ADMIN_URL = os.environ.get(
    "PATHWAYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("PATHWAYS_TEST_NATS_URL", os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
RUN_ID = uuid.uuid4().hex[:6]
_counter = itertools.count(1)
TEST_CLOCK_ENV = "PATHWAYS_TEST_CLOCK"
_clock_traveller: Any = None


def calendar_clock() -> datetime | None:
    """The instant the calendar pass moves the clock to, or None on the real clock."""
    value = os.environ.get(TEST_CLOCK_ENV, "").strip()
    if not value:
        return None
    moved = datetime.fromisoformat(value)
    if moved.tzinfo is None:
        raise pytest.UsageError(f"{TEST_CLOCK_ENV} needs a time zone, e.g. 2028-02-29T12:00:00Z")
    return moved


LONDON = ZoneInfo("Europe/London")


def london_today() -> date:
    """Today in Europe/London on the (possibly moved) clock: the day the services count in."""
    return datetime.now(LONDON).date()


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier; 29 February becomes 28 February in a common
    year (`day.replace(year=...)` raises there)."""
    year = day.year - years
    if (day.month, day.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return day.replace(year=year)


def age_today(date_of_birth: date) -> int:
    """Completed years today in Europe/London (a 29 February birthday comes on 1 March)."""
    today = london_today()
    return today.year - date_of_birth.year - int(
        (today.month, today.day) < (date_of_birth.month, date_of_birth.day)
    )


def pytest_configure(config: pytest.Config) -> None:
    global _clock_traveller
    config.addinivalue_line(
        "markers",
        "real_clock(reason): the test cannot run with the Python clock moved away from the "
        "real one (left out of the calendar pass only); the reason says why",
    )
    moved = calendar_clock()
    if moved is not None and _clock_traveller is None:
        import time_machine

        _clock_traveller = time_machine.travel(moved, tick=True)
        _clock_traveller.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _clock_traveller
    if _clock_traveller is not None:
        _clock_traveller.stop()
        _clock_traveller = None


def pytest_report_header(config: pytest.Config) -> str | None:
    moved = calendar_clock()
    return f"calendar pass: the clock starts at {moved.isoformat()}" if moved else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every `real_clock` marker gives its reason; the calendar pass leaves those tests out."""
    kept, left_out = [], []
    for item in items:
        marker = item.get_closest_marker("real_clock")
        if marker is not None and not (marker.args and str(marker.args[0]).strip()):
            raise pytest.UsageError(f"{item.nodeid}: real_clock needs its reason")
        (left_out if marker is not None else kept).append(item)
    if calendar_clock() is not None and left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url_for(dbname: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)


async def _recreate_database(dbname: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()


async def _drop_database(dbname: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await conn.close()


async def truncate_database(url: str) -> None:
    """Empty every table but alembic_version, restarting identities."""
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def make_database() -> Any:
    """`make_database(name, service_root)` -> URL of a migrated database for this session."""
    made: dict[str, str] = {}

    def _make(name: str, service_root: Path | None = None) -> str:
        if name not in made:
            dbname = f"pathways_test_{name}_{os.getpid()}"
            asyncio.run(_recreate_database(dbname))
            url = database_url_for(dbname)
            if service_root is not None:
                upgrade(Path(service_root), url)
            made[name] = url
        return made[name]

    yield _make
    for url in made.values():
        with contextlib.suppress(Exception):
            asyncio.run(_drop_database(make_url(url).database))


@pytest.fixture
def nats_url() -> str:
    return NATS_URL


@pytest.fixture
async def subject_prefix() -> AsyncIterator[str]:
    prefix = f"t{RUN_ID}{next(_counter)}."
    yield prefix
    with contextlib.suppress(Exception):
        nc = await nats.connect(NATS_URL, connect_timeout=2)
        js = nc.jetstream()
        for name in STREAMS:
            with contextlib.suppress(Exception):
                await js.delete_stream(stream_name(name, prefix))
        await nc.close()


@pytest.fixture
async def nc() -> AsyncIterator[nats.NATS]:
    client = await nats.connect(NATS_URL, connect_timeout=2)
    yield client
    await client.close()


def token(role: str | list[str] = "probation", **claims: Any) -> str:
    roles = [role] if isinstance(role, str) else list(role)
    return mint_token(TEST_JWT_SECRET, roles=roles, sub=claims.pop("sub", f"test-{roles[0]}"), **claims)


def auth(role: str | list[str] = "probation", **claims: Any) -> dict[str, str]:
    """`headers=auth("provider", provider="NACRO")`"""
    return {"Authorization": f"Bearer {token(role, **claims)}"}


@contextlib.asynccontextmanager
async def running(app: Any, *, ready_timeout: float = 15) -> AsyncIterator[Any]:
    """Run the app's lifespan; wait until NATS is connected and consumers are declared."""
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await runtime.broker.wait_ready(ready_timeout)
        for consumer in runtime.consumers:
            await consumer.declare()
        yield app


async def wait_until(
    predicate: Callable[[], Awaitable[Any]], *, timeout: float = 10, interval: float = 0.05
) -> Any:
    """Poll an async predicate until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


async def stream_events(
    js: Any, stream: str, prefix: str, *, expect: int | None = None, timeout: float = 5
) -> list[Event]:
    """Every event in a (prefixed) stream, read with an ephemeral consumer."""
    name = stream_name(stream, prefix)

    async def read() -> list[Event]:
        info = await js.stream_info(name)
        total = info.state.messages
        if total == 0:
            return []
        sub = await js.pull_subscribe(
            f"{prefix}>", durable=None, stream=name,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        try:
            msgs = await sub.fetch(total, timeout=2)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return [Event.from_json(m.data) for m in msgs]

    if expect is None:
        return await read()
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    while time.monotonic() < deadline:
        events = await read()
        if len(events) >= expect:
            return events
        await asyncio.sleep(0.05)
    return events


async def outbox_published(sessionmaker: Any, event_id: Any) -> bool:
    """Whether the relay has published (and marked) the outbox row of that event."""
    from sqlmodel import select

    from pathways_shared.infra_models import OutboxMessage

    async with sessionmaker() as session:
        published_at = await session.scalar(
            select(OutboxMessage.published_at).where(OutboxMessage.event_id == str(event_id))
        )
    return published_at is not None


async def settle_outbox(sessionmaker: Any, *, timeout: float = 10) -> Event:
    """Write a sentinel event to a service's outbox after the events under test and wait until
    the relay has published it. The relay publishes rows in order and marks a batch only when
    every message of it is acked, so every event written before the sentinel is then in its
    stream: what is not there was never written. Use it to assert that nothing more arrives,
    instead of sleeping. The sentinel (`pathways.test.ping`, in the PATHWAYS stream) is
    returned, so a test reading that stream can leave it out."""
    from pathways_shared.db import transaction
    from pathways_shared.events import make_event
    from pathways_shared.outbox import add_event

    sentinel = make_event("pathways.test.ping", {"note": "sentinel"})
    async with transaction(sessionmaker) as session:
        add_event(session, sentinel)
    await wait_until(lambda: outbox_published(sessionmaker, sentinel.id), timeout=timeout)
    return sentinel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A private nats-server with JetStream on a free port, for tests that stop the broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="pathways-nats-")
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


@pytest.fixture
def private_nats() -> Any:
    server = NatsServer()
    server.start()
    yield server
    server.cleanup()


async def check_outbox_round_trip(app: Any, nc: Any, prefix: str, service: str) -> None:
    """A service's smoke check: an event added in its transaction reaches JetStream, and the
    shared consumer machinery, on the service's own database, handles it exactly once."""
    from sqlalchemy import func
    from sqlmodel import select

    from pathways_shared.consumer import Consumer, Subscription
    from pathways_shared.db import transaction
    from pathways_shared.events import make_event
    from pathways_shared.infra_models import ProcessedEvent
    from pathways_shared.outbox import add_event

    runtime = app.state.runtime
    event = make_event("pathways.test.ping", {"from": service})
    async with transaction(runtime.sessionmaker) as session:
        add_event(session, event)
    [published] = await stream_events(nc.jetstream(), "PATHWAYS", prefix, expect=1)
    assert published.id == event.id

    seen = []

    async def handler(session: Any, received: Event) -> None:
        seen.append(received.id)

    consumer = Consumer(
        Subscription(stream="PATHWAYS", durable=f"{service}-smoke", handlers={"pathways.test.ping": handler}),
        runtime.sessionmaker, runtime.broker,
    )
    await consumer.declare()
    task = asyncio.create_task(consumer.run())
    try:
        async def processed() -> int:
            async with runtime.sessionmaker() as session:
                return await session.scalar(
                    select(func.count()).select_from(ProcessedEvent)
                    .where(ProcessedEvent.event_id == str(event.id))
                ) or 0

        assert await wait_until(processed) == 1
        assert seen == [event.id]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
