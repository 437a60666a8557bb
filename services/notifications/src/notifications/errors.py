"""Domain errors of the notifications service.

Each error carries what a problem-details handler needs (RFC 9457): an HTTP-ish ``status``,
a stable ``code`` (used as the problem ``type`` suffix), a ``title``, a ``detail`` and, for
validation failures, the ``field`` at fault (a dotted path inside the request body).
"""

from __future__ import annotations


class NotificationsError(Exception):
    status: int = 400
    code: str = "notifications-error"
    title: str = "Notifications error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    @property
    def errors(self) -> list[dict[str, str]]:
        """Field errors in the contract's shape; empty when no single field is at fault."""
        if self.field is None:
            return []
        return [{"field": self.field, "message": self.detail}]


class InvalidValue(NotificationsError):
    status = 422
    code = "invalid-value"
    title = "Invalid value"


class InvalidEventPattern(InvalidValue):
    code = "invalid-event-pattern"
    title = "Invalid event type pattern"


class UnsafeSubscriberUrl(InvalidValue):
    code = "unsafe-subscriber-url"
    title = "Subscriber URL refused"


class InvalidWebhookSecret(InvalidValue):
    code = "invalid-webhook-secret"
    title = "Invalid webhook secret"


class InvalidSignature(NotificationsError):
    """A webhook signature that does not verify (used by verifiers, e.g. tests and partners)."""

    status = 401
    code = "invalid-signature"
    title = "Webhook signature does not verify"


class UnparseableEvent(InvalidValue):
    """A consumed event this service cannot understand: it goes to the dead letter store."""

    code = "unparseable-event"
    title = "Event cannot be parsed"


class SubscriptionForbidden(NotificationsError):
    status = 403
    code = "subscription-forbidden"
    title = "Subscription not allowed for this caller"


class IllegalTransition(NotificationsError):
    status = 409
    code = "illegal-transition"
    title = "Transition not allowed"


class RecipientUnresolvable(NotificationsError):
    """No address is known for a recipient: the delivery fails visibly, it is never dropped."""

    status = 422
    code = "recipient-unresolvable"
    title = "No address for recipient"


class TemplateError(NotificationsError):
    status = 500
    code = "template-error"
    title = "Notification template cannot be rendered"
