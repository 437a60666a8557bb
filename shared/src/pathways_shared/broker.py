"""The NATS connection: connects in the background (NATS may be down at start), reconnects
forever, and declares the JetStream streams each time it (re)connects."""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from pathways_shared.events import STREAMS, stream_name
from pathways_shared.observability import get_logger

log = get_logger(__name__)

DUPLICATE_WINDOW_SECONDS = 2 * 60 * 60
# The police cohort tool's durable pull consumer of COHORTS (account POLICE fetches and acks).
POLICE_CONSUMER = "police-cohort-tool"


def redact(url: str) -> str:
    """A URL fit for logs: any user and password replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


async def ensure_streams(
    js: JetStreamContext,
    *,
    prefix: str = "",
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS,
    replicas: int = 1,
) -> list[str]:
    """Create or update every stream: file storage, limits retention, a long dedup window,
    `replicas` copies (3 on a JetStream cluster: PATHWAYS_STREAM_REPLICAS). Says what it did."""
    done = []
    for name, subjects in STREAMS.items():
        config = StreamConfig(
            name=stream_name(name, prefix),
            subjects=[f"{prefix}{subjects}"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            duplicate_window=duplicate_window_seconds,
            max_age=0,
            num_replicas=replicas,
        )
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            done.append(f"created {config.name} (R{replicas})")
        else:
            await js.update_stream(config)
            done.append(f"updated {config.name} (R{replicas})")
    return done


def police_consumer(replicas: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=POLICE_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject="cohorts.>",
        ack_wait=60,
        max_ack_pending=1000,
        num_replicas=replicas,
    )


async def ensure_deployment_streams(url: str, replicas: int, *, timeout: float = 10) -> list[str]:
    """What `pathways streams ensure` does once per roll-out, as the NATS user
    `pathways-admin`, before the services start: every stream (as the services declare them)
    with `replicas` copies, and the police tool's consumer. Idempotent."""
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=timeout)
        done = await ensure_streams(js, replicas=replicas)
        await js.add_consumer("COHORTS", police_consumer(replicas))
        done.append(f"consumer COHORTS/{POLICE_CONSUMER}")
    finally:
        await nc.close()
    return done


class Broker:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        prefix: str = "",
        duplicate_window_seconds: float = 7200,
        stream_replicas: int = 1,
    ) -> None:
        self.url = url
        self.stream_replicas = stream_replicas
        self.name = name
        self.prefix = prefix
        self.duplicate_window_seconds = duplicate_window_seconds
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected and self._ready.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name=f"{self.name}-nats-connect")

    async def wait_ready(self, timeout: float | None = None) -> JetStreamContext:
        async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation
            await self._ready.wait()
        assert self.js is not None
        return self.js

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                self.nc = await nats.connect(
                    servers=[self.url],
                    name=self.name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    reconnected_cb=self._on_reconnect,
                    disconnected_cb=self._on_disconnect,
                    error_cb=self._on_error,
                )
                self.js = self.nc.jetstream(timeout=5)
                await ensure_streams(
                    self.js, prefix=self.prefix, duplicate_window_seconds=self.duplicate_window_seconds,
                    replicas=self.stream_replicas,
                )
                self._ready.set()
                log.info("nats.connected", url=redact(self.url))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down or JetStream not ready: try again
                log.warning("nats.connect_failed", url=redact(self.url), error=str(exc), retry_in=delay)
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _on_reconnect(self) -> None:
        log.info("nats.reconnected", url=redact(self.url))
        if self.js is not None:
            with contextlib.suppress(Exception):
                await ensure_streams(
                    self.js, prefix=self.prefix, duplicate_window_seconds=self.duplicate_window_seconds,
                    replicas=self.stream_replicas,
                )

    async def _on_disconnect(self) -> None:
        log.warning("nats.disconnected", url=redact(self.url))

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.nc is not None:
            # Messages are acked only after commit, so closing without a drain loses nothing.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.nc.close()
        self._ready.clear()
