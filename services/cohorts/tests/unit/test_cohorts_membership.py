from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from cohorts.domain.membership import (
    Membership,
    MembershipStatus,
    adopt,
    deselect,
    deselection_suggestions,
    move,
    next_review_due,
    pathway_activity,
    review_if_due,
    run_completed,
    should_suggest_deselection,
)
from cohorts.domain.policy import SelectionPolicy, default_policy
from cohorts.domain.selection import Assessment, Nominal, Offence, assess, select, summarise
from cohorts.errors import AlreadyMember, IllegalTransition, InvalidValue, NotAMember, NotForIom
from pathways_shared.vocabulary import Cohort, DeselectionReason, OffenceCategory, SupervisionStatus

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
POLICY = default_policy()
AREA = "E08000029"


def assessment(
    *,
    crn: str = "X123456",
    born: date = date(1996, 1, 1),
    status: SupervisionStatus = SupervisionStatus.LICENCE,
    mappa: int | None = None,
    burglaries: int = 0,
    drugs_supply: int = 0,
) -> Assessment:
    history = [Offence(TODAY - timedelta(days=10), OffenceCategory.BURGLARY_DOMESTIC)] * burglaries
    history += [Offence(TODAY - timedelta(days=20), OffenceCategory.DRUGS_SUPPLY)] * drugs_supply
    nominal = Nominal(crn, born, status, mappa)
    return assess(summarise(nominal, history, TODAY, POLICY), TODAY, POLICY)


def adopted(cohort: Cohort = Cohort.FIXED, **kwargs: object) -> Membership:
    decision = adopt(
        None,
        crn="X123456",
        area=AREA,
        cohort=cohort,
        decided_by="DS Example",
        rationale="Prolific burglar, panel agreed",
        now=NOW,
        policy=POLICY,
        assessment=assessment(**kwargs),  # type: ignore[arg-type]
    )
    return decision.memberships[0]


# --- adoption -------------------------------------------------------------------------------


def test_adoption_records_who_why_and_the_next_review() -> None:
    decision = adopt(
        None,
        crn="X123456",
        area=AREA,
        cohort=Cohort.FIXED,
        decided_by="  DS Example ",
        rationale="Prolific burglar",
        now=NOW,
        policy=POLICY,
        assessment=assessment(burglaries=8),
    )
    (member,) = decision.memberships
    assert member.status is MembershipStatus.ACTIVE
    assert (member.adopted_by, member.rationale, member.adopted_at) == (
        "DS Example",
        "Prolific burglar",
        NOW,
    )
    assert member.review_due_at == NOW + timedelta(weeks=12)
    assert member.met_criteria is True
    assert member.score_at_adoption == 76
    (event,) = decision.events
    assert event.event_type == "cohorts.member.selected"
    assert decision.crn == "X123456"  # the events' envelope names the decision's person
    assert event.additional_information() == {
        "area": AREA,
        "cohort": "fixed",
        "score": 76,
        "reviewDueAt": "2027-02-16T10:00:00.000Z",
        "metCriteria": True,
    }


@pytest.mark.parametrize(
    ("cohort", "kwargs", "met"),
    [
        (Cohort.FIXED, {"burglaries": 8}, True),
        (Cohort.FLEX, {"burglaries": 8}, False),
        (Cohort.FLEX, {"burglaries": 8, "drugs_supply": 1}, True),  # met flex too
        (Cohort.FREE, {"burglaries": 8}, True),
        (Cohort.FREE, {"burglaries": 1}, False),  # the panel may still adopt
        (Cohort.FREE, {}, False),
        (Cohort.FIXED, {"burglaries": 8, "status": SupervisionStatus.NON_STATUTORY}, False),
        (Cohort.FIXED, {"burglaries": 8, "mappa": 3}, False),
        (Cohort.FIXED, {"burglaries": 8, "mappa": 1}, True),
    ],
)
def test_adoption_records_whether_the_cohort_criteria_were_met(
    cohort: Cohort, kwargs: dict, met: bool
) -> None:
    assert adopted(cohort, **kwargs).met_criteria is met


def test_the_review_interval_comes_from_the_policy() -> None:
    policy = SelectionPolicy(review_interval_weeks=4)
    decision = adopt(
        None,
        crn="X123456",
        area=AREA,
        cohort=Cohort.FREE,
        decided_by="a",
        rationale="b",
        now=NOW,
        policy=policy,
        assessment=assessment(),
    )
    assert decision.memberships[0].review_due_at == NOW + timedelta(weeks=4)


