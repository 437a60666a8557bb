import random
from dataclasses import replace
from datetime import date, timedelta

import pytest

from cohorts.domain.policy import SelectionPolicy, default_policy
from cohorts.domain.selection import (
    ExclusionReason,
    Nominal,
    NominalSummary,
    Offence,
    assess,
    is_prolific,
    recency_points,
    select,
    summarise,
    summary_windows,
)
from pathways_shared.vocabulary import Cohort, OffenceCategory, SupervisionStatus

AS_OF = date(2026, 11, 24)
POLICY = default_policy()
LICENCE = SupervisionStatus.LICENCE
NON_STATUTORY = SupervisionStatus.NON_STATUTORY
OTHER = OffenceCategory.OTHER
BURGLARY = OffenceCategory.BURGLARY_DOMESTIC
ROBBERY = OffenceCategory.ROBBERY_PERSONAL
DRUGS_SUPPLY = OffenceCategory.DRUGS_SUPPLY


def born_aged(age: int, *, birthday_in_days: int = 30) -> date:
    """A date of birth giving `age` on AS_OF, with the next birthday `birthday_in_days` away
    (0: the birthday is AS_OF itself, on which the person turns `age`)."""
    birthday = AS_OF + timedelta(days=birthday_in_days)
    turning = age if birthday_in_days == 0 else age + 1
    return date(birthday.year - turning, birthday.month, birthday.day)


def person(
    crn: str = "X000001",
    age: int = 30,
    status: SupervisionStatus = LICENCE,
    mappa: int | None = None,
) -> Nominal:
    return Nominal(crn, born_aged(age), status, mappa)


def ago(days: int, category: OffenceCategory = OTHER) -> Offence:
    return Offence(AS_OF - timedelta(days=days), category)


def summary(
    crn: str = "X000001",
    *,
    age: int = 30,
    status: SupervisionStatus = LICENCE,
    mappa: int | None = None,
    total: int = 0,
    window: int = 0,
    gravity: int = 0,
    last_days_ago: int | None = None,
    neighbourhood: bool = False,
    flex: bool = False,
) -> NominalSummary:
    return NominalSummary(
        nominal=person(crn, age, status, mappa),
        total_offences=max(total, window),
        window_offences=window,
        window_gravity=gravity,
        last_offence_date=None if last_days_ago is None else AS_OF - timedelta(days=last_days_ago),
        neighbourhood_recent=neighbourhood,
        flex_recent=flex,
    )


def score_of(points: int) -> dict[str, int]:
    """Summary fields giving exactly `points` (31 to 100): recency 30, then frequency up to
    its cap of 40, then gravity."""
    rest = points - 30
    frequency = min(rest - rest % 2, 40)
    return {"last_days_ago": 5, "window": frequency // 2, "gravity": rest - frequency}


# --- the ages test --------------------------------------------------------------------------


@pytest.mark.parametrize("points", [31, 40, 49, 50, 69, 70, 71, 90, 100])
def test_score_of_gives_the_score_asked(points: int) -> None:
    assert assess(summary(**score_of(points)), AS_OF, POLICY).score.total == points


def test_born_aged_gives_the_age_asked() -> None:
    assert assess(summary(age=24), AS_OF, POLICY).age == 24
    assert born_aged(24, birthday_in_days=1) == date(2001, 11, 25)
    assert born_aged(25, birthday_in_days=0) == date(2001, 11, 24)


# --- prolific -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "offences", "prolific"),
    [
        (17, 30, False),  # no band below 18
        (18, 7, False),
        (18, 8, True),
        (24, 7, False),
        (24, 8, True),
        (25, 8, False),
        (25, 15, False),
        (25, 16, True),
        (60, 16, True),
    ],
)
def test_prolific_by_age_band(age: int, offences: int, prolific: bool) -> None:
    assert is_prolific(age, offences, POLICY) is prolific


@pytest.mark.parametrize(
    ("birthday_in_days", "offences", "prolific"),
    [
        (1, 8, True),  # still 24 on the selection date: 8 is enough
        (0, 8, False),  # 25 on the selection date itself: needs 16
        (0, 15, False),
        (0, 16, True),
    ],
)
def test_age_is_taken_on_the_selection_date(
    birthday_in_days: int, offences: int, prolific: bool
) -> None:
    nominal = Nominal(
        "X000001",
        born_aged(24 if birthday_in_days else 25, birthday_in_days=birthday_in_days),
        LICENCE,
    )
    history = [ago(4000 + i) for i in range(offences)]
    assessment = assess(summarise(nominal, history, AS_OF, POLICY), AS_OF, POLICY)
    assert assessment.prolific is prolific


