from pathways_shared.testing import check_outbox_round_trip


async def test_health_and_ready(client):
    assert (await client.get("/health/live")).json() == {"status": "up"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text


async def test_outbox_and_consumer_round_trip(app, nc, subject_prefix):
    await check_outbox_round_trip(app, nc, subject_prefix, "insights")
