"""End to end through the real PostgreSQL, NATS JetStream, an SMTP server and HTTP receivers:
events published on the bus become emails and signed webhooks, exactly once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from notifications import service
from notifications.app import create_app
from notifications.domain.intents import Recipient, RecipientRole, idempotency_key
from notifications.scheduler import Deliverer
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.infra_models import DeadLetter
from pathways_shared.testing import auth, running, stream_events, wait_until

from .flows import (
    ADMIN,
    BIRMINGHAM,
    NACRO,
    NEED_ID,
    OTHER_NEED_ID,
    PRACTITIONER,
    PROVIDER_REFERRAL_ID,
    REFERRAL_ID,
    SIAS,
    SOLIHULL,
    SOLIHULL_HOUSING,
    allocated,
    cohort_selected,
    consumed,
    emails_to,
    notifications,
    publish,
    settled,
    submitted,
    subscribe,
)

# --------------------------------------------------------------------------- emails


EMAILS = [
    (
        lambda: allocated(),
        [
            (PRACTITIONER, "Pathways: Accommodation need allocated to CRS-ACC-M",
             "The Accommodation need of your referral for X123456 has been allocated."),
            (NACRO, "Pathways: new referral for CRS-ACC-M (Accommodation)",
             f"Provider referral:    {PROVIDER_REFERRAL_ID}"),
        ],
    ),
    (
        lambda: make_event(
            "providers.referral.unallocated",
            {"referralId": REFERRAL_ID, "needId": NEED_ID, "reason": "no eligible service",
             "pathway": "accommodation", "area": SOLIHULL},
            crn="X123456",
        ),
        [(PRACTITIONER, "Pathways: no service found for the Accommodation need",
          "Reason:               no eligible service")],
    ),
    (
        lambda: make_event(
            "providers.referral.declined",
            {"referralId": REFERRAL_ID, "needId": NEED_ID,
             "providerReferralId": PROVIDER_REFERRAL_ID, "reasonCode": "capacity",
             "serviceCode": "CRS-ACC-M"},
            crn="X123456",
        ),
        [(PRACTITIONER, "Pathways: Accommodation need declined by CRS-ACC-M",
          "Reason:               the service has no capacity")],
    ),
    (
        lambda: make_event(
            "providers.referral.deadline-missed",
            {"referralId": REFERRAL_ID, "needId": NEED_ID,
             "providerReferralId": PROVIDER_REFERRAL_ID, "deadline": "respond",
             "dueAt": "2026-12-01T23:59:59.000Z", "serviceCode": "CRS-ACC-M",
             "providerCode": "NACRO"},
            crn="X123456",
        ),
        [
            (PRACTITIONER, "Pathways: Accommodation referral not accepted or declined in time",
             "Was due by:           Tuesday 1 December 2026 at 23:59 (UK time)"),
            (NACRO,
             f"Pathways reminder: referral {PROVIDER_REFERRAL_ID} not yet accepted or declined",
             "Please act on it in your Pathways inbox now."),
        ],
    ),
    (
        lambda: submitted(),
        [(SOLIHULL_HOUSING, "Duty to Refer: person at risk of homelessness in Solihull",
          "Name:                 Sam Example")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "expected"), EMAILS, ids=["allocated", "unallocated", "declined", "deadline", "dtr"]
)
async def test_each_event_emails_the_right_people_with_the_right_words(
    app, client, nc, subject_prefix, smtp_server, make, expected
):
    event = make()

    await publish(nc, subject_prefix, event)

    for address, subject, line in expected:
        (message,) = await emails_to(smtp_server, address)
        assert message["Subject"] == subject
        assert message["From"] == "Pathways <no-reply@pathways.example>"
        assert line in message.get_content()
    log = await settled(client, len(expected), referral_id=REFERRAL_ID)
    assert {n["status"] for n in log} == {"delivered"}
    assert len(smtp_server.messages) == len(expected)


async def test_the_message_id_is_the_idempotency_key(app, nc, subject_prefix, smtp_server):
    event = allocated()

    await publish(nc, subject_prefix, event)

    (message,) = await emails_to(smtp_server, PRACTITIONER)
    key = idempotency_key(event.id, Recipient(RecipientRole.PRACTITIONER, REFERRAL_ID))
    assert message["Message-ID"].strip() == f"<{key}@notifications.pathways.example>"


async def test_provider_mailboxes_get_no_crn_or_name(app, nc, subject_prefix, smtp_server):
    await publish(nc, subject_prefix, allocated())

    (message,) = await emails_to(smtp_server, NACRO)
    text = message["Subject"] + message.get_content()
    assert "X123456" not in text and "Sam" not in text and "Alex Officer" not in text


async def test_withdrawal_tells_each_provider_holding_a_need(
    app, client, nc, subject_prefix, smtp_server
):
    await publish(nc, subject_prefix, allocated(NEED_ID, "NACRO"))
    await publish(nc, subject_prefix, allocated(OTHER_NEED_ID, "SIAS", "DA-SIAS"))
    await emails_to(smtp_server, PRACTITIONER, 2)
    await emails_to(smtp_server, SIAS)

    withdrawn = make_event(
        "referrals.referral.withdrawn",
        {"referralId": REFERRAL_ID, "needIds": [NEED_ID, OTHER_NEED_ID],
         "reasonCode": "moved_out_of_area"},
        crn="X123456",
    )  # fmt: skip
    await publish(nc, subject_prefix, withdrawn)

    nacro = await emails_to(smtp_server, NACRO, 2)
    sias = await emails_to(smtp_server, SIAS, 2)
    assert nacro[-1]["Subject"] == "Pathways: referral withdrawn (Accommodation)"
    assert sias[-1]["Subject"] == "Pathways: referral withdrawn (Drugs and alcohol)"
    assert "Reason:               the person has moved out of the area" in nacro[-1].get_content()


async def test_duty_to_refer_flow_publishes_duty_to_refer_sent(
    app, client, nc, subject_prefix, smtp_server
):
    event = submitted()

    await publish(nc, subject_prefix, event)

    (notice,) = await emails_to(smtp_server, SOLIHULL_HOUSING)
    assert "They have consented to this" in notice.get_content()
    assert "  alex.officer@probation.example" in notice.get_content()
    events = await stream_events(nc.jetstream(), "NOTIFICATIONS", subject_prefix, expect=1)
    sent = [e for e in events if e.event_type == "notifications.duty-to-refer.sent"]
    assert len(sent) == 1
    assert sent[0].additional_information == {
        "referralId": REFERRAL_ID, "needId": NEED_ID, "area": SOLIHULL,
    }  # fmt: skip
    assert sent[0].crn == "X123456"
    assert "Sam" not in sent[0].to_json().decode()


async def test_no_duty_to_refer_without_the_flag(
    app, client, nc, subject_prefix, smtp_server, sessionmaker
):
    event = submitted(flags=())

    await publish(nc, subject_prefix, event)

    await consumed(sessionmaker, event)
    assert await notifications(client) == []
    assert smtp_server.messages == []


async def test_an_area_without_a_housing_team_fails_visibly(
    make_settings, nc, subject_prefix, smtp_server
):
    app = create_app(make_settings(housing_teams={}))
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client,
    ):
        await publish(nc, subject_prefix, submitted())

        async def failed():
            log = await notifications(client, status="failed")
            return log or None

        (row,) = await wait_until(failed)
        # read while the app (and its relay) still runs: the event leaves through the outbox
        # after the failure is recorded, and a stopped relay publishes nothing
        events = await stream_events(nc.jetstream(), "NOTIFICATIONS", subject_prefix, expect=1)
    assert row["kind"] == "duty_to_refer"
    assert (
        row["last_error"] == "no email address is configured for the housing team of area E08000029"
    )
    assert row["attempt_log"][0]["outcome"] == "permanent"
    assert [e.event_type for e in events] == ["notifications.delivery.failed"]


async def test_a_refused_recipient_fails_without_retrying(
    app, client, nc, subject_prefix, smtp_server
):
    smtp_server.refuse_next = 1
    smtp_server.refuse_code = "550 5.1.1 mailbox unavailable"
    await publish(nc, subject_prefix, submitted())

    async def failed():
        return await notifications(client, status="failed") or None

    (row,) = await wait_until(failed)
    assert row["attempts"] == 1
    assert row["last_error"].startswith("SMTP 550")


async def test_a_busy_mail_server_is_retried(app, client, nc, subject_prefix, smtp_server):
    smtp_server.refuse_next = 1  # 451: try again later
    await publish(nc, subject_prefix, submitted())

    await emails_to(smtp_server, SOLIHULL_HOUSING)

    async def delivered():
        return await notifications(client, status="delivered") or None

    (row,) = await wait_until(delivered)
    assert [a["outcome"] for a in row["attempt_log"]] == ["retryable", "success"]


# --------------------------------------------------------------------------- webhooks


async def test_webhook_is_signed_by_the_standard(app, client, nc, subject_prefix, receiver,
                                                 verify_webhook):  # fmt: skip
    subscription = await subscribe(client, f"{receiver.url}/hook", ["cohorts.member.*"])
    event = cohort_selected()

    await publish(nc, subject_prefix, event)

    (request,) = await wait_until(lambda: _received(receiver, 1))
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["webhook-id"] == str(event.id)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30
    assert request.headers["content-type"] == "application/json"
    verify_webhook(subscription["secret"], request.headers, request.body)
    assert request.json() == json.loads(event.to_json())


async def _received(receiver, count):
    return receiver.requests if len(receiver.requests) >= count else None


async def test_a_redelivered_event_sends_one_email_and_one_webhook(
    app, client, nc, subject_prefix, smtp_server, receiver, sessionmaker
):
    await subscribe(client, f"{receiver.url}/hook", ["providers.>"])
    event = allocated()
    marker = make_event(
        "providers.referral.acknowledged",
        {"referralId": REFERRAL_ID, "needId": NEED_ID, "providerReferralId": PROVIDER_REFERRAL_ID},
    )

    await publish(nc, subject_prefix, event, msg_id="first")
    await publish(nc, subject_prefix, event, msg_id="second")  # past the broker's dedupe
    await publish(nc, subject_prefix, marker)  # read after the copy, in stream order

    await consumed(sessionmaker, event, marker)
    await settled(client, 4)
    assert len(smtp_server.to(PRACTITIONER)) == 1
    assert len(smtp_server.to(NACRO)) == 1
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        [str(event.id), str(marker.id)]
    )


async def test_retries_then_success(app, client, nc, subject_prefix, receiver):
    answers = iter([500, 503])
    receiver.respond = lambda r: (next(answers, 200), b"{}")
    await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"])

    await publish(nc, subject_prefix, cohort_selected())

    async def delivered():
        return await notifications(client, status="delivered") or None

    (row,) = await wait_until(delivered)
    assert row["attempts"] == 3
    assert [(a["outcome"], a["status_code"]) for a in row["attempt_log"]] == [
        ("retryable", 500), ("retryable", 503), ("success", 200),
    ]  # fmt: skip
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    # A marker published after the success is delivered by a later round of the worker: had
    # the delivered row stayed due, that round would have sent it again.
    marker = cohort_selected(crn="X654321")
    await publish(nc, subject_prefix, marker)
    await wait_until(lambda: _received(receiver, 4))
    await settled(client, 2)
    assert [r.headers["webhook-id"] for r in receiver.requests].count(str(row["event_id"])) == 3
    assert [r.headers["webhook-id"] for r in receiver.requests][-1] == str(marker.id)
    assert len(receiver.requests) == 4  # never again after the 2xx


async def test_each_webhook_that_reached_its_receiver_is_a_logged_disclosure(
    app, client, nc, subject_prefix, receiver, sessionmaker
):
    """DPA 2018 s.62: the event's identifiers went to an outside receiver, answered 500 or
    200; each attempt is a disclosure in the access log, found by the person's CRN."""
    from pathways_shared.access import Action, access_log_for

    answers = iter([500])
    receiver.respond = lambda r: (next(answers, 200), b"{}")
    subscription = await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"])
    event = cohort_selected(crn="X777777")

    await publish(nc, subject_prefix, event)
    (row,) = await settled(client, 1)

    async with transaction(sessionmaker) as session:
        logged = await access_log_for(session, "X777777")
    disclosures = [a for a in logged if a.action == Action.DISCLOSURE]
    assert len(disclosures) == 2, [(a.action, a.purpose) for a in logged]
    for entry in disclosures:
        assert entry.resource == f"notification/{row['id']}"
        assert entry.purpose == (
            f"cohorts.member.selected webhook to subscription {subscription['id']}"
        )
        assert entry.actor == "notifications-service"


