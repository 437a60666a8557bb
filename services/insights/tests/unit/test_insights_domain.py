"""The pure rules: age bands, dimensions, unmet-need reasons, working days, medians, periods,
and a need's contribution."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from insights.domain.cohorts import months_between
from insights.domain.dimensions import (
    Dimension,
    InvalidDimensions,
    age_band,
    parse_by,
    supervision_category,
)
from insights.domain.figures import median
from insights.domain.periods import period_terms, split_period
from insights.domain.projection import Allocation, Need, Step, StepKind, contribution, unmet_reason
from pathways_shared.working_days import WorkingCalendar

CALENDAR = WorkingCalendar.with_holidays([date(2026, 12, 25), date(2026, 12, 28)])


@pytest.mark.parametrize(("age", "band"), [(18, "18-24"), (24, "18-24"), (25, "25-34"),
                                           (34, "25-34"), (35, "35-49"), (49, "35-49"),
                                           (50, "50-64"), (64, "50-64"), (65, "65+"), (99, "65+")])
def test_age_bands(age, band):
    assert age_band(age) == band


def test_supervision_is_statutory_or_not():
    assert supervision_category("licence") == "statutory"
    assert supervision_category("custody_pre_release") == "statutory"
    assert supervision_category("non_statutory") == "non_statutory"


def test_by_takes_up_to_two_known_dimensions():
    allowed = (Dimension.PATHWAY, Dimension.MONTH, Dimension.SEX)
    assert parse_by("pathway, month", allowed) == (Dimension.PATHWAY, Dimension.MONTH)
    assert parse_by(None, allowed) == () and parse_by("", allowed) == ()
    for bad in ("colour", "pathway,month,sex", "sex,sex", "pathway,", "reason"):
        with pytest.raises(InvalidDimensions):
            parse_by(bad, allowed)


@pytest.mark.parametrize(
    ("reasons", "category"),
    [
        ([], "no_service"),
        ([("DA-SIAS", "area")], "no_service"),
        ([("ND-IOM", "previously_declined")], "all_declined"),
        ([("CRS-ETE-M", "previously_declined"), ("CFO3-ETE", "supervision_status")], "all_declined"),
        ([("CRS-FBD-F", "sex"), ("CRS-FBD-M", "complexity"), ("COMM-FBD", "area")], "sex"),
        ([("X", "area"), ("Y", "min_age")], "age"),
        ([("X", "max_age")], "age"),
        ([("X", "active")], "inactive"),
        ([("X", "required_flags")], "required_flags"),
        ([("X", "iom_membership")], "iom_membership"),
        (None, "unknown"),
    ],
)
def test_unmet_need_reason_from_the_structured_reasons(reasons, category):
    assert unmet_reason(reasons) == category


def test_working_days_skip_weekends_and_bank_holidays():
    thursday = date(2026, 12, 24)
    assert CALENDAR.working_days_between(thursday, thursday) == 0
    # Fri 25 (holiday), Sat, Sun, Mon 28 (holiday), Tue 29: one working day.
    assert CALENDAR.working_days_between(thursday, date(2026, 12, 29)) == 1
    assert CALENDAR.working_days_between(date(2026, 12, 29), thursday) == 0


@pytest.mark.parametrize(("histogram", "expected"), [
    ({}, None), ({3: 1}, 3.0), ({1: 1, 2: 1}, 1.5), ({0: 2, 5: 1}, 0.0), ({1: 2, 4: 2}, 2.5),
])
def test_median_of_whole_days(histogram, expected):
    assert median(histogram) == expected


def test_a_period_splits_into_whole_months_and_the_days_left_over():
    assert split_period(date(2025, 12, 8), date(2026, 12, 7)) == (
        [date(2026, m, 1) for m in range(1, 12)],
        [(date(2025, 12, 8), date(2025, 12, 31)), (date(2026, 12, 1), date(2026, 12, 7))],
    )
    assert split_period(date(2026, 3, 1), date(2026, 3, 31)) == ([date(2026, 3, 1)], [])
    assert split_period(date(2026, 3, 2), date(2026, 3, 30)) == ([], [(date(2026, 3, 2), date(2026, 3, 30))])
    assert months_between(date(2026, 1, 15), date(2026, 3, 2)) == [
        (date(2026, 1, 15), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 2))]


T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
NEED = Need("n1", "E08000029", "accommodation", "medium", "male", "25-34", "statutory", True, T0)
ALLOCATION = Allocation("p1", "CRS-ACC-M", "NACRO", "CRS", T0, T0 + timedelta(days=2),
                        T0 + timedelta(days=5))


def counts(contrib) -> dict:
    out: dict = {}
    for (_, measure, detail), n in contrib.items():
        key = measure if detail is None else f"{measure}={detail}"
        out[key] = out.get(key, 0) + n
    return out


def test_nothing_counts_before_the_submission_is_known():
    assert contribution(None, [ALLOCATION], [], CALENDAR) == {}


def test_an_accept_that_came_first_is_the_acknowledgement():
    accepted = Step("e1", StepKind.ACCEPTED, T0 + timedelta(days=3), "p1")
    late_ack = Step("e2", StepKind.ACKNOWLEDGED, T0 + timedelta(days=4), "p1")
    c = counts(contribution(NEED, [ALLOCATION], [late_ack, accepted], CALENDAR))
    assert c["acknowledged_late"] == 1 and "acknowledged_on_time" not in c
    assert c["responded_on_time"] == 1 and c["accepted"] == 1
    assert c["working_days_to_acknowledge=3"] == 1  # allocated Tue 1 Dec, accepted Fri 4 Dec
    assert c["submitted"] == c["allocated"] == c["accommodation_at_risk"] == 1


def test_a_step_waits_for_its_allocation():
    completed = Step("e1", StepKind.COMPLETED, T0 + timedelta(days=9), "p1", "achieved")
    assert "completed" not in counts(contribution(NEED, [], [completed], CALENDAR))
    c = counts(contribution(NEED, [ALLOCATION], [completed], CALENDAR))
    assert c["completed"] == c["outcome_achieved"] == 1


def test_a_withdrawal_counts_under_the_allocation_current_then():
    withdrawn = Step("e1", StepKind.WITHDRAWN, T0 + timedelta(days=1), None, "sentence_ended")
    contrib = contribution(NEED, [ALLOCATION], [withdrawn], CALENDAR)
    [cell] = [cell for (cell, measure, _) in contrib if measure == "withdrawn"]
    assert cell.provider_code == "NACRO"
    unallocated = Step("e0", StepKind.UNALLOCATED, T0 + timedelta(hours=12), None, "all_declined")
    contrib = contribution(NEED, [ALLOCATION], [withdrawn, unallocated], CALENDAR)
    [cell] = [cell for (cell, measure, _) in contrib if measure == "withdrawn"]
    assert cell.provider_code == ""


def test_a_period_reads_its_days_once_and_at_most_half_a_month_of_days_at_either_end():
    assert period_terms(date(2025, 12, 8), date(2026, 12, 7)) == (
        [date(2025, 12, 1), *(date(2026, m, 1) for m in range(1, 12))],
        [(date(2026, 12, 1), date(2026, 12, 7))],
        [(date(2025, 12, 1), date(2025, 12, 7))],
    )

    def days(low, high):
        return [low + timedelta(days=i) for i in range((high - low).days + 1)]

    rng = random.Random(7)
    for _ in range(2000):
        start = date(2024, 1, 1) + timedelta(days=rng.randint(0, 800))
        end = start + timedelta(days=rng.choice((0, 1, 5, 20, 40, 90, 364, 700)) + rng.randint(0, 9))
        months, added, subtracted = period_terms(start, end)
        read: Counter = Counter()
        for first in months:
            read.update(days(first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)))
        for low, high in added:
            read.update(days(low, high))
        read.subtract(d for low, high in subtracted for d in days(low, high))
        assert +read == Counter(days(start, end)), (start, end)
        assert min(read.values(), default=0) >= 0
        assert sum(len(days(*r)) for r in (*added, *subtracted)) <= 2 * 16, (start, end)
