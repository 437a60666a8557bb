"""The life of one delivery (an email or a webhook call for one intent), pure.

```
pending ──begin──▶ sending ──success──────────────▶ delivered
   │                 │  ▲ ──retryable, attempts left─▶ retrying ──begin (when due)──▶ sending
   │                 │  └── begin again once the lease has expired (a crash mid-send)
   │                 └──── permanent, or retries exhausted ──▶ failed
   └──cancel──▶ cancelled ◀──cancel── retrying
```
The intent is recorded (``sending``, with a lease) before anything leaves the process, so a
crash between sending and recording is seen on restart as an expired lease and the same
message is sent again with the same idempotency key (``webhook-id``, ``Message-ID``): at least
once on the wire, one effect for a receiver that de-duplicates; and never again once a
success is recorded. ``delivered``, ``failed`` and ``cancelled`` are final.

Retries: exponential backoff with jitter, over hours. After attempt *n* fails, the next is
``first_delay × multiplierⁿ⁻¹`` later (capped at ``max_delay``), scaled by a random factor in
``[1 − jitter, 1 + jitter)``. With the defaults (30 s, ×3, at most 6 h, ±20 %, 10 attempts)
the attempts spread over about 21 hours before the delivery fails for good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from notifications.errors import IllegalTransition


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED}
)


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class AttemptOutcome:
    kind: OutcomeKind
    detail: str
    status_code: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS


def classify_http_status(status_code: int) -> AttemptOutcome:
    """A webhook answer: any 2xx is delivered; 410 Gone is permanent (the receiver has gone
    away); every other answer, redirects included (they are not followed), is retried."""
    if 200 <= status_code < 300:
        return AttemptOutcome(OutcomeKind.SUCCESS, f"HTTP {status_code}", status_code)
    if status_code == 410:
        return AttemptOutcome(OutcomeKind.PERMANENT, "HTTP 410 Gone", status_code)
    return AttemptOutcome(OutcomeKind.RETRYABLE, f"HTTP {status_code}", status_code)


def classify_smtp_reply(code: int, message: str = "") -> AttemptOutcome:
    """An SMTP reply (RFC 5321): 2xx accepted; 4xx transient, retried; 5xx permanent."""
    text = f"SMTP {code} {message}".strip()
    if 200 <= code < 300:
        return AttemptOutcome(OutcomeKind.SUCCESS, text, code)
    if 400 <= code < 500:
        return AttemptOutcome(OutcomeKind.RETRYABLE, text, code)
    return AttemptOutcome(OutcomeKind.PERMANENT, text, code)


def transport_failure(detail: str) -> AttemptOutcome:
    """No answer at all (refused, timed out, reset): retried."""
    return AttemptOutcome(OutcomeKind.RETRYABLE, detail)


def permanent_failure(detail: str) -> AttemptOutcome:
    """Nothing to retry: no address for the recipient, a refused URL, a template error."""
    return AttemptOutcome(OutcomeKind.PERMANENT, detail)


# --------------------------------------------------------------------------- retry schedule


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: timedelta = timedelta(seconds=30)
    multiplier: float = 3.0
    max_delay: timedelta = timedelta(hours=6)
    jitter: float = 0.2
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.first_delay <= timedelta(0):
            raise ValueError("first_delay must be positive")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.max_delay < self.first_delay:
            raise ValueError("max_delay must be at least first_delay")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def nominal_delay(self, attempts_made: int) -> timedelta:
        """The delay after the ``attempts_made``-th failure, before jitter."""
        if attempts_made < 1:
            raise ValueError("attempts_made starts at 1")
        seconds = self.first_delay.total_seconds()
        cap = self.max_delay.total_seconds()
        for _ in range(attempts_made - 1):
            seconds *= self.multiplier
            if seconds >= cap:
                return self.max_delay
        return timedelta(seconds=min(seconds, cap))

    def delay(self, attempts_made: int, random: Callable[[], float]) -> timedelta:
        """The nominal delay scaled by ``1 - jitter + 2 * jitter * random()``;
        ``random`` returns a float in [0, 1) (``random.random`` in production)."""
        draw = random()
        if not 0 <= draw < 1:
            raise ValueError("the random source must return a float in [0, 1)")
        return self.nominal_delay(attempts_made) * (1 - self.jitter + 2 * self.jitter * draw)

    def next_attempt_at(
        self, attempts_made: int, now: datetime, random: Callable[[], float]
    ) -> datetime | None:
        """When to try again after ``attempts_made`` failed attempts; None when none are left."""
        if attempts_made >= self.max_attempts:
            return None
        return now + self.delay(attempts_made, random)


# --------------------------------------------------------------------------- state machine


@dataclass(frozen=True)
class Delivery:
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def is_due(self, now: datetime) -> bool:
        """Whether a worker may begin an attempt now."""
        match self.status:
            case DeliveryStatus.PENDING:
                return self.next_attempt_at is None or self.next_attempt_at <= now
            case DeliveryStatus.RETRYING:
                return self.next_attempt_at is not None and self.next_attempt_at <= now
            case DeliveryStatus.SENDING:
                return self.lease_expires_at is not None and self.lease_expires_at <= now
            case _:
                return False


DEFAULT_LEASE = timedelta(minutes=2)


def begin_attempt(delivery: Delivery, now: datetime, lease: timedelta = DEFAULT_LEASE) -> Delivery:
    """Record the intent to send, before sending. Refused (409) unless the delivery is due."""
    if not delivery.is_due(now):
        raise IllegalTransition(f"a {delivery.status.value} delivery is not due for an attempt")
    return replace(
        delivery,
        status=DeliveryStatus.SENDING,
        attempts=delivery.attempts + 1,
        next_attempt_at=None,
        lease_expires_at=now + lease,
    )


def record_outcome(
    delivery: Delivery,
    outcome: AttemptOutcome,
    now: datetime,
    random: Callable[[], float],
    policy: RetryPolicy = RetryPolicy(),
) -> Delivery:
    """The delivery after the attempt in progress ended with ``outcome``."""
    if delivery.status is not DeliveryStatus.SENDING:
        raise IllegalTransition(
            f"a {delivery.status.value} delivery has no attempt in progress to record"
        )
    if outcome.succeeded:
        return replace(
            delivery,
            status=DeliveryStatus.DELIVERED,
            lease_expires_at=None,
            delivered_at=now,
            last_error=None,
        )
    retry_at = (
        policy.next_attempt_at(delivery.attempts, now, random)
        if outcome.kind is OutcomeKind.RETRYABLE
        else None
    )
    if retry_at is None:
        reason = (
            outcome.detail
            if outcome.kind is OutcomeKind.PERMANENT
            else f"gave up after {delivery.attempts} attempts; last: {outcome.detail}"
        )
        return replace(
            delivery, status=DeliveryStatus.FAILED, lease_expires_at=None, last_error=reason
        )
    return replace(
        delivery,
        status=DeliveryStatus.RETRYING,
        lease_expires_at=None,
        next_attempt_at=retry_at,
        last_error=outcome.detail,
    )


def cancel(delivery: Delivery, reason: str) -> Delivery:
    """Stop a delivery that is waiting (its subscription was disabled or deleted). One in
    flight is left to finish: its outcome is recorded, then it is not retried."""
    if delivery.status not in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
        raise IllegalTransition(f"a {delivery.status.value} delivery cannot be cancelled")
    return replace(
        delivery, status=DeliveryStatus.CANCELLED, next_attempt_at=None, last_error=reason
    )
