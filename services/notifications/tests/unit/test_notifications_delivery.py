"""One delivery's life: outcomes, the retry schedule, the state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain.delivery import (
    DEFAULT_LEASE,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    OutcomeKind,
    RetryPolicy,
    begin_attempt,
    cancel,
    classify_http_status,
    classify_smtp_reply,
    permanent_failure,
    record_outcome,
    transport_failure,
)
from notifications.errors import IllegalTransition

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def middle() -> float:
    return 0.5


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, OutcomeKind.SUCCESS),
        (201, OutcomeKind.SUCCESS),
        (204, OutcomeKind.SUCCESS),
        (299, OutcomeKind.SUCCESS),
        (199, OutcomeKind.RETRYABLE),
        (301, OutcomeKind.RETRYABLE),  # redirects are not followed
        (400, OutcomeKind.RETRYABLE),
        (404, OutcomeKind.RETRYABLE),
        (409, OutcomeKind.RETRYABLE),
        (410, OutcomeKind.PERMANENT),
        (429, OutcomeKind.RETRYABLE),
        (500, OutcomeKind.RETRYABLE),
        (503, OutcomeKind.RETRYABLE),
    ],
)
def test_webhook_answers_classified(status, kind):
    outcome = classify_http_status(status)

    assert outcome.kind is kind
    assert outcome.status_code == status
    assert str(status) in outcome.detail


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (250, OutcomeKind.SUCCESS),
        (221, OutcomeKind.SUCCESS),
        (421, OutcomeKind.RETRYABLE),
        (450, OutcomeKind.RETRYABLE),
        (452, OutcomeKind.RETRYABLE),
        (500, OutcomeKind.PERMANENT),
        (550, OutcomeKind.PERMANENT),
        (554, OutcomeKind.PERMANENT),
    ],
)
def test_smtp_replies_classified(code, kind):
    outcome = classify_smtp_reply(code, "mailbox says so")

    assert outcome.kind is kind
    assert outcome.detail == f"SMTP {code} mailbox says so"


def test_no_answer_is_retried_and_a_refusal_is_not():
    assert transport_failure("timed out").kind is OutcomeKind.RETRYABLE
    assert permanent_failure("no address").kind is OutcomeKind.PERMANENT
    assert not transport_failure("x").succeeded
    assert classify_http_status(200).succeeded


# --------------------------------------------------------------------------- retry schedule


@pytest.mark.parametrize(
    ("attempts_made", "nominal"),
    [
        (1, timedelta(seconds=30)),
        (2, timedelta(seconds=90)),
        (3, timedelta(seconds=270)),
        (4, timedelta(seconds=810)),
        (5, timedelta(seconds=2430)),
        (6, timedelta(seconds=7290)),  # about 2 hours
        (7, timedelta(hours=6)),  # capped
        (9, timedelta(hours=6)),
        (500, timedelta(hours=6)),  # no overflow
    ],
)
def test_backoff_is_exponential_and_capped(attempts_made, nominal):
    assert RetryPolicy().nominal_delay(attempts_made) == nominal


@pytest.mark.parametrize(
    ("draw", "factor"),
    [(0.0, 0.8), (0.25, 0.9), (0.5, 1.0), (0.75, 1.1), (0.999999, 1.2)],
)
def test_jitter_spreads_the_delay_around_the_nominal(draw, factor):
    delay = RetryPolicy().delay(3, lambda: draw)

    assert delay.total_seconds() == pytest.approx(270 * factor, rel=1e-5)


def test_no_jitter_gives_the_nominal_delay():
    policy = RetryPolicy(jitter=0)

    assert policy.delay(2, lambda: 0.9) == timedelta(seconds=90)


@pytest.mark.parametrize("draw", [-0.1, 1.0, 1.5])
def test_a_random_source_out_of_range_is_refused(draw):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        RetryPolicy().delay(1, lambda: draw)


def test_the_default_schedule_spreads_over_hours_within_a_day():
    policy = RetryPolicy()
    lowest = sum((policy.delay(n, lambda: 0.0) for n in range(1, policy.max_attempts)), timedelta())
    highest = sum(
        (policy.delay(n, lambda: 0.999999) for n in range(1, policy.max_attempts)), timedelta()
    )

    assert timedelta(hours=12) < lowest < highest < timedelta(hours=26)


@pytest.mark.parametrize(
    ("attempts_made", "expected"),
    [
        (1, NOW + timedelta(seconds=30)),
        (9, NOW + timedelta(hours=6)),
        (10, None),  # the tenth failed attempt was the last
        (11, None),
    ],
)
def test_next_attempt_until_the_attempts_run_out(attempts_made, expected):
    assert RetryPolicy().next_attempt_at(attempts_made, NOW, middle) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_delay": timedelta(0)},
        {"multiplier": 0.5},
        {"max_delay": timedelta(seconds=1)},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_attempts": 0},
    ],
)
def test_a_nonsense_retry_policy_is_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_nominal_delay_before_any_attempt_is_a_programming_error():
    with pytest.raises(ValueError):
        RetryPolicy().nominal_delay(0)


# --------------------------------------------------------------------------- state machine


def sending(attempts=1, at=NOW):
    return begin_attempt(Delivery(attempts=attempts - 1), at)


def test_a_new_delivery_is_pending_and_due():
    delivery = Delivery()

    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.is_due(NOW)
    assert not delivery.final


def test_beginning_records_the_attempt_before_sending():
    delivery = begin_attempt(Delivery(), NOW)

    assert delivery.status is DeliveryStatus.SENDING
    assert delivery.attempts == 1
    assert delivery.lease_expires_at == NOW + DEFAULT_LEASE
    assert delivery.next_attempt_at is None


def test_a_delivery_scheduled_for_later_is_not_yet_due():
    delivery = Delivery(next_attempt_at=NOW + timedelta(minutes=1))

    assert not delivery.is_due(NOW)
    assert delivery.is_due(NOW + timedelta(minutes=1))
    with pytest.raises(IllegalTransition):
        begin_attempt(delivery, NOW)


def test_success_is_delivered_and_final():
    delivered = record_outcome(sending(), classify_http_status(204), NOW, middle)

    assert delivered.status is DeliveryStatus.DELIVERED
    assert delivered.delivered_at == NOW
    assert delivered.final
    assert not delivered.is_due(NOW + timedelta(days=365))


def test_a_retryable_failure_schedules_the_next_attempt():
    retrying = record_outcome(sending(), transport_failure("refused"), NOW, middle)

    assert retrying.status is DeliveryStatus.RETRYING
    assert retrying.next_attempt_at == NOW + timedelta(seconds=30)
    assert retrying.last_error == "refused"
    assert retrying.lease_expires_at is None
    assert not retrying.is_due(NOW + timedelta(seconds=29))
    assert retrying.is_due(NOW + timedelta(seconds=30))


def test_a_permanent_failure_fails_at_once():
    failed = record_outcome(sending(), permanent_failure("no address"), NOW, middle)

    assert failed.status is DeliveryStatus.FAILED
    assert failed.last_error == "no address"
    assert failed.final


def test_retries_then_success():
    policy = RetryPolicy(max_attempts=5)
    delivery = Delivery()
    at = NOW
    for _ in range(3):
        delivery = begin_attempt(delivery, at)
        delivery = record_outcome(delivery, classify_http_status(500), at, middle, policy)
        at = delivery.next_attempt_at
    delivery = begin_attempt(delivery, at)
    delivery = record_outcome(delivery, classify_http_status(200), at, middle, policy)

    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.attempts == 4
    assert delivery.last_error is None


def test_retries_exhausted_fail_with_the_last_error():
    policy = RetryPolicy(max_attempts=3)
    delivery = Delivery()
    at = NOW
    statuses = []
    for _ in range(3):
        delivery = begin_attempt(delivery, at)
        delivery = record_outcome(delivery, classify_http_status(503), at, middle, policy)
        statuses.append(delivery.status)
        at = delivery.next_attempt_at or at

    assert statuses == [DeliveryStatus.RETRYING, DeliveryStatus.RETRYING, DeliveryStatus.FAILED]
    assert delivery.last_error == "gave up after 3 attempts; last: HTTP 503"
    assert delivery.attempts == 3


def test_a_crash_mid_send_is_retried_once_the_lease_expires():
    in_flight = sending()

    assert not in_flight.is_due(NOW + DEFAULT_LEASE - timedelta(seconds=1))
    with pytest.raises(IllegalTransition):
        begin_attempt(in_flight, NOW + timedelta(seconds=1))

    again = begin_attempt(in_flight, NOW + DEFAULT_LEASE)

    assert again.status is DeliveryStatus.SENDING
    assert again.attempts == 2
    assert again.lease_expires_at == NOW + 2 * DEFAULT_LEASE


FINAL = [
    Delivery(status=DeliveryStatus.DELIVERED, attempts=1),
    Delivery(status=DeliveryStatus.FAILED, attempts=10),
    Delivery(status=DeliveryStatus.CANCELLED),
]


@pytest.mark.parametrize("delivery", FINAL, ids=lambda d: d.status.value)
def test_a_final_delivery_never_begins_again(delivery):
    """Above all: nothing is sent again after a recorded success."""
    assert not delivery.is_due(NOW + timedelta(days=30))
    with pytest.raises(IllegalTransition) as caught:
        begin_attempt(delivery, NOW + timedelta(days=30))

    assert caught.value.status == 409


@pytest.mark.parametrize(
    "delivery",
    [*FINAL, Delivery(), Delivery(status=DeliveryStatus.RETRYING, next_attempt_at=NOW)],
    ids=lambda d: d.status.value,
)
def test_only_an_attempt_in_progress_records_an_outcome(delivery):
    with pytest.raises(IllegalTransition):
        record_outcome(delivery, classify_http_status(200), NOW, middle)


@pytest.mark.parametrize(
    "delivery",
    [Delivery(), Delivery(status=DeliveryStatus.RETRYING, attempts=2, next_attempt_at=NOW)],
    ids=lambda d: d.status.value,
)
def test_a_waiting_delivery_can_be_cancelled_with_a_reason(delivery):
    cancelled = cancel(delivery, "subscription disabled")

    assert cancelled.status is DeliveryStatus.CANCELLED
    assert cancelled.last_error == "subscription disabled"
    assert cancelled.next_attempt_at is None
    assert cancelled.final


@pytest.mark.parametrize("delivery", [*FINAL, sending()], ids=lambda d: d.status.value)
def test_a_delivery_in_flight_or_ended_cannot_be_cancelled(delivery):
    with pytest.raises(IllegalTransition):
        cancel(delivery, "subscription deleted")


def test_a_retrying_delivery_without_a_time_is_not_due():
    assert not Delivery(status=DeliveryStatus.RETRYING).is_due(NOW)


def test_an_outcome_keeps_its_status_code():
    outcome = AttemptOutcome(OutcomeKind.RETRYABLE, "HTTP 502", 502)

    assert record_outcome(sending(), outcome, NOW, middle).status is DeliveryStatus.RETRYING
