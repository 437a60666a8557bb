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
- `app`, `client`, `sessionmaker`: the service's app running with the test's `settings`, an
  HTTP client to it and its sessionmaker; a service's conftest gives `settings` (made with
  `service_settings(ItsSettings, **overrides)`) and `app_factory` (its `create_app`).
- `NatsServer`: a private nats-server process that a fault test may stop and start.
- The calendar pass: with `PATHWAYS_TEST_CLOCK=2028-02-29T12:00:00Z` the whole session runs
  on a Python clock moved to that instant (time-machine, ticking), so every test that reads
  the real clock meets that day. PostgreSQL's `now()` and nats-server keep the real time.
  A test that cannot hold on a moved clock says why with `@pytest.mark.real_clock("reason")`
  and is left out of that pass only.
- `LocalIdentityProvider`: an RS256 JWKS and a client-credentials token endpoint on a local
  port, for tests that run a service with production-like (JWKS-only) settings.
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

import asyncpg
import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import make_url

from pathways_shared.auth import mint_token
from pathways_shared.clock import london_today
from pathways_shared.events import STREAMS, Event, stream_name
from pathways_shared.harness import (
    NATS_LOCAL_CONF,
    NATS_URL,
    TEST_JWT_SECRET,
    asyncpg_dsn,
    drop_database,
    free_port,
    nats_server_binary,
    recreate_database,
)
from pathways_shared.http_stubs import (  # noqa: F401  (re-exported for the tests)
    LocalIdentityProvider,
    serving_http,
)
from pathways_shared.migrations import upgrade

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


async def truncate_database(url: str) -> None:
    """Empty every table but alembic_version, restarting identities."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
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
            url = asyncio.run(recreate_database(dbname))
            if service_root is not None:
                upgrade(Path(service_root), url)
            made[name] = url
        return made[name]

    yield _make
    for url in made.values():
        with contextlib.suppress(Exception):
            asyncio.run(drop_database(make_url(url).database))


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


@pytest.fixture
async def js(nc: nats.NATS) -> Any:
    return nc.jetstream()


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


@pytest.fixture
async def app(settings: Any, app_factory: Callable[[Any], Any]) -> AsyncIterator[Any]:
    app = app_factory(settings)
    async with running(app):
        yield app


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def sessionmaker(app: Any) -> Any:
    return app.state.runtime.sessionmaker


@pytest.fixture
async def service_settings(database_url: str, subject_prefix: str, nats_url: str) -> Any:
    """`service_settings(ReferralsSettings, **overrides)`: a service's settings for this test,
    its database emptied, a subject prefix of its own on the real NATS, the test secret and a
    fast relay. A service's conftest makes its `settings` fixture with it."""
    await truncate_database(database_url)

    def build(settings_class: Callable[..., Any], **overrides: Any) -> Any:
        values = {
            "environment": "test",
            "database_url": database_url,
            "nats_url": nats_url,
            "subject_prefix": subject_prefix,
            "jwt_secret": TEST_JWT_SECRET,
            "log_json": False,
            "relay_poll_seconds": 0.5,
        }
        return settings_class(**(values | overrides))

    return build


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


