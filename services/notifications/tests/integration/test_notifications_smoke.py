"""The notifications service on real PostgreSQL and NATS: migrated, healthy, its outbox reaches
JetStream and the consumer machinery on its database sees what arrives."""

from __future__ import annotations

from pathways_shared.testing import check_health, check_outbox_round_trip


async def test_ready_live_and_metrics(client):
    await check_health(client, "notifications")


async def test_outbox_reaches_nats_and_a_consumer_sees_it(app, nc, subject_prefix):
    await check_outbox_round_trip(app, nc, subject_prefix, "notifications")
