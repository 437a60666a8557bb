"""Auth, problem details, the session dependency, health and metrics, through a real app."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import select

from pathways_shared.auth import mint_token
from pathways_shared.outbox import pending_count
from pathways_shared.testing import auth


async def test_missing_token_is_401_problem(client):
    r = await client.post("/pings", json={"note": "x"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 401 and r.json()["title"] == "Unauthorized"


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Basic abc", f"Bearer {mint_token('another-secret-0123456789abcdef-0123456789', roles=['admin'])}"],
)
async def test_bad_token_is_401(client, header):
    r = await client.post("/pings", json={"note": "x"}, headers={"Authorization": header})
    assert r.status_code == 401


async def test_expired_token_is_401(client):
    from pathways_shared.testing import TEST_JWT_SECRET

    expired = mint_token(TEST_JWT_SECRET, roles=["admin"], ttl_seconds=-10)
    r = await client.post("/pings", json={"note": "x"}, headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401


async def test_wrong_role_is_403(client):
    r = await client.post("/pings", json={"note": "x"}, headers=auth("probation"))
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"note": "x", "surprise": 1}, "surprise"),
        ({"note": "x" * 21}, "note"),
        ({}, "note"),
        ({"note": "x", "count": "many"}, "count"),
    ],
)
async def test_validation_errors_name_the_field(client, body, field):
    r = await client.post("/pings", json=body, headers=auth("admin"))
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_malformed_json_is_422_not_500(client):
    r = await client.post("/pings", content=b"{oops", headers={**auth("admin"), "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body"


async def test_domain_error_keeps_its_status_and_writes_nothing(client, app):
    r = await client.post("/pings", json={"note": "conflict"}, headers=auth("admin"))
    assert r.status_code == 409 and r.json()["detail"] == "a conflict on purpose"
    async with app.state.runtime.sessionmaker() as session:
        assert await pending_count(session) == 0


async def test_unexpected_error_is_500_problem_without_trace_and_rolls_back(client, app, effect_model):
    Effect = effect_model
    r = await client.post("/pings", json={"note": "boom"}, headers=auth("admin"))
    assert r.status_code == 500
    body = r.json()
    assert body["title"] == "Internal error" and "Traceback" not in r.text and "RuntimeError" not in r.text
    async with app.state.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Effect)) == 0


async def test_correlation_id_is_echoed_and_carried_into_the_outbox(client, app):
    r = await client.post("/pings", json={"note": "cid"}, headers={**auth("admin"), "X-Correlation-ID": "abc-123"})
    assert r.headers["X-Correlation-ID"] == "abc-123"
    from pathways_shared.infra_models import OutboxMessage
    async with app.state.runtime.sessionmaker() as session:
        row = (await session.exec(select(OutboxMessage))).one()
    assert '"X-Correlation-ID": "abc-123"' in row.headers


async def test_health_and_metrics(client):
    assert (await client.get("/health/live")).json() == {"status": "up"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "up", "nats": "up"}
    await client.post("/pings", json={"note": "m"}, headers=auth("admin"))
    metrics = (await client.get("/metrics")).text
    assert 'pathways_http_requests_total{method="POST",route="/pings",status="201"}' in metrics
    assert "pathways_outbox_published_total" in metrics


async def test_ready_is_503_when_nats_is_unreachable(settings, app_factory):
    import httpx

    from pathways_shared.testing import free_port

    app = app_factory(settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        r = await c.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["nats"] == "down" and r.json()["checks"]["database"] == "up"


def test_a_full_pool_or_lost_database_is_503_not_500():
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    from starlette.requests import Request

    from pathways_shared.problems import exception_response

    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""})
    busy = exception_response(request, PoolTimeout("QueuePool limit reached"))
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    assert exception_response(request, ConnectionRefusedError()).status_code == 503
    assert exception_response(request, RuntimeError("a bug")).status_code == 500


def test_a_value_the_database_refuses_is_422_not_500():
    from sqlalchemy.exc import DataError
    from starlette.requests import Request

    from pathways_shared.problems import exception_response

    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""})
    refused = exception_response(request, DataError("SELECT", {}, Exception("invalid byte sequence 0x00")))
    assert refused.status_code == 422
    assert b"0x00" not in refused.body
