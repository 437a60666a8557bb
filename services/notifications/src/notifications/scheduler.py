"""The scheduler: the delivery loop, started in the app's lifespan, that sends what is due. The
loop and the claiming live here; sending in `notifications.sending`, recording outcomes in
`notifications.outcomes`.

Each round, in order:
1. one transaction claims due deliveries (``FOR UPDATE SKIP LOCKED``), marks each
   ``sending`` with a lease and writes its attempt row: the intent is recorded before
   anything leaves the process (on PostgreSQL one statement outside any transaction, unless
   an interrupted attempt is among them);
2. the sends run concurrently, outside any transaction (SMTP, HTTP); the round's emails share
   one SMTP connection, and each referral they need is read once for the round;
3. a transaction records the outcome: delivered, retry later (backoff with jitter) or
   failed; for a webhook, the subscription's health, and its disabling; the events that
   follow (``notifications.duty-to-refer.sent``, ``notifications.delivery.failed``) go to
   the outbox in that same transaction. One per webhook, as soon as it has been sent; one
   for all the round's emails once the last has been sent.
A crash between 2 and 3 leaves the delivery ``sending``; when its lease expires it is sent
again with the same ``webhook-id`` / ``Message-ID``, so receivers can drop the copy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import repository
from notifications.config import NotificationsSettings
from notifications.domain.delivery import (
    DeliveryStatus,
    begin_attempt,
    transport_failure,
)
from notifications.domain.intents import (
    Channel,
)
from notifications.errors import (
    IllegalTransition,
)
from notifications.models import DeliveryAttemptRow, NotificationRow
from notifications.outcomes import OutcomeRecorder
from notifications.repository import NotificationsRepository
from notifications.sending import AttemptResult, DeliveryRound, Sender
from notifications.transports import (
    Resolver,
    SmtpSession,
    make_http_client,
    resolve_host,
)
from pathways_shared.clock import utc_now
from pathways_shared.db import run_autocommit, transaction
from pathways_shared.observability import get_logger
from pathways_shared.runtime import Runtime

log = get_logger(__name__)


class Deliverer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        *,
        http: httpx.AsyncClient,
        resolver: Resolver = resolve_host,
        random_source: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utc_now,
        attempts_counter: Counter | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.attempts_counter = attempts_counter
        self.settings = settings
        self.clock = clock
        self.lease = timedelta(seconds=settings.delivery_lease_seconds)
        self.sender = Sender(sessionmaker, settings, http=http, resolver=resolver, clock=clock)
        self.outcomes = OutcomeRecorder(
            sessionmaker, settings, random_source=random_source, clock=clock
        )

    # ----------------------------------------------------------------------- the loop

    async def run_forever(self) -> None:
        while True:
            handled = await self.run_once()
            if handled < self.settings.worker_batch_size:
                await asyncio.sleep(self.settings.worker_poll_seconds)

    async def run_once(self) -> int:
        claimed = await self._claim()
        if claimed:
            await self._deliver_round(claimed)
        return len(claimed)

    async def _deliver_round(self, claimed: list[NotificationRow]) -> None:
        # A message whose turn on the shared connection comes too late is not started, so
        # no send outlasts its lease (another worker may take the delivery over then).
        start_by = (
            asyncio.get_running_loop().time()
            + self.settings.delivery_lease_seconds
            - self.settings.smtp_timeout_seconds
        )
        emails = [row for row in claimed if row.channel == Channel.EMAIL.value]
        webhooks = [row for row in claimed if row.channel != Channel.EMAIL.value]
        await asyncio.gather(
            self._deliver_emails(emails, start_by),
            *(self._deliver_webhook(row) for row in webhooks),
        )

    async def _deliver_emails(self, rows: list[NotificationRow], start_by: float) -> None:
        """The round's emails over one connection, their outcomes recorded together once
        the last has been sent (or, should that fail, each on its own)."""
        if not rows:
            return
        referrals = await self.sender.read_referrals(rows)
        async with SmtpSession(await self.sender.smtp_settings(), start_by=start_by) as mail:
            round_ = DeliveryRound(referrals=referrals, mail=mail)
            results = await asyncio.gather(
                *(self._attempt(row, self.sender.send_email(row, round_)) for row in rows)
            )
            outcomes = list(zip(rows, results, strict=True))
            try:
                await self.outcomes.record_all(outcomes)
            except Exception as exc:  # noqa: BLE001 - each is then tried on its own
                log.error("delivery.record_all_failed", count=len(outcomes), error=repr(exc))
                for row, result in outcomes:
                    await self._record_or_log(row, result)

    async def _deliver_webhook(self, row: NotificationRow) -> None:
        await self._record_or_log(row, await self._attempt(row, self.sender.send_webhook(row)))

    async def _claim(self) -> list[NotificationRow]:
        now = self.clock()
        claimed_in_one = await self._claim_in_one(now)
        if claimed_in_one is not None:
            return claimed_in_one
        claimed: list[NotificationRow] = []
        async with transaction(self.sessionmaker) as session:
            for row in await NotificationsRepository(session).claim_due(
                now, self.settings.worker_batch_size
            ):
                try:
                    started = begin_attempt(repository.delivery_of(row), now, self.lease)
                except IllegalTransition:
                    continue
                if row.status == DeliveryStatus.SENDING.value:
                    await self._close_interrupted(session, row, now)
                repository.apply_delivery(row, started, now)
                NotificationsRepository(session).add_attempt(
                    DeliveryAttemptRow(
                        notification_id=row.id, number=started.attempts, started_at=now
                    ),
                )
                claimed.append(row)
        return claimed

    async def _claim_in_one(self, now: datetime) -> list[NotificationRow] | None:
        """PostgreSQL: the claim in one statement outside any transaction (no BEGIN, no
        COMMIT: `repository.claim_due_in_one`), as `_claim` makes it; None when it cannot (an
        interrupted attempt among the due, SQLite, a failure: then nothing was written) and
        `_claim` goes on the ordinary way."""
        try:
            return await run_autocommit(self.sessionmaker, lambda connection: (
                repository.claim_due_in_one(
                    connection, now, now + self.lease, self.settings.worker_batch_size)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the ordinary claim runs, and reports
            log.info("delivery.claim_in_one_failed", error=str(exc)[:500], then="the ordinary claim")
            return None

    @staticmethod
    async def _close_interrupted(
        session: AsyncSession, row: NotificationRow, now: datetime
    ) -> None:
        attempt = await NotificationsRepository(session).open_attempt(row.id, row.attempts)
        if attempt is not None and attempt.finished_at is None:
            attempt.finished_at = now
            attempt.outcome = "interrupted"
            attempt.detail = "no outcome was recorded (the worker stopped mid-send); sent again"

    async def _attempt(
        self, row: NotificationRow, sending: Awaitable[AttemptResult]
    ) -> AttemptResult:
        try:
            result = await sending
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the loop; it is recorded
            log.error("delivery.crashed", notification_id=str(row.id), error=repr(exc))
            result = AttemptResult(transport_failure(f"internal error: {type(exc).__name__}"))
        if self.attempts_counter is not None:
            self.attempts_counter.labels(row.channel, result.outcome.kind.value).inc()
        return result

    async def _record_or_log(self, row: NotificationRow, result: AttemptResult) -> None:
        try:
            await self.outcomes.record(row, result)
        except Exception as exc:  # noqa: BLE001
            # The lease expires and the delivery is attempted again (same idempotency key).
            log.error("delivery.record_failed", notification_id=str(row.id), error=repr(exc))


async def delivery_worker(runtime: Runtime) -> None:
    """The scheduler loop, run by the app's lifespan (restarted if it ever crashes)."""
    settings: NotificationsSettings = runtime.settings  # type: ignore[assignment]
    counter = runtime.extras.get("attempts_counter")
    if counter is None:
        counter = Counter(
            "pathways_notification_attempts_total",
            "Delivery attempts by channel and outcome",
            ["channel", "outcome"],
            registry=runtime.metrics.registry,
        )
        runtime.extras["attempts_counter"] = counter
    async with make_http_client(settings.webhook_timeout_seconds) as http:
        deliverer = Deliverer(runtime.sessionmaker, settings, http=http, attempts_counter=counter)
        runtime.extras["deliverer"] = deliverer
        await deliverer.run_forever()
