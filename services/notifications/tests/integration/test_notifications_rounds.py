"""One round of the delivery worker, driven by hand over the real PostgreSQL, the SMTP server
and the referrals stand-in: its emails share one SMTP connection and one read of each
referral, and every message still gets the outcome it would have had on its own."""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from sqlmodel import select

from notifications import service
from notifications.app import create_app
from notifications.domain.templates import EmailContent
from notifications.models import NotificationRow
from notifications.scheduler import Deliverer
from notifications.transports import SmtpSession, SmtpSettings, build_email
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.testing import auth, free_port, running

SOLIHULL = "E08000029"
REFERRAL_ID = "11111111-1111-4111-8111-111111111111"
NEED_ID = "22222222-2222-4222-8222-222222222222"
OTHER_NEED_ID = "33333333-3333-4333-8333-333333333333"
PROVIDER_REFERRAL_ID = "55555555-5555-4555-8555-555555555555"
ADMIN = auth("admin")


def allocated():
    """Two emails: the practitioner and the provider's mailbox."""
    return make_event(
        "providers.referral.allocated",
        {
            "referralId": REFERRAL_ID, "needId": NEED_ID,
            "providerReferralId": PROVIDER_REFERRAL_ID, "serviceCode": "CRS-ACC-M",
            "providerCode": "NACRO", "programme": "CRS", "pathway": "accommodation",
            "area": SOLIHULL, "acknowledgeBy": "2026-11-26T23:59:59.000Z",
            "respondBy": "2026-12-01T23:59:59.000Z",
        },
        crn="X123456",
    )  # fmt: skip


def submitted():
    """One email: the area's housing team (Duty to Refer)."""
    return make_event(
        "referrals.referral.submitted",
        {
            "referralId": REFERRAL_ID, "area": SOLIHULL,
            "needs": [
                {"needId": NEED_ID, "pathway": "accommodation", "complexity": "medium",
                 "flags": ["at_risk_of_homelessness"]},
                {"needId": OTHER_NEED_ID, "pathway": "drugs_alcohol", "complexity": "low",
                 "flags": []},
            ],
            "sex": "male", "ageOnSubmission": 36, "supervisionStatus": "licence",
            "rosh": "medium", "mappaLevel": None,
        },
        crn="X123456",
    )  # fmt: skip


@asynccontextmanager
async def worker_by_hand(make_settings, **overrides):
    """The app without its worker loop, a Deliverer to run rounds, and an API client."""
    settings = make_settings(run_workers=False, **overrides)
    application = create_app(settings)
    async with (
        running(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://n"
        ) as client,
        httpx.AsyncClient(timeout=5) as http,
    ):
        sessionmaker = application.state.sessionmaker
        deliverer = Deliverer(sessionmaker, settings, http=http)

        async def take(*events):
            for event in events:
                async with transaction(sessionmaker) as session:
                    await service.take_event(session, event)

        yield deliverer, take, client


