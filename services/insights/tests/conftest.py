"""Fixtures for the insights service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pathways_shared.testing import TEST_JWT_SECRET, running, truncate_database

from insights.app import create_app
from insights.config import InsightsSettings

SERVICE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("insights", SERVICE_ROOT)


@pytest.fixture
async def settings(database_url, subject_prefix, nats_url) -> InsightsSettings:
    await truncate_database(database_url)
    return InsightsSettings(
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
        yield app


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def sessionmaker(app):
    return app.state.runtime.sessionmaker


@pytest.fixture
async def js(nc) -> Any:
    return nc.jetstream()
