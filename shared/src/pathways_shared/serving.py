"""Running a service under uvicorn with bounds on what one client may hold.

uvicorn keeps every header of a request head, however many, and waits for it as long as bytes
trickle in; a connection that sends nothing is never closed. The protocol here (uvicorn's own
httptools protocol, bounded) answers a head with more than `max_header_count` headers or
`max_header_bytes` bytes of them 431 problem+json, holding no more than the limit; closes a
connection whose head has not arrived `head_timeout_seconds` after it opened or after the
head's first byte (408 problem+json when a head had begun). The body's own deadline and size
are the request middleware's (`pathways_shared.runtime`): 408 and 413. Idle keep-alive
connections close after `keep_alive_timeout_seconds`. Every bound is a setting (`PATHWAYS_*`,
see `ServiceSettings`).

A request answered before its body was read (401, 413, 408, 431) closes its connection
lingering, as nginx does: the answer is sent and the sending side shut (FIN), what the client
still sends is read and dropped for at most `LINGER_SECONDS`, then the socket is closed. A plain
close with unread bytes would reset the connection, and the client could lose the answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pathways_shared.config import ServiceSettings
from pathways_shared.problems import PROBLEM_JSON, TYPE_BASE

# The request line is not a header: room for a long URL on top of the header limit.
REQUEST_LINE_ALLOWANCE = 8192
# How long a connection closed mid-request reads and drops what its client still sends.
LINGER_SECONDS = 2.0


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: `close()` in the middle of a request
    (its body not all read) shuts the sending side and leaves the protocol to drop the rest
    (`BoundedHttpToolsProtocol.data_received`) until the client closes or the linger ends."""

    def __init__(self, transport: Any, protocol: BoundedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        protocol = self._protocol
        transport = self._transport
        if protocol.lingering or transport.is_closing():
            return
        if not protocol.mid_request or not transport.can_write_eof():
            transport.close()
            return
        protocol.lingering = True
        transport.write_eof()  # after what is buffered: the answer arrives whole
        transport.resume_reading()  # flow control may have paused it on a large body
        protocol.loop.call_later(LINGER_SECONDS, transport.close)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()


class _HeadRefused(Exception):
    """Stops the parser once a head has been refused (its answer already written)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_count = 100
    max_header_bytes = 16_384
    head_timeout_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_begun = False
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._refused = False
        self.mid_request = False  # a request begun whose body has not all been read
        self.lingering = False

    # -- the head's deadline
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_begun:
                self._refuse(408, "Request timeout", "timeout",
                             f"the request head did not arrive within "
                             f"{self.head_timeout_seconds:g} s")
            else:
                self._refused = True
                self.transport.close()

    # -- the head's size
    def data_received(self, data: bytes) -> None:
        if self._refused or self.lingering:  # answered and closing: the rest is dropped
            return
        super().data_received(data)
        if self._in_head and not self._refused:  # a head still incomplete after these bytes
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes + REQUEST_LINE_ALLOWANCE:
                self._refuse_large_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.mid_request = True
        self._in_head = True
        self._head_begun = True
        self._header_count = 0
        self._header_bytes = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if (self._header_count > self.max_header_count
                or self._header_bytes > self.max_header_bytes):
            self._refuse_large_head()
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            raise _HeadRefused
        self._cancel_head_timer()
        self._in_head = False
        self._head_begun = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.mid_request = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refused head has had its answer
            super().send_400_response(msg)

    def _refuse_large_head(self) -> None:
        if not self._refused:
            self._refuse(431, "Request header fields too large", "headers-too-large",
                         f"at most {self.max_header_count} request headers and "
                         f"{self.max_header_bytes} bytes of them")

    def _refuse(self, status: int, title: str, code: str, detail: str) -> None:
        """Answer problem+json and close: the rest of the request is never read."""
        self._refused = True
        self._cancel_head_timer()
        body = json.dumps(
            {"type": TYPE_BASE + code, "title": title, "status": status, "detail": detail}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\ncontent-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


def bounded_protocol(settings: ServiceSettings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class holding `settings`' limits (uvicorn builds one per connection)."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_count": settings.max_header_count,
            "max_header_bytes": settings.max_header_bytes,
            "head_timeout_seconds": settings.head_timeout_seconds,
        },
    )


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for a service: its address, the bounded protocol, the idle keep-alive
    timeout; uvicorn's logging left to ours."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "http": bounded_protocol(settings),
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
    }


def serve(app: Any, settings: ServiceSettings) -> None:
    """Run `app` until stopped: every service's `main()`."""
    uvicorn.run(app, **server_options(settings))