def test_an_under_18_cannot_be_adopted() -> None:
    with pytest.raises(NotForIom) as caught:
        adopted(born=date(2009, 1, 1), burglaries=10)
    assert caught.value.status == 422
    assert [e.field for e in caught.value.field_errors] == ["crn"]


@pytest.mark.parametrize(
    ("field", "value"), [("decided_by", "  "), ("rationale", ""), ("rationale", "x" * 2001)]
)
def test_adoption_needs_who_and_why(field: str, value: str) -> None:
    args = {"decided_by": "DS Example", "rationale": "why", field: value}
    with pytest.raises(InvalidValue) as caught:
        adopt(
            None,
            crn="X123456",
            area=AREA,
            cohort=Cohort.FIXED,
            now=NOW,
            policy=POLICY,
            assessment=assessment(),
            **args,
        )
    assert caught.value.status == 422
    assert [e.field for e in caught.value.field_errors] == [field]


@pytest.mark.parametrize("cohort", list(Cohort))
def test_a_current_member_cannot_be_adopted_again(cohort: Cohort) -> None:
    current = adopted(Cohort.FIXED)
    with pytest.raises(AlreadyMember) as caught:
        adopt(
            current,
            crn="X123456",
            area=AREA,
            cohort=cohort,
            decided_by="a",
            rationale="b",
            now=NOW,
            policy=POLICY,
            assessment=assessment(),
        )
    assert caught.value.status == 409


def test_a_former_member_can_be_adopted_again() -> None:
    gone = deselect(
        adopted(), reason=DeselectionReason.DESISTED, decided_by="a", now=NOW
    ).memberships[0]
    later = NOW + timedelta(days=100)
    decision = adopt(
        gone,
        crn="X123456",
        area=AREA,
        cohort=Cohort.FLEX,
        decided_by="a",
        rationale="b",
        now=later,
        policy=POLICY,
        assessment=assessment(),
    )
    assert decision.memberships[0].adopted_at == later
    assert decision.memberships[0].cohort is Cohort.FLEX


def test_the_clock_must_be_aware() -> None:
    with pytest.raises(ValueError):
        adopt(
            None,
            crn="X123456",
            area=AREA,
            cohort=Cohort.FIXED,
            decided_by="a",
            rationale="b",
            now=NOW.replace(tzinfo=None),
            policy=POLICY,
            assessment=assessment(),
        )


def test_the_assessment_must_be_of_the_same_person() -> None:
    with pytest.raises(ValueError):
        adopt(
            None,
            crn="X999999",
            area=AREA,
            cohort=Cohort.FIXED,
            decided_by="a",
            rationale="b",
            now=NOW,
            policy=POLICY,
            assessment=assessment(),
        )


# --- deselection and moves ------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(DeselectionReason))
def test_deselection_with_each_reason(reason: DeselectionReason) -> None:
    later = NOW + timedelta(days=30)
    decision = deselect(adopted(), reason=reason, decided_by="Panel", now=later, comments=" moved ")
    (ended,) = decision.memberships
    assert ended.status is MembershipStatus.DESELECTED
    assert (ended.deselected_at, ended.deselected_by, ended.deselection_reason) == (
        later,
        "Panel",
        reason,
    )
    assert ended.deselection_comments == "moved"
    (event,) = decision.events
    assert event.event_type == "cohorts.member.deselected"
    assert event.additional_information() == {
        "area": AREA,
        "cohort": "fixed",
        "reason": reason.value,
    }


def test_only_a_current_member_can_be_deselected() -> None:
    gone = deselect(
        adopted(), reason=DeselectionReason.DECEASED, decided_by="a", now=NOW
    ).memberships[0]
    for current in (None, gone):
        with pytest.raises(NotAMember) as caught:
            deselect(current, reason=DeselectionReason.DESISTED, decided_by="a", now=NOW)
        assert caught.value.status == 409


def test_deselection_needs_who() -> None:
    with pytest.raises(InvalidValue) as caught:
        deselect(adopted(), reason=DeselectionReason.DESISTED, decided_by="", now=NOW)
    assert [e.field for e in caught.value.field_errors] == ["decided_by"]