def test_prolific_counts_every_recorded_offence_not_only_the_window() -> None:
    history = [ago(3000 + i) for i in range(16)]  # all older than the 3-year window
    s = summarise(person(age=40), history, AS_OF, POLICY)
    assert (s.total_offences, s.window_offences) == (16, 0)
    assert assess(s, AS_OF, POLICY).prolific is True


def test_offences_after_the_selection_date_do_not_count() -> None:
    history = [ago(10), ago(-1, ROBBERY), ago(-400)]
    s = summarise(person(), history, AS_OF, POLICY)
    assert s.total_offences == 1
    assert s.last_offence_date == AS_OF - timedelta(days=10)
    assert s.window_gravity == 1


# --- score ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "points"),
    [(0, 30), (1, 30), (90, 30), (91, 20), (180, 20), (181, 10), (365, 10), (366, 0), (2000, 0)],
)
def test_recency_bands(days: int, points: int) -> None:
    assert recency_points(AS_OF - timedelta(days=days), AS_OF, POLICY) == points


def test_no_offence_scores_no_recency() -> None:
    assert recency_points(None, AS_OF, POLICY) == 0


@pytest.mark.parametrize(
    ("offences", "points"), [(0, 0), (1, 2), (19, 38), (20, 40), (21, 40), (60, 40)]
)
def test_frequency_is_two_per_window_offence_capped_at_40(offences: int, points: int) -> None:
    history = [ago(400 + i) for i in range(offences)]
    parts = assess(summarise(person(), history, AS_OF, POLICY), AS_OF, POLICY).score
    assert parts.frequency == points


@pytest.mark.parametrize(
    ("categories", "points"),
    [
        ([ROBBERY] * 6, 30),
        ([ROBBERY] * 7, 30),
        ([ROBBERY] * 5 + [OffenceCategory.VEHICLE_INTERFERENCE] * 4, 29),
        ([OffenceCategory.SEXUAL, OffenceCategory.THEFT_OF_VEHICLE, OTHER], 8),
        ([OffenceCategory.SHOPLIFTING] * 3, 3),
        ([], 0),
    ],
)
def test_gravity_is_the_sum_of_weights_capped_at_30(
    categories: list[OffenceCategory], points: int
) -> None:
    history = [ago(400 + i, c) for i, c in enumerate(categories)]
    assert (
        assess(summarise(person(), history, AS_OF, POLICY), AS_OF, POLICY).score.gravity == points
    )


def test_the_score_window_is_the_three_years_before() -> None:
    windows = summary_windows(AS_OF, POLICY)
    assert windows.score_from == date(2023, 11, 25)
    inside = Offence(windows.score_from, ROBBERY)
    anniversary = Offence(date(2023, 11, 24), ROBBERY)
    s = summarise(person(), [inside, anniversary], AS_OF, POLICY)
    assert (s.total_offences, s.window_offences, s.window_gravity) == (2, 1, 5)


def test_the_score_is_the_sum_of_its_parts() -> None:
    history = [ago(45, BURGLARY)] * 3 + [ago(500, DRUGS_SUPPLY)] * 2
    parts = assess(summarise(person(), history, AS_OF, POLICY), AS_OF, POLICY).score
    assert (parts.recency, parts.frequency, parts.gravity, parts.total) == (30, 10, 18, 58)


def test_score_weights_come_from_the_policy() -> None:
    policy = SelectionPolicy.from_dict(
        {
            "score": {
                "recency_bands": [{"max_days": 30, "points": 20}],
                "frequency_points_per_offence": 5,
                "frequency_cap": 50,
                "gravity_weights": {"other": 4},
                "gravity_cap": 30,
            }
        }
    )
    history = [ago(31), ago(40), ago(50)]
    parts = assess(summarise(person(), history, AS_OF, policy), AS_OF, policy).score
    assert (parts.recency, parts.frequency, parts.gravity) == (0, 15, 12)


