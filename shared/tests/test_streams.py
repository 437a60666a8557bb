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
    STREAM_SHARES,
    ensure_streams,
    parse_bytes,
    servers,
    stream_max_bytes,
)
from pathways_shared.events import STREAMS


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
