"""Idempotent JetStream consumers.

A `Subscription` names a stream, a durable consumer and the handlers by event type. The
durable pull consumer is declared (created or updated) at start-up. Each message is handled
in one database transaction that also records `(consumer, event id)` in `processed_events`
(one `INSERT ... ON CONFLICT DO NOTHING`), so a redelivery has no second effect; the message
is acked after commit. A message that cannot be parsed, or keeps failing for
`max_deliveries`, goes to `dead_letters` with the error and is acked so the stream keeps
flowing; other failures are retried with backoff.

Messages are fetched in batches. Within a batch, the events of one person (the CRN of the
envelope's person reference; events without one share a lane) are handled one after another
in stream order, and different people's concurrently, up to `concurrency` at a time: order
is kept where it matters, and one slow event does not hold up everyone else's. The events a
worker takes from one batch share a transaction (fewer commits under load); if one fails,
they are handled again one by one, each in its own.

On PostgreSQL a subscription may also settle an event handled on its own in one statement
outside any transaction (`Subscription.settle_in_one`: autocommit, no BEGIN and COMMIT round
trips), the statement recording the event processed together with its whole effect, or
writing nothing and leaving the event to the ordinary path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.broker import Broker
from pathways_shared.db import insert_if_new, run_autocommit, transaction
from pathways_shared.events import Event, stream_name
from pathways_shared.infra_models import DeadLetter, ProcessedEvent
from pathways_shared.observability import CORRELATION_HEADER, Metrics, correlation_id, get_logger

log = get_logger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]
SettleInOne = Callable[[AsyncConnection, str, Event], Awaitable[str | None]]


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: dead-letter it at once."""


class RetryLater(Exception):
    """Raised by a handler for an event that may succeed later (what it builds on has not
    arrived yet): retried with backoff, and dead-lettered only after `max_deliveries`."""


PayloadT = TypeVar("PayloadT", bound=BaseModel)


def typed(
    model: type[PayloadT], handle: Callable[[AsyncSession, Event, PayloadT], Awaitable[None]]
) -> Handler:
    """A handler that receives the event's payload validated as `model`, one of the shared
    payload models (`pathways_shared.event_payloads`: unknown fields allowed). A payload that
    does not validate can never succeed: `PermanentError`, dead-lettered."""

    async def handler(session: AsyncSession, event: Event) -> None:
        try:
            payload = model.model_validate(event.additional_information)
        except ValidationError as exc:
            raise PermanentError(f"{event.event_type}: malformed payload: {exc}") from exc
        await handle(session, event, payload)

    handler.__name__ = getattr(handle, "__name__", "handler")
    return handler


@dataclass
class Subscription:
    stream: str  # e.g. "PROVIDERS"
    durable: str  # e.g. "referrals-from-providers"
    handlers: dict[str, Handler] = field(default_factory=dict)
    filter_subject: str | None = None  # defaults to the event types of `handlers`
    # The consumer class that runs this subscription (a subclass of `Consumer` that handles a
    # fetched batch its own way, e.g. the insights projection); default `Consumer`.
    consumer_class: type[Consumer] | None = None
    # PostgreSQL only, optional: settle an event in one statement on a connection outside any
    # transaction (autocommit: no BEGIN, no COMMIT round trips), the statement recording the
    # event processed together with its whole effect, or writing nothing. It answers
    # "handled", "duplicate", or None when the event needs the ordinary path (e.g. it has
    # more to do than one statement does, or does not validate: the ordinary path reports it).
    settle_in_one: SettleInOne | None = None

    def handler_for(self, event_type: str) -> Handler | None:
        return self.handlers.get(event_type)

    def subjects(self) -> list[str]:
        """What the durable consumer takes from the stream: `filter_subject` if given, else
        the event types it has handlers for (JetStream never delivers the others, so they
        cost neither a delivery nor an ack); no list (the whole stream) when it has none,
        e.g. a subscription that takes every event type, known or new."""
        if self.filter_subject:
            return [self.filter_subject]
        return sorted(self.handlers)