def test_a_move_ends_one_spell_and_starts_another() -> None:
    current = adopted(Cohort.FIXED, burglaries=8)
    later = NOW + timedelta(days=50)
    decision = move(
        current,
        to=Cohort.FLEX,
        decided_by="Panel",
        rationale="Now supplying drugs",
        now=later,
        policy=POLICY,
        assessment=assessment(drugs_supply=20),
    )
    ended, started = decision.memberships
    assert (ended.cohort, ended.status, ended.deselection_reason) == (
        Cohort.FIXED,
        MembershipStatus.DESELECTED,
        DeselectionReason.PANEL_DECISION,
    )
    assert (started.cohort, started.status, started.adopted_at) == (
        Cohort.FLEX,
        MembershipStatus.ACTIVE,
        later,
    )
    assert started.review_due_at == later + timedelta(weeks=12)
    assert started.met_criteria is True
    left, joined = decision.events
    assert left.additional_information() == {
        "area": AREA,
        "cohort": "fixed",
        "reason": "panel_decision",
        "movedTo": "flex",
    }
    assert joined.additional_information()["movedFrom"] == "fixed"
    assert joined.additional_information()["cohort"] == "flex"


def test_a_move_to_the_same_cohort_is_refused() -> None:
    with pytest.raises(IllegalTransition) as caught:
        move(
            adopted(Cohort.FIXED),
            to=Cohort.FIXED,
            decided_by="a",
            rationale="b",
            now=NOW,
            policy=POLICY,
            assessment=assessment(),
        )
    assert caught.value.status == 409


def test_only_a_current_member_can_be_moved() -> None:
    with pytest.raises(NotAMember):
        move(
            None,
            to=Cohort.FLEX,
            decided_by="a",
            rationale="b",
            now=NOW,
            policy=POLICY,
            assessment=assessment(),
        )


# --- reviews and deselection suggestions ----------------------------------------------------


@pytest.mark.parametrize(
    ("last_offence", "suggest"),
    [
        (None, True),
        (date(2025, 11, 25), False),  # inside the 12 months up to 2026-11-24
        (date(2025, 11, 24), True),
        (date(2024, 1, 1), True),
        (TODAY, False),
    ],
)
def test_deselection_is_suggested_after_twelve_quiet_months(
    last_offence: date | None, suggest: bool
) -> None:
    assert should_suggest_deselection(last_offence, TODAY, POLICY) is suggest


@pytest.mark.parametrize(
    ("today", "last_offence", "suggest"),
    [
        # on a leap day the 12 months run from 1 March of the year before
        (date(2028, 2, 29), date(2027, 2, 28), True),
        (date(2028, 2, 29), date(2027, 3, 1), False),
        # the day after, likewise (1 March 2027 is the anniversary, outside)
        (date(2028, 3, 1), date(2027, 3, 1), True),
        (date(2028, 3, 1), date(2027, 3, 2), False),
        # a month end: from 1 April
        (date(2027, 3, 31), date(2026, 3, 31), True),
        (date(2027, 3, 31), date(2026, 4, 1), False),
        # a leap day a year back is clamped to 28 February
        (date(2029, 2, 28), date(2028, 2, 28), True),
        (date(2029, 2, 28), date(2028, 2, 29), False),
    ],
)
def test_the_quiet_year_over_leap_days_and_month_ends(
    today: date, last_offence: date, suggest: bool
) -> None:
    assert should_suggest_deselection(last_offence, today, POLICY) is suggest


def test_the_review_cycle_is_in_instants_across_the_clock_changes() -> None:
    """Twelve weeks are twelve weeks of elapsed time: a review due at 10:00 UTC stays due at
    10:00 UTC whether London is on GMT or BST."""
    adopted = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # GMT
    after_spring = next_review_due(adopted, adopted, POLICY)
    assert after_spring == datetime(2027, 5, 24, 10, 0, tzinfo=UTC)  # BST by then
    after_autumn = next_review_due(adopted, datetime(2027, 10, 31, 1, 30, tzinfo=UTC), POLICY)
    assert after_autumn == datetime(2027, 11, 8, 10, 0, tzinfo=UTC)  # GMT again


def test_the_quiet_period_comes_from_the_policy() -> None:
    policy = SelectionPolicy(deselection_after_months=6)
    assert should_suggest_deselection(date(2026, 5, 24), TODAY, policy) is True
    assert should_suggest_deselection(date(2026, 5, 25), TODAY, policy) is False


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NOW - timedelta(seconds=1), NOW),
        (NOW, NOW + timedelta(weeks=12)),
        (NOW + timedelta(weeks=5), NOW + timedelta(weeks=12)),
        (NOW + timedelta(weeks=12), NOW + timedelta(weeks=24)),
        (NOW + timedelta(weeks=30), NOW + timedelta(weeks=36)),
    ],
)
def test_next_review_stays_on_the_cycle(now: datetime, expected: datetime) -> None:
    assert next_review_due(NOW, now, POLICY) == expected