async def delivery_log(client):
    response = await client.get("/notifications", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_the_emails_of_a_round_share_one_connection_and_one_read_of_the_referral(
    make_settings, smtp_server, referrals_stub
):
    async with worker_by_hand(make_settings) as (deliverer, take, client):
        await take(allocated(), submitted())

        assert await deliverer.run_once() == 3

        log = await delivery_log(client)
    assert [n["status"] for n in log] == ["delivered"] * 3
    assert len(smtp_server.messages) == 3
    assert len(set(smtp_server.connections)) == 1
    assert [r.path for r in referrals_stub.requests] == [f"/referrals/{REFERRAL_ID}"]


async def test_the_referral_is_read_again_in_the_next_round(
    make_settings, smtp_server, referrals_stub
):
    """Nothing about the person outlives the round that needed it."""
    async with worker_by_hand(make_settings) as (deliverer, take, _client):
        await take(allocated())
        assert await deliverer.run_once() == 2
        await take(submitted())
        assert await deliverer.run_once() == 1

    assert len(referrals_stub.requests) == 2
    assert len(smtp_server.messages) == 3
    assert len(set(smtp_server.connections)) == 2  # one per round, closed at its end


async def test_a_connection_dropped_mid_round_is_reopened_and_nothing_is_lost_or_doubled(
    make_settings, smtp_server
):
    smtp_server.hang_up_after_next = 1
    async with worker_by_hand(make_settings) as (deliverer, take, client):
        await take(allocated(), submitted())

        assert await deliverer.run_once() == 3

        log = await delivery_log(client)
    assert [(n["status"], n["attempts"]) for n in log] == [("delivered", 1)] * 3
    message_ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(message_ids) == len(set(message_ids)) == 3
    assert len(set(smtp_server.connections)) == 2


async def test_a_refused_message_leaves_the_others_of_the_round_to_go_through(
    make_settings, smtp_server
):
    smtp_server.refuse_next = 1
    smtp_server.refuse_code = "550 5.1.1 mailbox unavailable"
    async with worker_by_hand(make_settings) as (deliverer, take, client):
        await take(allocated(), submitted())

        assert await deliverer.run_once() == 3

        log = await delivery_log(client)
    assert sorted(n["status"] for n in log) == ["delivered", "delivered", "failed"]
    (failed,) = [n for n in log if n["status"] == "failed"]
    assert failed["last_error"] == "SMTP 550 5.1.1 mailbox unavailable"
    assert [a["outcome"] for a in failed["attempt_log"]] == ["permanent"]
    assert len(smtp_server.messages) == 2
    assert len(set(smtp_server.connections)) == 1


async def test_a_busy_reply_is_retried_for_that_message_only(make_settings, smtp_server):
    smtp_server.refuse_next = 1  # 451: try again later
    async with worker_by_hand(make_settings) as (deliverer, take, client):
        await take(allocated(), submitted())

        assert await deliverer.run_once() == 3

        log = await delivery_log(client)
    assert sorted(n["status"] for n in log) == ["delivered", "delivered", "retrying"]
    (waiting,) = [n for n in log if n["status"] == "retrying"]
    assert waiting["last_error"] == "SMTP 451 4.3.0 try again later"


async def test_an_unreachable_mail_server_leaves_every_email_of_the_round_to_retry(
    make_settings, referrals_stub
):
    async with worker_by_hand(make_settings, smtp_port=free_port()) as (deliverer, take, client):
        await take(allocated(), submitted())

        assert await deliverer.run_once() == 3

        log = await delivery_log(client)
    assert [n["status"] for n in log] == ["retrying"] * 3
    for row in log:
        assert row["last_error"].startswith("SMTP unreachable: ")
        assert [a["outcome"] for a in row["attempt_log"]] == ["retryable"]


async def test_the_ehlo_name_is_the_configured_one(make_settings, smtp_server):
    async with worker_by_hand(make_settings, smtp_local_hostname="mailer.pathways.test") as (
        deliverer,
        take,
        _client,
    ):
        await take(allocated())
        assert await deliverer.run_once() == 2

    assert smtp_server.ehlo_names == ["mailer.pathways.test"] * 2


async def test_the_ehlo_name_defaults_to_the_machines(make_settings, smtp_server):
    async with worker_by_hand(make_settings) as (deliverer, take, _client):
        await take(allocated())
        assert await deliverer.run_once() == 2

    assert smtp_server.ehlo_names == [socket.getfqdn()] * 2


async def test_a_message_whose_turn_comes_too_late_is_not_started(smtp_server):
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_server.port, sender="p@pathways.example")
    message = build_email(
        smtp,
        to="alex.officer@probation.example",
        content=EmailContent(subject="s", body="b"),
        message_id="<late@pathways.example>",
        sent_at=datetime.now(UTC),
    )
    async with SmtpSession(smtp, start_by=asyncio.get_running_loop().time() - 1) as mail:
        outcome = await mail.send(message)

    assert outcome.kind.value == "retryable"
    assert outcome.detail.startswith("not sent:")
    assert smtp_server.messages == []


async def test_one_outcome_that_cannot_be_recorded_does_not_hold_back_the_others(
    make_settings, smtp_server
):
    """The round's outcomes are recorded together; if that fails, each on its own."""
    async with worker_by_hand(make_settings) as (deliverer, take, client):
        await take(allocated())
        async with transaction(deliverer.sessionmaker) as session:
            query = select(NotificationRow).where(NotificationRow.recipient_role == "practitioner")
            practitioner = (await session.exec(query)).one()
            practitioner.event_payload = "{}"  # fails to send, and then to be recorded

        assert await deliverer.run_once() == 2

        log = {n["recipient_role"]: n for n in await delivery_log(client)}
    assert log["provider_mailbox"]["status"] == "delivered"
    assert log["practitioner"]["status"] == "sending"  # sent again when its lease expires
    assert len(smtp_server.messages) == 1