def retry_delay(deliveries: int) -> float:
    """Backoff before the next delivery: 0.5s, 1s, 2s ... capped at 30s."""
    return min(0.5 * (2 ** max(0, deliveries - 1)), 30.0)


class Consumer:
    def __init__(
        self,
        subscription: Subscription,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: Broker,
        *,
        metrics: Metrics | None = None,
        max_deliveries: int = 5,
        batch_size: int = 20,
        ack_wait_seconds: float = 30,
        concurrency: int = 4,
        fetch_seconds: float = 5,
    ) -> None:
        self.subscription = subscription
        self.fetch_seconds = fetch_seconds
        self.sessionmaker = sessionmaker
        self.broker = broker
        self.metrics = metrics
        self.max_deliveries = max_deliveries
        self.batch_size = batch_size
        self.ack_wait_seconds = ack_wait_seconds
        self.concurrency = concurrency
        self.name = subscription.durable

    @property
    def stream(self) -> str:
        return stream_name(self.subscription.stream, self.broker.prefix)

    async def declare(self) -> None:
        """Create the durable consumer, or update it to this configuration."""
        js = await self.broker.wait_ready()
        # One subject goes as `filter_subject`, several as `filter_subjects` (NATS 2.10+).
        subjects = [f"{self.broker.prefix}{s}" for s in self.subscription.subjects()]
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_seconds,
            max_deliver=-1,  # we dead-letter ourselves after max_deliveries
            max_ack_pending=1000,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )
        # Created, or an existing durable updated in place (same name: the server applies the
        # editable fields, the filter subjects among them, NATS 2.10+); its position in the
        # stream is kept. A durable declared by an older release (the whole stream, or other
        # subjects) is brought to this configuration here, at start-up.
        await js.add_consumer(self.stream, config)

    async def run(self) -> None:
        while True:
            try:
                await self.declare()
                js = await self.broker.wait_ready()
                psub = await js.pull_subscribe_bind(self.name, stream=self.stream)
                log.info("consumer.started", consumer=self.name, stream=self.stream)
                while True:
                    try:
                        # A pull waits this long for a first message (one comes at once);
                        # a quiet stream then costs a request per pull, so not every second.
                        messages = await psub.fetch(self.batch_size, timeout=self.fetch_seconds)
                    except (NatsTimeoutError, TimeoutError):
                        continue
                    await self.handle_batch(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  whatever went wrong, the consumer comes back
                log.warning("consumer.restarting", consumer=self.name, error=str(exc))
                await asyncio.sleep(1)

    async def handle_batch(self, messages: list[Msg]) -> list[str]:
        """Handle a fetched batch: each person's events in order, people concurrently.

        The batch's people are shared out among up to `concurrency` workers. A worker handles
        its share in stream order in one transaction (one commit for several events); if any
        of them fails, that transaction is rolled back and each of its events is handled
        again on its own, so one bad event never takes the others down with it.
        """
        parsed = [(msg, _parse(msg)) for msg in messages]
        lanes: dict[str, list[tuple[Msg, Event | Exception]]] = {}
        for msg, event in parsed:
            lanes.setdefault(_lane(event), []).append((msg, event))
        shares: list[list[tuple[Msg, Event | Exception]]] = [
            [] for _ in range(min(self.concurrency, len(lanes)))
        ]
        for n, lane in enumerate(lanes.values()):
            shares[n % len(shares)].extend(lane)
        keep_alive = asyncio.create_task(self._keep_in_progress(messages))
        try:
            done = await asyncio.gather(*(self._handle_share(share) for share in shares))
        finally:
            keep_alive.cancel()
        outcomes = {id(msg): outcome for share in done for msg, outcome in share}
        return [outcomes[id(msg)] for msg in messages]

    async def _keep_in_progress(self, messages: list[Msg]) -> None:
        """While a batch is handled, tell JetStream the unsettled messages are being worked on
        (+WPI) every third of ack_wait: a slow handler (a webhook, a busy database) or a long
        share must not have its messages redelivered to another replica mid-handling."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.ack_wait_seconds / 3)
                for msg in messages:
                    if not msg._ackd:  # settled messages need nothing more
                        with contextlib.suppress(Exception):
                            await msg.in_progress()

    async def _handle_share(
        self, share: list[tuple[Msg, Event | Exception]]
    ) -> list[tuple[Msg, str]]:
        # Events without a handler are settled at once, outside any transaction. Together
        # only first deliveries of well-formed events; anything else (a retry, a poison
        # message) is handled one by one, as is a share of one.
        ignored = [(msg, event) for msg, event in share if isinstance(event, Event)
                   and self.subscription.handler_for(event.event_type) is None]
        if ignored:
            done = [(msg, await self.handle(msg, event)) for msg, event in ignored]
            rest = [(msg, event) for msg, event in share if not any(msg is m for m, _ in ignored)]
            return done + await self._handle_share(rest) if rest else done
        if len(share) > 1 and all(
            isinstance(event, Event) and _deliveries(msg) == 1 for msg, event in share
        ):
            together = await self._handle_together(share)  # type: ignore[arg-type]
            if together is not None:
                return together
        return [(msg, await self.handle(msg, event)) for msg, event in share]

    async def _handle_together(self, share: list[tuple[Msg, Event]]) -> list[tuple[Msg, str]] | None:
        """Several events in one transaction; None (nothing kept) if any of them failed."""
        outcomes: list[str] = []
        try:
            async with transaction(self.sessionmaker) as session:
                fresh = await mark_processed_many(session, self.name, [
                    e for _, e in share if self.subscription.handler_for(e.event_type)])
                for msg, event in share:
                    with _correlated(msg):
                        outcomes.append(await self._apply(session, event, fresh))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  each is handled again on its own, which reports it
            log.info("consumer.share_failed", consumer=self.name, events=len(share),
                     error=str(exc), then="each handled on its own")
            return None
        done = []
        for (msg, event), outcome in zip(share, outcomes, strict=True):
            done.append((msg, self._count(await self._settled(msg, event, outcome))))
        return done

    async def handle(self, msg: Msg, parsed: Event | Exception | None = None) -> str:
        """Handle one message; returns the outcome (for tests and metrics)."""
        with _correlated(msg):
            return self._count(await self._handle(msg, _parse(msg) if parsed is None else parsed))

    async def _handle(self, msg: Msg, event: Event | Exception) -> str:
        deliveries = _deliveries(msg)
        if isinstance(event, Exception):
            await self._dead_letter(msg, None, f"unparseable event: {event}", deliveries)
            await msg.ack()
            return "dead_lettered"
        if self.subscription.handler_for(event.event_type) is None:
            return await self._settled(msg, event, "ignored")  # nothing to do: no transaction
        if deliveries == 1 and self.subscription.settle_in_one is not None:
            settled = await self._settle_in_one(event)
            if settled is not None:
                return await self._settled(msg, event, settled)
        try:
            async with transaction(self.sessionmaker) as session:
                outcome = await self._apply(session, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  a handler's failure is retried or dead-lettered
            permanent = isinstance(exc, PermanentError) or deliveries >= self.max_deliveries
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            if permanent:
                await self._dead_letter(msg, str(event.id), detail, deliveries)
                await msg.ack()
                log.error("consumer.dead_lettered", consumer=self.name, event_id=str(event.id),
                          event_type=event.event_type, error=str(exc))
                return "dead_lettered"
            log.warning("consumer.retry", consumer=self.name, event_id=str(event.id),
                        deliveries=deliveries, error=str(exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=retry_delay(deliveries))
            return "retried"
        return await self._settled(msg, event, outcome)

    async def _settle_in_one(self, event: Event) -> str | None:
        """The subscription's `settle_in_one` on an autocommit connection (PostgreSQL); None
        when it declines or fails (the statement is atomic: then nothing of it was kept), and
        the ordinary path handles the event, retries and dead letters included."""
        settle = self.subscription.settle_in_one
        assert settle is not None
        try:
            return await run_autocommit(
                self.sessionmaker, lambda connection: settle(connection, self.name, event))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  the ordinary path handles it, and reports
            log.info("consumer.settle_in_one_failed", consumer=self.name, event_id=str(event.id),
                     error=str(exc)[:500], then="the ordinary path")
            return None

    async def _apply(self, session: AsyncSession, event: Event, fresh: set[str] | None = None) -> str:
        """The event's effect, once, in the caller's transaction: handled, duplicate or ignored.

        `fresh`: the ids of a share's events already recorded by `mark_processed_many` in this
        transaction (an id is taken out as its event is handled, so a second copy in the same
        share is a duplicate); without it the event is recorded here."""
        handler = self.subscription.handler_for(event.event_type)
        if handler is None:
            return "ignored"
        if fresh is None:
            if not await mark_processed(session, self.name, event):
                return "duplicate"
        elif str(event.id) in fresh:
            fresh.discard(str(event.id))
        else:
            return "duplicate"
        await handler(session, event)
        return "handled"

    async def _settled(self, msg: Msg, event: Event, outcome: str) -> str:
        """After the commit: ack, and say what happened."""
        await msg.ack()
        if outcome != "ignored":
            log.info(f"consumer.{outcome}", consumer=self.name, event_id=str(event.id),
                     event_type=event.event_type)
        return outcome

    def _count(self, outcome: str) -> str:
        if self.metrics:
            self.metrics.consumer_messages.labels(consumer=self.name, outcome=outcome).inc()
        return outcome

    async def _dead_letter(self, msg: Msg, event_id: str | None, error: str, deliveries: int) -> None:
        async with transaction(self.sessionmaker) as session:
            session.add(
                DeadLetter(
                    consumer=self.name,
                    stream=self.stream,
                    subject=msg.subject,
                    stream_sequence=msg.metadata.sequence.stream if msg.metadata else None,
                    event_id=event_id,
                    payload=msg.data.decode("utf-8", errors="replace"),
                    headers=json.dumps(dict(msg.headers or {})),
                    error=error[:10000],
                    deliveries=deliveries,
                    created_at=datetime.now(UTC),
                )
            )


@contextlib.contextmanager
def _correlated(msg: Msg) -> Iterator[None]:
    """The message's correlation id on every log line and event written while handling it."""
    token = correlation_id.set((msg.headers or {}).get(CORRELATION_HEADER))
    try:
        yield
    finally:
        correlation_id.reset(token)


def _deliveries(msg: Msg) -> int:
    return msg.metadata.num_delivered if msg.metadata else 1


def _parse(msg: Msg) -> Event | Exception:
    try:
        return Event.from_json(msg.data)
    except (ValidationError, ValueError) as exc:
        return exc


def _lane(event: Event | Exception) -> str:
    """Events of one person are handled in order: the lane is the envelope's CRN."""
    return "" if isinstance(event, Exception) else (event.crn or "")


async def mark_processed(session: AsyncSession, consumer: str, event: Event) -> bool:
    """Record that `consumer` handled `event` in this transaction; False if it already had."""
    table = ProcessedEvent.__table__
    inserted = await session.exec(
        insert_if_new(session, table, table.c.id),
        params={
            "consumer": consumer,
            "event_id": str(event.id),
            "event_type": event.event_type,
            "processed_at": datetime.now(UTC),
        },
    )
    return inserted.first() is not None


async def mark_processed_many(session: AsyncSession, consumer: str, events: list[Event]) -> set[str]:
    """`mark_processed` for several events in one statement (a multi-row INSERT ... ON
    CONFLICT DO NOTHING RETURNING): the ids of those `consumer` had not handled before. Of two
    copies of one event only one row goes in, so its id comes back once."""
    if not events:
        return set()
    table = ProcessedEvent.__table__
    now = datetime.now(UTC)
    inserted = await session.exec(
        insert_if_new(session, table, table.c.event_id),
        params=[{"consumer": consumer, "event_id": str(e.id), "event_type": e.event_type,
                 "processed_at": now} for e in events],
    )
    return {row[0] for row in inserted.all()}
