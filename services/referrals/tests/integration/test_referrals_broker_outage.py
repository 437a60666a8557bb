"""With NATS down, probation can still submit: the referral and its event are committed
together (outbox), and the event reaches JetStream, once, when NATS is back."""

from __future__ import annotations

import httpx
import nats

from pathways_shared.testing import auth, running, stream_events
from referrals.app import create_app


async def test_a_submission_during_a_broker_outage_is_published_when_it_returns(
    settings, private_nats, referral_body
):
    app = create_app(settings.model_copy(update={"nats_url": private_nats.url}))
    async with running(app):
        private_nats.stop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referrals.test") as c:
            response = await c.post("/referrals", json=referral_body(), headers=auth("probation"))
            assert response.status_code == 201, response.text
            private_nats.start()  # same port, same storage
            check = await nats.connect(private_nats.url)
            try:
                events = await stream_events(
                    check.jetstream(), "REFERRALS", settings.subject_prefix, expect=1, timeout=20
                )
            finally:
                await check.close()
    assert [(e.event_type, e.additional_information["referralId"]) for e in events] == [
        ("referrals.referral.submitted", response.json()["id"])
    ]
