"""The provider referral: allocation, state machine, reason codes, deadlines, Duty to Refer."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pathways_shared.events import EVENT_TYPES
from pathways_shared.vocabulary import Complexity, Pathway, Sex, SupervisionStatus
from providers.domain.catalogue import load_seed_catalogue
from providers.domain.provider_referral import (
    ALLOWED_FROM,
    Deadline,
    DeadlineMissed,
    NeedToRoute,
    ProviderReferral,
    ProviderReferralStatus,
    ProviderReferralWithdrawn,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralAllocated,
    ReferralCompleted,
    ReferralDeclined,
    ReferralStarted,
    ReferralUnallocated,
    allocate,
    apply_decision,
    declined_services,
    requires_duty_to_refer,
)
from providers.domain.routing import EligibilityQuery, route
from providers.domain.working_days import WorkingCalendar
from providers.errors import IllegalTransition, InvalidValue

S = ProviderReferralStatus
CATALOGUE = load_seed_catalogue()
CALENDAR = WorkingCalendar()
ALLOCATED_AT = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # Thursday before Christmas
NOW = ALLOCATED_AT + timedelta(hours=2)
REFERRAL_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
NEED_ID = uuid.UUID("00000000-0000-0000-0000-000000000002")
PR_ID = uuid.UUID("00000000-0000-0000-0000-000000000003")
IDS = {"referralId": str(REFERRAL_ID), "needId": str(NEED_ID), "providerReferralId": str(PR_ID)}
SERVICE_INFO = {
    "serviceCode": "CRS-ACC-M",
    "providerCode": "NACRO",
    "programme": "CRS",
    "pathway": "accommodation",
}


def need(**changes: Any) -> NeedToRoute:
    base = NeedToRoute(
        referral_id=REFERRAL_ID,
        need_id=NEED_ID,
        crn="X123456",
        area="E08000029",
        pathway=Pathway.ACCOMMODATION,
        complexity=Complexity.MEDIUM,
        flags=(),
        consent_given=True,
    )
    return dataclasses.replace(base, **changes)


def allocated(service_code: str = "CRS-ACC-M") -> ProviderReferral:
    service = CATALOGUE.service(service_code)
    assert service is not None
    referral, _ = allocate(
        need(), service, provider_referral_id=PR_ID, now=ALLOCATED_AT, calendar=CALENDAR
    )
    return referral


def in_status(status: ProviderReferralStatus) -> ProviderReferral:
    return dataclasses.replace(allocated(), status=status)


ACTIONS: dict[str, Any] = {
    "acknowledge": lambda r: r.acknowledge(NOW),
    "accept": lambda r: r.accept(NOW),
    "decline": lambda r: r.decline(NOW, "capacity"),
    "start": lambda r: r.start(NOW),
    "complete": lambda r: r.complete(NOW, "achieved"),
    "withdraw": lambda r: r.withdraw(NOW, "recalled_to_custody"),
}

TRANSITIONS = {
    (S.ALLOCATED, "acknowledge"): (S.ACKNOWLEDGED, ReferralAcknowledged),
    (S.ALLOCATED, "accept"): (S.ACCEPTED, ReferralAccepted),
    (S.ALLOCATED, "decline"): (S.DECLINED, ReferralDeclined),
    (S.ALLOCATED, "withdraw"): (S.WITHDRAWN, ProviderReferralWithdrawn),
    (S.ACKNOWLEDGED, "accept"): (S.ACCEPTED, ReferralAccepted),
    (S.ACKNOWLEDGED, "decline"): (S.DECLINED, ReferralDeclined),
    (S.ACKNOWLEDGED, "withdraw"): (S.WITHDRAWN, ProviderReferralWithdrawn),
    (S.ACCEPTED, "start"): (S.IN_PROGRESS, ReferralStarted),
    (S.ACCEPTED, "withdraw"): (S.WITHDRAWN, ProviderReferralWithdrawn),
    (S.IN_PROGRESS, "complete"): (S.COMPLETED, ReferralCompleted),
    (S.IN_PROGRESS, "withdraw"): (S.WITHDRAWN, ProviderReferralWithdrawn),
}

ALL_PAIRS = [(status, action) for status in S for action in ACTIONS]


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS)
def test_state_machine_every_status_and_action(status: ProviderReferralStatus, action: str) -> None:
    referral = in_status(status)
    expected = TRANSITIONS.get((status, action))
    assert referral.can(action) is (expected is not None)
    if expected is None:
        with pytest.raises(IllegalTransition) as caught:
            ACTIONS[action](referral)
        assert caught.value.status == 409
        assert caught.value.code == "illegal-transition"
        assert str(status) in caught.value.detail and action in caught.value.detail
        return
    new, event = ACTIONS[action](referral)
    new_status, event_type = expected
    assert new.status == new_status
    assert isinstance(event, event_type)
    # the event is the shared payload model; its envelope carries the referral's CRN
    assert (event.referral_id, event.need_id, event.provider_referral_id, new.crn) == (
        str(REFERRAL_ID),
        str(NEED_ID),
        str(PR_ID),
        "X123456",
    )
    assert SERVICE_INFO.items() <= event.additional_information().items()
    assert referral.status == status  # the old value is untouched


def test_allowed_from_matches_the_transition_table() -> None:
    allowed = {(status, action) for action, statuses in ALLOWED_FROM.items() for status in statuses}
    assert allowed == set(TRANSITIONS)


@pytest.mark.parametrize("status", [S.DECLINED, S.COMPLETED, S.WITHDRAWN])
def test_ended_statuses(status: ProviderReferralStatus) -> None:
    assert in_status(status).ended


@pytest.mark.parametrize("status", [S.ALLOCATED, S.ACKNOWLEDGED, S.ACCEPTED, S.IN_PROGRESS])
def test_open_statuses(status: ProviderReferralStatus) -> None:
    assert not in_status(status).ended


@pytest.mark.parametrize(
    "end",
    [
        lambda r: r.decline(NOW, "capacity")[0],
        lambda r: r.withdraw(NOW, "recalled_to_custody")[0],
        lambda r: r.accept(NOW)[0].start(NOW)[0].complete(NOW, "achieved")[0],
    ],
)
def test_person_details_are_shared_until_a_set_period_after_the_end(end: Any) -> None:
    thirty_days = timedelta(days=30)
    live = allocated()
    assert live.shares_person_details(NOW + timedelta(days=400), thirty_days)
    ended = end(live)
    assert ended.ended_at == NOW
    assert ended.shares_person_details(NOW + thirty_days - timedelta(seconds=1), thirty_days)
    assert not ended.shares_person_details(NOW + thirty_days, thirty_days)
    assert not ended.shares_person_details(NOW, timedelta(0))


def test_full_happy_path_records_each_time() -> None:
    times = [ALLOCATED_AT + timedelta(days=d) for d in range(1, 5)]
    referral, _ = allocated().acknowledge(times[0])
    referral, _ = referral.accept(times[1])
    referral, _ = referral.start(times[2], started_at=times[2] - timedelta(hours=1))
    referral, event = referral.complete(times[3], "partially_achieved", "  most goals met ")
    assert referral.acknowledged_at == times[0] and referral.responded_at == times[1]
    assert referral.started_at == times[2] - timedelta(hours=1)
    assert referral.completed_at == times[3]
    assert referral.outcome == "partially_achieved" and referral.outcome_notes == "most goals met"
    assert event.additional_information() == IDS | SERVICE_INFO | {"outcome": "partially_achieved"}


@pytest.mark.parametrize("action", ["accept", "decline"])
def test_accept_or_decline_implies_acknowledgement(action: str) -> None:
    new, _ = ACTIONS[action](allocated())
    assert new.acknowledged_at == NOW and new.responded_at == NOW


def test_acknowledgement_time_is_kept_on_accept() -> None:
    earlier = NOW - timedelta(hours=1)
    acknowledged, _ = allocated().acknowledge(earlier)
    accepted, _ = acknowledged.accept(NOW)
    assert accepted.acknowledged_at == earlier


@pytest.mark.parametrize(
    ("reason", "comments", "stored"),
    [
        ("capacity", None, None),
        ("not_eligible", "under another order", "under another order"),
        ("risk_too_high", "", None),
        ("unable_to_engage", None, None),
        ("duplicate", None, None),
        ("other", "no bed spaces until January", "no bed spaces until January"),
    ],
)
def test_decline_reasons(reason: str, comments: str | None, stored: str | None) -> None:
    new, event = allocated().decline(NOW, reason, comments)
    assert new.decline_reason == reason and new.decline_comments == stored
    assert event.additional_information() == IDS | SERVICE_INFO | {"reasonCode": reason}


@pytest.mark.parametrize(
    ("reason", "comments", "field"),
    [
        ("other", None, "comments"),
        ("other", "", "comments"),
        ("other", "   ", "comments"),
        ("too_busy", None, "reason_code"),
        ("", None, "reason_code"),
        ("CAPACITY", None, "reason_code"),
        ("capacity", "x" * 4001, "comments"),
    ],
)
def test_decline_refuses_bad_reasons(reason: str, comments: str | None, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        allocated().decline(NOW, reason, comments)
    assert caught.value.status == 422
    assert [e.field for e in caught.value.field_errors] == [field]


def test_an_illegal_decline_is_409_before_its_reason_is_checked() -> None:
    with pytest.raises(IllegalTransition):
        in_status(S.COMPLETED).decline(NOW, "nonsense")


@pytest.mark.parametrize("outcome", ["achieved", "partially_achieved", "not_achieved"])
def test_completion_outcomes(outcome: str) -> None:
    new, event = in_status(S.IN_PROGRESS).complete(NOW, outcome)
    assert new.outcome == outcome and event.outcome == outcome and new.outcome_notes is None


@pytest.mark.parametrize("outcome", ["success", "", "Achieved"])
def test_completion_refuses_unknown_outcomes(outcome: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        in_status(S.IN_PROGRESS).complete(NOW, outcome)
    assert [e.field for e in caught.value.field_errors] == ["outcome"]


@pytest.mark.parametrize(
    ("started_at", "field_message"),
    [
        (NOW + timedelta(seconds=1), "must not be in the future"),
        (ALLOCATED_AT - timedelta(seconds=1), "must not be before the allocation"),
        (datetime(2026, 12, 24, 11, 0), "must include a time zone"),
    ],
)
def test_start_refuses_impossible_times(started_at: datetime, field_message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        in_status(S.ACCEPTED).start(NOW, started_at)
    assert [(e.field, e.message) for e in caught.value.field_errors] == [
        ("started_at", field_message)
    ]


@pytest.mark.parametrize("started_at", [None, NOW, ALLOCATED_AT])
def test_start_at_its_edges(started_at: datetime | None) -> None:
    new, _ = in_status(S.ACCEPTED).start(NOW, started_at)
    assert new.started_at == (started_at or NOW)


@pytest.mark.parametrize(
    "reason",
    [
        "recalled_to_custody",
        "moved_out_of_area",
        "sentence_ended",
        "deceased",
        "no_longer_required",
        "disengaged",
        "duplicate",
        "other",
    ],
)
def test_withdrawal_reasons(reason: str) -> None:
    new, event = allocated().withdraw(NOW, reason)
    assert (new.status, new.withdrawal_reason, new.withdrawn_at) == (S.WITHDRAWN, reason, NOW)
    assert event.additional_information()["reasonCode"] == reason


def test_withdrawal_refuses_unknown_reasons() -> None:
    with pytest.raises(InvalidValue) as caught:
        allocated().withdraw(NOW, "bored")
    assert [e.field for e in caught.value.field_errors] == ["reason_code"]


# ---- allocation and its events ------------------------------------------------------------


def test_allocation_computes_deadlines_over_the_christmas_bank_holidays() -> None:
    service = CATALOGUE.service("CRS-ACC-M")
    assert service is not None
    referral, event = allocate(
        need(flags=("at_risk_of_homelessness",)),
        service,
        provider_referral_id=PR_ID,
        now=ALLOCATED_AT,
        calendar=CALENDAR,
    )
    assert referral.status == S.ALLOCATED and referral.allocated_at == ALLOCATED_AT
    assert referral.acknowledge_by == datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)
    assert referral.respond_by == datetime(2027, 1, 5, 23, 59, 59, tzinfo=UTC)
    assert (referral.service_code, referral.provider_code, referral.programme) == (
        "CRS-ACC-M",
        "NACRO",
        "CRS",
    )
    assert isinstance(event, ReferralAllocated)
    assert event.event_type == "providers.referral.allocated"
    assert event.additional_information() == {
        "referralId": str(REFERRAL_ID),
        "needId": str(NEED_ID),
        "providerReferralId": str(PR_ID),
        "serviceCode": "CRS-ACC-M",
        "providerCode": "NACRO",
        "programme": "CRS",
        "pathway": "accommodation",
        "area": "E08000029",
        "acknowledgeBy": "2026-12-30T23:59:59.000Z",
        "respondBy": "2027-01-05T23:59:59.000Z",
        "dutyToRefer": True,
    }


@pytest.mark.parametrize(
    ("acknowledge_days", "respond_days", "ack", "respond"),
    [
        (
            1,
            1,
            datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC),
        ),
        (
            3,
            10,
            datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2027, 1, 12, 23, 59, 59, tzinfo=UTC),
        ),
    ],
)
def test_service_levels_are_per_service(
    acknowledge_days: int, respond_days: int, ack: datetime, respond: datetime
) -> None:
    service = CATALOGUE.service("CRS-ACC-M")
    assert service is not None
    custom = service.model_copy(
        update={"acknowledge_days": acknowledge_days, "respond_days": respond_days}
    )
    referral, _ = allocate(
        need(), custom, provider_referral_id=PR_ID, now=ALLOCATED_AT, calendar=CALENDAR
    )
    assert (referral.acknowledge_by, referral.respond_by) == (ack, respond)


def test_allocation_refuses_a_naive_time() -> None:
    service = CATALOGUE.service("CRS-ACC-M")
    assert service is not None
    with pytest.raises(InvalidValue):
        allocate(
            need(),
            service,
            provider_referral_id=PR_ID,
            now=datetime(2026, 12, 24),
            calendar=CALENDAR,
        )


def _query(**changes: Any) -> EligibilityQuery:
    base = EligibilityQuery(
        area="E08000029",
        pathway=Pathway.ACCOMMODATION,
        complexity=Complexity.MEDIUM,
        sex=Sex.MALE,
        age=30,
        supervision_status=SupervisionStatus.LICENCE,
    )
    return dataclasses.replace(base, **changes)


def test_apply_decision_allocates_the_chosen_service() -> None:
    decision = route(CATALOGUE.services, _query())
    referral, event = apply_decision(
        need(), decision, provider_referral_id=PR_ID, now=ALLOCATED_AT, calendar=CALENDAR
    )
    assert referral is not None and referral.service_code == "CRS-ACC-M"
    assert isinstance(event, ReferralAllocated)


@pytest.mark.parametrize(("flags", "duty"), [(("at_risk_of_homelessness",), True), ((), False)])
def test_unallocated_need_carries_its_reason_and_the_duty_to_refer(
    flags: tuple[str, ...], duty: bool
) -> None:
    decision = route(CATALOGUE.services, _query(supervision_status=SupervisionStatus.NON_STATUTORY))
    referral, event = apply_decision(
        need(flags=flags), decision, provider_referral_id=PR_ID, now=ALLOCATED_AT, calendar=CALENDAR
    )
    assert referral is None and isinstance(event, ReferralUnallocated)
    assert event.event_type == "providers.referral.unallocated"
    info = event.additional_information()
    assert (
        info["reason"] == decision.unallocated_reason
        and "statutory supervision only" in info["reason"]
    )
    assert (info["referralId"], info["needId"], info["dutyToRefer"]) == (
        str(REFERRAL_ID),
        str(NEED_ID),
        duty,
    )
    assert "providerReferralId" not in info
    # Every accommodation service, in routing order, with its first failing criterion.
    assert info["reasons"] == [
        {"serviceCode": "CRS-ACC-F", "criterion": "sex"},
        {"serviceCode": "CRS-ACC-M", "criterion": "supervision_status"},
    ]
    assert (info["area"], info["pathway"]) == ("E08000029", "accommodation")


@pytest.mark.parametrize(
    ("pathway", "flags", "consent", "duty"),
    [
        (Pathway.ACCOMMODATION, ("at_risk_of_homelessness",), True, True),
        (Pathway.ACCOMMODATION, ("children_in_household", "at_risk_of_homelessness"), True, True),
        (Pathway.ACCOMMODATION, ("at_risk_of_homelessness",), False, False),
        (Pathway.ACCOMMODATION, (), True, False),
        (Pathway.ACCOMMODATION, ("women_specific",), True, False),
        (Pathway.FINANCE_BENEFIT_DEBT, ("at_risk_of_homelessness",), True, False),
        (Pathway.CHILDREN_FAMILIES, ("at_risk_of_homelessness",), True, False),
    ],
)
def test_duty_to_refer(pathway: Pathway, flags: tuple[str, ...], consent: bool, duty: bool) -> None:
    assert requires_duty_to_refer(pathway, flags, consent) is duty
    assert need(pathway=pathway, flags=flags, consent_given=consent).duty_to_refer is duty


def test_the_duty_to_refer_is_carried_whatever_provider_is_chosen() -> None:
    for sex, code in [(Sex.MALE, "CRS-ACC-M"), (Sex.FEMALE, "CRS-ACC-F")]:
        decision = route(CATALOGUE.services, _query(sex=sex))
        _, event = apply_decision(
            need(flags=("at_risk_of_homelessness",)),
            decision,
            provider_referral_id=PR_ID,
            now=ALLOCATED_AT,
            calendar=CALENDAR,
        )
        assert isinstance(event, ReferralAllocated)
        assert (event.service_code, event.duty_to_refer) == (code, True)


def test_declined_services_come_from_declined_provider_referrals() -> None:
    base = allocated()
    referrals = [
        dataclasses.replace(base, service_code="CRS-ETE-M", status=S.DECLINED),
        dataclasses.replace(base, service_code="CFO3-ETE", status=S.ALLOCATED),
        dataclasses.replace(base, service_code="OLD", status=S.WITHDRAWN),
    ]
    assert declined_services(referrals) == frozenset({"CRS-ETE-M"})


def test_decline_then_reroute_goes_from_crs_to_cfo3() -> None:
    query = _query(pathway=Pathway.EDUCATION_TRAINING_EMPLOYMENT)
    ete_need = need(pathway=Pathway.EDUCATION_TRAINING_EMPLOYMENT)
    first, _ = apply_decision(
        ete_need,
        route(CATALOGUE.services, query),
        provider_referral_id=PR_ID,
        now=ALLOCATED_AT,
        calendar=CALENDAR,
    )
    assert first is not None and first.service_code == "CRS-ETE-M"
    declined, _ = first.decline(NOW, "capacity")
    second_decision = route(CATALOGUE.services, query, declined_by=declined_services([declined]))
    second, event = apply_decision(
        ete_need, second_decision, provider_referral_id=uuid.uuid4(), now=NOW, calendar=CALENDAR
    )
    assert (
        second is not None and second.service_code == "CFO3-ETE" and second.provider_code == "IXION"
    )
    assert isinstance(event, ReferralAllocated) and event.programme == "CFO3"
    declined_again, _ = second.decline(NOW, "other", "no places")
    third_decision = route(
        CATALOGUE.services, query, declined_by=declined_services([declined, declined_again])
    )
    _, unallocated = apply_decision(
        ete_need, third_decision, provider_referral_id=uuid.uuid4(), now=NOW, calendar=CALENDAR
    )
    assert isinstance(unallocated, ReferralUnallocated)
    criteria = {r.service_code: r.criterion for r in unallocated.reasons or []}
    assert criteria["CRS-ETE-M"] == criteria["CFO3-ETE"] == "previously_declined"


# ---- service levels missed ----------------------------------------------------------------

ACK_BY = datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)
RESPOND_BY = datetime(2027, 1, 5, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "now", "reported", "missed"),
    [
        (S.ALLOCATED, ACK_BY, (), []),
        (S.ALLOCATED, ACK_BY + timedelta(seconds=1), (), [Deadline.ACKNOWLEDGE]),
        (S.ALLOCATED, RESPOND_BY, (), [Deadline.ACKNOWLEDGE]),
        (
            S.ALLOCATED,
            RESPOND_BY + timedelta(seconds=1),
            (),
            [Deadline.ACKNOWLEDGE, Deadline.RESPOND],
        ),
        (S.ALLOCATED, RESPOND_BY + timedelta(days=1), ("acknowledge",), [Deadline.RESPOND]),
        (S.ALLOCATED, RESPOND_BY + timedelta(days=1), (Deadline.ACKNOWLEDGE, Deadline.RESPOND), []),
        (S.ACKNOWLEDGED, ACK_BY + timedelta(days=1), (), []),
        (S.ACKNOWLEDGED, RESPOND_BY + timedelta(seconds=1), (), [Deadline.RESPOND]),
        (S.ACCEPTED, RESPOND_BY + timedelta(days=9), (), []),
        (S.DECLINED, RESPOND_BY + timedelta(days=9), (), []),
        (S.IN_PROGRESS, RESPOND_BY + timedelta(days=9), (), []),
        (S.COMPLETED, RESPOND_BY + timedelta(days=9), (), []),
        (S.WITHDRAWN, RESPOND_BY + timedelta(days=9), (), []),
        (S.ALLOCATED, ALLOCATED_AT, (), []),
    ],
)
def test_missed_deadlines(
    status: ProviderReferralStatus, now: datetime, reported: tuple[Any, ...], missed: list[Deadline]
) -> None:
    referral = in_status(status)
    assert (referral.acknowledge_by, referral.respond_by) == (ACK_BY, RESPOND_BY)
    events = referral.missed_deadlines(now, reported)
    assert [e.deadline for e in events] == missed
    assert all(isinstance(e, DeadlineMissed) for e in events)


def test_a_withdrawn_referral_stops_its_clocks() -> None:
    withdrawn, _ = allocated().withdraw(NOW, "deceased")
    assert withdrawn.running_deadlines() == {}
    assert withdrawn.missed_deadlines(RESPOND_BY + timedelta(days=30)) == []


def test_deadline_missed_event() -> None:
    [event] = in_status(S.ACKNOWLEDGED).missed_deadlines(RESPOND_BY + timedelta(minutes=1))
    assert event.event_type == "providers.referral.deadline-missed"
    assert event.additional_information() == IDS | SERVICE_INFO | {
        "deadline": "respond",
        "dueAt": "2027-01-05T23:59:59.000Z",
    }


@pytest.mark.parametrize(
    "event_class",
    [
        ReferralAllocated,
        ReferralUnallocated,
        ReferralAcknowledged,
        ReferralAccepted,
        ReferralDeclined,
        ReferralStarted,
        ReferralCompleted,
        ProviderReferralWithdrawn,
        DeadlineMissed,
    ],
)
def test_event_types_are_known_to_the_shared_catalogue(event_class: type) -> None:
    assert event_class.event_type.startswith("providers.referral.")
    assert event_class.event_type in EVENT_TYPES
