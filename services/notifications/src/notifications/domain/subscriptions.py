"""Webhook subscriptions: event-type patterns, who may subscribe to what, which subscriptions
an event goes to, whether a subscriber URL is safe to call, and when a failing subscription
is disabled. Pure.

Patterns (the NATS subject wildcards, so a pattern means what it means on the bus):
- an event type is dot-separated tokens (``cohorts.member.selected``);
- ``*`` matches exactly one token (``cohorts.member.*`` matches ``cohorts.member.selected``,
  not ``cohorts.member`` nor ``cohorts.member.a.b``);
- ``>`` matches one or more tokens and may only be the last token (``cohorts.>`` matches every
  cohort event, not ``cohorts`` itself);
- wildcards are whole tokens: ``cohorts.mem*`` is refused, as NATS would not match it.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from notifications.domain.delivery import AttemptOutcome, OutcomeKind
from notifications.domain.intents import (
    InboundEvent,
    NotificationIntent,
    NotificationKind,
    Recipient,
    RecipientRole,
    idempotency_key,
)
from notifications.errors import (
    InvalidEventPattern,
    InvalidValue,
    SubscriptionForbidden,
    UnsafeSubscriberUrl,
)
from pathways_shared.vocabulary import AREAS, Role, expand_areas

ONE_TOKEN = "*"
REST = ">"
COHORT_STREAM_TOKEN = "cohorts"
MAX_PATTERN_LENGTH = 200
MAX_PATTERNS = 20
_TOKEN = re.compile(r"^[a-z0-9_-]+\Z")


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class EventPattern:
    text: str
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, *, field: str = "event_types") -> EventPattern:
        if not text or len(text) > MAX_PATTERN_LENGTH:
            raise InvalidEventPattern(
                f"a pattern has 1 to {MAX_PATTERN_LENGTH} characters", field=field
            )
        tokens = tuple(text.split("."))
        for position, token in enumerate(tokens):
            if token == REST:
                if position != len(tokens) - 1:
                    raise InvalidEventPattern("'>' may only be the last token", field=field)
            elif token != ONE_TOKEN and not _TOKEN.fullmatch(token):
                raise InvalidEventPattern(
                    f"token {token!r} is not lower-case letters, digits, '-' or '_', "
                    "nor a whole-token wildcard '*' or '>'",
                    field=field,
                )
        return cls(text=text, tokens=tokens)

    def matches(self, event_type: str) -> bool:
        subject = event_type.split(".")
        for position, token in enumerate(self.tokens):
            if token == REST:
                return len(subject) > position
            if position >= len(subject):
                return False
            if token != ONE_TOKEN and token != subject[position]:
                return False
        return len(subject) == len(self.tokens)

    @property
    def cohort_events_only(self) -> bool:
        """True when the pattern can only ever match events of the cohorts service."""
        return self.tokens[0] == COHORT_STREAM_TOKEN


def parse_patterns(texts: Sequence[str], *, field: str = "event_types") -> tuple[EventPattern, ...]:
    """Every pattern of a subscription, duplicates dropped, in the order given."""
    if not texts:
        raise InvalidEventPattern("at least one event type pattern is needed", field=field)
    if len(texts) > MAX_PATTERNS:
        raise InvalidEventPattern(f"at most {MAX_PATTERNS} patterns", field=field)
    seen: dict[str, EventPattern] = {}
    for index, text in enumerate(texts):
        pattern = EventPattern.parse(text, field=f"{field}.{index}")
        seen.setdefault(pattern.text, pattern)
    return tuple(seen.values())


# --------------------------------------------------------------------------- who may subscribe


@dataclass(frozen=True)
class SubscriptionScope:
    """What a subscription may receive beyond its patterns: ``areas`` None means every area;
    otherwise only events whose ``additionalInformation.area`` is one of them."""

    areas: frozenset[str] | None
    cohort_events_only: bool


def authorise_subscription(
    roles: Collection[str],
    areas_claim: Collection[str] | None,
    patterns: Sequence[EventPattern],
    *,
    requested_areas: Collection[str] | None = None,
    field: str = "event_types",
) -> SubscriptionScope:
    """The scope a caller may subscribe with, or ``SubscriptionForbidden`` (403).

    - ``admin``: any pattern, every area (or the ``requested_areas``).
    - ``police``: only patterns that can match nothing but cohort events, and only the areas
      of its token's ``areas`` claim (or some of them). A police token without an ``areas``
      claim may not subscribe: police are not a national role.
    - anyone else: refused.
    """
    requested = expand_areas(tuple(requested_areas)) if requested_areas is not None else None
    if requested is not None:
        unknown = sorted(requested - frozenset(AREAS))
        if unknown:
            raise InvalidValue(f"unknown area {unknown[0]!r}", field="areas")
        if not requested:
            raise InvalidValue("areas, when given, name at least one area", field="areas")
    if Role.ADMIN.value in roles:
        return SubscriptionScope(areas=requested, cohort_events_only=False)
    if Role.POLICE.value not in roles:
        raise SubscriptionForbidden("only admin and police may subscribe to events")
    for index, pattern in enumerate(patterns):
        if not pattern.cohort_events_only:
            raise SubscriptionForbidden(
                f"police may subscribe to cohort events only ('{COHORT_STREAM_TOKEN}.…'), "
                f"not {pattern.text!r}",
                field=f"{field}.{index}",
            )
    allowed = expand_areas(tuple(areas_claim or ()))
    if not allowed:
        raise SubscriptionForbidden("a police subscription needs areas in the token's claim")
    if requested is None:
        return SubscriptionScope(areas=allowed, cohort_events_only=True)
    outside = sorted(requested - allowed)
    if outside:
        raise SubscriptionForbidden(
            f"area {outside[0]} is not one of the caller's areas", field="areas"
        )
    return SubscriptionScope(areas=requested, cohort_events_only=True)


# --------------------------------------------------------------------------- who receives


@dataclass(frozen=True)
class Subscription:
    """What routing needs of a stored subscription."""

    id: uuid.UUID
    patterns: tuple[EventPattern, ...]
    scope: SubscriptionScope
    active: bool = True

    def wants(self, event_type: str, area: str | None) -> bool:
        if not self.active:
            return False
        if self.scope.cohort_events_only and not event_type.startswith(COHORT_STREAM_TOKEN + "."):
            return False
        if self.scope.areas is not None and area not in self.scope.areas:
            return False
        return any(pattern.matches(event_type) for pattern in self.patterns)


def decide_webhooks(
    event: InboundEvent, subscriptions: Iterable[Subscription]
) -> tuple[NotificationIntent, ...]:
    """One webhook intent per active subscription that wants the event, keyed by event id +
    subscription id so a redelivered event never makes a second delivery."""
    intents = []
    for subscription in sorted(subscriptions, key=lambda s: str(s.id)):
        if subscription.wants(event.event_type, event.area):
            recipient = Recipient(RecipientRole.SUBSCRIBER, str(subscription.id))
            intents.append(
                NotificationIntent(
                    idempotency_key=idempotency_key(event.id, recipient),
                    event_id=event.id,
                    event_type=event.event_type,
                    kind=NotificationKind.WEBHOOK,
                    recipient=recipient,
                    referral_id=event.referral_id,
                )
            )
    return tuple(intents)


# --------------------------------------------------------------------------- SSRF


@dataclass(frozen=True)
class SubscriberUrl:
    url: str
    scheme: str
    host: str
    port: int


MAX_URL_LENGTH = 2048


def parse_subscriber_url(url: str, *, allow_private: bool, field: str = "url") -> SubscriberUrl:
    """A subscriber URL's parts, or ``UnsafeSubscriberUrl`` (422).

    Production (``allow_private`` false) takes ``https`` only; development also ``http``.
    Credentials in the URL are refused (they would be logged and shown)."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeSubscriberUrl(f"a URL has 1 to {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeSubscriberUrl(f"not a valid URL: {exc}", field=field) from exc
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes:
        raise UnsafeSubscriberUrl(
            f"the URL scheme must be {' or '.join(allowed_schemes)}", field=field
        )
    if parts.username is not None or parts.password is not None:
        raise UnsafeSubscriberUrl("credentials in the URL are not accepted", field=field)
    if not parts.hostname:
        raise UnsafeSubscriberUrl("the URL has no host", field=field)
    if any(char.isspace() for char in url):
        raise UnsafeSubscriberUrl("the URL contains white space", field=field)
    return SubscriberUrl(
        url=url,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else (443 if parts.scheme == "https" else 80),
    )


def check_resolved_addresses(
    addresses: Iterable[str], *, allow_private: bool, field: str = "url"
) -> tuple[str, ...]:
    """The addresses a subscriber host resolved to, if every one may be called.

    Production refuses a host if any of its addresses is not globally routable (private,
    loopback, link-local, shared, reserved, documentation...), IPv4-mapped IPv6 included:
    one bad address is enough, since the connection may pick it. Development allows those,
    but never unspecified or multicast addresses, which are not web servers. The caller
    connects to the returned addresses, not to a second resolution (DNS rebinding)."""
    checked = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError as exc:
            raise UnsafeSubscriberUrl(f"{text!r} is not an IP address", field=field) from exc
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified or address.is_multicast:
            raise UnsafeSubscriberUrl(
                f"the URL's host resolves to {address}, which cannot be called", field=field
            )
        if not allow_private and not address.is_global:
            raise UnsafeSubscriberUrl(
                f"the URL's host resolves to a private, loopback or link-local address "
                f"({address}); refused outside development",
                field=field,
            )
        checked.append(str(address))
    if not checked:
        raise UnsafeSubscriberUrl("the URL's host does not resolve", field=field)
    return tuple(checked)


# --------------------------------------------------------------------------- failing subscribers


@dataclass(frozen=True)
class DisablePolicy:
    """A subscription is disabled when its last ``min_failures`` attempts or more all failed
    and the failures have lasted ``min_period`` or more (one event retried over hours
    reaches both), or at once when the receiver answers ``410 Gone``."""

    min_failures: int = 10
    min_period: timedelta = timedelta(hours=12)

    def __post_init__(self) -> None:
        if self.min_failures < 1 or self.min_period < timedelta(0):
            raise ValueError("min_failures >= 1 and min_period >= 0")


@dataclass(frozen=True)
class SubscriptionHealth:
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class HealthVerdict:
    health: SubscriptionHealth
    disable_reason: str | None

    @property
    def disable(self) -> bool:
        return self.disable_reason is not None


GONE = 410


def record_webhook_attempt(
    health: SubscriptionHealth,
    outcome: AttemptOutcome,
    now: datetime,
    policy: DisablePolicy = DisablePolicy(),
) -> HealthVerdict:
    """The subscription's health after one attempt, and why to disable it, if it should be."""
    if outcome.kind is OutcomeKind.SUCCESS:
        return HealthVerdict(SubscriptionHealth(), None)
    failing_since = health.failing_since or now
    after = SubscriptionHealth(
        consecutive_failures=health.consecutive_failures + 1,
        failing_since=failing_since,
        last_error=outcome.detail,
    )
    if outcome.status_code == GONE:
        return HealthVerdict(after, "the receiver answered 410 Gone: it no longer takes events")
    if (
        after.consecutive_failures >= policy.min_failures
        and now - failing_since >= policy.min_period
    ):
        return HealthVerdict(
            after,
            f"{after.consecutive_failures} consecutive failed attempts since "
            f"{failing_since.isoformat()}; last error: {outcome.detail}",
        )
    return HealthVerdict(after, None)
