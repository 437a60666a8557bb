"""The streams on a real three-node JetStream cluster (issue 18): services create what is
missing and leave the rest alone; `pathways streams ensure` sets replicas and byte limits and
refuses to lower replicas without --force."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import nats
import pytest
from nats.js.api import DiscardPolicy

from pathways_shared.broker import (
    DEFAULT_STREAMS_MAX_BYTES,
    STREAM_SHARES,
    ensure_streams,
    parse_bytes,
    sample_broker_health,
    servers,
    stream_max_bytes,
)
from pathways_shared.events import STREAMS, stream_name


def streams_ensure(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_STREAM")}
    return subprocess.run(
        [sys.executable, "-m", "pathways_shared.cli", "streams", "ensure", "--nats-url", url, *args],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )


async def stream_settings(url: str) -> dict[str, tuple[int, int, DiscardPolicy]]:
    nc = await nats.connect(servers(url))
    try:
        js = nc.jetstream(timeout=10)
        infos = {name: (await js.stream_info(name)).config for name in STREAMS}
        return {n: (c.num_replicas, c.max_bytes, c.discard) for n, c in infos.items()}
    finally:
        await nc.close()


def test_sizes_parse_with_kubernetes_suffixes():
    assert parse_bytes("4Gi") == 4 * 1024**3
    assert parse_bytes("500M") == 500 * 1000**2
    assert parse_bytes(1024) == 1024
    with pytest.raises(ValueError):
        parse_bytes("lots")
    assert sum(STREAM_SHARES.values()) == pytest.approx(1.0)
    assert set(STREAM_SHARES) == set(STREAMS)


async def test_replicas_and_limits_are_the_operators_and_never_silently_lowered(nats_cluster):
    url = nats_cluster.url
    first = await asyncio.to_thread(streams_ensure, url, "--replicas", "3", "--max-bytes", "1Gi")
    assert first.returncode == 0, first.stderr
    total = 1024**3
    expected = {n: (3, stream_max_bytes(n, total), DiscardPolicy.NEW) for n in STREAMS}
    assert await stream_settings(url) == expected

    # a service started without PATHWAYS_STREAM_REPLICAS (so R1, default limits) changes nothing
    nc = await nats.connect(servers(url))
    try:
        done = await ensure_streams(nc.jetstream(timeout=10), replicas=1)
    finally:
        await nc.close()
    assert done == [f"kept {name}" for name in STREAMS]
    assert await stream_settings(url) == expected

    # lowering replicas is refused, and nothing changes, not even the limits
    refused = await asyncio.to_thread(streams_ensure, url, "--replicas", "1", "--max-bytes", "2Gi")
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert await stream_settings(url) == expected

    # raising limits at the same replicas is fine
    raised = await asyncio.to_thread(streams_ensure, url, "--replicas", "3", "--max-bytes", "2Gi")
    assert raised.returncode == 0, raised.stderr
    assert {n: s[1] for n, s in (await stream_settings(url)).items()} == {
        n: stream_max_bytes(n, 2 * total) for n in STREAMS}

    forced = await asyncio.to_thread(streams_ensure, url, "--replicas", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert {s[0] for s in (await stream_settings(url)).values()} == {1}


async def test_stream_usage_and_consumer_health_are_gauges(nc, subject_prefix):
    from nats.js.api import AckPolicy, ConsumerConfig

    from pathways_shared.observability import Metrics

    js = nc.jetstream(timeout=10)
    await ensure_streams(js, prefix=subject_prefix)
    stream = stream_name("REFERRALS", subject_prefix)
    await js.add_consumer(stream, ConsumerConfig(
        durable_name="health-test", ack_policy=AckPolicy.EXPLICIT, ack_wait=1))
    for i in range(3):
        await js.publish(f"{subject_prefix}referrals.test", f"m{i}".encode())
    sub = await js.pull_subscribe_bind("health-test", stream)
    fetched = await sub.fetch(2, timeout=5)  # delivered, not acknowledged
    assert len(fetched) == 2
    await fetched[0].in_progress()  # a long handler keeps its message

    metrics = Metrics("test")
    await sample_broker_health(js, metrics, prefix=subject_prefix,
                               consumers=[(stream, "health-test")])

    def value(name, **labels):
        return metrics.registry.get_sample_value(name, labels)

    assert value("pathways_stream_messages", stream="REFERRALS") == 3
    assert value("pathways_stream_bytes", stream="REFERRALS") > 0
    assert value("pathways_stream_max_bytes", stream="REFERRALS") == stream_max_bytes(
        "REFERRALS", DEFAULT_STREAMS_MAX_BYTES)
    assert value("pathways_consumer_pending", consumer="health-test") == 1
    assert value("pathways_consumer_ack_pending", consumer="health-test") == 2
    assert value("pathways_consumer_redelivered", consumer="health-test") == 0
