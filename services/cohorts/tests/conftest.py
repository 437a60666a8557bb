"""Fixtures for the cohorts service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from cohorts.app import create_app
from cohorts.config import CohortsSettings
from pathways_shared.testing import auth

SERVICE_ROOT = Path(__file__).resolve().parents[1]
SOLIHULL = "E08000029"


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("cohorts", SERVICE_ROOT)


@pytest.fixture
def settings(service_settings) -> CohortsSettings:
    return service_settings(CohortsSettings, import_batch_size=3, review_scan_seconds=3600)


@pytest.fixture
def app_factory():
    return create_app


@pytest.fixture
def panel() -> dict[str, str]:
    return auth("iom_panel", areas=[SOLIHULL])


@pytest.fixture
def police() -> dict[str, str]:
    return auth("police", areas=[SOLIHULL])


@pytest.fixture
def admin() -> dict[str, str]:
    return auth("admin")


def london_today() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("Europe/London")).date()


@pytest.fixture
def days_ago() -> Any:
    """`days_ago(10)` -> the ISO date ten days before today in Europe/London."""

    def _days_ago(days: int) -> str:
        return (london_today() - timedelta(days=days)).isoformat()

    return _days_ago


@pytest.fixture
def seed(client: httpx.AsyncClient) -> Any:
    """`await seed("X000001", offences=[(days, "burglary_domestic"), ...], dob=..., ...)`"""

    async def _seed(
        crn: str,
        *,
        area: str = SOLIHULL,
        dob: str = "1990-01-01",
        status: str = "licence",
        mappa: int | None = None,
        offences: list[tuple[int, str]] | tuple = (),
    ) -> None:
        headers = auth("service")
        body = {
            "area": area,
            "date_of_birth": dob,
            "supervision_status": status,
            "mappa_level": mappa,
            "pnc_number": None,
        }
        answer = await client.put(f"/nominals/{crn}", json=body, headers=headers)
        assert answer.status_code in (200, 201), answer.text
        if offences:
            today = london_today()
            items = [
                {
                    "offence_date": (today - timedelta(days=days)).isoformat(),
                    "category": category,
                    "description": f"offence {i}",
                }
                for i, (days, category) in enumerate(offences)
            ]
            answer = await client.post(
                f"/nominals/{crn}/offences", json={"offences": items}, headers=headers
            )
            assert answer.status_code == 201, answer.text

    return _seed
