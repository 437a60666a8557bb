"""Fixtures for the providers service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from pathways_shared.testing import TEST_JWT_SECRET, running, truncate_database
from providers.app import create_app
from providers.catalogue import load_seed_catalogue
from providers.config import ProvidersSettings
from providers.service import seed_catalogue

SERVICE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("providers", SERVICE_ROOT)


@pytest.fixture
async def settings(database_url, subject_prefix, nats_url) -> ProvidersSettings:
    await truncate_database(database_url)
    return ProvidersSettings(
        environment="test",
        database_url=database_url,
        nats_url=nats_url,
        subject_prefix=subject_prefix,
        jwt_secret=TEST_JWT_SECRET,
        log_json=False,
        relay_poll_seconds=0.5,
    )


@pytest.fixture
async def app(settings):
    app = create_app(settings)
    async with running(app):
        # The migration seeds the catalogue; the per-test truncation empties it again.
        async with transaction(app.state.runtime.sessionmaker) as session:
            await seed_catalogue(session, load_seed_catalogue(), utc_now())
        yield app


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def sessionmaker(app):
    return app.state.runtime.sessionmaker
