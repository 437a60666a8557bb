"""Assembling a service: the FastAPI app, its lifespan (engine, NATS, relay, consumers,
background workers), health, metrics, correlation ids and problem details.

Every service's `create_app(settings)` calls `build_app(...)`, so all four have the same
shape, the same middleware and the same operational endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles

from pathways_shared.access import PURPOSE_HEADER, requested_purpose
from pathways_shared.admin import admin_router
from pathways_shared.auth import Authenticator, current_principal
from pathways_shared.broker import Broker, sample_broker_health
from pathways_shared.clock import utc_now
from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import Consumer, Subscription
from pathways_shared.db import make_engine, make_sessionmaker
from pathways_shared.erasure import Eraser, erase_personal_data
from pathways_shared.errors import HeadersTooLarge, PathwaysError, RequestTimeout
from pathways_shared.observability import (
    CORRELATION_HEADER,
    Metrics,
    configure_logging,
    correlation_id,
    get_logger,
    new_correlation_id,
)
from pathways_shared.openapi import OPERATOR_TAG, install_docs, install_openapi, operation_id
from pathways_shared.outbox import OutboxRelay
from pathways_shared.problems import PayloadTooLarge, exception_response, install_problem_handlers
from pathways_shared.retention import delete_expired_bookkeeping

log = get_logger(__name__)


@dataclass
class Runtime:
    """What a running service holds; on `app.state.runtime`."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    broker: Broker
    metrics: Metrics
    relay: OutboxRelay
    consumers: list[Consumer] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    erasers: Sequence[Eraser] = ()


Worker = Callable[[Runtime], Awaitable[None]]


BROKER_HEALTH_SECONDS = 15


