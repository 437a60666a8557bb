"""Recording what an attempt came to, after the send (step 3 of a round in
`notifications.scheduler`): the delivery's state, a webhook subscription's health and its
disabling, and the events that follow (``notifications.duty-to-refer.sent``,
``notifications.delivery.failed``) through the outbox in the same transaction.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import repository
from notifications.config import NotificationsSettings
from notifications.domain.delivery import (
    Delivery,
    DeliveryStatus,
    cancel,
    record_outcome,
)
from notifications.domain.intents import (
    Channel,
    OutboundEvent,
    events_after_delivery,
    events_after_final_failure,
    parse_envelope,
)
from notifications.domain.subscriptions import SubscriptionHealth, record_webhook_attempt
from notifications.models import DeliveryAttemptRow, NotificationRow, SubscriptionRow
from notifications.repository import NotificationsRepository
from notifications.sending import AttemptResult
from pathways_shared.access import Action, record_access
from pathways_shared.clock import utc_now
from pathways_shared.db import transaction
from pathways_shared.events import Addressing
from pathways_shared.observability import get_logger
from pathways_shared.outbox import publish

log = get_logger(__name__)


SYSTEM_ACTOR = "notifications-service"


def _publish(session: AsyncSession, outbound: OutboundEvent) -> None:
    publish(session, outbound.payload, Addressing(crn=outbound.crn, event_id=outbound.id))


class OutcomeRecorder:
    """Records attempts' outcomes: the delivery's next state (delivered, retry later or
    failed), a webhook subscription's health, and the events and access log that follow,
    each in one transaction."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        *,
        random_source: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.random = random_source
        self.clock = clock
        self.retry_policy = settings.retry_policy
        self.disable_policy = settings.disable_policy

    async def record(self, claimed: NotificationRow, result: AttemptResult) -> None:
        """One delivery's outcome, in its own transaction."""
        now = self.clock()
        async with transaction(self.sessionmaker) as session:
            row = await NotificationsRepository(session).get_notification(
                claimed.id, for_update=True
            )
            attempt = await NotificationsRepository(session).open_attempt(
                claimed.id, claimed.attempts
            )
            await self._apply_result(session, claimed, row, attempt, result, now)

    async def record_all(self, outcomes: list[tuple[NotificationRow, AttemptResult]]) -> None:
        """Several deliveries' outcomes in one transaction: two reads, then the changes."""
        now = self.clock()
        async with transaction(self.sessionmaker) as session:
            rows = await NotificationsRepository(session).notifications_by_id(
                [claimed.id for claimed, _ in outcomes], for_update=True
            )
            attempts = await NotificationsRepository(session).attempts_numbered(
                [(claimed.id, claimed.attempts) for claimed, _ in outcomes]
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
        _log_webhook_disclosure(session, claimed, result)
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
                repository.delivery_of(row), result.outcome, now, self.random, self.retry_policy
            )
            if state.status is DeliveryStatus.RETRYING:
                state = cancel(state, result.cancel_reason)
            repository.apply_delivery(row, state, now)
            return
        state = record_outcome(
            repository.delivery_of(row), result.outcome, now, self.random, self.retry_policy
        )
        if row.subscription_id is not None:
            state = await self._after_webhook_attempt(session, row, state, result, now)
        repository.apply_delivery(row, state, now)
        intent = repository.intent_of(row)
        event = parse_envelope(json.loads(row.event_payload))
        if state.status is DeliveryStatus.DELIVERED:
            for outbound in events_after_delivery(intent, event):
                _publish(session, outbound)
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
                _publish(session, outbound)
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
        subscription = await NotificationsRepository(session).get_subscription(
            row.subscription_id, for_update=True
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
            await NotificationsRepository(session).cancel_waiting_for_subscription(
                subscription.id, f"subscription disabled: {verdict.disable_reason}", now
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


def _log_webhook_disclosure(
    session: AsyncSession, claimed: NotificationRow, result: AttemptResult
) -> None:
    """A webhook attempt the receiver answered (any status) handed it the event: the person's
    identifiers and what happened to them. Each is a disclosure (DPA 2018 s.62), logged with
    the subscription it went to, whatever the receiver made of it."""
    if claimed.subscription_id is None or result.outcome.status_code is None:
        return  # not a webhook, or nothing reached the receiver (refused URL, no connection)
    crn = parse_envelope(json.loads(claimed.event_payload)).crn
    if crn is None:
        return  # an event about no one
    record_access(
        session,
        actor=SYSTEM_ACTOR,
        action=Action.DISCLOSURE,
        resource=f"notification/{claimed.id}",
        crn=crn,
        purpose=f"{claimed.event_type} webhook to subscription {claimed.subscription_id}",
    )
