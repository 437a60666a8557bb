"""Submission output, the submitted event, status derived from needs, and withdrawal."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from pathways_shared.event_payloads import ReferralSubmitted, ReferralWithdrawn
from pathways_shared.vocabulary import (
    Complexity,
    NeedStatus,
    Pathway,
    WithdrawalReason,
)
from referrals.domain.referral import NeedFlag, ReferralStatus, UnknownNeed, referral_status
from referrals.domain.submission import InvalidSubmission, NeedRequest, submit_referral
from referrals.domain.withdrawal import (
    InvalidWithdrawal,
    ReferralAlreadyWithdrawn,
    ReferralClosed,
    withdraw_referral,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)

S = NeedStatus


def two_needs(build):
    return build.submission(
        needs=(
            NeedRequest(
                pathway=Pathway.ACCOMMODATION,
                complexity=Complexity.MEDIUM,
                details="No fixed abode on release",
                flags=(NeedFlag.WOMEN_SPECIFIC, NeedFlag.AT_RISK_OF_HOMELESSNESS),
            ),
            NeedRequest(pathway=Pathway.HEALTH, complexity=Complexity.HIGH),
        )
    )


# ----------------------------------------------------------------------------- submission


def test_submission_creates_the_referral_with_every_need_submitted(build):
    decision = submit_referral(
        two_needs(build), actor="probation:alex", now=NOW, new_id=build.ids()
    )
    referral = decision.referral
    assert referral.id == UUID(int=1)
    assert [n.id for n in referral.needs] == [UUID(int=2), UUID(int=3)]
    assert [n.status for n in referral.needs] == [S.SUBMITTED, S.SUBMITTED]
    assert referral.status is ReferralStatus.OPEN
    assert (referral.submitted_at, referral.submitted_by) == (NOW, "probation:alex")
    assert referral.needs[0].flags == (NeedFlag.AT_RISK_OF_HOMELESSNESS, NeedFlag.WOMEN_SPECIFIC)
    assert referral.needs[0].details == "No fixed abode on release"


def test_submission_history_records_the_referral_and_each_need(build):
    decision = submit_referral(
        two_needs(build), actor="probation:alex", now=NOW, new_id=build.ids()
    )
    assert [(h.event, h.need_id, h.actor, h.at) for h in decision.history] == [
        ("submitted", None, "probation:alex", NOW),
        ("need-submitted", UUID(int=2), "probation:alex", NOW),
        ("need-submitted", UUID(int=3), "probation:alex", NOW),
    ]
    assert decision.history[2].detail == {"pathway": "health", "complexity": "high"}


def test_an_invalid_submission_creates_nothing(build):
    ids = build.ids()
    with pytest.raises(InvalidSubmission):
        submit_referral(build.submission(needs=()), actor="probation:alex", now=NOW, new_id=ids)
    assert ids() == UUID(int=1)  # no id was drawn


def test_the_submitted_event_carries_routing_facts_only(build):
    sub = two_needs(build)
    sub = replace(sub, person=replace(sub.person, date_of_birth=date(2000, 11, 25)))
    [event] = submit_referral(sub, actor="probation:alex", now=NOW, new_id=build.ids()).events
    assert isinstance(event.payload, ReferralSubmitted)  # the shared model, the one definition
    assert event.event_type == "referrals.referral.submitted"
    assert event.occurred_at == NOW
    assert event.person_identifiers() == [
        {"type": "CRN", "value": "X123456"},
        {"type": "NOMS", "value": "A1234BC"},
    ]
    info = event.additional_information()
    assert info == {
        "referralId": str(UUID(int=1)),
        "area": "E08000029",
        "needs": [
            {
                "needId": str(UUID(int=2)),
                "pathway": "accommodation",
                "complexity": "medium",
                "flags": ["at_risk_of_homelessness", "women_specific"],
            },
            {"needId": str(UUID(int=3)), "pathway": "health", "complexity": "high", "flags": []},
        ],
        "sex": "male",
        "ageOnSubmission": 25,  # 26 tomorrow
        "supervisionStatus": "licence",
        "rosh": "medium",
        "mappaLevel": None,
    }
    serialised = json.dumps(info)
    for personal in ("Sam", "Example", "2000-11-25", "alex.officer", "No fixed abode", "X123456"):
        assert personal not in serialised


def test_a_person_without_noms_number_is_identified_by_crn_alone(build):
    sub = build.submission(person=build.person(noms_number=None))
    [event] = submit_referral(sub, actor="p", now=NOW, new_id=build.ids()).events
    assert event.person_identifiers() == [{"type": "CRN", "value": "X123456"}]


# ----------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([S.SUBMITTED], ReferralStatus.OPEN),
        ([S.ALLOCATED, S.COMPLETED], ReferralStatus.OPEN),
        ([S.DECLINED], ReferralStatus.OPEN),  # transient, waiting to be routed again
        ([S.ACKNOWLEDGED, S.ACCEPTED, S.IN_PROGRESS], ReferralStatus.OPEN),
        ([S.UNALLOCATED], ReferralStatus.CLOSED),
        ([S.COMPLETED, S.UNALLOCATED], ReferralStatus.CLOSED),
        ([S.WITHDRAWN], ReferralStatus.WITHDRAWN),
        ([S.COMPLETED, S.WITHDRAWN], ReferralStatus.WITHDRAWN),
        ([S.WITHDRAWN, S.IN_PROGRESS], ReferralStatus.OPEN),
    ],
)
def test_referral_status_is_derived_from_its_needs(build, statuses, expected):
    base = build.referral().needs[0]
    needs = [replace(base, status=status) for status in statuses]
    assert referral_status(needs) is expected


def test_a_referral_without_needs_has_no_status():
    with pytest.raises(ValueError):
        referral_status([])


# ----------------------------------------------------------------------------- withdrawal


def with_statuses(build, *statuses):
    referral = build.referral(two_needs(build) if len(statuses) == 2 else None)
    return replace(
        referral,
        needs=tuple(replace(n, status=s) for n, s in zip(referral.needs, statuses, strict=True)),
    )


@pytest.mark.parametrize(
    ("before", "after", "withdrawn_ids"),
    [
        ((S.SUBMITTED, S.ALLOCATED), (S.WITHDRAWN, S.WITHDRAWN), [2, 3]),
        ((S.COMPLETED, S.IN_PROGRESS), (S.COMPLETED, S.WITHDRAWN), [3]),
        ((S.UNALLOCATED, S.DECLINED), (S.UNALLOCATED, S.WITHDRAWN), [3]),
        ((S.ACKNOWLEDGED, S.ACCEPTED), (S.WITHDRAWN, S.WITHDRAWN), [2, 3]),
    ],
)
def test_withdrawal_withdraws_every_need_not_yet_ended(build, before, after, withdrawn_ids):
    referral = with_statuses(build, *before)
    decision = withdraw_referral(
        referral,
        reason_code=WithdrawalReason.MOVED_OUT_OF_AREA,
        comments=None,
        actor="probation:alex",
        now=LATER,
    )
    withdrawn = decision.referral
    assert tuple(n.status for n in withdrawn.needs) == after
    assert withdrawn.status is ReferralStatus.WITHDRAWN
    assert withdrawn.withdrawal is not None
    assert withdrawn.withdrawal.withdrawn_at == LATER
    for need in withdrawn.needs:
        if need.id.int in withdrawn_ids:
            assert (need.status_reason, need.updated_at) == ("moved_out_of_area", LATER)
    [event] = decision.events
    assert isinstance(event.payload, ReferralWithdrawn)
    assert event.event_type == "referrals.referral.withdrawn"
    assert event.additional_information() == {
        "referralId": str(UUID(int=1)),
        "needIds": [str(UUID(int=i)) for i in withdrawn_ids],
        "reasonCode": "moved_out_of_area",
    }
    assert [(h.event, h.need_id.int if h.need_id else None) for h in decision.history] == [
        ("withdrawn", None),
        *[("need-withdrawn", i) for i in withdrawn_ids],
    ]
    assert all(h.at == LATER and h.actor == "probation:alex" for h in decision.history)


@pytest.mark.parametrize(
    ("statuses", "error", "code"),
    [
        ((S.WITHDRAWN,), ReferralAlreadyWithdrawn, "referral-already-withdrawn"),
        ((S.COMPLETED, S.WITHDRAWN), ReferralAlreadyWithdrawn, "referral-already-withdrawn"),
        ((S.COMPLETED,), ReferralClosed, "referral-closed"),
        ((S.UNALLOCATED, S.COMPLETED), ReferralClosed, "referral-closed"),
    ],
)
def test_withdrawing_a_withdrawn_or_closed_referral_is_a_conflict(build, statuses, error, code):
    referral = with_statuses(build, *statuses)
    with pytest.raises(error) as raised:
        withdraw_referral(
            referral,
            reason_code=WithdrawalReason.DUPLICATE,
            comments=None,
            actor="probation:alex",
            now=LATER,
        )
    assert (raised.value.status, raised.value.code) == (409, code)


def test_withdrawing_twice_is_a_conflict(build):
    first = withdraw_referral(
        build.referral(), reason_code=WithdrawalReason.DECEASED, comments=None, actor="a", now=LATER
    )
    with pytest.raises(ReferralAlreadyWithdrawn):
        withdraw_referral(
            first.referral,
            reason_code=WithdrawalReason.DECEASED,
            comments=None,
            actor="a",
            now=LATER,
        )


@pytest.mark.parametrize(
    ("reason", "comments", "valid"),
    [
        (WithdrawalReason.OTHER, None, False),
        (WithdrawalReason.OTHER, "  ", False),
        (WithdrawalReason.OTHER, "Transferred to another scheme", True),
        (WithdrawalReason.SENTENCE_ENDED, None, True),
    ],
)
def test_withdrawal_for_other_needs_comments(build, reason, comments, valid):
    def withdraw():
        return withdraw_referral(
            build.referral(), reason_code=reason, comments=comments, actor="a", now=LATER
        )

    if valid:
        assert withdraw().referral.status is ReferralStatus.WITHDRAWN
    else:
        with pytest.raises(InvalidWithdrawal) as raised:
            withdraw()
        assert raised.value.status == 422
        assert [e.field for e in raised.value.field_errors] == ["comments"]
        assert raised.value.errors == [
            {"field": "comments", "message": "is required when reason_code is other"}
        ]


def test_unknown_need_is_a_not_found(build):
    with pytest.raises(UnknownNeed) as raised:
        build.referral().need(UUID(int=99))
    assert raised.value.status == 404
