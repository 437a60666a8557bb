from typing import Any

import pytest

from cohorts.domain.policy import (
    DEFAULT_GRAVITY_WEIGHTS,
    ProlificBand,
    RecencyBand,
    SelectionPolicy,
    default_policy,
)
from cohorts.errors import InvalidPolicy
from pathways_shared.vocabulary import Cohort, OffenceCategory

DOMAIN_WEIGHTS = {
    "robbery_personal": 5,
    "robbery_business": 5,
    "burglary_domestic": 4,
    "violence_with_injury": 4,
    "domestic_abuse": 4,
    "sexual": 5,
    "weapons_possession": 4,
    "drugs_supply": 3,
    "theft_from_person": 3,
    "burglary_non_domestic": 3,
    "theft_of_vehicle": 2,
    "theft_from_vehicle": 2,
    "vehicle_interference": 1,
    "violence_without_injury": 2,
}


def test_the_defaults_are_those_of_the_domain() -> None:
    policy = default_policy()
    assert policy.flex_categories == {
        OffenceCategory.VIOLENCE_WITH_INJURY,
        OffenceCategory.DOMESTIC_ABUSE,
        OffenceCategory.WEAPONS_POSSESSION,
        OffenceCategory.DRUGS_SUPPLY,
    }
    assert policy.prolific_bands == (ProlificBand(18, 24, 8), ProlificBand(25, None, 16))
    assert policy.score.window_years == 3
    assert policy.score.recency_bands == (
        RecencyBand(90, 30),
        RecencyBand(180, 20),
        RecencyBand(365, 10),
    )
    assert (policy.score.frequency_points_per_offence, policy.score.frequency_cap) == (2, 40)
    assert policy.score.gravity_cap == 30
    assert (policy.thresholds.fixed, policy.thresholds.flex, policy.thresholds.free) == (50, 50, 40)
    assert policy.candidacy_window_years == 2
    assert policy.review_interval_weeks == 12
    assert policy.deselection_after_months == 12
    assert policy.score.max_score == 100


@pytest.mark.parametrize("category", list(OffenceCategory))
def test_each_category_has_the_gravity_weight_of_the_domain(category: OffenceCategory) -> None:
    assert default_policy().score.gravity_weight(category) == DOMAIN_WEIGHTS.get(category.value, 1)


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (17, None),
        (18, ProlificBand(18, 24, 8)),
        (24, ProlificBand(18, 24, 8)),
        (25, ProlificBand(25, None, 16)),
        (90, ProlificBand(25, None, 16)),
        (140, ProlificBand(25, None, 16)),
        (-1, None),
    ],
)
def test_prolific_band_by_age(age: int, band: ProlificBand | None) -> None:
    assert default_policy().prolific_band(age) == band


def test_the_json_form_round_trips() -> None:
    policy = default_policy()
    assert SelectionPolicy.from_dict(policy.to_dict()) == policy
    assert SelectionPolicy.from_dict({}) == policy


def test_a_partial_policy_keeps_the_other_defaults() -> None:
    policy = SelectionPolicy.from_dict(
        {
            "flex_categories": ["shoplifting"],
            "capacities": {"fixed": 5},
            "score": {"gravity_weights": {"sexual": 3, "shoplifting": 2}},
        }
    )
    assert policy.flex_categories == {OffenceCategory.SHOPLIFTING}
    assert (policy.capacities.fixed, policy.capacities.flex) == (5, 20)
    assert policy.score.gravity_weight(OffenceCategory.SEXUAL) == 3
    assert policy.score.gravity_weight(OffenceCategory.SHOPLIFTING) == 2
    assert policy.score.gravity_weight(OffenceCategory.ROBBERY_PERSONAL) == 5
    assert policy.thresholds.of(Cohort.FREE) == 40