async def _watch_broker(runtime: Runtime) -> None:
    """Stream usage and consumer health as Prometheus gauges, sampled every 15 seconds."""
    consumers = [(c.stream, c.name) for c in runtime.consumers]
    while True:
        try:
            js = await runtime.broker.wait_ready()
            await sample_broker_health(
                js, runtime.metrics, prefix=runtime.broker.prefix, consumers=consumers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (NATS away: the gauges keep their last values)
            log.warning("broker.health_failed", error=str(exc))
        await asyncio.sleep(BROKER_HEALTH_SECONDS)


async def _keep_bookkeeping_short(runtime: Runtime) -> None:
    """Deletes expired bookkeeping (pathways_shared.retention) and erases personal data past
    its period (pathways_shared.erasure) once an interval."""
    while True:
        try:
            await delete_expired_bookkeeping(runtime.sessionmaker, runtime.settings, utc_now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (the database away: next interval)
            log.warning("retention.failed", error=str(exc))
        try:
            await erase_personal_data(
                runtime.sessionmaker, runtime.erasers, runtime.settings, utc_now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (the database away: next interval)
            log.warning("erasure.failed", error=str(exc))
        await asyncio.sleep(runtime.settings.retention_interval_seconds)


def build_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    subscriptions: Sequence[Subscription] = (),
    workers: Sequence[Worker] = (),
    erasers: Sequence[Eraser] = (),
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None,
    description: str = "",
    fast_paths: Mapping[tuple[str, str], FastPath] | None = None,
) -> FastAPI:
    configure_logging(settings.service_name, settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        sessionmaker = make_sessionmaker(engine)
        broker = Broker(
            settings.nats_url,
            name=settings.service_name,
            prefix=settings.subject_prefix,
            duplicate_window_seconds=settings.stream_duplicate_window_seconds,
            stream_replicas=settings.stream_replicas,
        )
        relay = OutboxRelay(
            sessionmaker, broker, service_name=settings.service_name, metrics=app.state.metrics,
            batch_size=settings.relay_batch_size, poll_seconds=settings.relay_poll_seconds,
        )
        runtime = Runtime(settings, engine, sessionmaker, broker, app.state.metrics, relay,
                          erasers=erasers)
        runtime.consumers = [
            (sub.consumer_class or Consumer)(
                sub, sessionmaker, broker, metrics=app.state.metrics,
                max_deliveries=settings.consumer_max_deliveries,
                batch_size=settings.consumer_batch_size,
                fetch_seconds=settings.consumer_fetch_seconds,
                # SQLite has one writer: concurrent handlers would only fight for its lock.
                concurrency=settings.consumer_concurrency if engine.dialect.name != "sqlite" else 1,
            )
            for sub in subscriptions
        ]
        app.state.runtime = runtime
        app.state.sessionmaker = sessionmaker
        broker.start()
        if settings.run_workers:
            runtime.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
            for consumer in runtime.consumers:
                runtime.tasks.append(asyncio.create_task(consumer.run(), name=consumer.name))
            for worker in workers:
                runtime.tasks.append(asyncio.create_task(_supervised(worker, runtime)))
            runtime.tasks.append(asyncio.create_task(_watch_broker(runtime), name="broker-health"))
            runtime.tasks.append(asyncio.create_task(_keep_bookkeeping_short(runtime), name="retention"))
        if on_startup:
            await on_startup(runtime)
        if settings.environment != "test":
            # What start-up made (modules, routes, pools) lives as long as the process: move
            # it out of the collector's sight, so a full collection does not stall requests
            # (tail latency, bench/README.md). Tests start many apps in one process: not there.
            gc.collect()
            gc.freeze()
        log.info("service.started", url=settings.base_url)
        try:
            yield
        finally:
            if on_shutdown:
                await on_shutdown(runtime)
            await stop_tasks(runtime.tasks)
            await broker.close()
            await engine.dispose()
            log.info("service.stopped")

    app = FastAPI(
        title=title, description=description, lifespan=lifespan, version="1.0.0",
        generate_unique_id_function=operation_id,
        servers=[{"url": settings.base_url, "description": "this deployment"}],
        docs_url=None, redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(settings.service_name)
    app.state.authenticator = Authenticator(settings)
    install_problem_handlers(app)
    _install_middleware(app)
    # Operator routes answer on every service but are not the partner's contract: out of
    # `/openapi.json`, documented apart at `/openapi-operator.json`.
    app.include_router(operational_router(), include_in_schema=False)
    app.include_router(admin_router(), include_in_schema=False)
    for router in routers:
        app.include_router(router)
    operator_routes = [*operational_router().routes, *admin_router().routes]
    for route in operator_routes:
        if isinstance(route, APIRoute):
            route.operation_id = operation_id(route)
    install_openapi(app, operator_routes)
    install_docs(app)
    app.state.fast_paths = _fast_routes(routers, fast_paths or {})
    return app


async def stop_tasks(tasks: list[asyncio.Task], timeout: float = 10) -> None:
    """Cancel background tasks and wait for them, cancelling again if one swallowed it."""
    deadline = asyncio.get_running_loop().time() + timeout
    pending = {t for t in tasks if not t.done()}
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in pending:
        log.error("worker.did_not_stop", task=task.get_name())


async def _supervised(worker: Worker, runtime: Runtime) -> None:
    """Run a background worker; restart it after an unexpected error, never die silently."""
    name = getattr(worker, "__name__", "worker")
    while True:
        try:
            await worker(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("worker.crashed", worker=name, error=str(exc), exc_info=exc)
            await asyncio.sleep(1)


class RequestContextMiddleware:
    """Correlation id, request metrics, and every escaped exception as problem+json.

    A plain ASGI middleware rather than `@app.middleware("http")`: the latter wraps each
    request in extra tasks and streams, a measurable share of a small request (bench/).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cid = (headers.get(CORRELATION_HEADER) or new_correlation_id())[:100]
        token = correlation_id.set(cid)
        purpose_token = requested_purpose.set(headers.get(PURPOSE_HEADER, "").strip() or None)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_context(message: Any) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[CORRELATION_HEADER] = cid
            await send(message)

        body = _BodyState()

        async def send_unless_refused(message: Any) -> None:
            # past a limit the app's own answer (a 400) is not sent; to a client gone, nothing
            if body.refusal is None and not body.client_gone:
                await send_with_context(message)

        try:
            try:
                receive = await _guard_body(scope, receive, body)
                fast = scope["app"].state.fast_paths.get((scope["method"], scope["path"]))
                ordinary = (receive if fast is None
                            else await _try_fast_path(fast, scope, receive, send_unless_refused))
                if ordinary is not None:
                    await self.app(scope, ordinary, send_unless_refused)
            except Exception as exc:  # typed errors and bugs alike become problem+json
                if response_started:
                    raise
                if body.refusal is None and not body.client_gone:  # those are answered below
                    await exception_response(Request(scope), exc)(
                        scope, receive, send_with_context
                    )
            if body.client_gone and not response_started:
                # The client hung up before its body was in: nobody to answer, nothing wrong
                # with the service. Recorded as nginx's 499 (client closed request).
                status = CLIENT_GONE
                log.info("http.client_gone", method=scope["method"],
                         route=getattr(scope.get("route"), "path", "unmatched"),
                         received_bytes=body.received)
            elif body.refusal is not None and not response_started:
                refusal = exception_response(Request(scope), body.refusal)
                refusal.headers["connection"] = "close"  # the rest of the body is not read
                await refusal(scope, receive, send_with_context)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.metrics
            metrics.http_requests.labels(scope["method"], path, str(status)).inc()
            metrics.http_latency.labels(scope["method"], path).observe(time.perf_counter() - started)
            correlation_id.reset(token)
            requested_purpose.reset(purpose_token)


# A fast path: given the request and its whole body, the response, or None for the
# ordinary way (FastAPI's routing, dependencies and validation), which then answers.
FastPath = Callable[[Request, bytes], Awaitable[Response | None]]


@dataclass(frozen=True)
class _FastRoute:
    handler: FastPath
    route: APIRoute  # the ordinary route of the same method and path: metrics, docs, errors


def _fast_routes(
    routers: Sequence[APIRouter], fast_paths: Mapping[tuple[str, str], FastPath]
) -> dict[tuple[str, str], _FastRoute]:
    """`build_app`'s `fast_paths` keyed as the middleware looks them up, each with the
    ordinary route it stands beside (there must be one: it is the path's contract)."""
    routes = {}
    for (method, path), handler in fast_paths.items():
        route = next(r for router in routers for r in router.routes
                     if isinstance(r, APIRoute) and r.path == path and method in r.methods)
        routes[(method, path)] = _FastRoute(handler, route)
    return routes


async def _try_fast_path(fast: _FastRoute, scope: Any, receive: Any, send: Any) -> Any:
    """Read the body (through the guarded `receive`: its limits hold) and offer it to the
    fast path. Answered: None. Declined (anything unusual: bad input, a missing role, an
    unexpected header), or the body not whole: the receive to give the ordinary app, which
    replays what was read, so that it answers exactly as it would have."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    if message["type"] == "http.request":
        scope["route"] = fast.route
        body = b"".join(m.get("body", b"") for m in messages)
        response = await fast.handler(Request(scope, receive), body)
        if response is not None:
            await response(scope, receive, send)
            return None

    async def replay() -> Any:
        return messages.pop(0) if messages else await receive()

    return replay


def media_type(headers: Headers) -> str:
    """The request's Content-Type without its parameters, in lower case ("" when none)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What the metrics and logs call a request whose client went away before its body was in
# (nginx's "client closed request"); it is never sent.
CLIENT_GONE = 499


@dataclass
class _BodyState:
    """A request body as the middleware saw it: refused (413, 408), or its client gone."""

    refusal: PathwaysError | None = None
    client_gone: bool = False
    received: int = 0
# `app.state.<this>`: paths of HTML forms whose caller is known by a session cookie (a web
# page's sign-in and sign-out), not a bearer token; their bodies are still limited.
FORM_PATHS = "form_paths"


def _check_head(scope: Any, settings: ServiceSettings) -> None:
    """Too many headers, or too many bytes of them: 431. The server's protocol
    (`pathways_shared.serving`) refuses such a head before it is held whole; this holds
    the same limits under any other server."""
    raw = scope["headers"]
    if len(raw) > settings.max_header_count:
        raise HeadersTooLarge(f"more than {settings.max_header_count} request headers")
    if sum(len(name) + len(value) for name, value in raw) > settings.max_header_bytes:
        raise HeadersTooLarge(f"the request headers are larger than {settings.max_header_bytes} bytes")


async def _guard_body(scope: Any, receive: Any, body: _BodyState) -> Any:
    """Before a body is read: the head is within its limits (431), the caller is
    authenticated (401, nothing read, when not; every route that takes a body needs a token,
    but for the HTML forms an app lists in `app.state.form_paths`), and a body over its limit
    (JSON and CSV limits apart) is a 413 — at once when Content-Length says so, else as soon
    as the bytes read pass it, so no more than the limit is ever buffered. A body that has not
    all arrived within `body_timeout_seconds` is a 408. A client that hangs up before its body
    is in is noted (`body.client_gone`): the app's reading fails, and nothing is answered.
    Answers the receive to use."""
    settings: ServiceSettings = scope["app"].state.settings
    _check_head(scope, settings)
    if scope["method"] not in _BODY_METHODS:
        return receive
    headers = Headers(scope=scope)
    app = scope["app"]
    if scope["path"] not in getattr(app.state, FORM_PATHS, ()):
        try:
            await current_principal(Request(scope), None)
        except PathwaysError as unauthenticated:  # answered, the connection closed, body unread
            # Whether a route takes it is asked only now (matching every route costs a few %
            # of a small request): an authenticated caller goes on either way.
            if _routed(app, scope):
                body.refusal = unauthenticated
                raise
    is_csv = media_type(headers) == "text/csv"
    limit = settings.max_csv_body_bytes if is_csv else settings.max_json_body_bytes
    refusal = PayloadTooLarge(f"the request body is larger than {limit} bytes")
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        body.refusal = refusal
        raise refusal
    complete = False
    deadline = asyncio.get_running_loop().time() + settings.body_timeout_seconds

    async def limited_receive() -> Any:
        nonlocal complete
        if complete:  # the body is in: what follows (a disconnect) may be waited for freely
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            slow = RequestTimeout(
                f"the request body did not arrive within {settings.body_timeout_seconds:g} s"
            )
            body.refusal = slow
            raise slow from None
        if message["type"] == "http.request":
            body.received += len(message.get("body", b""))
            if body.received > limit:
                body.refusal = refusal
                raise refusal
            complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            body.client_gone = True
        return message

    return limited_receive


def _routed(app: Any, scope: Any) -> bool:
    """Whether a route takes this path and method: one that does not is answered 404 or 405
    by the router, its body never read, so no token is asked for first. Static files (a
    mount of `StaticFiles`: the docs' assets, the dashboard's) take no body: 405 with `Allow`."""
    return any(
        route.matches(scope)[0] is Match.FULL
        for route in app.router.routes
        if not (isinstance(route, Mount) and isinstance(route.app, StaticFiles))
    )


def _install_middleware(app: FastAPI) -> None:
    app.add_middleware(RequestContextMiddleware)


def operational_router() -> APIRouter:
    router = APIRouter(tags=[OPERATOR_TAG])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "up"}

    @router.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        checks = {"database": "down", "nats": "down"}
        if runtime is not None:
            with contextlib.suppress(Exception):
                async with runtime.engine.connect() as conn:
                    async with asyncio.timeout(2):
                        await conn.execute(text("SELECT 1"))
                checks["database"] = "up"
            if runtime.broker.connected:
                checks["nats"] = "up"
        ok = all(v == "up" for v in checks.values())
        body = {"status": "up" if ok else "down", "checks": checks}
        if ok:
            return JSONResponse(body)
        return JSONResponse(
            {"type": "https://pathways.example/problems/unavailable", "title": "Not ready",
             "status": 503, "detail": f"dependencies down: {checks}", **body},
            status_code=503, media_type="application/problem+json",
        )

    @router.get(
        "/metrics", response_class=Response,
        responses={200: {"description": "Prometheus text exposition format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
