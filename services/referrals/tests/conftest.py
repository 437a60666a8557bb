"""Fixtures for the referrals service's tests: a migrated PostgreSQL database (emptied before
each test), a prefix of its own on the real NATS, the running app and an HTTP client."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from referrals.app import create_app
from referrals.config import ReferralsSettings

SERVICE_ROOT = Path(__file__).resolve().parents[1]

REFERRAL_BODY: dict[str, Any] = {
    "source_reference": "NDELIUS-000123",
    "area": "E08000029",
    "person": {
        "crn": "X123456",
        "noms_number": "A1234BC",
        "pnc_number": None,
        "given_name": "Sam",
        "family_name": "Example",
        "date_of_birth": "1990-04-01",
        "sex": "male",
        "needs_interpreter": False,
        "interpreter_language": None,
    },
    "supervision": {"status": "licence", "expected_release_date": None},
    "risk": {"rosh": "medium", "mappa_level": None},
    "practitioner": {
        "name": "Alex Officer",
        "email": "alex.officer@probation.example",
        "team": "Solihull OMU",
    },
    "consent": {"given": True, "recorded_at": "2026-01-05T10:00:00Z"},
    "needs": [
        {
            "pathway": "accommodation",
            "complexity": "medium",
            "details": "No fixed abode on release",
            "flags": ["at_risk_of_homelessness"],
        }
    ],
}


@pytest.fixture
def referral_body() -> Any:
    """`referral_body(**top_level_overrides)`: a fresh, valid body (a deep copy)."""

    def _body(**overrides: Any) -> dict[str, Any]:
        body = copy.deepcopy(REFERRAL_BODY)
        body.update(copy.deepcopy(overrides))
        return body

    return _body


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    return make_database("referrals", SERVICE_ROOT)


@pytest.fixture
def settings(service_settings) -> ReferralsSettings:
    return service_settings(ReferralsSettings)


@pytest.fixture
def app_factory():
    return create_app