@pytest.mark.parametrize(
    "data",
    [
        {"score": {"frequency_cap": 40, "gravity_cap": 30}},  # adds up to exactly 100
        {"review_interval_weeks": 1},
        {"review_interval_weeks": 52},
        {"thresholds": {"fixed": 0, "flex": 100, "free": 100}},
        {"capacities": {"fixed": 0, "flex": 0, "free": 0}},
        {"prolific_bands": [{"min_age": 21, "max_age": None, "min_offences": 10}]},
        {
            "prolific_bands": [
                {"min_age": 18, "max_age": 20, "min_offences": 6},
                {"min_age": 30, "max_age": None, "min_offences": 20},
            ]
        },
    ],
)
def test_valid_edges_are_accepted(data: dict[str, Any]) -> None:
    SelectionPolicy.from_dict(data)


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"flex_categories": ["burglary_domestic"]}, "flex_categories"),
    ({"flex_categories": []}, "flex_categories"),
    ({"flex_categories": ["arson"]}, "flex_categories.0"),
    ({"flex_categories": "drugs_supply"}, "flex_categories"),
    ({"prolific_bands": []}, "prolific_bands"),
    (
        {"prolific_bands": [{"min_age": 17, "max_age": None, "min_offences": 8}]},
        "prolific_bands.0.min_age",
    ),
    (
        {"prolific_bands": [{"min_age": 18, "max_age": None, "min_offences": 0}]},
        "prolific_bands.0.min_offences",
    ),
    (
        {"prolific_bands": [{"min_age": 30, "max_age": 25, "min_offences": 8}]},
        "prolific_bands.0.max_age",
    ),
    (
        {
            "prolific_bands": [
                {"min_age": 18, "max_age": None, "min_offences": 8},
                {"min_age": 25, "max_age": None, "min_offences": 16},
            ]
        },
        "prolific_bands.0.max_age",
    ),
    (
        {
            "prolific_bands": [
                {"min_age": 18, "max_age": 25, "min_offences": 8},
                {"min_age": 25, "max_age": None, "min_offences": 16},
            ]
        },
        "prolific_bands.1.min_age",
    ),
    ({"prolific_bands": [{"max_age": None, "min_offences": 8}]}, "prolific_bands.0.min_age"),
    ({"prolific_bands": [3]}, "prolific_bands.0"),
    (
        {"prolific_bands": [{"min_age": 18, "min_offences": 8, "colour": 1}]},
        "prolific_bands.0.colour",
    ),
    ({"score": {"window_years": 0}}, "score.window_years"),
    ({"score": {"recency_bands": []}}, "score.recency_bands"),
    (
        {
            "score": {
                "recency_bands": [{"max_days": 90, "points": 30}, {"max_days": 90, "points": 20}]
            }
        },
        "score.recency_bands.1.max_days",
    ),
    (
        {
            "score": {
                "recency_bands": [{"max_days": 90, "points": 10}, {"max_days": 180, "points": 20}]
            }
        },
        "score.recency_bands.1.points",
    ),
    (
        {"score": {"recency_bands": [{"max_days": -1, "points": 30}]}},
        "score.recency_bands.0.max_days",
    ),
    ({"score": {"frequency_cap": 41}}, "score"),
    ({"score": {"gravity_cap": 31}}, "score"),
    ({"score": {"frequency_cap": -1}}, "score.frequency_cap"),
    ({"score": {"frequency_points_per_offence": -2}}, "score.frequency_points_per_offence"),
    ({"score": {"gravity_weights": {"arson": 3}}}, "score.gravity_weights.arson"),
    ({"score": {"gravity_weights": {"sexual": -1}}}, "score.gravity_weights.sexual"),
    ({"score": {"gravity_weights": {"sexual": "high"}}}, "score.gravity_weights.sexual"),
    ({"score": {"gravity_default_weight": -1}}, "score.gravity_default_weight"),
    ({"score": {"speed": 1}}, "score.speed"),
    ({"thresholds": {"fixed": 101}}, "thresholds.fixed"),
    ({"thresholds": {"flex": -1}}, "thresholds.flex"),
    ({"thresholds": {"free": 40.5}}, "thresholds.free"),
    ({"thresholds": {"free": True}}, "thresholds.free"),
    ({"thresholds": {"other": 10}}, "thresholds.other"),
    ({"thresholds": 50}, "thresholds"),
    ({"capacities": {"fixed": -1}}, "capacities.fixed"),
    ({"capacities": {"flex": "ten"}}, "capacities.flex"),
    ({"candidacy_window_years": 0}, "candidacy_window_years"),
    ({"review_interval_weeks": 0}, "review_interval_weeks"),
    ({"review_interval_weeks": 53}, "review_interval_weeks"),
    ({"deselection_after_months": 0}, "deselection_after_months"),
    ({"deselection_after_months": 61}, "deselection_after_months"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("data", "field"), BAD_POLICIES)
def test_an_invalid_policy_names_the_field_at_fault(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        SelectionPolicy.from_dict(data)
    assert caught.value.status == 422
    assert caught.value.code == "invalid-policy"
    assert field in [e.field for e in caught.value.field_errors]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        SelectionPolicy.from_dict(
            {"thresholds": {"fixed": 500}, "capacities": {"free": -3}, "colour": 1}
        )
    assert {e.field for e in caught.value.field_errors} == {
        "thresholds.fixed",
        "capacities.free",
        "colour",
    }


def test_a_field_refused_for_its_shape_is_not_refused_twice() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        SelectionPolicy.from_dict({"prolific_bands": "many"})
    assert [e.field for e in caught.value.field_errors] == ["prolific_bands"]


def test_a_policy_cannot_be_built_invalid() -> None:
    with pytest.raises(InvalidPolicy):
        SelectionPolicy(review_interval_weeks=0)


def test_default_gravity_weights_cannot_be_changed_in_place() -> None:
    with pytest.raises(TypeError):
        DEFAULT_GRAVITY_WEIGHTS[OffenceCategory.SEXUAL] = 1  # type: ignore[index]


def test_errors_are_ready_for_the_problem_details_body() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        SelectionPolicy.from_dict({"review_interval_weeks": 0})
    assert caught.value.errors == [
        {"field": "review_interval_weeks", "message": "must be between 1 and 52"}
    ]
    assert caught.value.title == "Invalid selection policy"
