"""Sending one claimed delivery, outside any transaction: an email (rendered with the
referral's contacts, read once per round, over the round's one SMTP connection) or a webhook
(signed, to a destination checked against private addresses). Each answers an
`AttemptResult`; the worker has the outcome recorded (`notifications.outcomes`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import repository
from notifications.config import NotificationsSettings
from notifications.contacts import (
    ContactsMissing,
    ContactsUnavailable,
    ReferralContactsClient,
    ReferralRecord,
)
from notifications.domain.delivery import (
    AttemptOutcome,
    permanent_failure,
    transport_failure,
)
from notifications.domain.intents import (
    Contacts,
    email_message_id,
    parse_envelope,
    resolve_address,
)
from notifications.domain.templates import RenderContext, render_email
from notifications.domain.webhooks import webhook_headers
from notifications.errors import (
    UnsafeSubscriberUrl,
)
from notifications.models import NotificationRow
from notifications.repository import NotificationsRepository
from notifications.secretbox import SecretBox
from notifications.transports import (
    Resolver,
    SmtpSession,
    SmtpSettings,
    build_email,
    check_destination,
    machine_hostname,
    post_webhook,
    resolve_host,
)
from pathways_shared.clock import utc_now
from pathways_shared.db import transaction
from pathways_shared.errors import PathwaysError
from pathways_shared.observability import get_logger

log = get_logger(__name__)


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


class Sender:
    """Sends one delivery and says how it went; writes nothing (the worker records it)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        *,
        http: httpx.AsyncClient,
        resolver: Resolver = resolve_host,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.http = http
        self.resolver = resolver
        self.clock = clock
        self.box = SecretBox(settings.secret_key)
        # No retries here: a delivery whose contacts are unavailable is tried again later.
        self.referrals = ReferralContactsClient(settings, settings.referrals_url, retries=0, http=http)
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

    async def read_referrals(
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


    async def smtp_settings(self) -> SmtpSettings:
        if self.smtp.local_hostname is None:  # looked up once, not for every connection
            self.smtp = replace(self.smtp, local_hostname=await machine_hostname())
        return self.smtp


    async def send_email(self, row: NotificationRow, round_: DeliveryRound) -> AttemptResult:
        intent = repository.intent_of(row)
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

    async def send_webhook(self, row: NotificationRow) -> AttemptResult:
        async with transaction(self.sessionmaker) as session:
            subscription = (
                await NotificationsRepository(session).get_subscription(row.subscription_id)
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