class NatsServer:
    """A private nats-server with JetStream on a free port, for tests that stop the broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="pathways-nats-")
        self.binary = nats_server_binary()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(NATS_LOCAL_CONF), "-a", "127.0.0.1", "-p", str(self.port),
             "-js", "-sd", self.store],
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


class NatsCluster:
    """Three nats-servers with routes on loopback: a JetStream cluster (`sync_interval: always`,
    as deployed) whose nodes a test may kill -9 and restart. `url` lists every node."""

    def __init__(self, size: int = 3, name: str = "pathways-test") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pathways-cluster-"))
        self.binary = nats_server_binary()
        self.nodes = [
            {"name": f"n{i}", "port": free_port(), "route": free_port(), "monitor": free_port()}
            for i in range(size)
        ]
        routes = ", ".join(f'"nats-route://127.0.0.1:{n["route"]}"' for n in self.nodes)
        for node in self.nodes:
            node["conf"] = self.dir / f'{node["name"]}.conf'
            node["conf"].write_text(
                f'server_name: {node["name"]}\nhost: 127.0.0.1\nport: {node["port"]}\n'
                f'http_port: {node["monitor"]}\n'
                f'jetstream: {{ store_dir: "{self.dir / node["name"]}", sync_interval: always }}\n'
                f'cluster: {{ name: {name}, host: 127.0.0.1, port: {node["route"]}, routes: [{routes}] }}\n'
            )
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return ",".join(f'nats://127.0.0.1:{n["port"]}' for n in self.nodes)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.nodes if n["name"] == name)

    def start(self, name: str | None = None) -> None:
        for node in [self.node(name)] if name else self.nodes:
            log = (self.dir / f'{node["name"]}.log').open("a")
            self.processes[node["name"]] = subprocess.Popen(
                [self.binary, "-c", str(node["conf"])], stdout=log, stderr=log)
        self.wait_jetstream()

    def wait_jetstream(self, timeout: float = 60) -> None:
        """Until every running node is healthy and knows the meta leader. `/healthz` with
        js-enabled-only answers 200 before the election; a JetStream API request made then
        times out (as CI once saw), so the leader is read from `/jsz` as well."""
        deadline = time.monotonic() + timeout
        for name in self.processes:
            monitor = f'http://127.0.0.1:{self.node(name)["monitor"]}'
            while not self._has_meta_leader(monitor):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats node {name} has no JetStream meta leader; see {self.dir}")
                time.sleep(0.1)

    @staticmethod
    def _has_meta_leader(monitor: str) -> bool:
        with contextlib.suppress(Exception):
            if httpx.get(f"{monitor}/healthz", timeout=1).status_code != 200:
                return False
            meta = httpx.get(f"{monitor}/jsz", timeout=1).json().get("meta_cluster") or {}
            return bool(meta.get("leader"))
        return False

    def kill(self, name: str) -> None:
        """kill -9: no lame duck, no flush."""
        process = self.processes.pop(name)
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nats_cluster() -> Any:
    cluster = NatsCluster()
    cluster.start()
    yield cluster
    cluster.cleanup()


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """An `application/problem+json` answer with this status (naming `field`, if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


async def check_health(client: httpx.AsyncClient, service: str) -> None:
    """A service's smoke check: live, ready, its metrics exposed and its own OpenAPI document."""
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert "pathways_http_requests_total" in (await client.get("/metrics")).text
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["title"] == f"Pathways {service} service"


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


# --- a running app on a real socket, and raw HTTP/1.1 clients of it ---------------------------


@contextlib.asynccontextmanager
async def serving_on_socket(app: Any, **limits: Any) -> AsyncIterator[tuple[str, int]]:
    """Serve an app whose lifespan already runs (the `app` fixture) with uvicorn and the
    services' bounded protocol (`pathways_shared.serving`) on a free local port, its settings
    updated with `limits` (the middleware reads the running app's); yields (host, port)."""
    import uvicorn

    from pathways_shared.serving import server_options

    settings = app.state.settings.model_copy(update={**limits, "port": free_port()})
    app.state.settings = settings
    options = {**server_options(settings), "lifespan": "off", "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield settings.host, settings.port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def raw_request(method: str = "GET", path: str = "/health/live",
                headers: dict[str, str] | None = None, body: bytes = b"",
                content_length: int | None = None) -> bytes:
    """An HTTP/1.1 request's bytes; `content_length` declares more (or less) than `body`."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if content_length is None and (body or method in ("POST", "PUT", "PATCH")):
        content_length = len(body)
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def raw_exchange(
    address: tuple[str, int], *parts: bytes, pause: float = 0, wait: float = 5
) -> tuple[int | None, dict[str, str], bytes, bool]:
    """Send `parts` (`pause` seconds apart); read the answer until the server closes.
    Answers the status, headers, body and whether the server closed within `wait` s."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        for part in parts:
            if reader.at_eof() or writer.is_closing():
                break  # the server has answered and closed: the rest is not wanted
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break
            if pause:
                await asyncio.sleep(pause)
        try:
            raw = await asyncio.wait_for(reader.read(), wait)
            closed = True
        except TimeoutError:
            raw, closed = b"", False
        except ConnectionError:  # reset after the answer: what had arrived is kept
            raw, closed = b"", True
    finally:
        writer.close()
    if not raw:
        return None, {}, b"", closed
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body, closed


async def send_and_hang_up(address: tuple[str, int], *parts: bytes, linger: float = 0.2) -> None:
    """A client that goes away mid-request: sends `parts`, waits `linger` s, then closes its
    socket without reading an answer."""
    _reader, writer = await asyncio.open_connection(*address)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        await asyncio.sleep(linger)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