# --- candidacy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "kwargs", "cohort"),
    [
        (
            "fixed by prolific",
            {"age": 22, "total": 8, "last_days_ago": 500, "window": 1, "neighbourhood": True},
            Cohort.FIXED,
        ),
        ("fixed by score 50", dict(neighbourhood=True, **score_of(50)), Cohort.FIXED),
        ("fixed needs 50, 49 falls to free", dict(neighbourhood=True, **score_of(49)), Cohort.FREE),
        (
            "fixed needs statutory",
            dict(status=NON_STATUTORY, age=22, total=8, neighbourhood=True, **score_of(45)),
            Cohort.FREE,
        ),
        (
            "fixed needs a recent neighbourhood offence",
            dict(age=22, total=8, **score_of(45)),
            Cohort.FREE,
        ),
        (
            "flex by prolific",
            {"age": 30, "total": 16, "last_days_ago": 600, "window": 1, "flex": True},
            Cohort.FLEX,
        ),
        ("flex by score 50", dict(flex=True, **score_of(50)), Cohort.FLEX),
        ("flex needs 50", dict(flex=True, **score_of(49)), Cohort.FREE),
        (
            "flex needs statutory",
            dict(status=NON_STATUTORY, flex=True, **score_of(60)),
            Cohort.FREE,
        ),
        ("fixed before flex", dict(neighbourhood=True, flex=True, **score_of(70)), Cohort.FIXED),
        ("free at 40", dict(**score_of(40)), Cohort.FREE),
        ("free, not statutory", dict(status=NON_STATUTORY, **score_of(40)), Cohort.FREE),
        ("nothing at 39", dict(**score_of(39)), None),
        (
            "prolific alone is not free",
            {
                "status": NON_STATUTORY,
                "age": 22,
                "total": 30,
                "neighbourhood": True,
                "last_days_ago": 1000,
            },
            None,
        ),
        ("no offences", {}, None),
    ],
)
def test_candidacy(case: str, kwargs: dict, cohort: Cohort | None) -> None:
    assert assess(summary(**kwargs), AS_OF, POLICY).cohort is cohort, case


@pytest.mark.parametrize("status", [s for s in SupervisionStatus if s is not NON_STATUTORY])
def test_every_statutory_status_can_be_fixed(status: SupervisionStatus) -> None:
    assert (
        assess(summary(status=status, neighbourhood=True, **score_of(50)), AS_OF, POLICY).cohort
        is Cohort.FIXED
    )


def test_meets_records_every_cohort_met_whatever_the_precedence() -> None:
    a = assess(summary(neighbourhood=True, flex=True, **score_of(70)), AS_OF, POLICY)
    assert a.meets == {Cohort.FIXED, Cohort.FLEX, Cohort.FREE}
    assert all(a.met_criteria(c) for c in Cohort)


@pytest.mark.parametrize(
    ("days_ago", "recent"),
    [(729, True), (730, False)],  # 2024-11-25 is the first day of the two years before
)
def test_the_candidacy_look_back_is_two_years(days_ago: int, recent: bool) -> None:
    assert (AS_OF - timedelta(days=729)) == date(2024, 11, 25)
    s = summarise(person(), [ago(days_ago, BURGLARY), ago(days_ago, DRUGS_SUPPLY)], AS_OF, POLICY)
    assert (s.neighbourhood_recent, s.flex_recent) == (recent, recent)


@pytest.mark.parametrize("category", sorted(OffenceCategory))
def test_neighbourhood_and_flex_categories(category: OffenceCategory) -> None:
    s = summarise(person(), [ago(10, category)], AS_OF, POLICY)
    assert s.neighbourhood_recent is (
        category
        in {
            "burglary_domestic",
            "robbery_personal",
            "theft_from_person",
            "theft_of_vehicle",
            "theft_from_vehicle",
            "vehicle_interference",
        }
    )
    assert s.flex_recent is (
        category in {"violence_with_injury", "domestic_abuse", "weapons_possession", "drugs_supply"}
    )


def test_flex_categories_come_from_the_area_policy() -> None:
    policy = SelectionPolicy.from_dict({"flex_categories": ["shoplifting"]})
    history = [ago(10, OffenceCategory.SHOPLIFTING)] * 10 + [ago(20, DRUGS_SUPPLY)]
    assert assess(summarise(person(), history, AS_OF, policy), AS_OF, policy).cohort is Cohort.FLEX
    assert (
        assess(summarise(person(), history[:10], AS_OF, POLICY), AS_OF, POLICY).cohort
        is Cohort.FREE
    )


def test_thresholds_come_from_the_policy() -> None:
    policy = SelectionPolicy.from_dict({"thresholds": {"fixed": 60, "free": 55}})
    assert assess(summary(neighbourhood=True, **score_of(58)), AS_OF, policy).cohort is Cohort.FREE
    assert assess(summary(neighbourhood=True, **score_of(54)), AS_OF, policy).cohort is None
    assert assess(summary(neighbourhood=True, **score_of(60)), AS_OF, policy).cohort is Cohort.FIXED


