"""What one client may hold of a running server (`pathways_shared.serving`): a bounded request
head (431), a head and a body on time (408, the connection closed), idle connections closed.
A real uvicorn server on a real socket, as the services run."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from pathways_shared.serving import server_options
from pathways_shared.testing import auth, free_port

LIMITS = {
    "max_header_count": 20,
    "max_header_bytes": 2048,
    "head_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.0,
}


@pytest.fixture
async def server(app) -> AsyncIterator[tuple[str, int]]:
    settings = app.state.settings.model_copy(update={**LIMITS, "port": free_port()})
    app.state.settings = settings  # the middleware's limits are the running app's
    options = {**server_options(settings), "lifespan": "off", "log_level": "warning"}
    running = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(running.serve())
    while not running.started:
        await asyncio.sleep(0.02)
    yield settings.host, settings.port
    running.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def exchange(
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
    finally:
        writer.close()
    if not raw:
        return None, {}, b"", closed
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body, closed


def request(method: str = "GET", path: str = "/health/live", headers: dict[str, str] | None = None,
            body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


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
    head = request("POST", "/pings", headers)
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100")
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
