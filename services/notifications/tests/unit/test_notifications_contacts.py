"""Reading a referral for its contacts, and sealing webhook secrets at rest."""

from __future__ import annotations

import uuid

import pytest

from notifications.contacts import ContactsMissing, ReferralRecord
from notifications.domain.intents import NotificationKind
from notifications.secretbox import SecretBox

REFERRAL = {
    "id": "11111111-1111-4111-8111-111111111111",
    "source_reference": "NDELIUS-000123",
    "area": "E08000029",
    "status": "open",
    "person": {
        "crn": "X123456",
        "given_name": "Sam",
        "family_name": "Example",
        "date_of_birth": "1990-04-01",
        "sex": "male",
    },
    "practitioner": {
        "name": "Alex Officer",
        "email": "alex.officer@probation.example",
        "team": "Solihull OMU",
    },
    "needs": [
        {"id": "22222222-2222-4222-8222-222222222222", "pathway": "accommodation",
         "provider_code": "NACRO", "status": "allocated"},
        {"id": "33333333-3333-4333-8333-333333333333", "pathway": "health",
         "provider_code": None, "status": "unallocated"},
    ],
}  # fmt: skip
NEED = uuid.UUID("22222222-2222-4222-8222-222222222222")
OTHER = uuid.UUID("33333333-3333-4333-8333-333333333333")


def test_a_referral_representation_gives_its_contacts():
    record = ReferralRecord.from_representation(REFERRAL)

    assert record.crn == "X123456"
    assert record.area == "E08000029"
    assert record.practitioner_email == "alex.officer@probation.example"
    assert record.person_name == "Sam Example"
    assert dict(record.need_pathways) == {NEED: "accommodation", OTHER: "health"}
    assert dict(record.need_providers) == {NEED: "NACRO"}


@pytest.mark.parametrize(
    ("kind", "named"),
    [(NotificationKind.DUTY_TO_REFER, True)]
    + [(k, False) for k in NotificationKind if k is not NotificationKind.DUTY_TO_REFER],
)
def test_only_the_duty_to_refer_context_carries_the_person_name(kind, named):
    context = ReferralRecord.from_representation(REFERRAL).render_context(kind)

    assert (context.person_name == "Sam Example") is named
    assert context.practitioner_name == "Alex Officer"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": "not-a-uuid"},
        REFERRAL | {"needs": [{"pathway": "health"}]},
        REFERRAL | {"needs": "none"},
        REFERRAL | {"person": "Sam"},
    ],
)
def test_an_unreadable_referral_is_missing_not_a_crash(body):
    with pytest.raises(ContactsMissing):
        ReferralRecord.from_representation(body)


def test_a_missing_name_part_is_left_out():
    body = REFERRAL | {"person": {"crn": "X123456", "given_name": None, "family_name": "Example"}}

    assert ReferralRecord.from_representation(body).person_name == "Example"


def test_sealed_secrets_open_with_the_same_key_only():
    box = SecretBox("a key for tests, long enough to be a key")
    sealed = box.seal("whsec_abc")

    assert "whsec_abc" not in sealed
    assert box.open(sealed) == "whsec_abc"
    assert box.seal("whsec_abc") != sealed  # a fresh nonce each time
    with pytest.raises(ValueError):
        SecretBox("another key").open(sealed)
