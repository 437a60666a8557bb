"""`pathways insights rebuild`: empty the projection and replay the four streams into it.

Safe while the service runs. The order matters:
1. In one transaction: delete every fact and aggregate, and forget which events the insights
   consumers had handled. An event the running service handles after this is kept (and
   marked handled), so the replay skips it: counted once.
2. Delete the durable consumers. The running service's consumers find theirs gone and
   declare them again, from the first event; so does this command: the replay's messages are
   shared between them, each handled once.
3. Handle messages here until every durable has nothing pending, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from nats.js.errors import NotFoundError

from insights.config import InsightsSettings
from insights.consumers import DURABLES, subscriptions
from insights.repository import InsightsRepository
from pathways_shared.broker import Broker
from pathways_shared.consumer import Consumer
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.events import stream_name
from pathways_shared.observability import get_logger

log = get_logger(__name__)


@dataclass
class RebuildReport:
    streams: dict[str, int]  # messages in each stream when the replay finished
    seconds: float


async def rebuild(settings: InsightsSettings, *, timeout: float = 3600) -> RebuildReport:
    started = time.monotonic()
    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    broker = Broker(settings.nats_url, name="insights-rebuild", prefix=settings.subject_prefix,
                    duplicate_window_seconds=settings.stream_duplicate_window_seconds,
                    stream_replicas=settings.stream_replicas)
    broker.start()
    tasks: list[asyncio.Task] = []
    try:
        js = await broker.wait_ready(30)
        async with transaction(sessionmaker) as session:
            await InsightsRepository(session).clear(list(DURABLES.values()))
        for stream, durable in DURABLES.items():
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(stream_name(stream, broker.prefix), durable)
        consumers = [
            (sub.consumer_class or Consumer)(sub, sessionmaker, broker, max_deliveries=settings.consumer_max_deliveries,
                     batch_size=max(settings.consumer_batch_size, 100),
                     fetch_seconds=settings.consumer_fetch_seconds,
                     concurrency=settings.consumer_concurrency if engine.dialect.name != "sqlite" else 1)
            for sub in subscriptions(settings)
        ]
        for consumer in consumers:
            await consumer.declare()
            tasks.append(asyncio.create_task(consumer.run(), name=f"rebuild-{consumer.name}"))
        sizes = await _until_caught_up(js, broker.prefix, timeout)
        log.info("insights.rebuilt", streams=sizes)
        return RebuildReport(streams=sizes, seconds=round(time.monotonic() - started, 3))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.close()
        await engine.dispose()


async def _until_caught_up(js, prefix: str, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        sizes: dict[str, int] = {}
        done = True
        for stream, durable in DURABLES.items():
            name = stream_name(stream, prefix)
            try:
                info = await js.consumer_info(name, durable)
            except NotFoundError:  # a running service may be declaring it at this moment
                done = False
                continue
            sizes[stream] = (await js.stream_info(name)).state.messages
            if info.num_pending or info.num_ack_pending:
                done = False
        if done:
            return sizes
        if time.monotonic() > deadline:
            raise TimeoutError("the replay did not catch up in time")
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `pathways insights rebuild` (settings from the INSIGHTS_ environment)."""
    report = asyncio.run(rebuild(InsightsSettings()))
    total = sum(report.streams.values())
    print(f"insights: projection rebuilt from {total} events "
          f"({', '.join(f'{k} {v}' for k, v in report.streams.items())}) in {report.seconds}s")