async def test_persistent_failure_disables_the_subscription_with_a_reason(
    app, client, nc, subject_prefix, receiver, sessionmaker
):
    receiver.respond = lambda r: (500, b"{}")
    subscription = await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"])

    await publish(nc, subject_prefix, cohort_selected())

    async def failed():
        return await notifications(client, status="failed") or None

    (row,) = await wait_until(failed)
    assert row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts; last: HTTP 500"
    response = await client.get(f"/subscriptions/{subscription['id']}", headers=ADMIN)
    body = response.json()
    assert body["active"] is False
    assert body["disabled_reason"].startswith("3 consecutive failed attempts since")
    assert body["disabled_reason"].endswith("last error: HTTP 500")

    later = cohort_selected(crn="Y654321")
    await publish(nc, subject_prefix, later)
    await consumed(sessionmaker, later)
    assert [r["event_id"] for r in await notifications(client)] == [str(row["event_id"])]
    assert len(receiver.requests) == 3  # a disabled subscription gets nothing more


async def test_police_get_cohort_events_of_their_own_areas_only(
    app, client, nc, subject_prefix, receiver, sessionmaker
):
    police = auth("police", areas=[SOLIHULL])
    await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"], headers=police)
    elsewhere = cohort_selected(area=BIRMINGHAM, crn="Y654321")
    ours = cohort_selected(area=SOLIHULL)

    other_stream = allocated()

    await publish(nc, subject_prefix, elsewhere)
    await publish(nc, subject_prefix, other_stream)
    await publish(nc, subject_prefix, ours)

    await consumed(sessionmaker, elsewhere, other_stream, ours)
    webhooks = [r for r in await settled(client, 3) if r["channel"] == "webhook"]
    assert [r["event_id"] for r in webhooks] == [str(ours.id)]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(ours.id)]


