"""Providers configured as in production (`deploy/k8s/base/common.yaml`): no HS256 secret, RS256
tokens verified against a JWKS, and a client id and secret at the identity provider. A
provider's person-details view still reaches the referrals service with a `service` token."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlmodel import select

from pathways_shared.auth import Authenticator
from pathways_shared.config import ServiceSettings
from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from pathways_shared.problems import Unauthorized
from pathways_shared.testing import LocalIdentityProvider, running, serving_http, wait_until
from providers.app import create_app
from providers.config import ProvidersSettings
from providers.domain.catalogue import load_seed_catalogue
from providers.models import ProviderReferralRow
from providers.service import seed_catalogue

CLIENT_SECRET = "providers-client-secret-0123456789abcdef"


@pytest.fixture
def identity_provider():
    with LocalIdentityProvider(
        {"providers-service": (CLIENT_SECRET, ["service"]), "someone": ("x", ["probation"])}
    ) as idp:
        yield idp


@pytest.fixture
def referrals_service(identity_provider):
    """A stand-in for the referrals service that checks tokens as referrals does with JWKS-only
    settings: RS256 against the identity provider's keys, and the `service` role."""
    authenticator = Authenticator(
        ServiceSettings(environment="test", jwks_url=identity_provider.jwks_url)
    )
    callers: list[str] = []

    def referral(path, headers, body):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            principal = authenticator.verify(token) if scheme.lower() == "bearer" else None
        except Unauthorized:
            principal = None
        if principal is None:
            return 401, {"title": "missing or invalid token"}
        if not principal.has("service"):
            return 403, {"title": "requires the service role"}
        callers.append(principal.sub)
        return 200, {
            "id": path.rsplit("/", 1)[-1],
            "person": {"crn": "X123456", "given_name": "Sam", "family_name": "Example"},
            "practitioner": {"name": "Alex Officer", "email": "alex@probation.example", "team": "OMU"},
        }

    with serving_http({"/referrals/": referral}) as url:
        yield url, callers


async def test_jwks_only_providers_fetch_person_details_from_referrals(
    settings, identity_provider, referrals_service, publish, make_submitted, monkeypatch
):
    monkeypatch.delenv("PATHWAYS_JWT_SECRET", raising=False)
    referrals_url, callers = referrals_service
    jwks_only = ProvidersSettings(
        environment="test",
        database_url=settings.database_url,
        nats_url=settings.nats_url,
        subject_prefix=settings.subject_prefix,
        jwt_secret=None,
        jwks_url=identity_provider.jwks_url,
        client_credentials_url=identity_provider.client_credentials_url,
        client_id="providers-service",
        client_secret=CLIENT_SECRET,
        log_json=False,
        relay_poll_seconds=0.5,
        referrals_url=referrals_url,
        referrals_retries=0,
    )
    assert jwks_only.jwt_secret is None
    app = create_app(jwks_only)
    nacro = {
        "Authorization": "Bearer "
        + identity_provider.sign(sub="nacro-user", roles=["provider"], provider="NACRO")
    }
    referral_id = uuid.uuid4()
    async with running(app):
        async with transaction(app.state.runtime.sessionmaker) as session:
            await seed_catalogue(session, load_seed_catalogue(), utc_now())
        await publish(make_submitted(referral_id=referral_id))

        async def allocated():
            async with app.state.runtime.sessionmaker() as session:
                return (
                    await session.exec(
                        select(ProviderReferralRow).where(
                            ProviderReferralRow.referral_id == referral_id
                        )
                    )
                ).first()

        row = await wait_until(allocated)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            first = await client.get(f"/provider-referrals/{row.id}", headers=nacro)
            second = await client.get(f"/provider-referrals/{row.id}", headers=nacro)

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["details_available"] is True, json.dumps(body)
    assert body["person"]["given_name"] == "Sam"
    assert body["practitioner"]["team"] == "OMU"
    assert second.json()["details_available"] is True
    assert callers == ["providers-service", "providers-service"]
    # The identity provider's token is kept until it is about to expire, not asked for each call.
    assert identity_provider.issued == ["providers-service"]


def test_a_service_that_calls_peers_refuses_settings_without_a_way_to_get_a_token(monkeypatch):
    monkeypatch.delenv("PATHWAYS_JWT_SECRET", raising=False)
    with pytest.raises(ValueError, match="PROVIDERS_CLIENT_ID"):
        ProvidersSettings(environment="test", jwks_url="https://idp.example/jwks", jwt_secret=None)
