"""Create or update the Pathways streams with their replicas, and the police tool's consumer.

Run once per roll-out, as the NATS user `pathways-admin`, before the services start (the
Kubernetes Job `nats-streams` runs it from a service image, which has nats-py and the shared
package):

    NATS_URL=tls://pathways-admin:...@nats:4222 STREAM_REPLICAS=3 python ensure_streams.py

The stream list and settings are the services' own (`pathways_shared.events.STREAMS`, file
storage, limits retention, discard old, a two-hour duplicate window), so the services' start-up
declaration finds them as they expect. A copy lives in deploy/k8s/base/nats/ (the Job's
ConfigMap); deploy/tests checks that the two are identical and runs this one against a real
nats-server.
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats
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

from pathways_shared.events import STREAMS

DUPLICATE_WINDOW_SECONDS = 2 * 60 * 60
POLICE_CONSUMER = "police-cohort-tool"


def stream_configs(replicas: int) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=name,
            subjects=[subjects],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=0,
            num_replicas=replicas,
        )
        for name, subjects in STREAMS.items()
    ]


def police_consumer(replicas: int) -> ConsumerConfig:
    # A durable pull consumer of COHORTS only; the tool (account POLICE) fetches and acks it.
    return ConsumerConfig(
        durable_name=POLICE_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject="cohorts.>",
        ack_wait=60,
        max_ack_pending=1000,
        num_replicas=replicas,
    )


async def ensure(url: str, replicas: int, *, timeout: float = 10) -> list[str]:
    done = []
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=timeout)
        for config in stream_configs(replicas):
            try:
                await js.stream_info(config.name)
            except NotFoundError:
                await js.add_stream(config)
                done.append(f"created {config.name} (R{replicas})")
            else:
                await js.update_stream(config)
                done.append(f"updated {config.name} (R{replicas})")
        await js.add_consumer("COHORTS", police_consumer(replicas))
        done.append(f"consumer COHORTS/{POLICE_CONSUMER}")
    finally:
        await nc.close()
    return done


def main() -> None:
    url = os.environ.get("NATS_URL")
    if not url:
        sys.exit("set NATS_URL (the pathways-admin user)")
    replicas = int(os.environ.get("STREAM_REPLICAS", "3"))
    for line in asyncio.run(ensure(url, replicas)):
        print(line, flush=True)


if __name__ == "__main__":
    main()
