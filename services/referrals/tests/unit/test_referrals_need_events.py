"""The need state machine over provider events: in order, repeated, out of order, re-routed."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from pathways_shared.event_payloads import PAYLOADS, NeedRef
from pathways_shared.events import Event
from pathways_shared.vocabulary import NeedStatus
from referrals.domain.need_lifecycle import (
    Deadline,
    MalformedProviderEvent,
    ProviderEvent,
    ProviderEventKind,
    apply_provider_event,
    apply_to_referral,
    read_provider_event,
)
from referrals.domain.referral import Need, ReferralStatus, UnknownNeed

K = ProviderEventKind
S = NeedStatus
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
REFERRAL = UUID(int=1)
NEED = UUID(int=2)
PR1 = UUID(int=101)
PR2 = UUID(int=102)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(kind: ProviderEventKind, minutes: int, pr: UUID | None = PR1, **extra) -> ProviderEvent:
    if kind is K.ALLOCATED:
        code = {PR1: "CRS-ETE-M", PR2: "CFO3-ETE"}.get(pr, "CRS-ETE-M")
        extra = {
            "service_code": code,
            "provider_code": "MAXIMUS" if code == "CRS-ETE-M" else "IXION",
            "programme": "CRS" if code == "CRS-ETE-M" else "CFO3",
            "acknowledge_by": at(minutes) + timedelta(days=2),
            "respond_by": at(minutes) + timedelta(days=5),
            **extra,
        }
    if kind is K.UNALLOCATED:
        pr = None
        extra = {"reason": "no eligible service", **extra}
    return ProviderEvent(
        kind=kind,
        occurred_at=at(minutes),
        referral_id=REFERRAL,
        need_id=NEED,
        provider_referral_id=pr,
        **extra,
    )


def fresh_need(build) -> Need:
    return build.referral().needs[0]


def run(need: Need, events: list[ProviderEvent]) -> Need:
    for e in events:
        need = apply_provider_event(need, e, now=NOW).need
    return need


# ----------------------------------------------------------------------------- in order


@pytest.mark.parametrize(
    ("events", "status", "reason"),
    [
        ([event(K.ALLOCATED, 0)], S.ALLOCATED, None),
        ([event(K.ALLOCATED, 0), event(K.ACKNOWLEDGED, 1)], S.ACKNOWLEDGED, None),
        ([event(K.ALLOCATED, 0), event(K.ACCEPTED, 1)], S.ACCEPTED, None),  # ack optional
        (
            [event(K.ALLOCATED, 0), event(K.ACKNOWLEDGED, 1), event(K.ACCEPTED, 2)],
            S.ACCEPTED,
            None,
        ),
        (
            [event(K.ALLOCATED, 0), event(K.DECLINED, 1, reason_code="capacity")],
            S.DECLINED,
            "capacity",
        ),
        (
            [event(K.ALLOCATED, 0), event(K.ACCEPTED, 1), event(K.STARTED, 2)],
            S.IN_PROGRESS,
            None,
        ),
        (
            [
                event(K.ALLOCATED, 0),
                event(K.ACCEPTED, 1),
                event(K.STARTED, 2),
                event(K.COMPLETED, 3, outcome="achieved"),
            ],
            S.COMPLETED,
            "achieved",
        ),
        ([event(K.UNALLOCATED, 0)], S.UNALLOCATED, "no eligible service"),
        (
            [
                event(K.ALLOCATED, 0),
                event(K.DECLINED, 1, reason_code="not_eligible"),
                event(K.UNALLOCATED, 2),
            ],
            S.UNALLOCATED,
            "no eligible service",
        ),
    ],
)
def test_events_in_order_move_the_need_forward(build, events, status, reason):
    need = run(fresh_need(build), events)
    assert (need.status, need.status_reason) == (status, reason)
    assert need.updated_at == NOW


def test_allocation_records_the_service_and_deadlines(build):
    need = run(fresh_need(build), [event(K.ALLOCATED, 0)])
    assert (need.service_code, need.provider_code, need.programme) == (
        "CRS-ETE-M",
        "MAXIMUS",
        "CRS",
    )
    assert need.provider_referral_id == PR1
    assert need.allocated_at == at(0)
    assert (need.acknowledge_by, need.respond_by) == (
        at(0) + timedelta(days=2),
        at(0) + timedelta(days=5),
    )


def test_a_decline_is_followed_by_the_next_allocation_with_the_new_provider(build):
    need = run(
        fresh_need(build),
        [
            event(K.ALLOCATED, 0),
            event(K.DECLINED, 1, reason_code="capacity"),
            event(K.ALLOCATED, 2, PR2),
        ],
    )
    assert need.status is S.ALLOCATED
    assert (need.provider_referral_id, need.service_code, need.provider_code) == (
        PR2,
        "CFO3-ETE",
        "IXION",
    )
    assert (need.status_reason, need.allocated_at) == (None, at(2))


def test_unallocation_clears_the_service(build):
    need = run(
        fresh_need(build),
        [event(K.ALLOCATED, 0), event(K.DECLINED, 1), event(K.UNALLOCATED, 2)],
    )
    assert (need.status, need.service_code, need.provider_referral_id) == (
        S.UNALLOCATED,
        None,
        None,
    )


# ----------------------------------------------------------------------------- ignored


@pytest.mark.parametrize(
    ("history", "late", "status", "why"),
    [
        # duplicates
        ([event(K.ALLOCATED, 0)], event(K.ALLOCATED, 0), S.ALLOCATED, "already allocated"),
        ([event(K.ALLOCATED, 0), event(K.ACCEPTED, 2)], event(K.ACCEPTED, 2), S.ACCEPTED, "stale"),
        # out of order within one provider referral
        (
            [event(K.ALLOCATED, 0), event(K.ACCEPTED, 2)],
            event(K.ACKNOWLEDGED, 1),
            S.ACCEPTED,
            "stale",
        ),
        (
            [event(K.ALLOCATED, 0), event(K.STARTED, 3)],
            event(K.ACCEPTED, 2),
            S.IN_PROGRESS,
            "stale",
        ),
        # contradictions of a decision already taken
        ([event(K.ALLOCATED, 0), event(K.ACCEPTED, 1)], event(K.DECLINED, 2), S.ACCEPTED, "stale"),
        (
            [event(K.ALLOCATED, 0), event(K.DECLINED, 1)],
            event(K.ACCEPTED, 2),
            S.DECLINED,
            "declined",
        ),
        (
            [event(K.ALLOCATED, 0), event(K.DECLINED, 1)],
            event(K.STARTED, 2),
            S.DECLINED,
            "declined",
        ),
        # a leftover of an earlier routing
        (
            [event(K.ALLOCATED, 0), event(K.DECLINED, 1), event(K.ALLOCATED, 2, PR2)],
            event(K.ACKNOWLEDGED, 1, PR1),
            S.ALLOCATED,
            "stale",
        ),
        (
            [event(K.ALLOCATED, 2, PR2)],
            event(K.DECLINED, 1, PR1),
            S.ALLOCATED,
            "stale",
        ),
        (
            [event(K.ALLOCATED, 2, PR2)],
            event(K.ALLOCATED, 0, PR1),
            S.ALLOCATED,
            "stale",
        ),
        # final states
        (
            [
                event(K.ALLOCATED, 0),
                event(K.ACCEPTED, 1),
                event(K.STARTED, 2),
                event(K.COMPLETED, 3),
            ],
            event(K.STARTED, 4),
            S.COMPLETED,
            "ended",
        ),
        ([event(K.UNALLOCATED, 0)], event(K.UNALLOCATED, 0), S.UNALLOCATED, "ended"),
        ([event(K.UNALLOCATED, 5)], event(K.ALLOCATED, 6, PR2), S.UNALLOCATED, "ended"),
        ([event(K.ALLOCATED, 3, PR2)], event(K.UNALLOCATED, 2), S.ALLOCATED, "stale"),
    ],
)
def test_stale_or_repeated_events_are_ignored_not_refused(build, history, late, status, why):
    need = run(fresh_need(build), history)
    decision = apply_provider_event(need, late, now=NOW + timedelta(hours=1))
    assert not decision.applied
    assert why in decision.ignored
    assert decision.need == need
    assert decision.need.status is status
    assert decision.history == ()


def test_a_withdrawn_need_ignores_every_provider_event(build):
    need = replace(run(fresh_need(build), [event(K.ALLOCATED, 0)]), status=S.WITHDRAWN)
    for kind in K:
        e = (
            event(kind, 9, deadline=Deadline.RESPOND)
            if kind is K.DEADLINE_MISSED
            else event(kind, 9)
        )
        decision = apply_provider_event(need, e, now=NOW)
        assert (decision.applied, decision.need.status) == (False, S.WITHDRAWN)


# ----------------------------------------------------------------------------- any order


FULL_RUN = [
    event(K.ALLOCATED, 0),
    event(K.ACKNOWLEDGED, 1),
    event(K.DECLINED, 2, reason_code="capacity"),
    event(K.ALLOCATED, 3, PR2),
    event(K.ACKNOWLEDGED, 4, PR2),
    event(K.ACCEPTED, 5, PR2),
    event(K.STARTED, 6, PR2),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(FULL_RUN))))[::97])
def test_any_arrival_order_ends_in_the_same_state(build, order):
    need = run(fresh_need(build), [FULL_RUN[i] for i in order] + [FULL_RUN[i] for i in order[:3]])
    assert need.status is S.IN_PROGRESS
    assert need.provider_referral_id == PR2
    assert (need.service_code, need.provider_code, need.programme) == ("CFO3-ETE", "IXION", "CFO3")
    assert need.allocated_at == at(3)


def test_the_permutation_sample_includes_the_reverse_order():
    sample = list(itertools.permutations(range(len(FULL_RUN))))[::97]
    assert len(sample) > 50
    assert any(order[0] == len(FULL_RUN) - 1 for order in sample)


@pytest.mark.parametrize(
    "arrival",
    [
        [event(K.ALLOCATED, 0), event(K.DECLINED, 1), event(K.ALLOCATED, 1, PR2)],
        [event(K.ALLOCATED, 0), event(K.ALLOCATED, 1, PR2), event(K.DECLINED, 1)],
        [event(K.ALLOCATED, 1, PR2), event(K.ALLOCATED, 0), event(K.DECLINED, 1)],
    ],
)
def test_a_decline_and_the_re_route_stamped_at_the_same_instant(build, arrival):
    need = run(fresh_need(build), arrival)
    assert (need.status, need.provider_referral_id) == (S.ALLOCATED, PR2)


@pytest.mark.parametrize(
    "arrival",
    [
        [event(K.DECLINED, 1), event(K.UNALLOCATED, 1)],
        [event(K.UNALLOCATED, 1), event(K.DECLINED, 1)],
        [event(K.ALLOCATED, 0), event(K.UNALLOCATED, 1), event(K.DECLINED, 1)],
    ],
)
def test_a_decline_then_unallocation_at_the_same_instant(build, arrival):
    assert run(fresh_need(build), arrival).status is S.UNALLOCATED


def test_a_late_allocation_fills_in_the_service_without_moving_back(build):
    need = run(fresh_need(build), [event(K.ACCEPTED, 1)])
    assert (need.status, need.service_code) == (S.ACCEPTED, None)
    decision = apply_provider_event(need, event(K.ALLOCATED, 0), now=NOW)
    assert decision.applied
    assert decision.need.status is S.ACCEPTED
    assert (decision.need.service_code, decision.need.allocated_at) == ("CRS-ETE-M", at(0))
    [entry] = decision.history
    assert (entry.event, entry.actor, entry.at) == (
        "allocation-recorded",
        "provider:MAXIMUS",
        at(0),
    )


# ----------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("history", "deadline", "applied"),
    [
        ([event(K.ALLOCATED, 0)], Deadline.ACKNOWLEDGE, True),
        ([event(K.ALLOCATED, 0)], Deadline.RESPOND, True),
        ([event(K.ALLOCATED, 0), event(K.ACKNOWLEDGED, 1)], Deadline.ACKNOWLEDGE, False),
        ([event(K.ALLOCATED, 0), event(K.ACKNOWLEDGED, 1)], Deadline.RESPOND, True),
        ([event(K.ALLOCATED, 0), event(K.ACCEPTED, 1)], Deadline.RESPOND, False),
        ([event(K.ALLOCATED, 0), event(K.DECLINED, 1)], Deadline.RESPOND, False),
        (
            [event(K.ALLOCATED, 0), event(K.DECLINED, 1), event(K.ALLOCATED, 2, PR2)],
            Deadline.RESPOND,
            False,
        ),
    ],
)
def test_a_missed_deadline_is_recorded_only_while_that_step_is_awaited(
    build, history, deadline, applied
):
    need = run(fresh_need(build), history)
    decision = apply_provider_event(
        need, event(K.DEADLINE_MISSED, 9, PR1, deadline=deadline), now=NOW
    )
    assert decision.applied is applied
    assert decision.need.status is need.status
    if applied:
        [entry] = decision.history
        assert (entry.event, entry.need_id, entry.detail["deadline"]) == (
            "deadline-missed",
            NEED,
            deadline.value,
        )


def test_a_missed_deadline_is_recorded_once(build):
    need = run(fresh_need(build), [event(K.ALLOCATED, 0)])
    missed = event(K.DEADLINE_MISSED, 9, deadline=Deadline.ACKNOWLEDGE)
    once = apply_provider_event(need, missed, now=NOW)
    twice = apply_provider_event(once.need, missed, now=NOW)
    assert once.applied and not twice.applied
    assert "already" in twice.ignored


def test_a_new_provider_referral_starts_with_no_missed_deadlines(build):
    need = run(
        fresh_need(build),
        [
            event(K.ALLOCATED, 0),
            event(K.DEADLINE_MISSED, 1, deadline=Deadline.ACKNOWLEDGE),
            event(K.DECLINED, 2),
            event(K.ALLOCATED, 3, PR2),
        ],
    )
    assert need.missed_deadlines == frozenset()
    decision = apply_provider_event(
        need, event(K.DEADLINE_MISSED, 4, PR2, deadline=Deadline.ACKNOWLEDGE), now=NOW
    )
    assert decision.applied


# ----------------------------------------------------------------------------- history


def test_each_transition_writes_one_history_entry_at_the_provider_time(build):
    need = fresh_need(build)
    entries = []
    for e in [
        event(K.ALLOCATED, 0),
        event(K.ACCEPTED, 1),
        event(K.DECLINED, 2, PR2, reason_code="other"),
    ]:
        decision = apply_provider_event(need, e, now=NOW)
        need = decision.need
        entries += decision.history
    assert [(h.event, h.at, h.actor, h.detail["from"], h.detail["to"]) for h in entries] == [
        ("allocated", at(0), "provider:MAXIMUS", "submitted", "allocated"),
        ("accepted", at(1), "provider:MAXIMUS", "allocated", "accepted"),
        ("declined", at(2), "providers", "accepted", "declined"),
    ]
    assert entries[0].detail["service_code"] == "CRS-ETE-M"
    assert entries[2].detail["reason_code"] == "other"
    assert all(h.need_id == NEED for h in entries)


def test_an_event_for_another_need_is_a_programming_error(build):
    with pytest.raises(ValueError):
        apply_provider_event(
            fresh_need(build), replace(event(K.ALLOCATED, 0), need_id=UUID(int=7)), now=NOW
        )


# ----------------------------------------------------------------------------- referral level


def test_the_referral_closes_when_its_last_need_ends(build):
    referral = build.referral()
    steps = [
        event(K.ALLOCATED, 0),
        event(K.ACCEPTED, 1),
        event(K.STARTED, 2),
        event(K.COMPLETED, 3, outcome="achieved"),
    ]
    for e in steps[:-1]:
        decision = apply_to_referral(referral, e, now=NOW)
        referral = decision.referral
        assert referral.status is ReferralStatus.OPEN
        assert [h.event for h in decision.history] == [e.kind.value]
    decision = apply_to_referral(referral, steps[-1], now=NOW)
    assert decision.referral.status is ReferralStatus.CLOSED
    assert [h.event for h in decision.history] == ["completed", "closed"]
    assert decision.history[1].need_id is None


def test_an_ignored_event_leaves_the_referral_unchanged(build):
    referral = apply_to_referral(build.referral(), event(K.ACCEPTED, 1), now=NOW).referral
    decision = apply_to_referral(referral, event(K.ACKNOWLEDGED, 0), now=NOW)
    assert (decision.applied, decision.referral, decision.history) == (False, referral, ())


def test_an_event_for_an_unknown_need_is_not_found(build):
    with pytest.raises(UnknownNeed):
        apply_to_referral(
            build.referral(), replace(event(K.ALLOCATED, 0), need_id=UUID(int=9)), now=NOW
        )


# ----------------------------------------------------------------------------- parsing


def info(**overrides):
    base = {
        "referralId": str(REFERRAL),
        "needId": str(NEED),
        "providerReferralId": str(PR1),
        "serviceCode": "CRS-ETE-M",
        "providerCode": "MAXIMUS",
        "programme": "CRS",
        "acknowledgeBy": "2026-11-26T23:59:59Z",
        "respondBy": "2026-12-01T23:59:59Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def parse_provider_event(event_type, occurred_at, additional):
    """What the consumer does with a message: the envelope, the payload validated as the shared
    model of its type (`consumer.typed`; a failure is dead-lettered), then read as a change."""
    envelope = Event.model_validate(
        {"eventType": event_type, "occurredAt": occurred_at, "additionalInformation": additional}
    )
    payload = PAYLOADS.get(event_type, NeedRef).model_validate(envelope.additional_information)
    return read_provider_event(envelope.event_type, envelope.occurred_at, payload)


def test_parse_an_allocation():
    parsed = parse_provider_event(
        "providers.referral.allocated", "2026-11-24T10:15:30.123Z", info()
    )
    assert parsed.kind is K.ALLOCATED
    assert parsed.occurred_at == datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=UTC)
    assert (parsed.referral_id, parsed.need_id, parsed.provider_referral_id) == (
        REFERRAL,
        NEED,
        PR1,
    )
    assert parsed.respond_by == datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "extra", "field", "value"),
    [
        (
            "providers.referral.unallocated",
            {"providerReferralId": None, "reason": "none eligible"},
            "reason",
            "none eligible",
        ),
        ("providers.referral.declined", {"reasonCode": "capacity"}, "reason_code", "capacity"),
        ("providers.referral.completed", {"outcome": "achieved"}, "outcome", "achieved"),
        (
            "providers.referral.deadline-missed",
            {"deadline": "respond"},
            "deadline",
            Deadline.RESPOND,
        ),
        ("providers.referral.started", {"extraField": 1}, "kind", K.STARTED),
    ],
)
def test_parse_each_kind(event_type, extra, field, value):
    parsed = parse_provider_event(event_type, "2026-11-24T10:15:30Z", info(**extra))
    assert getattr(parsed, field) == value


@pytest.mark.parametrize(
    ("event_type", "occurred_at", "additional"),
    [
        ("providers.referral.exploded", "2026-11-24T10:15:30Z", info()),
        ("cohorts.member.selected", "2026-11-24T10:15:30Z", info()),
        ("providers.referral.allocated", "yesterday", info()),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(respondBy="2026-12-01T23:59:59")),  # no zone
        ("providers.referral.declined", "2026-11-24T10:15:30Z", info(providerReferralId="PR-1", reasonCode="capacity")),
        ("providers.referral.completed", "2026-11-24T10:15:30Z", info(outcome=None)),
        ("providers.referral.allocated", None, info()),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", None),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(needId="not-a-uuid")),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(referralId=None)),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(serviceCode=None)),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(providerCode=7)),
        ("providers.referral.allocated", "2026-11-24T10:15:30Z", info(respondBy="soon")),
        ("providers.referral.accepted", "2026-11-24T10:15:30Z", info(providerReferralId=None)),
        ("providers.referral.deadline-missed", "2026-11-24T10:15:30Z", info()),
        ("providers.referral.deadline-missed", "2026-11-24T10:15:30Z", info(deadline="lunch")),
    ],
)
def test_malformed_events_are_refused_for_the_dead_letter_store(
    event_type, occurred_at, additional
):
    with pytest.raises((MalformedProviderEvent, ValidationError)):
        parse_provider_event(event_type, occurred_at, additional)


def test_parse_kinds_cover_every_provider_event_type():
    assert {k.event_type for k in K} == {
        "providers.referral.allocated",
        "providers.referral.unallocated",
        "providers.referral.acknowledged",
        "providers.referral.accepted",
        "providers.referral.declined",
        "providers.referral.started",
        "providers.referral.completed",
        "providers.referral.deadline-missed",
    }
