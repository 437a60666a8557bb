"""Fixtures for the notifications service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client; and the
real far ends it talks to, started by the tests on free loopback ports: an SMTP server
(aiosmtpd), HTTP receivers for webhooks, and a stand-in for the referrals service's
`GET /referrals/{id}` (the only call this service makes to it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiosmtpd.controller import Controller

from notifications.app import create_app
from notifications.config import NotificationsSettings
from pathways_shared.testing import TEST_JWT_SECRET, free_port

SERVICE_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- SMTP


class SmtpSink:
    """Keeps every message, with the connection it came over (the client's address and
    port) and the name the client gave in EHLO; can refuse the next N with a given reply
    code, and hang up right after accepting the next N."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.connections: list[tuple[str, int]] = []
        self.ehlo_names: list[str] = []
        self.refuse_next = 0
        self.refuse_code = "451 4.3.0 try again later"
        self.hang_up_after_next = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return self.refuse_code
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        self.messages.append(message)  # type: ignore[arg-type]
        self.connections.append(tuple(session.peer))
        self.ehlo_names.append(session.host_name)
        if self.hang_up_after_next > 0:
            self.hang_up_after_next -= 1
            # Runs once the reply below is written: the client sees 250, then the line drop.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp_server():
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sink.port = port  # type: ignore[attr-defined]
    yield sink
    controller.stop()


# --------------------------------------------------------------------------- HTTP


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """A tiny HTTP/1.1 server: records each request, answers what ``respond`` says."""

    respond: Callable[[Received], tuple[int, bytes]] = lambda r: (200, b"ok")
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> HttpReceiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode().strip()
            if not request_line:
                return
            method, path, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                line = (await reader.readline()).decode()
                if line in ("\r\n", "\n", ""):
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            received = Received(method, path, headers, body)
            self.requests.append(received)
            status, payload = self.respond(received)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def receiver():
    server = await HttpReceiver().start()
    yield server
    await server.stop()


# --------------------------------------------------------------------------- an independent verifier


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks verification written from the specification, not from our code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = headers["webhook-signature"].split(" ")
    assert any(hmac.compare_digest(expected, o) for o in offered), "signature does not verify"


@pytest.fixture
def verify_webhook():
    return verify_standard_webhook


REFERRAL_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
NEED_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
OTHER_NEED_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")

REFERRAL = {
    "id": str(REFERRAL_ID),
    "source_reference": "NDELIUS-000123",
    "area": "E08000029",
    "status": "open",
    "person": {"crn": "X123456", "given_name": "Sam", "family_name": "Example",
               "date_of_birth": "1990-04-01", "sex": "male"},
    "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example",
                     "team": "Solihull OMU"},
    "needs": [
        {"id": str(NEED_ID), "pathway": "accommodation", "provider_code": "NACRO",
         "status": "allocated"},
        {"id": str(OTHER_NEED_ID), "pathway": "drugs_alcohol", "provider_code": "SIAS",
         "status": "allocated"},
    ],
}  # fmt: skip


@pytest.fixture
async def referrals_stub():
    """The referrals service as far as this one calls it: GET /referrals/{id}."""

    def respond(request: Received) -> tuple[int, bytes]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return 401, b"{}"
        request.headers["x-token-roles"] = ",".join(claims.get("roles", []))
        if scheme != "Bearer" or "service" not in claims.get("roles", []):
            return 403, b"{}"
        if request.method == "GET" and request.path == f"/referrals/{REFERRAL_ID}":
            return 200, json.dumps(REFERRAL).encode()
        return 404, b"{}"

    server = await HttpReceiver(respond=respond).start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("notifications", SERVICE_ROOT)


@pytest.fixture
def make_settings(service_settings, smtp_server, referrals_stub):
    """Settings for a test; retries and polling made fast, the far ends local."""

    def make(**overrides: Any) -> NotificationsSettings:
        values: dict[str, Any] = {
            "smtp_port": smtp_server.port,
            "referrals_url": referrals_stub.url,
            "worker_poll_seconds": 0.05,
            "retry_first_delay_seconds": 0.2,
            "retry_multiplier": 1.0,
            "retry_max_delay_seconds": 0.2,
            "retry_jitter": 0.0,
            "retry_max_attempts": 3,
            "disable_after_failures": 3,
            "disable_after_seconds": 0,
        }
        values.update(overrides)
        return service_settings(NotificationsSettings, **values)

    return make


@pytest.fixture
def settings(make_settings) -> NotificationsSettings:
    return make_settings()


@pytest.fixture
def app_factory():
    return create_app
