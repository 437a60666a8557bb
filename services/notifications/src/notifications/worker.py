"""The delivery worker: a loop, started in the app's lifespan, that sends what is due.

Each round, in order:
1. one transaction claims due deliveries (``FOR UPDATE SKIP LOCKED``), marks each
   ``sending`` with a lease and writes its attempt row: the intent is recorded before
   anything leaves the process;
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
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
from pathways_shared.clock import utc_now
from pathways_shared.access import Action, record_access
from pathways_shared.db import transaction
from pathways_shared.errors import PathwaysError
from pathways_shared.events import Event, make_event
from pathways_shared.observability import get_logger
from pathways_shared.outbox import add_event
from pathways_shared.runtime import Runtime
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import repository
from notifications.config import NotificationsSettings
from notifications.contacts import (
    ContactsMissing,
    ContactsUnavailable,
    ReferralRecord,
    ReferralsClient,
)
from notifications.delivery import (
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    begin_attempt,
    cancel,
    permanent_failure,
    record_outcome,
    transport_failure,
)
from notifications.domain import (
    Channel,
    Contacts,
    NotificationIntent,
    NotificationKind,
    OutboundEvent,
    Recipient,
    RecipientRole,
    email_message_id,
    events_after_delivery,
    events_after_final_failure,
    parse_envelope,
    resolve_address,
)
from notifications.errors import (
    IllegalTransition,
    UnsafeSubscriberUrl,
)
from notifications.models import DeliveryAttemptRow, NotificationRow, SubscriptionRow
from notifications.secretbox import SecretBox
from notifications.subscriptions import SubscriptionHealth, record_webhook_attempt
from notifications.templates import RenderContext, render_email
from notifications.transports import (
    Resolver,
    SmtpSession,
    SmtpSettings,
    build_email,
    check_destination,
    machine_hostname,
    make_http_client,
    post_webhook,
    resolve_host,
)
from notifications.webhooks import webhook_headers

log = get_logger(__name__)

SYSTEM_ACTOR = "notifications-service"


def delivery_of(row: NotificationRow) -> Delivery:
    return Delivery(
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        lease_expires_at=row.lease_expires_at,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )


def apply_delivery(row: NotificationRow, delivery: Delivery, now: datetime) -> None:
    row.status = delivery.status.value
    row.attempts = delivery.attempts
    row.next_attempt_at = delivery.next_attempt_at
    row.lease_expires_at = delivery.lease_expires_at
    row.last_error = delivery.last_error
    row.delivered_at = delivery.delivered_at
    row.updated_at = now


def intent_of(row: NotificationRow) -> NotificationIntent:
    return NotificationIntent(
        idempotency_key=row.idempotency_key,
        event_id=row.event_id,
        event_type=row.event_type,
        kind=NotificationKind(row.kind),
        recipient=Recipient(RecipientRole(row.recipient_role), row.recipient_key),
        referral_id=row.referral_id,
        need_ids=tuple(uuid.UUID(n) for n in row.need_ids),
    )


def shared_event(outbound: OutboundEvent) -> Event:
    return make_event(
        outbound.event_type,
        dict(outbound.additional_information),
        crn=outbound.crn,
        event_id=outbound.id,
    )


@dataclass
class AttemptResult:
    outcome: AttemptOutcome
    address: str | None = None
    crn: str | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True)
class DeliveryRound:
    """What the deliveries of one round share, and forget when it ends: the answer about
    each referral its emails need (held in memory for the round only: this service does not
    store the person's details) and one SMTP connection."""

    referrals: Mapping[uuid.UUID, ReferralRecord | Exception]
    mail: SmtpSession


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
        self.http = http
        self.resolver = resolver
        self.random = random_source
        self.clock = clock
        self.box = SecretBox(settings.secret_key)
        # No retries here: a delivery whose contacts are unavailable is tried again later.
        self.referrals = ReferralsClient(settings, settings.referrals_url, retries=0, http=http)
        self.smtp = SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_use_tls,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
            local_hostname=settings.smtp_local_hostname,
        )
        self.lease = timedelta(seconds=settings.delivery_lease_seconds)
        self.retry_policy = settings.retry_policy
        self.disable_policy = settings.disable_policy

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
        referrals = await self._read_referrals(rows)
        async with SmtpSession(await self._smtp_settings(), start_by=start_by) as mail:
            round_ = DeliveryRound(referrals=referrals, mail=mail)
            results = await asyncio.gather(
                *(self._attempt(row, self._send_email(row, round_)) for row in rows)
            )
            outcomes = list(zip(rows, results, strict=True))
            try:
                await self._record_all(outcomes)
            except Exception as exc:  # noqa: BLE001 - each is then tried on its own
                log.error("delivery.record_all_failed", count=len(outcomes), error=repr(exc))
                for row, result in outcomes:
                    await self._record_or_log(row, result)

    async def _deliver_webhook(self, row: NotificationRow) -> None:
        await self._record_or_log(row, await self._attempt(row, self._send_webhook(row)))

    async def _read_referrals(
        self, emails: list[NotificationRow]
    ) -> dict[uuid.UUID, ReferralRecord | Exception]:
        ids = list(dict.fromkeys(r.referral_id for r in emails if r.referral_id is not None))
        answers = await asyncio.gather(
            *(self.referrals.referral(i) for i in ids), return_exceptions=True
        )
        read: dict[uuid.UUID, ReferralRecord | Exception] = {}
        for referral_id, answer in zip(ids, answers, strict=True):
            if not isinstance(answer, ReferralRecord | Exception):
                raise answer  # cancelled: the round stops here, as any send would
            read[referral_id] = answer
        return read

    async def _smtp_settings(self) -> SmtpSettings:
        if self.smtp.local_hostname is None:  # looked up once, not for every connection
            self.smtp = replace(self.smtp, local_hostname=await machine_hostname())
        return self.smtp

    async def _claim(self) -> list[NotificationRow]:
        now = self.clock()
        claimed: list[NotificationRow] = []
        async with transaction(self.sessionmaker) as session:
            for row in await repository.claim_due(session, now, self.settings.worker_batch_size):
                try:
                    started = begin_attempt(delivery_of(row), now, self.lease)
                except IllegalTransition:
                    continue
                if row.status == DeliveryStatus.SENDING.value:
                    await self._close_interrupted(session, row, now)
                apply_delivery(row, started, now)
                repository.add_attempt(
                    session,
                    DeliveryAttemptRow(
                        notification_id=row.id, number=started.attempts, started_at=now
                    ),
                )
                claimed.append(row)
        return claimed

    @staticmethod
    async def _close_interrupted(
        session: AsyncSession, row: NotificationRow, now: datetime
    ) -> None:
        attempt = await repository.open_attempt(session, row.id, row.attempts)
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
            await self._record(row, result)
        except Exception as exc:  # noqa: BLE001
            # The lease expires and the delivery is attempted again (same idempotency key).
            log.error("delivery.record_failed", notification_id=str(row.id), error=repr(exc))

    # ----------------------------------------------------------------------- sending

    async def _send_email(self, row: NotificationRow, round_: DeliveryRound) -> AttemptResult:
        intent = intent_of(row)
        try:
            event = parse_envelope(json.loads(row.event_payload))
        except PathwaysError as exc:
            return AttemptResult(permanent_failure(exc.detail))
        record = None
        if intent.referral_id is not None:
            answer = round_.referrals[intent.referral_id]
            if isinstance(answer, ContactsUnavailable):
                return AttemptResult(transport_failure(str(answer)))
            if isinstance(answer, ContactsMissing):
                return AttemptResult(permanent_failure(str(answer)))
            if isinstance(answer, Exception):
                raise answer
            record = answer
        if record is not None:
            context = record.render_context(intent.kind)
            contacts = record.contacts(
                self.settings.provider_mailboxes, self.settings.housing_teams
            )
        else:
            context = RenderContext()
            contacts = Contacts(
                provider_mailboxes=self.settings.provider_mailboxes,
                housing_teams=self.settings.housing_teams,
            )
        try:
            address = resolve_address(intent.recipient, contacts)
            content = render_email(intent, event, context)
        except PathwaysError as exc:  # no address for the recipient; a template gap
            return AttemptResult(permanent_failure(exc.detail), crn=event.crn)
        message = build_email(
            self.smtp,
            to=address,
            content=content,
            message_id=email_message_id(intent.idempotency_key, self.settings.message_id_domain),
            sent_at=self.clock(),
        )
        outcome = await round_.mail.send(message)
        return AttemptResult(outcome, address=address, crn=event.crn)

    async def _send_webhook(self, row: NotificationRow) -> AttemptResult:
        async with transaction(self.sessionmaker) as session:
            subscription = (
                await repository.get_subscription(session, row.subscription_id)
                if row.subscription_id
                else None
            )
        if subscription is None or not subscription.active:
            reason = (
                "the subscription was deleted"
                if subscription is None
                else "the subscription is disabled"
            )
            return AttemptResult(transport_failure(reason), cancel_reason=reason)
        try:
            destination = await check_destination(
                subscription.url,
                allow_private=self.settings.webhooks_allow_private,
                resolver=self.resolver,
            )
        except UnsafeSubscriberUrl as exc:
            return AttemptResult(permanent_failure(f"URL refused: {exc.detail}"))
        try:
            secret = self.box.open(subscription.secret_sealed)
        except ValueError:
            return AttemptResult(
                permanent_failure(
                    "the subscription's secret does not open with NOTIFICATIONS_SECRET_KEY"
                )
            )
        body = row.event_payload.encode()
        headers = webhook_headers(secret, str(row.event_id), self.clock(), body)
        return AttemptResult(await post_webhook(self.http, destination, headers, body))

    # ----------------------------------------------------------------------- recording

    async def _record(self, claimed: NotificationRow, result: AttemptResult) -> None:
        """One delivery's outcome, in its own transaction."""
        now = self.clock()
        async with transaction(self.sessionmaker) as session:
            row = await repository.get_notification(session, claimed.id, for_update=True)
            attempt = await repository.open_attempt(session, claimed.id, claimed.attempts)
            await self._apply_result(session, claimed, row, attempt, result, now)

    async def _record_all(self, outcomes: list[tuple[NotificationRow, AttemptResult]]) -> None:
        """Several deliveries' outcomes in one transaction: two reads, then the changes."""
        now = self.clock()
        async with transaction(self.sessionmaker) as session:
            rows = await repository.notifications_by_id(
                session, [claimed.id for claimed, _ in outcomes], for_update=True
            )
            attempts = await repository.attempts_numbered(
                session, [(claimed.id, claimed.attempts) for claimed, _ in outcomes]
            )
            for claimed, result in outcomes:
                await self._apply_result(
                    session,
                    claimed,
                    rows.get(claimed.id),
                    attempts.get((claimed.id, claimed.attempts)),
                    result,
                    now,
                )

    async def _apply_result(
        self,
        session: AsyncSession,
        claimed: NotificationRow,
        row: NotificationRow | None,
        attempt: DeliveryAttemptRow | None,
        result: AttemptResult,
        now: datetime,
    ) -> None:
        if attempt is not None:
            attempt.finished_at = now
            attempt.outcome = result.outcome.kind.value
            attempt.status_code = result.outcome.status_code
            attempt.detail = result.outcome.detail[:2000]
        if (
            row is None
            or row.status != DeliveryStatus.SENDING.value
            or (row.attempts != claimed.attempts)
        ):
            return  # another worker took it over after the lease expired
        if result.address:
            row.address = result.address
        if result.cancel_reason:
            state = record_outcome(
                delivery_of(row), result.outcome, now, self.random, self.retry_policy
            )
            if state.status is DeliveryStatus.RETRYING:
                state = cancel(state, result.cancel_reason)
            apply_delivery(row, state, now)
            return
        state = record_outcome(
            delivery_of(row), result.outcome, now, self.random, self.retry_policy
        )
        if row.subscription_id is not None:
            state = await self._after_webhook_attempt(session, row, state, result, now)
        apply_delivery(row, state, now)
        intent = intent_of(row)
        event = parse_envelope(json.loads(row.event_payload))
        if state.status is DeliveryStatus.DELIVERED:
            for outbound in events_after_delivery(intent, event):
                add_event(session, shared_event(outbound))
            if row.channel == Channel.EMAIL.value and result.crn:
                record_access(
                    session,
                    actor=SYSTEM_ACTOR,
                    action=Action.DISCLOSURE,
                    resource=f"notification/{row.id}",
                    crn=result.crn,
                    purpose=f"{row.kind} email to the {row.recipient_role.replace('_', ' ')}",
                )
        elif state.status is DeliveryStatus.FAILED:
            for outbound in events_after_final_failure(
                intent, event, notification_id=row.id, attempts=state.attempts
            ):
                add_event(session, shared_event(outbound))
            log.warning(
                "delivery.failed",
                notification_id=str(row.id),
                kind=row.kind,
                error=state.last_error,
            )

    async def _after_webhook_attempt(
        self,
        session: AsyncSession,
        row: NotificationRow,
        state: Delivery,
        result: AttemptResult,
        now: datetime,
    ) -> Delivery:
        subscription = await repository.get_subscription(
            session, row.subscription_id, for_update=True
        )
        if subscription is None:
            return (
                cancel(state, "the subscription was deleted")
                if (state.status is DeliveryStatus.RETRYING)
                else state
            )
        verdict = record_webhook_attempt(
            SubscriptionHealth(
                consecutive_failures=subscription.consecutive_failures,
                failing_since=subscription.failing_since,
                last_error=subscription.last_error,
            ),
            result.outcome,
            now,
            self.disable_policy,
        )
        subscription.consecutive_failures = verdict.health.consecutive_failures
        subscription.failing_since = verdict.health.failing_since
        subscription.last_error = verdict.health.last_error
        if verdict.disable and subscription.active:
            disable_subscription(subscription, verdict.disable_reason or "", now)
            await repository.cancel_waiting_for_subscription(
                session, subscription.id, f"subscription disabled: {verdict.disable_reason}", now
            )
            log.warning(
                "subscription.disabled",
                subscription_id=str(subscription.id),
                reason=verdict.disable_reason,
            )
        if not subscription.active and state.status is DeliveryStatus.RETRYING:
            state = cancel(state, f"subscription disabled: {subscription.disabled_reason}")
        return state


def disable_subscription(subscription: SubscriptionRow, reason: str, now: datetime) -> None:
    subscription.active = False
    subscription.disabled_at = now
    subscription.disabled_reason = reason


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
