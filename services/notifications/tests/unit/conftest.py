"""Builders of consumed events for the pure domain tests (no I/O)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from notifications.domain.intents import InboundEvent, parse_envelope

REFERRAL_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
NEED_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
OTHER_NEED_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")
THIRD_NEED_ID = uuid.UUID("44444444-4444-4444-8444-444444444444")
PROVIDER_REFERRAL_ID = uuid.UUID("55555555-5555-4555-8555-555555555555")
EVENT_ID = uuid.UUID("66666666-6666-4666-8666-666666666666")


def envelope(
    event_type: str,
    info: dict[str, Any],
    *,
    event_id: uuid.UUID = EVENT_ID,
    crn: str | None = "X123456",
) -> dict[str, Any]:
    return {
        "id": str(event_id),
        "eventType": event_type,
        "version": 1,
        "description": "test event",
        "occurredAt": "2026-11-24T10:15:30.123Z",
        "detailUrl": "http://127.0.0.1:8002/provider-referrals/x",
        "personReference": {"identifiers": [{"type": "CRN", "value": crn}]} if crn else None,
        "additionalInformation": info,
    }


ALLOCATED_INFO = {
    "referralId": str(REFERRAL_ID),
    "needId": str(NEED_ID),
    "providerReferralId": str(PROVIDER_REFERRAL_ID),
    "serviceCode": "CRS-ACC-M",
    "providerCode": "NACRO",
    "programme": "CRS",
    "acknowledgeBy": "2026-11-26T23:59:59Z",
    "respondBy": "2026-12-01T23:59:59Z",
}
UNALLOCATED_INFO = {
    "referralId": str(REFERRAL_ID),
    "needId": str(NEED_ID),
    "reason": "no eligible service: CRS-FBD-M requires complexity medium or high",
}
DECLINED_INFO = {
    "referralId": str(REFERRAL_ID),
    "needId": str(NEED_ID),
    "providerReferralId": str(PROVIDER_REFERRAL_ID),
    "reasonCode": "capacity",
    "providerCode": "NACRO",
    "serviceCode": "CRS-ACC-M",
}
DEADLINE_INFO = {
    "referralId": str(REFERRAL_ID),
    "needId": str(NEED_ID),
    "providerReferralId": str(PROVIDER_REFERRAL_ID),
    "deadline": "acknowledge",
    "providerCode": "NACRO",
    "serviceCode": "CRS-ACC-M",
    "dueAt": "2026-11-26T23:59:59Z",
}
WITHDRAWN_INFO = {
    "referralId": str(REFERRAL_ID),
    "needIds": [str(NEED_ID), str(OTHER_NEED_ID), str(THIRD_NEED_ID)],
    "reasonCode": "moved_out_of_area",
}
SUBMITTED_INFO = {
    "referralId": str(REFERRAL_ID),
    "area": "E08000029",
    "needs": [
        {
            "needId": str(NEED_ID),
            "pathway": "accommodation",
            "complexity": "medium",
            "flags": ["at_risk_of_homelessness"],
        },
        {
            "needId": str(OTHER_NEED_ID),
            "pathway": "drugs_alcohol",
            "complexity": "low",
            "flags": [],
        },
    ],
    "sex": "male",
    "ageOnSubmission": 36,
    "supervisionStatus": "licence",
    "rosh": "medium",
    "mappaLevel": None,
}


@pytest.fixture
def make_event() -> Callable[..., InboundEvent]:
    def make(event_type: str, info: dict[str, Any], **kwargs: Any) -> InboundEvent:
        return parse_envelope(envelope(event_type, info, **kwargs))

    return make


INFOS = {
    "providers.referral.allocated": ALLOCATED_INFO,
    "providers.referral.unallocated": UNALLOCATED_INFO,
    "providers.referral.declined": DECLINED_INFO,
    "providers.referral.deadline-missed": DEADLINE_INFO,
    "referrals.referral.withdrawn": WITHDRAWN_INFO,
    "referrals.referral.submitted": SUBMITTED_INFO,
}


@pytest.fixture
def ids() -> SimpleNamespace:
    return SimpleNamespace(
        referral=REFERRAL_ID,
        need=NEED_ID,
        other_need=OTHER_NEED_ID,
        third_need=THIRD_NEED_ID,
        provider_referral=PROVIDER_REFERRAL_ID,
        event=EVENT_ID,
    )


@pytest.fixture
def info() -> Callable[..., dict[str, Any]]:
    """A fresh copy of the sample additionalInformation of an event type, with overrides."""

    def make(event_type: str, **overrides: Any) -> dict[str, Any]:
        sample = copy.deepcopy(INFOS[event_type])
        for key, value in overrides.items():
            if value is DROP:
                sample.pop(key, None)
            else:
                sample[key] = value
        return sample

    return make


DROP = object()


@pytest.fixture
def drop() -> object:
    """Pass as an override to ``info`` to remove a key."""
    return DROP


@pytest.fixture
def raw_envelope() -> Callable[..., dict[str, Any]]:
    return envelope