# --- exclusions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "mappa", "reason"),
    [
        (17, None, ExclusionReason.UNDER_18),
        (17, 3, ExclusionReason.UNDER_18),
        (18, None, None),
        (30, 1, None),
        (30, 2, ExclusionReason.MANAGED_UNDER_MAPPA),
        (30, 3, ExclusionReason.MANAGED_UNDER_MAPPA),
    ],
)
def test_exclusions(age: int, mappa: int | None, reason: ExclusionReason | None) -> None:
    run = select(
        [summary(age=age, mappa=mappa, neighbourhood=True, **score_of(80))],
        AS_OF,
        POLICY,
        area="E08000029",
        policy_version=1,
    )
    if reason is None:
        assert [c.crn for c in run.candidates] == ["X000001"]
        assert run.excluded == ()
    else:
        assert run.candidates == ()
        assert [(e.crn, e.reason) for e in run.excluded] == [("X000001", reason)]
        assert run.excluded[0].would_be is Cohort.FIXED


def test_an_under_18_turns_18_on_the_selection_date() -> None:
    eighteen_today = Nominal("X000001", date(2008, 11, 24), LICENCE)
    seventeen = Nominal("X000002", date(2008, 11, 25), LICENCE)
    history = [ago(5, BURGLARY)] * 10
    run = select(
        [summarise(n, history, AS_OF, POLICY) for n in (eighteen_today, seventeen)],
        AS_OF,
        POLICY,
        area="E08000029",
        policy_version=1,
    )
    assert [c.crn for c in run.candidates] == ["X000001"]
    assert [(e.crn, e.reason.value) for e in run.excluded] == [("X000002", "under_18")]
    assert "aged 17" in run.excluded[0].detail


def test_an_excluded_person_is_listed_even_if_no_candidate() -> None:
    run = select([summary(mappa=2)], AS_OF, POLICY, area="E08000029", policy_version=1)
    assert [(e.crn, e.would_be) for e in run.excluded] == [("X000001", None)]


# --- ranking and capacity -------------------------------------------------------------------


def run_of(*summaries: NominalSummary, policy: SelectionPolicy = POLICY):
    return select(summaries, AS_OF, policy, area="E08000029", policy_version=3)


def test_candidates_rank_over_the_whole_run_by_score() -> None:
    run = run_of(
        summary("A000001", **score_of(45)),
        summary("A000002", neighbourhood=True, **score_of(60)),
        summary("A000003", flex=True, **score_of(70)),
        summary("A000004", neighbourhood=True, **score_of(52)),
    )
    assert [(c.crn, c.cohort.value, c.score, c.rank) for c in run.candidates] == [
        ("A000003", "flex", 70, 1),
        ("A000002", "fixed", 60, 2),
        ("A000004", "fixed", 52, 3),
        ("A000001", "free", 45, 4),
    ]
    assert [c.cohort_rank for c in run.candidates] == [1, 1, 2, 1]


def test_a_tie_on_score_goes_to_the_most_recent_offence_then_the_crn() -> None:
    run = run_of(
        summary("B000003", total=10, window=5, gravity=0, last_days_ago=100),  # 20+10+0 = 30
        summary("B000002", total=10, window=5, gravity=10, last_days_ago=5),  # 30+10+10 = 50
        summary("B000001", total=10, window=5, gravity=10, last_days_ago=5),
        summary("B000004", total=10, window=5, gravity=10, last_days_ago=3),
        summary("B000005", total=10, window=10, gravity=10, last_days_ago=200),  # 10+20+10=40
        summary("A000009", total=10, window=5, gravity=0, last_days_ago=80),  # 30+10+0 = 40
    )
    assert [(c.crn, c.score) for c in run.candidates] == [
        ("B000004", 50),
        ("B000001", 50),
        ("B000002", 50),
        ("A000009", 40),
        ("B000005", 40),
    ]


def test_capacity_marks_those_past_it_but_keeps_them_listed() -> None:
    policy = SelectionPolicy.from_dict({"capacities": {"fixed": 2, "flex": 0, "free": 1}})
    run = run_of(
        summary("C000001", neighbourhood=True, **score_of(90)),
        summary("C000002", neighbourhood=True, **score_of(80)),
        summary("C000003", **score_of(75)),
        summary("C000004", neighbourhood=True, **score_of(70)),
        summary("C000005", flex=True, **score_of(65)),
        summary("C000006", **score_of(60)),
        policy=policy,
    )
    assert [(c.crn, c.cohort.value, c.within_capacity) for c in run.candidates] == [
        ("C000001", "fixed", True),
        ("C000002", "fixed", True),
        ("C000003", "free", True),
        ("C000004", "fixed", False),
        ("C000005", "flex", False),
        ("C000006", "free", False),
    ]
    assert run.counts() == {
        "fixed": {"candidates": 3, "within_capacity": 2},
        "flex": {"candidates": 1, "within_capacity": 0},
        "free": {"candidates": 2, "within_capacity": 1},
    }
    assert "beyond its capacity of 2" in run.candidates[3].reasons[-1]
    assert "within its capacity of 2" in run.candidates[1].reasons[-1]


