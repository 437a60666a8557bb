"""Subscriptions: patterns, who may subscribe, who receives, SSRF, disabling failing ones."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain.delivery import (
    AttemptOutcome,
    OutcomeKind,
    classify_http_status,
    transport_failure,
)
from notifications.domain.intents import NotificationKind, Recipient, RecipientRole, idempotency_key
from notifications.domain.subscriptions import (
    DisablePolicy,
    EventPattern,
    Subscription,
    SubscriptionHealth,
    SubscriptionScope,
    authorise_subscription,
    check_resolved_addresses,
    decide_webhooks,
    parse_patterns,
    parse_subscriber_url,
    record_webhook_attempt,
)
from notifications.errors import (
    InvalidEventPattern,
    InvalidValue,
    SubscriptionForbidden,
    UnsafeSubscriberUrl,
)

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
COVENTRY = "E08000026"

# --------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("cohorts.member.selected", "cohorts.member.selected", True),
        ("cohorts.member.selected", "cohorts.member.deselected", False),
        ("cohorts.member.*", "cohorts.member.selected", True),
        ("cohorts.member.*", "cohorts.member.pathway-activity", True),
        ("cohorts.member.*", "cohorts.member", False),
        ("cohorts.member.*", "cohorts.member.a.b", False),
        ("cohorts.member.*", "cohorts.selection-run.completed", False),
        ("cohorts.*.completed", "cohorts.selection-run.completed", True),
        ("*.referral.withdrawn", "referrals.referral.withdrawn", True),
        ("*.referral.withdrawn", "providers.referral.declined", False),
        ("cohorts.>", "cohorts.member.selected", True),
        ("cohorts.>", "cohorts.selection-run.completed", True),
        ("cohorts.>", "cohorts", False),
        ("cohorts.>", "cohortsx.member.selected", False),
        ("cohorts.member.>", "cohorts.member.selected", True),
        ("cohorts.member.>", "cohorts.member", False),
        (">", "referrals.referral.submitted", True),
        ("*.>", "referrals.referral.submitted", True),
        ("*", "referrals.referral.submitted", False),
        ("*.*.*", "referrals.referral.submitted", True),
        ("*.*", "referrals.referral.submitted", False),
        ("providers.referral.deadline-missed", "providers.referral.deadline-missed", True),
    ],
)
def test_pattern_matching_follows_nats_wildcards(pattern, event_type, matches):
    assert EventPattern.parse(pattern).matches(event_type) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "1 to 200"),
        ("a." * 101, "1 to 200"),
        ("cohorts.>.selected", "last token"),
        ("cohorts..selected", "token ''"),
        ("cohorts.member.", "token ''"),
        (".cohorts", "token ''"),
        ("cohorts.mem*", "token 'mem*'"),
        ("cohorts.member.>>", "token '>>'"),
        ("Cohorts.member.selected", "token 'Cohorts'"),
        ("cohorts.member selected", "token 'member selected'"),
    ],
)
def test_malformed_patterns_are_refused(pattern, message):
    with pytest.raises(InvalidEventPattern, match=re.escape(message)) as caught:
        EventPattern.parse(pattern, field="event_types.3")

    assert caught.value.status == 422
    assert caught.value.field == "event_types.3"


def test_patterns_of_a_subscription_keep_order_and_drop_duplicates():
    patterns = parse_patterns(["cohorts.member.*", "cohorts.>", "cohorts.member.*"])

    assert [p.text for p in patterns] == ["cohorts.member.*", "cohorts.>"]


@pytest.mark.parametrize(
    ("texts", "field"),
    [
        ([], "event_types"),
        (["cohorts.>"] * 21, "event_types"),
        (["cohorts.>", "bad..pattern"], "event_types.1"),
    ],
)
def test_pattern_lists_are_checked_with_the_field_at_fault(texts, field):
    with pytest.raises(InvalidEventPattern) as caught:
        parse_patterns(texts)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("pattern", "cohort_only"),
    [
        ("cohorts.>", True),
        ("cohorts.member.*", True),
        ("cohorts.*.*", True),
        (">", False),
        ("*.member.selected", False),
        ("referrals.>", False),
    ],
)
def test_a_pattern_is_cohort_only_when_its_first_token_is_cohorts(pattern, cohort_only):
    assert EventPattern.parse(pattern).cohort_events_only is cohort_only


# --------------------------------------------------------------------------- who may subscribe


def _p(*texts):
    return parse_patterns(list(texts))


@pytest.mark.parametrize(
    ("roles", "claim", "patterns", "requested", "scope"),
    [
        (["admin"], None, _p(">"), None, SubscriptionScope(None, False)),
        (["admin"], [SOLIHULL], _p("referrals.>"), None, SubscriptionScope(None, False)),
        (
            ["admin"],
            None,
            _p("cohorts.>"),
            [BIRMINGHAM],
            SubscriptionScope(frozenset({BIRMINGHAM}), False),
        ),
        (
            ["admin", "police"],
            [SOLIHULL],
            _p("providers.>"),
            None,
            SubscriptionScope(None, False),
        ),
        (
            ["police"],
            [SOLIHULL],
            _p("cohorts.member.*"),
            None,
            SubscriptionScope(frozenset({SOLIHULL}), True),
        ),
        (
            ["police"],
            [SOLIHULL, BIRMINGHAM],
            _p("cohorts.>"),
            [BIRMINGHAM],
            SubscriptionScope(frozenset({BIRMINGHAM}), True),
        ),
        (
            ["police"],
            ["west-midlands"],
            _p("cohorts.>"),
            [COVENTRY],
            SubscriptionScope(frozenset({COVENTRY}), True),
        ),
    ],
)
def test_who_may_subscribe_and_with_what_scope(roles, claim, patterns, requested, scope):
    assert authorise_subscription(roles, claim, patterns, requested_areas=requested) == scope


@pytest.mark.parametrize(
    ("roles", "claim", "patterns", "requested", "field"),
    [
        (["probation"], None, _p("cohorts.>"), None, None),
        (["provider"], None, _p("cohorts.>"), None, None),
        (["service"], None, _p("cohorts.>"), None, None),
        ([], None, _p("cohorts.>"), None, None),
        (["police"], [SOLIHULL], _p(">"), None, "event_types.0"),
        (["police"], [SOLIHULL], _p("cohorts.>", "*.member.selected"), None, "event_types.1"),
        (["police"], [SOLIHULL], _p("referrals.referral.submitted"), None, "event_types.0"),
        (["police"], None, _p("cohorts.>"), None, None),
        (["police"], [], _p("cohorts.>"), None, None),
        (["police"], [SOLIHULL], _p("cohorts.>"), [BIRMINGHAM], "areas"),
        (["police"], [SOLIHULL], _p("cohorts.>"), ["west-midlands"], "areas"),
    ],
)
def test_subscriptions_refused_to_callers_without_the_right(
    roles, claim, patterns, requested, field
):
    with pytest.raises(SubscriptionForbidden) as caught:
        authorise_subscription(roles, claim, patterns, requested_areas=requested)

    assert caught.value.status == 403
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("requested", "message"),
    [(["E09999999"], "unknown area"), ([], "at least one area")],
)
def test_requested_areas_must_be_known_and_not_empty(requested, message):
    with pytest.raises(InvalidValue, match=message) as caught:
        authorise_subscription(["admin"], None, _p(">"), requested_areas=requested)

    assert caught.value.status == 422
    assert caught.value.field == "areas"


# --------------------------------------------------------------------------- who receives


def _subscription(patterns, areas=None, cohort_only=False, active=True, sub_id=None):
    return Subscription(
        id=sub_id or uuid.uuid4(),
        patterns=_p(*patterns),
        scope=SubscriptionScope(frozenset(areas) if areas else None, cohort_only),
        active=active,
    )


@pytest.mark.parametrize(
    ("subscription", "event_type", "area", "wanted"),
    [
        (_subscription([">"]), "referrals.referral.submitted", SOLIHULL, True),
        (_subscription([">"]), "providers.referral.allocated", None, True),
        (_subscription([">"], active=False), "referrals.referral.submitted", SOLIHULL, False),
        (_subscription(["cohorts.member.*"]), "cohorts.member.selected", None, True),
        (_subscription(["cohorts.member.*"]), "cohorts.selection-run.completed", None, False),
        (
            _subscription(["cohorts.member.*", "cohorts.selection-run.*"]),
            "cohorts.selection-run.completed",
            None,
            True,
        ),
        # police: their areas only, and an event without an area is not theirs
        (
            _subscription(["cohorts.>"], [SOLIHULL], True),
            "cohorts.member.selected",
            SOLIHULL,
            True,
        ),
        (
            _subscription(["cohorts.>"], [SOLIHULL], True),
            "cohorts.member.selected",
            BIRMINGHAM,
            False,
        ),
        (_subscription(["cohorts.>"], [SOLIHULL], True), "cohorts.member.selected", None, False),
        # even a stored pattern wider than allowed never leaks other streams to police
        (
            _subscription([">"], [SOLIHULL], True),
            "referrals.referral.submitted",
            SOLIHULL,
            False,
        ),
        (_subscription([">"], [SOLIHULL], True), "cohorts.member.deselected", SOLIHULL, True),
    ],
)
def test_which_subscriptions_want_an_event(subscription, event_type, area, wanted):
    assert subscription.wants(event_type, area) is wanted


def test_webhook_intents_one_per_wanting_subscription_keyed_by_event_and_subscription(
    make_event,
):
    first = _subscription(["cohorts.>"], sub_id=uuid.UUID(int=1))
    second = _subscription(["cohorts.member.*"], [SOLIHULL], True, sub_id=uuid.UUID(int=2))
    elsewhere = _subscription(["cohorts.>"], [BIRMINGHAM], True, sub_id=uuid.UUID(int=3))
    disabled = _subscription(["cohorts.>"], active=False, sub_id=uuid.UUID(int=4))
    other = _subscription(["referrals.>"], sub_id=uuid.UUID(int=5))
    event = make_event("cohorts.member.selected", {"area": SOLIHULL, "cohort": "fixed"})

    intents = decide_webhooks(event, [second, elsewhere, other, disabled, first])

    assert [i.recipient.key for i in intents] == [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]
    for intent in intents:
        assert intent.kind is NotificationKind.WEBHOOK
        assert intent.recipient.role is RecipientRole.SUBSCRIBER
        assert intent.event_id == event.id
        assert intent.idempotency_key == idempotency_key(event.id, intent.recipient)
    assert decide_webhooks(event, [first, second]) == intents  # the same on redelivery


def test_webhook_intents_carry_the_referral_of_referral_events(make_event, info, ids):
    event = make_event("providers.referral.declined", info("providers.referral.declined"))

    (intent,) = decide_webhooks(event, [_subscription(["providers.>"])])

    assert intent.referral_id == ids.referral
    assert intent.recipient == Recipient(RecipientRole.SUBSCRIBER, intent.recipient.key)


# --------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize(
    ("url", "allow_private", "host", "port"),
    [
        ("https://hooks.police.example/iom", False, "hooks.police.example", 443),
        ("https://hooks.police.example:8443/iom?x=1", False, "hooks.police.example", 8443),
        ("http://127.0.0.1:9000/hook", True, "127.0.0.1", 9000),
        ("http://localhost/hook", True, "localhost", 80),
        ("https://[2001:db8::1]/hook", True, "2001:db8::1", 443),
    ],
)
def test_subscriber_urls_parsed(url, allow_private, host, port):
    parsed = parse_subscriber_url(url, allow_private=allow_private)

    assert (parsed.host, parsed.port, parsed.url) == (host, port, url)


@pytest.mark.parametrize(
    ("url", "allow_private", "message"),
    [
        ("http://hooks.police.example/iom", False, "must be https"),
        ("ftp://hooks.police.example/iom", True, "must be https or http"),
        ("file:///etc/passwd", True, "must be https or http"),
        ("hooks.police.example/iom", True, "scheme"),
        ("https://user:pass@hooks.police.example/", False, "credentials"),
        ("https://token@hooks.police.example/", False, "credentials"),
        ("https:///path-only", False, "no host"),
        ("https://hooks.police.example:99999/", False, "not a valid URL"),
        ("https://hooks.police.example/a b", False, "white space"),
        ("", False, "1 to 2048"),
        ("https://h.example/" + "a" * 2048, False, "1 to 2048"),
    ],
)
def test_unsafe_or_malformed_urls_refused(url, allow_private, message):
    with pytest.raises(UnsafeSubscriberUrl, match=message) as caught:
        parse_subscriber_url(url, allow_private=allow_private)

    assert caught.value.status == 422
    assert caught.value.field == "url"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "192.0.2.1",  # documentation
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
    ],
)
def test_production_refuses_non_global_addresses(address):
    with pytest.raises(UnsafeSubscriberUrl, match="refused outside development"):
        check_resolved_addresses([address], allow_private=False)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.1.1", "::1", "fe80::1", "192.168.1.1"]
)
def test_development_allows_private_and_loopback(address):
    assert check_resolved_addresses([address], allow_private=True)


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (["93.184.215.14"], ("93.184.215.14",)),
        (["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], None),
        (["::ffff:93.184.215.14"], ("93.184.215.14",)),
    ],
)
def test_production_allows_global_addresses(addresses, expected):
    checked = check_resolved_addresses(addresses, allow_private=False)

    assert checked == (expected or tuple(addresses))


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(UnsafeSubscriberUrl):
        check_resolved_addresses(["93.184.215.14", "10.0.0.1"], allow_private=False)


@pytest.mark.parametrize(
    ("addresses", "allow_private", "message"),
    [
        ([], False, "does not resolve"),
        ([], True, "does not resolve"),
        (["0.0.0.0"], True, "cannot be called"),
        (["::"], True, "cannot be called"),
        (["224.0.0.1"], True, "cannot be called"),
        (["ff02::1"], True, "cannot be called"),
        (["not-an-ip"], True, "not an IP address"),
    ],
)
def test_addresses_never_callable(addresses, allow_private, message):
    with pytest.raises(UnsafeSubscriberUrl, match=message):
        check_resolved_addresses(addresses, allow_private=allow_private)


# --------------------------------------------------------------------------- disabling

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
FAIL = transport_failure("connection refused")
OK = classify_http_status(200)


def _run(outcomes_at, policy=None):
    """Feed (outcome, hours after T0) in order; the verdicts, in order."""
    health = SubscriptionHealth()
    verdicts = []
    for outcome, hours in outcomes_at:
        at = T0 + timedelta(hours=hours)
        verdict = record_webhook_attempt(health, outcome, at, policy or DisablePolicy())
        health = verdict.health
        verdicts.append(verdict)
    return verdicts


def test_a_success_resets_the_failure_streak():
    verdict = record_webhook_attempt(
        SubscriptionHealth(consecutive_failures=9, failing_since=T0, last_error="x"), OK, T0
    )

    assert verdict.health == SubscriptionHealth()
    assert not verdict.disable


def test_failures_count_from_the_first_of_the_streak():
    verdicts = _run([(FAIL, 0), (FAIL, 1), (FAIL, 2)])

    assert verdicts[-1].health == SubscriptionHealth(3, T0, "connection refused")


@pytest.mark.parametrize(
    ("failures", "span_hours", "disabled"),
    [
        (10, 12, True),  # both thresholds reached
        (15, 30, True),
        (9, 30, False),  # long but too few
        (10, 11.9, False),  # enough but too soon
        (50, 1, False),  # a burst of events in a short outage
    ],
)
def test_disabled_after_enough_failures_over_long_enough(failures, span_hours, disabled):
    times = [span_hours * i / (failures - 1) for i in range(failures)]

    verdicts = _run([(FAIL, t) for t in times])

    assert verdicts[-1].disable is disabled
    assert not any(v.disable for v in verdicts[:-1]) or disabled


def test_a_success_in_between_starts_the_count_again():
    outcomes = [(FAIL, h) for h in range(9)] + [(OK, 9)] + [(FAIL, 10 + h) for h in range(9)]

    assert not any(v.disable for v in _run(outcomes))


def test_the_reason_for_disabling_is_recorded():
    verdicts = _run([(FAIL, h * 2) for h in range(10)])

    assert verdicts[-1].disable_reason == (
        "10 consecutive failed attempts since 2026-11-24T10:00:00+00:00; "
        "last error: connection refused"
    )


def test_410_gone_disables_at_once():
    verdict = record_webhook_attempt(SubscriptionHealth(), classify_http_status(410), T0)

    assert verdict.disable
    assert "410 Gone" in verdict.disable_reason


@pytest.mark.parametrize("status", [500, 404, 301, 429])
def test_other_error_answers_do_not_disable_at_once(status):
    assert not record_webhook_attempt(
        SubscriptionHealth(), classify_http_status(status), T0
    ).disable


def test_the_policy_is_configurable():
    policy = DisablePolicy(min_failures=2, min_period=timedelta(0))

    verdicts = _run([(FAIL, 0), (FAIL, 0)], policy)

    assert [v.disable for v in verdicts] == [False, True]


@pytest.mark.parametrize(
    ("min_failures", "min_period"), [(0, timedelta(hours=1)), (1, timedelta(seconds=-1))]
)
def test_a_nonsense_policy_is_refused(min_failures, min_period):
    with pytest.raises(ValueError):
        DisablePolicy(min_failures=min_failures, min_period=min_period)


def test_a_permanent_failure_counts_as_a_failure():
    outcome = AttemptOutcome(OutcomeKind.PERMANENT, "refused url")

    verdict = record_webhook_attempt(SubscriptionHealth(), outcome, T0)

    assert verdict.health.consecutive_failures == 1
