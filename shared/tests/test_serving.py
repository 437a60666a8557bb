"""What one client may hold of a running server (`pathways_shared.serving`): a bounded request
head (431), a head and a body on time (408, the connection closed), idle connections closed.
A real uvicorn server on a real socket, as the services run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from sqlalchemy import func
from sqlmodel import select

from pathways_shared.infra_models import OutboxMessage
from pathways_shared.testing import (
    auth,
    raw_exchange,
    raw_request,
    send_and_hang_up,
    serving_on_socket,
    wait_until,
)

LIMITS = {
    "max_header_count": 20,
    "max_header_bytes": 2048,
    "head_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.0,
}


@pytest.fixture
async def server(app) -> AsyncIterator[tuple[str, int]]:
    async with serving_on_socket(app, **LIMITS) as address:
        yield address


exchange = raw_exchange
request = raw_request


def assert_problem(answer: tuple[Any, ...], status: int) -> dict[str, Any]:
    got, headers, body, closed = answer
    assert got == status, answer
    assert headers["content-type"] == "application/problem+json"
    assert closed, "the connection is closed after the refusal"
    problem = json.loads(body)
    assert problem["status"] == status
    return problem


async def test_a_plain_request_is_answered(server):
    status, _, body, _ = await exchange(server, request(headers={"Connection": "close"}))
    assert status == 200, body


async def test_a_kept_alive_connection_serves_request_after_request(server):
    reader, writer = await asyncio.open_connection(*server)
    writer.write(request() + request(headers={"Connection": "close"}))
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.count(b"HTTP/1.1 200") == 2, raw


async def test_too_many_headers_are_431(server):
    many = {f"X-Filler-{i}": "x" for i in range(30)}
    assert_problem(await exchange(server, request(headers=many)), 431)


async def test_too_many_header_bytes_are_431_holding_no_more_than_the_limit(server):
    # One header far past the limit, sent in pieces: refused once the limit is passed,
    # without waiting for (or holding) the rest.
    start = request(headers={"Connection": "close"})[:-2] + b"X-Big: "
    answer = await exchange(server, start, *[b"y" * 4096] * 4, pause=0.05)
    assert_problem(answer, 431)
    large = request(headers={"X-Big": "y" * 3000})
    assert_problem(await exchange(server, large), 431)


async def test_a_slow_head_is_cut_off_with_408(server):
    # Bytes keep coming, but the head is not complete when its time is up.
    trickle = [b"GET /health/live HTTP/1.1\r\n", *[b"X-Slow: 1\r\n"] * 3]
    problem = assert_problem(await exchange(server, *trickle, pause=0.25), 408)
    assert "head" in problem["detail"]


async def test_a_connection_that_sends_nothing_is_closed(server):
    status, _, _, closed = await exchange(server, wait=3)
    assert (status, closed) == (None, True)


async def test_a_slow_body_is_cut_off_with_408(server):
    headers = {**auth("admin"), "Content-Type": "application/json"}
    head = request("POST", "/pings", headers, content_length=100)
    problem = assert_problem(await exchange(server, head, b'{"note": ', pause=0.1), 408)
    assert "body" in problem["detail"]


async def test_the_middleware_holds_the_header_limits_under_any_server(client, app):
    app.state.settings = app.state.settings.model_copy(update=LIMITS)
    many = {f"X-Filler-{i}": "x" for i in range(30)}
    answer = await client.get("/health/live", headers=many)
    assert answer.status_code == 431
    assert answer.headers["content-type"] == "application/problem+json"
    answer = await client.get("/health/live", headers={"X-Big": "y" * 3000})
    assert answer.status_code == 431


def http_requests(app, path: str, status: str) -> float:
    metrics = app.state.metrics.registry
    return metrics.get_sample_value(
        "pathways_http_requests_total", {"method": "POST", "route": path, "status": status}
    ) or 0


async def counted(app, path: str, status: str) -> float:
    return http_requests(app, path, status)


async def test_a_client_gone_mid_body_is_recorded_499_and_nothing_is_written(
    server, app, sessionmaker, caplog
):
    headers = {**auth("admin"), "Content-Type": "application/json"}
    head = request("POST", "/pings", headers, content_length=200)
    with structlog.testing.capture_logs() as logged:
        await send_and_hang_up(server, head, b'{"note": "half')
        await wait_until(lambda: counted(app, "/pings", "499"))
    gone = [e for e in logged if e["event"] == "http.client_gone"]
    assert len(gone) == 1 and gone[0]["route"] == "/pings", logged
    assert not [e for e in logged if e["log_level"] in ("error", "critical")], logged
    assert "Traceback" not in caplog.text and not [
        r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")
    ], caplog.text
    assert http_requests(app, "/pings", "400") == http_requests(app, "/pings", "500") == 0
    async with sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(OutboxMessage))).one() == 0


@pytest.mark.parametrize("token", [False, True])
async def test_a_body_refused_before_it_is_read_closes_the_connection_cleanly(
    server, app, caplog, token
):
    # 100 MB announced and being sent: 401 without a token, 413 with one; each answered
    # whole and the connection closed by the server, while the client is still sending.
    headers = {**(auth("admin") if token else {}), "Content-Type": "application/json"}
    head = request("POST", "/pings", headers, content_length=100_000_000)
    with structlog.testing.capture_logs() as logged:
        answer = await exchange(server, head, *[b"x" * 65536] * 16, pause=0.02)
    problem = assert_problem(answer, 413 if token else 401)
    assert problem["type"].endswith("too-large" if token else "unauthorized"), problem
    assert not [e for e in logged if e["log_level"] in ("error", "critical")], logged
    assert "Traceback" not in caplog.text
