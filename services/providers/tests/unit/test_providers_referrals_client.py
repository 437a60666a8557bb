"""The referrals client: a service token, a few retries on failure, then "unavailable"."""

from __future__ import annotations

import uuid

import httpx
import pytest

from pathways_shared.auth import Authenticator
from pathways_shared.config import ServiceSettings
from providers.referrals_client import ReferralsClient

SECRET = "unit-test-secret-0123456789abcdef0123456789"
REFERRAL = {
    "id": "r",
    "person": {
        "crn": "X123456",
        "given_name": "Sam",
        "family_name": "Example",
        "date_of_birth": "1990-04-01",
        "sex": "male",
        "internal": "not for providers",
    },
    "practitioner": {"name": "Alex Officer", "email": "alex@probation.example", "team": "OMU"},
}


def client_answering(*answers: int | Exception, calls: list[httpx.Request]) -> ReferralsClient:
    remaining = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        answer = remaining.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json=REFERRAL if answer == 200 else {"title": "x"})

    return ReferralsClient(
        ServiceSettings(jwt_secret=SECRET),
        "http://referrals.test/",
        retries=2,
        backoff=0,
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.parametrize(
    ("answers", "available", "attempts"),
    [
        ((200,), True, 1),
        ((503, 200), True, 2),
        ((httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 200), True, 3),
        ((503, 503, 503), False, 3),
        ((httpx.ConnectError("refused"),) * 3, False, 3),
        ((404,), False, 1),
        ((403,), False, 1),
    ],
)
async def test_retries_then_gives_up(answers, available, attempts):
    calls: list[httpx.Request] = []
    client = client_answering(*answers, calls=calls)
    try:
        details = await client.person_details(uuid.uuid4())
    finally:
        await client.close()
    assert (details is not None) is available
    assert len(calls) == attempts


async def test_details_carry_only_the_person_and_practitioner_fields():
    calls: list[httpx.Request] = []
    referral_id = uuid.uuid4()
    client = client_answering(200, calls=calls)
    try:
        details = await client.person_details(referral_id)
    finally:
        await client.close()
    assert details is not None
    assert details.person == {k: v for k, v in REFERRAL["person"].items() if k != "internal"}
    assert details.practitioner == REFERRAL["practitioner"]
    assert str(calls[0].url) == f"http://referrals.test/referrals/{referral_id}"
    token = calls[0].headers["authorization"].removeprefix("Bearer ")
    principal = Authenticator(ServiceSettings(jwt_secret=SECRET)).verify(token)
    assert principal.roles == frozenset({"service"})