async def test_a_crash_between_sending_and_recording_resends_with_the_same_id(
    make_settings, receiver, verify_webhook
):
    """The intent is recorded first; an expired lease means "maybe sent": send again with the
    same webhook-id, and never again once the 2xx is recorded."""
    settings = make_settings(run_workers=False)
    application = create_app(settings)
    event = cohort_selected()
    async with (
        running(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://n"
        ) as client,
        httpx.AsyncClient(timeout=5) as http,
    ):
        subscription = await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"])
        sessionmaker = application.state.sessionmaker
        now = [datetime.now(UTC)]
        deliverer = Deliverer(sessionmaker, settings, http=http, clock=lambda: now[0])
        async with transaction(sessionmaker) as session:
            assert await service.take_event(session, event) == 1

        (claimed,) = await deliverer._claim()  # the intent is recorded: "sending"
        await deliverer.sender.send_webhook(claimed)  # sent... and the process dies here
        assert await deliverer.run_once() == 0  # within the lease nobody sends it again

        now[0] += timedelta(seconds=settings.delivery_lease_seconds + 1)
        assert await deliverer.run_once() == 1  # lease expired: sent again, and recorded
        now[0] += timedelta(days=1)
        assert await deliverer.run_once() == 0  # a recorded 2xx is final

        (row,) = await notifications(client, status="delivered")
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(event.id)] * 2
    for request in receiver.requests:
        verify_webhook(subscription["secret"], request.headers, request.body)
    assert row["attempts"] == 2
    assert [a["outcome"] for a in row["attempt_log"]] == ["interrupted", "success"]


