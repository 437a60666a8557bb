"""Fixtures for the providers service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pathways_shared.db import transaction
from pathways_shared.events import Event, make_event, utc_now
from pathways_shared.testing import (
    free_port,
    running,
    stream_events,
)
from providers.app import create_app
from providers.config import ProvidersSettings
from providers.domain.catalogue import load_seed_catalogue
from providers.service import seed_catalogue

SERVICE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("providers", SERVICE_ROOT)


@pytest.fixture
def settings(service_settings) -> ProvidersSettings:
    return service_settings(
        ProvidersSettings,
        referrals_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: details unavailable
        referrals_retries=0,
    )


@pytest.fixture
async def app(settings):
    app = create_app(settings)
    async with running(app):
        # The migration seeds the catalogue; the per-test truncation empties it again.
        async with transaction(app.state.runtime.sessionmaker) as session:
            await seed_catalogue(session, load_seed_catalogue(), utc_now())
        yield app


def submitted_event(
    *,
    crn: str = "X123456",
    area: str = "E08000029",
    sex: str = "male",
    age: int = 30,
    supervision_status: str = "licence",
    needs: list[dict[str, Any]] | None = None,
    referral_id: uuid.UUID | None = None,
) -> Event:
    """A `referrals.referral.submitted` envelope as the referrals service publishes it."""
    needs = needs or [{"pathway": "accommodation", "complexity": "medium", "flags": []}]
    return make_event(
        "referrals.referral.submitted",
        {
            "referralId": str(referral_id or uuid.uuid4()),
            "area": area,
            "needs": [
                {"needId": str(n.get("needId") or uuid.uuid4()), "flags": [], **n} for n in needs
            ],
            "sex": sex,
            "ageOnSubmission": age,
            "supervisionStatus": supervision_status,
            "rosh": "medium",
            "mappaLevel": None,
        },
        crn=crn,
    )


@pytest.fixture
def make_submitted():
    return submitted_event


@pytest.fixture
def publish(nc, subject_prefix):
    """Publish an envelope to this test's NATS subjects, as another service's relay would."""

    async def _publish(event: Event) -> None:
        await nc.jetstream().publish(
            f"{subject_prefix}{event.event_type}",
            event.to_json(),
            headers={"Nats-Msg-Id": str(event.id)},
        )

    return _publish


@pytest.fixture
def provider_events(nc, subject_prefix):
    """What this service published to the PROVIDERS stream, oldest first."""

    async def _events(expect: int | None = None, timeout: float = 10) -> list[Event]:
        return await stream_events(
            nc.jetstream(), "PROVIDERS", subject_prefix, expect=expect, timeout=timeout
        )

    return _events