def test_the_run_records_area_date_and_policy_version() -> None:
    run = run_of(summary(**score_of(45)))
    assert (run.area, run.as_of, run.policy_version) == ("E08000029", AS_OF, 3)


def test_two_summaries_for_one_person_are_refused() -> None:
    with pytest.raises(ValueError):
        run_of(summary("X000001"), summary("X000001"))


# --- reasons --------------------------------------------------------------------------------


def test_each_candidate_explains_itself() -> None:
    history = [ago(12, BURGLARY)] * 9
    s = summarise(person(age=23), history, AS_OF, POLICY)
    (candidate,) = run_of(s).candidates
    reasons = candidate.reasons
    assert reasons[0] == "candidate for fixed"
    assert "prolific: aged 23 with 9 recorded offences (at least 8 for ages 18-24)" in reasons
    assert any(r.startswith("score 78: recency 30") for r in reasons)
    assert "statutory supervision (licence)" in reasons
    assert "neighbourhood crime offence in the last 2 years" in reasons
    assert "meets fixed: statutory, recent neighbourhood crime offence, prolific" in reasons
    assert "does not meet flex: no recent flex-category offence" in reasons
    assert "meets free: score 78 is at least 40" in reasons
    assert (candidate.recency, candidate.frequency, candidate.gravity) == (30, 18, 30)
    assert candidate.prolific is True
    assert candidate.last_offence_date == AS_OF - timedelta(days=12)


def test_reasons_say_why_a_cohort_was_missed() -> None:
    a = assess(summary(status=NON_STATUTORY, **score_of(45)), AS_OF, POLICY)
    assert (
        "does not meet fixed: not statutory, no recent neighbourhood crime offence, "
        "not prolific and score 45 is below 50"
    ) in a.reasons
    assert "not on statutory supervision (non_statutory)" in a.reasons


# --- determinism ----------------------------------------------------------------------------


def random_history(rng: random.Random, count: int) -> list[Offence]:
    return [
        Offence(AS_OF - timedelta(days=rng.randint(-30, 4000)), rng.choice(list(OffenceCategory)))
        for _ in range(count)
    ]


def test_the_same_inputs_give_the_same_run_whatever_their_order() -> None:
    rng = random.Random(20261124)
    people = [
        Nominal(
            f"D{i:06d}",
            AS_OF - timedelta(days=rng.randint(16 * 365, 60 * 365)),
            rng.choice(list(SupervisionStatus)),
            rng.choice([None, None, 1, 2, 3]),
        )
        for i in range(300)
    ]
    histories = {p.crn: random_history(rng, rng.randint(0, 30)) for p in people}
    summaries = [summarise(p, histories[p.crn], AS_OF, POLICY) for p in people]
    first = run_of(*summaries)
    shuffled = summaries[:]
    rng.shuffle(shuffled)
    reshuffled_histories = [
        summarise(p, list(reversed(histories[p.crn])), AS_OF, POLICY) for p in people
    ]
    assert run_of(*shuffled) == first
    assert run_of(*reshuffled_histories) == first
    assert len(first.candidates) > 10 and len(first.excluded) > 10
    scores = [(c.score, c.last_offence_date) for c in first.candidates]
    assert scores == sorted(scores, key=lambda s: (-s[0], -s[1].toordinal()))


def test_a_later_as_of_can_change_the_run_but_the_same_as_of_cannot() -> None:
    s = [summarise(person(), [ago(85, BURGLARY)] * 10, AS_OF, POLICY)]
    later = AS_OF + timedelta(days=10)
    s_later = [summarise(person(), [ago(85, BURGLARY)] * 10, later, POLICY)]
    assert run_of(*s).candidates[0].recency == 30
    assert (
        select(s_later, later, POLICY, area="E08000029", policy_version=3).candidates[0].recency
        == 20
    )
    assert run_of(*s) == run_of(*s)


def test_a_summary_is_a_value() -> None:
    s = summary(**score_of(50))
    assert replace(s) == s
