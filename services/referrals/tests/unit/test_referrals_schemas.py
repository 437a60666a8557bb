"""Request bodies: unknown fields refused, texts bounded, a stable fingerprint for
idempotency, and a faithful mapping to the domain's submission."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pathways_shared.vocabulary import Complexity, Pathway, Sex, SupervisionStatus
from referrals.domain.referral import NeedFlag, ReferralStatus
from referrals.schemas import ReferralCreate, ReferralPublic, WithdrawalCreate

BODY: dict[str, Any] = {
    "source_reference": "NDELIUS-000123",
    "area": "E08000029",
    "person": {
        "crn": "X123456",
        "noms_number": "A1234BC",
        "given_name": "Sam",
        "family_name": "Example",
        "date_of_birth": "1990-04-01",
        "sex": "male",
    },
    "supervision": {"status": "licence"},
    "risk": {"rosh": "medium", "mappa_level": None},
    "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example"},
    "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
    "needs": [
        {
            "pathway": "accommodation",
            "complexity": "medium",
            "flags": ["at_risk_of_homelessness"],
        }
    ],
}


def parse(body: dict[str, Any]) -> ReferralCreate:
    return ReferralCreate.model_validate_json(json.dumps(body))


def with_change(path: str, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(BODY))
    *parents, leaf = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(leaf) if leaf.isdigit() else leaf] = value
    return body


def error_fields(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in error.errors()]


def test_the_example_body_parses_and_maps_to_the_domain():
    submission = parse(BODY).to_domain()
    assert submission.person.date_of_birth == date(1990, 4, 1)
    assert submission.person.sex is Sex.MALE
    assert submission.person.pnc_number is None
    assert submission.supervision.status is SupervisionStatus.LICENCE
    assert submission.consent.recorded_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    [need] = submission.needs
    assert (need.pathway, need.complexity, need.flags) == (
        Pathway.ACCOMMODATION,
        Complexity.MEDIUM,
        (NeedFlag.AT_RISK_OF_HOMELESSNESS,),
    )


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("nickname", "x", "nickname"),
        ("person.middle_name", "x", "person.middle_name"),
        ("needs.0.urgent", True, "needs.0.urgent"),
        ("source_reference", "x" * 101, "source_reference"),
        ("person.given_name", "x" * 201, "person.given_name"),
        ("person.crn", "X" * 21, "person.crn"),
        ("person.interpreter_language", "x" * 101, "person.interpreter_language"),
        ("practitioner.email", "x" * 321, "practitioner.email"),
        ("needs.0.details", "x" * 4001, "needs.0.details"),
        ("needs.0.pathway", "housing", "needs.0.pathway"),
        ("needs.0.flags", ["vip"], "needs.0.flags.0"),
        ("person.date_of_birth", "1990-13-01", "person.date_of_birth"),
        ("consent.recorded_at", "2026-11-20T10:00:00", "consent.recorded_at"),  # no zone
        ("needs", [BODY["needs"][0]] * 51, "needs"),
    ],
)
def test_unknown_fields_and_unbounded_texts_are_refused(path, value, field):
    with pytest.raises(ValidationError) as raised:
        parse(with_change(path, value))
    assert field in error_fields(raised.value)


def test_the_fingerprint_ignores_key_order_and_spacing():
    reordered = dict(reversed(list(BODY.items())))
    assert parse(reordered).fingerprint() == parse(BODY).fingerprint()
    spaced = ReferralCreate.model_validate_json(json.dumps(BODY, indent=4))
    assert spaced.fingerprint() == parse(BODY).fingerprint()


@pytest.mark.parametrize(
    "given_name",
    ["Sam", "Zoë", "Sam \"Sammy\"", "back\\slash", "tab\tand\nnew line", "del\x7f",
     "\u2028 ok", "emoji \U0001f600", "ÅSA", "</script>"],
)
def test_the_fingerprint_is_the_hash_of_the_canonical_json_stored_referrals_carry(given_name):
    """Replays are matched by the fingerprint stored with each referral: it stays the hash of
    `json.dumps(sort_keys, compact)` of the body, whatever writes it."""
    import hashlib

    body = parse(with_change("person.given_name", given_name))
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert body.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("area", "E08000025"),
        ("person.given_name", "Samuel"),
        ("needs.0.complexity", "high"),
        ("needs.0.flags", []),
        ("consent.recorded_at", "2026-11-20T10:00:01Z"),
    ],
)
def test_the_fingerprint_changes_with_any_value(path, value):
    assert parse(with_change(path, value)).fingerprint() != parse(BODY).fingerprint()


def test_defaults_and_explicit_nulls_fingerprint_alike():
    explicit = with_change("person.pnc_number", None)
    assert parse(explicit).fingerprint() == parse(BODY).fingerprint()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason_code": "bored"}, "reason_code"),
        ({"reason_code": "duplicate", "extra": 1}, "extra"),
        ({"reason_code": "other", "comments": "x" * 4001}, "comments"),
    ],
)
def test_withdrawal_body_rules(body, field):
    with pytest.raises(ValidationError) as raised:
        WithdrawalCreate.model_validate(body)
    assert field in error_fields(raised.value)


def test_the_public_representation_serialises_times_with_z(build):
    referral = build.referral()
    public = ReferralPublic.of(referral).model_dump(mode="json")
    assert public["status"] == ReferralStatus.OPEN.value
    assert public["submitted_at"] == "2026-11-24T10:00:00.000Z"
    assert public["needs"][0]["updated_at"] == "2026-11-24T10:00:00.000Z"
    assert public["needs"][0]["allocated_at"] is None
    assert public["person"]["date_of_birth"] == "1990-04-01"
    assert public["withdrawal"] is None
