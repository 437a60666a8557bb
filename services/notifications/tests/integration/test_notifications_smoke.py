"""The notifications service on real PostgreSQL and NATS: migrated, healthy, its outbox reaches
JetStream and the consumer machinery on its database sees what arrives."""

from __future__ import annotations

from pathways_shared.testing import check_outbox_round_trip


async def test_ready_live_and_metrics(client):
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert "pathways_http_requests_total" in (await client.get("/metrics")).text
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Pathways notifications service"


async def test_outbox_reaches_nats_and_a_consumer_sees_it(app, nc, subject_prefix):
    await check_outbox_round_trip(app, nc, subject_prefix, "notifications")