def test_a_review_comes_due_every_interval_after_adoption() -> None:
    member = adopted(burglaries=8)
    due = member.review_due_at
    assert (
        review_if_due(
            member,
            last_offence_date=TODAY,
            now=due - timedelta(seconds=1),
            today=due.date(),
            policy=POLICY,
        )
        is None
    )
    decision = review_if_due(
        member, last_offence_date=TODAY, now=due, today=due.date(), policy=POLICY
    )
    assert decision is not None
    assert decision.membership.review_due_at == due + timedelta(weeks=12)
    assert decision.event.event_type == "cohorts.member.review-due"
    assert decision.event.additional_information() == {
        "area": AREA,
        "cohort": "fixed",
        "reviewDueAt": "2027-02-16T10:00:00.000Z",
        "suggestDeselection": False,
    }
    assert decision.last_offence_date == TODAY


def test_a_review_suggests_deselection_when_quiet_for_a_year() -> None:
    member = replace(adopted(), review_due_at=NOW)
    decision = review_if_due(
        member, last_offence_date=date(2025, 11, 1), now=NOW, today=TODAY, policy=POLICY
    )
    assert decision is not None and decision.event.suggest_deselection is True


def test_a_former_member_is_not_reviewed() -> None:
    gone = deselect(
        adopted(), reason=DeselectionReason.DESISTED, decided_by="a", now=NOW
    ).memberships[0]
    far = NOW + timedelta(weeks=40)
    assert (
        review_if_due(gone, last_offence_date=None, now=far, today=far.date(), policy=POLICY)
        is None
    )


def test_deselection_suggestions_list_quiet_current_members() -> None:
    quiet = replace(adopted(), crn="B000002")
    busy = replace(adopted(), crn="A000001")
    never = replace(adopted(), crn="A000003")
    gone = replace(adopted(), crn="A000000", status=MembershipStatus.DESELECTED)
    suggested = deselection_suggestions(
        [(quiet, date(2024, 1, 1)), (busy, TODAY), (never, None), (gone, None)], TODAY, POLICY
    )
    assert [m.crn for m in suggested] == ["A000003", "B000002"]


# --- pathway activity and run events --------------------------------------------------------


def test_pathway_activity_is_published_only_for_current_members() -> None:
    member = adopted()
    event = pathway_activity(member, pathway="accommodation", status="accepted", programme="CRS")
    assert event is not None
    assert event.event_type == "cohorts.member.pathway-activity"
    # the event is about `member.crn`: the service puts it on the envelope (asserted in
    # tests/integration/test_cohorts_pathway_activity.py)
    assert event.additional_information() == {
        "area": AREA,
        "cohort": "fixed",
        "pathway": "accommodation",
        "status": "accepted",
        "programme": "CRS",
    }
    gone = replace(member, status=MembershipStatus.DESELECTED)
    assert pathway_activity(gone, pathway="health", status="allocated", programme=None) is None
    assert pathway_activity(None, pathway="health", status="allocated", programme=None) is None


def test_the_run_completed_event_counts_candidates_per_cohort() -> None:
    people = [assessment(crn=f"X00000{i}", burglaries=8) for i in range(3)]
    assert people[0].cohort is Cohort.FIXED
    histories = [Offence(TODAY - timedelta(days=3), OffenceCategory.BURGLARY_DOMESTIC)] * 8
    summaries = [
        summarise(
            Nominal(f"X00000{i}", date(1990, 1, 1), SupervisionStatus.LICENCE),
            histories,
            TODAY,
            POLICY,
        )
        for i in range(3)
    ]
    run = select(
        summaries,
        TODAY,
        SelectionPolicy.from_dict({"capacities": {"fixed": 2}}),
        area=AREA,
        policy_version=7,
    )
    event = run_completed(run, "run-1")
    assert event.event_type == "cohorts.selection-run.completed"
    assert event.additional_information() == {
        "runId": "run-1",
        "area": AREA,
        "asOf": "2026-11-24",
        "policyVersion": 7,
        "candidates": {"fixed": 3, "flex": 0, "free": 0},
        "withinCapacity": {"fixed": 2, "flex": 0, "free": 0},
    }
