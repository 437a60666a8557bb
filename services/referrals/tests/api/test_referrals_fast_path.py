"""`POST /referrals` has a fast path beside its FastAPI route (`api.submit_referral_fast`):
the usual request skips dependency solving and request validation. The two answer alike and
write the same rows; anything unusual is declined by the fast path and answered by the
ordinary route, as if the fast path were not there."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import select as select_model

from pathways_shared.infra_models import AccessLog, OutboxMessage
from pathways_shared.testing import auth
from referrals.repository import HISTORY, NEEDS, REFERRALS

ROUTE = ("POST", "/referrals")
# What differs by construction between two submissions of the same body: ids, times, and the
# source reference each is given here.
VARYING = {"id", "source_reference", "submitted_at", "updated_at", "fingerprint", "referral_id",
           "need_id", "event_id", "idempotency_key", "created_at", "at", "occurred_at", "recorded_at", "ip",
           "occurredAt", "referralId", "needId", "detailUrl", "correlation_id", "resource"}


def _without_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_varying(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_without_varying(v) for v in value]
    return value


@pytest.fixture
async def fast_answers(app: Any) -> AsyncIterator[list[bool]]:
    """Whether the fast path answered (True) or declined (False) each request it was offered,
    in order; the fast path itself unchanged."""
    answered: list[bool] = []
    fast = app.state.fast_paths[ROUTE]

    async def counted(request: Any, body: bytes) -> Any:
        response = await fast.handler(request, body)
        answered.append(response is not None)
        return response

    app.state.fast_paths = {**app.state.fast_paths, ROUTE: dataclasses.replace(fast, handler=counted)}
    yield answered
    app.state.fast_paths = {**app.state.fast_paths, ROUTE: fast}


async def _ordinary(app: Any, client: Any, **request: Any) -> Any:
    """The request answered with no fast path (FastAPI's route alone)."""
    fast_paths = app.state.fast_paths
    app.state.fast_paths = {}
    try:
        return await client.post("/referrals", **request)
    finally:
        app.state.fast_paths = fast_paths


async def _stored(sessionmaker: Any, referral_id: str) -> dict[str, Any]:
    async with sessionmaker() as session:
        referral = (await session.exec(
            select(REFERRALS).where(REFERRALS.c.id == uuid.UUID(referral_id)))).one()
        needs = (await session.exec(select(NEEDS).where(
            NEEDS.c.referral_id == referral.id).order_by(NEEDS.c.position))).all()
        history = (await session.exec(select(HISTORY).where(
            HISTORY.c.referral_id == referral.id).order_by(HISTORY.c.id))).all()
        [event] = (await session.exec(select_model(OutboxMessage).where(
            OutboxMessage.payload.contains(referral_id)))).all()
        [access] = (await session.exec(select_model(AccessLog).where(
            AccessLog.resource.contains(referral_id)))).all()
    return _without_varying({
        "referral": dict(referral._mapping),
        "needs": [dict(n._mapping) for n in needs],
        "history": [dict(h._mapping) for h in history],
        "event": {"type": event.event_type, "subject": event.subject,
                  "payload": json.loads(event.payload)},
        "access": access.model_dump(),
    })


async def test_the_fast_path_answers_and_writes_as_the_route_does(
    app, client, sessionmaker, referral_body, fast_answers
):
    body = referral_body()
    body["needs"] = [*body["needs"], {**body["needs"][0], "pathway": "health",
                                      "details": "GP registration", "flags": []}]
    headers = {**auth("probation"), "X-Purpose": "resettlement planning"}
    fast = await client.post("/referrals", json={**body, "source_reference": "FAST-1"},
                             headers={**headers, "Idempotency-Key": "fast-1"})
    ordinary = await _ordinary(app, client, json={**body, "source_reference": "FAST-2"},
                               headers={**headers, "Idempotency-Key": "fast-2"})
    assert fast_answers == [True]
    assert fast.status_code == ordinary.status_code == 201, (fast.text, ordinary.text)
    for response in (fast, ordinary):
        assert response.headers["location"] == f"/referrals/{response.json()['id']}"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-correlation-id"]
    assert _without_varying(fast.json()) == _without_varying(ordinary.json())
    fast_rows = await _stored(sessionmaker, fast.json()["id"])
    assert fast_rows == await _stored(sessionmaker, ordinary.json()["id"])
    assert len(fast_rows["needs"]) == 2 and fast_rows["history"]
    assert fast_rows["access"]["purpose"] == "resettlement planning"

    # A replay of the same key and body: the same referral, 200, from either way.
    replayed = await client.post("/referrals", json={**body, "source_reference": "FAST-1"},
                                 headers={**headers, "Idempotency-Key": "fast-1"})
    assert fast_answers == [True, True]
    assert replayed.status_code == 200 and replayed.json()["id"] == fast.json()["id"]
    metrics = (await client.get("/metrics")).text
    assert 'route="/referrals",status="201"' in metrics


# case: (the status, whether the fast path declines it (else the service refuses it inside)).
CASES = {
    "not the schema": (422, True),
    "not JSON": (422, True),
    "text/plain": (422, True),
    "service role": (403, True),
    "empty Idempotency-Key": (422, True),
    "purpose too long": (422, True),
    "no needs": (422, False),
    "area not the caller's": (403, False),
}


@pytest.mark.parametrize("case", CASES)
async def test_what_the_fast_path_declines_or_refuses_is_answered_as_the_route_answers_it(
    app, client, sessionmaker, referral_body, fast_answers, case
):
    body = referral_body(source_reference=f"DECLINE-{uuid.uuid4().hex[:8]}")
    headers: dict[str, str] = auth("probation")
    request: dict[str, Any] = {"json": body}
    if case == "not the schema":
        body["person"]["sex"] = "unknown"
    elif case == "not JSON":
        request = {"content": b'{"area": ', "headers": {"content-type": "application/json"}}
    elif case == "text/plain":
        request = {"content": b"{}", "headers": {"content-type": "text/plain"}}
    elif case == "service role":
        headers = auth("service")
    elif case == "empty Idempotency-Key":
        headers = {**headers, "Idempotency-Key": ""}
    elif case == "purpose too long":
        headers = {**headers, "X-Purpose": "x" * 301}
    elif case == "no needs":
        body["needs"] = []
    elif case == "area not the caller's":
        headers = auth("probation", areas=["E08000026"])
    headers = {**headers, **request.pop("headers", {})}
    fast = await client.post("/referrals", headers=headers, **request)
    ordinary = await _ordinary(app, client, headers=headers, **request)
    status, declined = CASES[case]
    assert fast.status_code == ordinary.status_code == status, (fast.text, ordinary.text)
    assert fast.headers["content-type"] == ordinary.headers["content-type"]
    assert fast.headers["content-type"].startswith("application/problem+json")
    assert _without_varying(fast.json()) == _without_varying(ordinary.json())
    # Declined, the ordinary route answered; refused inside, no answer came back from it.
    assert fast_answers == ([False] if declined else [])
    async with sessionmaker() as session:
        assert (await session.exec(select(REFERRALS).where(
            REFERRALS.c.source_reference == body["source_reference"]))).all() == []


async def test_headers_the_fast_path_does_not_read_go_the_ordinary_way(
    client, referral_body, fast_answers
):
    """Two Idempotency-Keys: FastAPI's route takes one of them; the fast path leaves it to it."""
    response = await client.post(
        "/referrals", json=referral_body(source_reference="TWO-KEYS"),
        headers=[*auth("probation").items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )
    assert response.status_code == 201, response.text
    assert fast_answers == [False]


async def test_a_body_in_several_chunks_is_read_whole(client, referral_body, fast_answers):
    data = json.dumps(referral_body(source_reference="CHUNKED-1")).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 100):
            yield data[start:start + 100]

    response = await client.post(
        "/referrals", content=chunks(),
        headers={**auth("probation"), "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["source_reference"] == "CHUNKED-1"
    assert fast_answers == [True]
