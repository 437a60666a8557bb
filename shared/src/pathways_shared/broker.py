"""The NATS connection: connects in the background (NATS may be down at start), reconnects
forever, and creates any JetStream stream that is missing each time it (re)connects (existing
streams are left alone: their replicas and limits are set by `pathways streams ensure`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

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
from pathways_shared.observability import Metrics, get_logger

log = get_logger(__name__)

DUPLICATE_WINDOW_SECONDS = 2 * 60 * 60
# The police cohort tool's durable pull consumer of COHORTS (account POLICE fetches and acks).
POLICE_CONSUMER = "police-cohort-tool"


def servers(url: str) -> list[str]:
    """NATS_URL may list the nodes of a cluster, comma-separated (nats-py takes a list)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def redact(url: str) -> str:
    """A URL fit for logs: any user and password replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


# What each stream may hold, as shares of the byte budget of all streams (`pathways streams
# ensure --max-bytes`, PATHWAYS_STREAMS_MAX_BYTES): referrals carry the most, with their needs.
STREAM_SHARES: dict[str, float] = {
    "REFERRALS": 0.30, "PROVIDERS": 0.20, "COHORTS": 0.20, "NOTIFICATIONS": 0.20, "PATHWAYS": 0.10,
}
# The budget when none is given: 80% of staging's 5Gi volume, the smallest in deploy/k8s.
DEFAULT_STREAMS_MAX_BYTES = 4 * 1024**3
_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "KI": 1024, "MI": 1024**2, "GI": 1024**3}


def parse_bytes(text: str | int) -> int:
    """`4Gi`, `500M`, `1073741824` -> bytes (Kubernetes' suffixes, B optional)."""
    value = str(text).strip().upper().removesuffix("B")
    number = value.rstrip("KMGI")
    unit = value[len(number):]
    if unit not in _UNITS or not number.isdigit():
        raise ValueError(f"not a size: {text!r} (e.g. 4Gi, 500Mi, 1073741824)")
    return int(number) * _UNITS[unit]


def stream_max_bytes(name: str, total: int) -> int:
    return int(total * STREAM_SHARES[name])


def stream_config(
    name: str, *, prefix: str = "", duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS,
    replicas: int = 1, total_max_bytes: int = DEFAULT_STREAMS_MAX_BYTES,
) -> StreamConfig:
    """File storage, limits retention, a long dedup window, `replicas` copies, and a byte limit
    with discard new: a full stream refuses publishes (the relay retries, the alert fires)
    rather than forgetting the history a resend or replay depends on."""
    return StreamConfig(
        name=stream_name(name, prefix),
        subjects=[f"{prefix}{STREAMS[name]}"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        duplicate_window=duplicate_window_seconds,
        max_age=0,
        max_bytes=stream_max_bytes(name, total_max_bytes),
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext,
    *,
    prefix: str = "",
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS,
    replicas: int = 1,
) -> list[str]:
    """What a service does on each (re)connect: create every stream that is missing and leave
    the others exactly as they are. Replicas and limits of an existing stream are the
    operator's (`pathways streams ensure`): a service started without PATHWAYS_STREAM_REPLICAS
    must not drop a stream from three copies to one. Says what it did."""
    done = []
    for name in STREAMS:
        config = stream_config(
            name, prefix=prefix, duplicate_window_seconds=duplicate_window_seconds, replicas=replicas
        )
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            done.append(f"created {config.name} (R{replicas})")
        else:
            done.append(f"kept {config.name}")
    return done


class ReplicasWouldDrop(Exception):
    """`pathways streams ensure` asked for fewer copies than a stream has, without --force."""


async def apply_stream_settings(
    js: JetStreamContext, *, replicas: int, total_max_bytes: int = DEFAULT_STREAMS_MAX_BYTES,
    force: bool = False, prefix: str = "",
) -> list[str]:
    """The operator's act: every stream to `replicas` copies and its share of `total_max_bytes`,
    creating what is missing. Lowering a stream's replicas needs `force`; without it nothing is
    changed at all (checked for every stream before the first change)."""
    configs = [stream_config(name, prefix=prefix, replicas=replicas, total_max_bytes=total_max_bytes)
               for name in STREAMS]
    existing = {}
    for config in configs:
        with contextlib.suppress(NotFoundError):
            existing[config.name] = await js.stream_info(config.name)
    lower = [f"{name} R{info.config.num_replicas}" for name, info in existing.items()
             if (info.config.num_replicas or 1) > replicas]
    if lower and not force:
        raise ReplicasWouldDrop(
            f"would lower replicas to {replicas} for {', '.join(lower)}: give --force if meant")
    done = []
    for config in configs:
        size = f"max {config.max_bytes / 1024**2:.0f} MiB"
        if config.name in existing:
            await js.update_stream(config)
            done.append(f"updated {config.name} (R{replicas}, {size})")
        else:
            await js.add_stream(config)
            done.append(f"created {config.name} (R{replicas}, {size})")
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


async def ensure_deployment_streams(
    url: str, replicas: int, *, total_max_bytes: int = DEFAULT_STREAMS_MAX_BYTES,
    force: bool = False, timeout: float = 30,
) -> list[str]:
    """What `pathways streams ensure` does once per roll-out, as the NATS user
    `pathways-admin`, before the services start: every stream (as the services declare them)
    with `replicas` copies and its byte limit, and the police tool's consumer. Idempotent;
    refuses to lower replicas unless `force`."""
    nc = await nats.connect(servers(url), connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=timeout)
        done = await apply_stream_settings(
            js, replicas=replicas, total_max_bytes=total_max_bytes, force=force)
        await js.add_consumer("COHORTS", police_consumer(replicas))
        done.append(f"consumer COHORTS/{POLICE_CONSUMER}")
    finally:
        await nc.close()
    return done


async def sample_broker_health(
    js: JetStreamContext, metrics: Metrics, *, prefix: str = "", consumers: Iterable[tuple[str, str]] = (),
) -> None:
    """Sets the stream and consumer gauges of `metrics` from the server: every stream's bytes
    and limit, and each (stream, durable) consumer's pending, ack-pending and redelivered."""
    for name in STREAMS:
        with contextlib.suppress(NotFoundError):
            info = await js.stream_info(stream_name(name, prefix))
            metrics.stream_bytes.labels(stream=name).set(info.state.bytes)
            metrics.stream_messages.labels(stream=name).set(info.state.messages)
            metrics.stream_max_bytes.labels(stream=name).set(max(info.config.max_bytes or 0, 0))
    for stream, durable in consumers:
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(stream, durable)
            metrics.consumer_pending.labels(consumer=durable).set(info.num_pending or 0)
            metrics.consumer_ack_pending.labels(consumer=durable).set(info.num_ack_pending or 0)
            metrics.consumer_redelivered.labels(consumer=durable).set(info.num_redelivered or 0)


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
                    servers=servers(self.url),
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
            except Exception as exc:  # noqa: BLE001  NATS down or JetStream not ready: try again
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
