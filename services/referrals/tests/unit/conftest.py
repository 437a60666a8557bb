"""Builders for the pure domain tests: a valid referral by default, override what a test needs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest

from pathways_shared.vocabulary import Complexity, Pathway, Rosh, Sex, SupervisionStatus
from referrals.domain.referral import (
    Consent,
    NeedFlag,
    Person,
    Practitioner,
    Referral,
    Risk,
    Supervision,
)
from referrals.domain.submission import NeedRequest, Submission, submit_referral

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _person(**overrides: Any) -> Person:
    base = Person(
        crn="X123456",
        noms_number="A1234BC",
        pnc_number=None,
        given_name="Sam",
        family_name="Example",
        date_of_birth=date(1990, 4, 1),
        sex=Sex.MALE,
        needs_interpreter=False,
        interpreter_language=None,
    )
    return replace(base, **overrides)


def _submission(**overrides: Any) -> Submission:
    base = Submission(
        source_reference="NDELIUS-000123",
        area="E08000029",
        person=_person(),
        supervision=Supervision(status=SupervisionStatus.LICENCE, expected_release_date=None),
        risk=Risk(rosh=Rosh.MEDIUM, mappa_level=None),
        practitioner=Practitioner(
            name="Alex Officer", email="alex.officer@probation.example", team="Solihull OMU"
        ),
        consent=Consent(given=True, recorded_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC)),
        needs=(
            NeedRequest(
                pathway=Pathway.ACCOMMODATION,
                complexity=Complexity.MEDIUM,
                details="No fixed abode on release",
                flags=(NeedFlag.AT_RISK_OF_HOMELESSNESS,),
            ),
        ),
    )
    return replace(base, **overrides)


def _sequential_ids() -> Callable[[], UUID]:
    counter: Iterator[int] = itertools.count(1)
    return lambda: UUID(int=next(counter))


class Build:
    """Test files reach the builders through the `build` fixture, never `import conftest`."""

    now = NOW

    @staticmethod
    def person(**overrides: Any) -> Person:
        return _person(**overrides)

    @staticmethod
    def submission(**overrides: Any) -> Submission:
        return _submission(**overrides)

    @staticmethod
    def ids() -> Callable[[], UUID]:
        return _sequential_ids()

    @staticmethod
    def referral(sub: Submission | None = None, now: datetime = NOW) -> Referral:
        """A submitted referral: id UUID(1), needs UUID(2), UUID(3), ..."""
        return submit_referral(
            sub or _submission(), actor="probation:alex", now=now, new_id=_sequential_ids()
        ).referral


@pytest.fixture
def build() -> type[Build]:
    return Build
