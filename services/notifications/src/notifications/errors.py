"""The notifications service's errors: each a `PathwaysError` with its own status, code and
title; a validation failure names the ``field`` at fault (a dotted path inside the body)."""

from __future__ import annotations

from pathways_shared import errors
from pathways_shared.errors import InvalidValue, PathwaysError

__all__ = [
    "IllegalTransition", "InvalidEventPattern", "InvalidSignature", "InvalidValue",
    "InvalidWebhookSecret", "RecipientUnresolvable", "SubscriptionForbidden", "TemplateError",
    "UnparseableEvent", "UnsafeSubscriberUrl",
]


class InvalidEventPattern(InvalidValue):
    code = "invalid-event-pattern"
    title = "Invalid event type pattern"


class UnsafeSubscriberUrl(InvalidValue):
    code = "unsafe-subscriber-url"
    title = "Subscriber URL refused"


class InvalidWebhookSecret(InvalidValue):
    code = "invalid-webhook-secret"
    title = "Invalid webhook secret"


class InvalidSignature(PathwaysError):
    """A webhook signature that does not verify (used by verifiers, e.g. tests and partners)."""

    status = 401
    code = "invalid-signature"
    title = "Webhook signature does not verify"


class UnparseableEvent(InvalidValue):
    """A consumed event this service cannot understand: it goes to the dead letter store."""

    code = "unparseable-event"
    title = "Event cannot be parsed"


class SubscriptionForbidden(PathwaysError):
    status = 403
    code = "subscription-forbidden"
    title = "Subscription not allowed for this caller"


class IllegalTransition(errors.IllegalTransition):
    title = "Transition not allowed"


class RecipientUnresolvable(PathwaysError):
    """No address is known for a recipient: the delivery fails visibly, it is never dropped."""

    status = 422
    code = "recipient-unresolvable"
    title = "No address for recipient"


class TemplateError(PathwaysError):
    status = 500
    code = "template-error"
    title = "Notification template cannot be rendered"