async def test_contact_details_are_fetched_with_a_service_token_and_retried_when_down(
    app, client, nc, subject_prefix, smtp_server, referrals_stub
):
    original = referrals_stub.respond
    calls = []

    def down_once(request):
        calls.append(request)
        return (503, b"{}") if len(calls) == 1 else original(request)

    referrals_stub.respond = down_once

    await publish(nc, subject_prefix, allocated())

    await emails_to(smtp_server, PRACTITIONER)
    await emails_to(smtp_server, NACRO)
    rows = await settled(client, 2, referral_id=REFERRAL_ID)
    assert {r["status"] for r in rows} == {"delivered"}
    # Both emails were in the round whose one read of the referral failed: both wait.
    assert [r["attempts"] for r in rows] == [2, 2]
    for row in rows:
        assert row["attempt_log"][0]["detail"] == "referrals service answered HTTP 503"
    assert all(r.headers["x-token-roles"] == "service" for r in calls[1:])


async def test_an_event_the_rules_cannot_read_is_dead_lettered_and_the_stream_goes_on(
    app, nc, subject_prefix, smtp_server, sessionmaker
):
    broken = make_event(
        "providers.referral.allocated", {"referralId": REFERRAL_ID, "serviceCode": "X"}
    )

    await publish(nc, subject_prefix, broken)
    await publish(nc, subject_prefix, allocated())

    await emails_to(smtp_server, PRACTITIONER)
    async with sessionmaker() as session:
        letters = (await session.exec(select(DeadLetter))).all()
    assert [(d.consumer, d.event_id) for d in letters] == [
        ("notifications-from-providers", str(broken.id))
    ]
    assert "additionalInformation.needId" in letters[0].error


async def test_attempts_are_counted_in_the_metrics(app, client, nc, subject_prefix, smtp_server):
    await publish(nc, subject_prefix, submitted())
    await emails_to(smtp_server, SOLIHULL_HOUSING)

    async def counted():
        text = (await client.get("/metrics")).text
        line = 'pathways_notification_attempts_total{channel="email",outcome="success"} 1.0'
        return line in text

    assert await wait_until(counted)


async def test_a_secret_sealed_with_another_key_fails_visibly(make_settings, receiver):
    settings = make_settings(run_workers=False)
    application = create_app(settings)
    event = cohort_selected()
    async with (
        running(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://n"
        ) as client,
        httpx.AsyncClient(timeout=5) as http,
    ):
        await subscribe(client, f"{receiver.url}/hook", ["cohorts.>"])
        sessionmaker = application.state.sessionmaker
        async with transaction(sessionmaker) as session:
            await service.take_event(session, event)
        rotated = settings.model_copy(update={"secret_key": "another key, not the one it was"})

        assert await Deliverer(sessionmaker, rotated, http=http).run_once() == 1

        (row,) = await notifications(client, status="failed")
    assert row["last_error"] == (
        "the subscription's secret does not open with NOTIFICATIONS_SECRET_KEY"
    )
    assert receiver.requests == []
