"""`make run` keeps each service on SQLite: the providers service migrates, routes, answers
its inbox and checks deadlines there too, with times that stay aware UTC."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pathways_shared.events import utc_now
from pathways_shared.migrations import upgrade
from pathways_shared.testing import TEST_JWT_SECRET, auth, free_port, running
from providers.app import create_app
from providers.config import ProvidersSettings
from providers.scheduler import run_deadline_check

SERVICE_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/providers.db"
    upgrade(SERVICE_ROOT, url)  # outside the event loop; the migration seeds the catalogue
    return url


async def test_the_service_works_on_sqlite(
    sqlite_url, subject_prefix, nats_url, publish, make_submitted, provider_events
):
    url = sqlite_url
    settings = ProvidersSettings(
        environment="test",
        database_url=url,
        nats_url=nats_url,
        subject_prefix=subject_prefix,
        jwt_secret=TEST_JWT_SECRET,
        log_json=False,
        relay_poll_seconds=0.2,
        referrals_url=f"http://127.0.0.1:{free_port()}",
        referrals_retries=0,
    )
    app = create_app(settings)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            services = (await client.get("/services", headers=auth("admin"))).json()["data"]
            assert len(services) == 13
            await publish(make_submitted(needs=[{"pathway": "accommodation", "complexity": "low"}]))
            [allocated] = await provider_events(expect=1)
            assert allocated.additional_information["serviceCode"] == "CRS-ACC-M"
            nacro = auth("provider", provider="NACRO")
            [entry] = (await client.get("/provider-referrals", headers=nacro)).json()["data"]
            assert entry["acknowledge_by"].endswith("Z")
            second = await client.get("/provider-referrals?limit=1&status=allocated", headers=nacro)
            assert second.status_code == 200
            accepted = await client.post(
                f"/provider-referrals/{entry['id']}/acknowledge", headers=nacro
            )
            assert accepted.status_code == 200, accepted.text
            # allocated on the real clock just now: a month on, both deadlines have passed
            late = utc_now() + timedelta(days=31)
            runtime = app.state.runtime
            count = await run_deadline_check(
                runtime.sessionmaker,
                now=late,
                calendar=runtime.extras["calendar"],
                base_url="http://p",
            )
            assert count == 1  # respond only: acknowledged stops the acknowledge clock
