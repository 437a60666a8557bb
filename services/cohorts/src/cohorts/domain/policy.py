"""The per-area selection policy: every number and category the selection rules use.

Defaults are those of DOMAIN.md (IOM cohorts). A policy is data, editable by `admin`; it is
validated as a whole and every problem is reported with the dotted path of the field at fault
(the same path as in the JSON body of `PUT /policies/{area}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from cohorts.errors import FieldError, InvalidPolicy
from pathways_shared.vocabulary import NEIGHBOURHOOD_CRIME, Cohort, OffenceCategory

MAX_SCORE = 100
MIN_AGE = 18

DEFAULT_FLEX_CATEGORIES: frozenset[OffenceCategory] = frozenset(
    {
        OffenceCategory.VIOLENCE_WITH_INJURY,
        OffenceCategory.DOMESTIC_ABUSE,
        OffenceCategory.WEAPONS_POSSESSION,
        OffenceCategory.DRUGS_SUPPLY,
    }
)

DEFAULT_GRAVITY_WEIGHTS: Mapping[OffenceCategory, int] = MappingProxyType(
    {
        OffenceCategory.ROBBERY_PERSONAL: 5,
        OffenceCategory.ROBBERY_BUSINESS: 5,
        OffenceCategory.BURGLARY_DOMESTIC: 4,
        OffenceCategory.VIOLENCE_WITH_INJURY: 4,
        OffenceCategory.DOMESTIC_ABUSE: 4,
        OffenceCategory.SEXUAL: 5,
        OffenceCategory.WEAPONS_POSSESSION: 4,
        OffenceCategory.DRUGS_SUPPLY: 3,
        OffenceCategory.THEFT_FROM_PERSON: 3,
        OffenceCategory.BURGLARY_NON_DOMESTIC: 3,
        OffenceCategory.THEFT_OF_VEHICLE: 2,
        OffenceCategory.THEFT_FROM_VEHICLE: 2,
        OffenceCategory.VEHICLE_INTERFERENCE: 1,
        OffenceCategory.VIOLENCE_WITHOUT_INJURY: 2,
    }
)


@dataclass(frozen=True)
class ProlificBand:
    """People aged `min_age` to `max_age` (None: no upper limit) on the selection date are
    prolific with at least `min_offences` recorded offences."""

    min_age: int
    max_age: int | None
    min_offences: int

    def holds(self, age: int) -> bool:
        return age >= self.min_age and (self.max_age is None or age <= self.max_age)

    @property
    def label(self) -> str:
        return f"{self.min_age}+" if self.max_age is None else f"{self.min_age}-{self.max_age}"


@dataclass(frozen=True)
class RecencyBand:
    """A last offence at most `max_days` days before the selection date scores `points`."""

    max_days: int
    points: int


@dataclass(frozen=True)
class ScorePolicy:
    """Recency, Frequency, Gravity over the `window_years` before the selection date."""

    window_years: int = 3
    recency_bands: tuple[RecencyBand, ...] = (
        RecencyBand(90, 30),
        RecencyBand(180, 20),
        RecencyBand(365, 10),
    )
    frequency_points_per_offence: int = 2
    frequency_cap: int = 40
    gravity_weights: Mapping[OffenceCategory, int] = field(
        default_factory=lambda: DEFAULT_GRAVITY_WEIGHTS
    )
    gravity_default_weight: int = 1
    gravity_cap: int = 30

    def gravity_weight(self, category: OffenceCategory) -> int:
        return self.gravity_weights.get(category, self.gravity_default_weight)

    @property
    def max_recency(self) -> int:
        return max((band.points for band in self.recency_bands), default=0)

    @property
    def max_score(self) -> int:
        return self.max_recency + self.frequency_cap + self.gravity_cap


@dataclass(frozen=True)
class Thresholds:
    """Least score for each cohort (fixed and flex are also met by being prolific)."""

    fixed: int = 50
    flex: int = 50
    free: int = 40

    def of(self, cohort: Cohort) -> int:
        value: int = getattr(self, cohort.value)
        return value


@dataclass(frozen=True)
class Capacities:
    """Places per cohort in the area. Product decision: the defaults are a starting point
    for a mid-sized local authority; each area sets its own."""

    fixed: int = 40
    flex: int = 20
    free: int = 10

    def of(self, cohort: Cohort) -> int:
        value: int = getattr(self, cohort.value)
        return value


@dataclass(frozen=True)
class SelectionPolicy:
    flex_categories: frozenset[OffenceCategory] = DEFAULT_FLEX_CATEGORIES
    prolific_bands: tuple[ProlificBand, ...] = (
        ProlificBand(18, 24, 8),
        ProlificBand(25, None, 16),
    )
    score: ScorePolicy = field(default_factory=ScorePolicy)
    thresholds: Thresholds = field(default_factory=Thresholds)
    candidacy_window_years: int = 2
    capacities: Capacities = field(default_factory=Capacities)
    review_interval_weeks: int = 12
    deselection_after_months: int = 12

    def __post_init__(self) -> None:
        problems = policy_problems(self)
        if problems:
            raise InvalidPolicy("; ".join(f"{p.field}: {p.message}" for p in problems), problems)

    def prolific_band(self, age: int) -> ProlificBand | None:
        if 0 <= age < len(self._bands_by_age):
            return self._bands_by_age[age]
        return next((band for band in self.prolific_bands if band.holds(age)), None)

    @cached_property
    def _bands_by_age(self) -> tuple[ProlificBand | None, ...]:
        """The band of each age up to 130, looked up once per person in a run."""
        return tuple(
            next((band for band in self.prolific_bands if band.holds(age)), None)
            for age in range(131)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as stored and as `GET /policies/{area}` shows it."""
        score = self.score
        return {
            "flex_categories": sorted(c.value for c in self.flex_categories),
            "prolific_bands": [
                {"min_age": b.min_age, "max_age": b.max_age, "min_offences": b.min_offences}
                for b in self.prolific_bands
            ],
            "score": {
                "window_years": score.window_years,
                "recency_bands": [
                    {"max_days": b.max_days, "points": b.points} for b in score.recency_bands
                ],
                "frequency_points_per_offence": score.frequency_points_per_offence,
                "frequency_cap": score.frequency_cap,
                "gravity_weights": {
                    c.value: score.gravity_weights[c] for c in sorted(score.gravity_weights)
                },
                "gravity_default_weight": score.gravity_default_weight,
                "gravity_cap": score.gravity_cap,
            },
            "thresholds": {
                "fixed": self.thresholds.fixed,
                "flex": self.thresholds.flex,
                "free": self.thresholds.free,
            },
            "candidacy_window_years": self.candidacy_window_years,
            "capacities": {
                "fixed": self.capacities.fixed,
                "flex": self.capacities.flex,
                "free": self.capacities.free,
            },
            "review_interval_weeks": self.review_interval_weeks,
            "deselection_after_months": self.deselection_after_months,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionPolicy:
        """A policy from its JSON form. Omitted keys take the defaults of DOMAIN.md; unknown
        keys and wrong types are refused with the path of the field at fault."""
        return _Parser().policy(data)


def default_policy() -> SelectionPolicy:
    return SelectionPolicy()


# --- validation ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(problems: list[FieldError], path: str, value: object, low: int, high: int) -> None:
    if not _is_int(value):
        problems.append(FieldError(path, "must be a whole number"))
    elif not low <= value <= high:  # type: ignore[operator]
        problems.append(FieldError(path, f"must be between {low} and {high}"))


def policy_problems(policy: SelectionPolicy) -> list[FieldError]:
    """Every rule a policy breaks; empty when it is valid."""
    problems: list[FieldError] = []

    for category in sorted(policy.flex_categories):
        if category in NEIGHBOURHOOD_CRIME:
            problems.append(
                FieldError(
                    "flex_categories",
                    f"{category.value} is neighbourhood crime, which the fixed cohort covers",
                )
            )
    if not policy.flex_categories:
        problems.append(FieldError("flex_categories", "must name at least one category"))

    bands = policy.prolific_bands
    if not bands:
        problems.append(FieldError("prolific_bands", "must have at least one age band"))
    for i, band in enumerate(bands):
        path = f"prolific_bands.{i}"
        _range(problems, f"{path}.min_age", band.min_age, MIN_AGE, 150)
        _range(problems, f"{path}.min_offences", band.min_offences, 1, 10_000)
        if band.max_age is None:
            if i != len(bands) - 1:
                problems.append(
                    FieldError(f"{path}.max_age", "only the last band may have no upper age")
                )
        else:
            _range(problems, f"{path}.max_age", band.max_age, MIN_AGE, 150)
            if _is_int(band.min_age) and _is_int(band.max_age) and band.max_age < band.min_age:
                problems.append(FieldError(f"{path}.max_age", "must not be below min_age"))
        if i > 0:
            previous = bands[i - 1]
            if (
                previous.max_age is not None
                and _is_int(previous.max_age)
                and _is_int(band.min_age)
                and band.min_age <= previous.max_age
            ):
                problems.append(
                    FieldError(
                        f"{path}.min_age",
                        "bands must be in ascending order of age and must not overlap",
                    )
                )

    score = policy.score
    _range(problems, "score.window_years", score.window_years, 1, 10)
    if not score.recency_bands:
        problems.append(FieldError("score.recency_bands", "must have at least one band"))
    for i, recency in enumerate(score.recency_bands):
        path = f"score.recency_bands.{i}"
        _range(problems, f"{path}.max_days", recency.max_days, 0, 3660)
        _range(problems, f"{path}.points", recency.points, 0, MAX_SCORE)
        if i > 0:
            previous = score.recency_bands[i - 1]
            if (
                _is_int(previous.max_days)
                and _is_int(recency.max_days)
                and recency.max_days <= previous.max_days
            ):
                problems.append(
                    FieldError(f"{path}.max_days", "bands must be in ascending order of days")
                )
            if (
                _is_int(previous.points)
                and _is_int(recency.points)
                and recency.points > previous.points
            ):
                problems.append(
                    FieldError(
                        f"{path}.points", "an older band must not score more than a newer one"
                    )
                )
    _range(
        problems,
        "score.frequency_points_per_offence",
        score.frequency_points_per_offence,
        0,
        MAX_SCORE,
    )
    _range(problems, "score.frequency_cap", score.frequency_cap, 0, MAX_SCORE)
    for category, weight in sorted(score.gravity_weights.items()):
        if not isinstance(category, OffenceCategory):
            problems.append(
                FieldError(f"score.gravity_weights.{category}", "is not an offence category")
            )
            continue
        _range(problems, f"score.gravity_weights.{category.value}", weight, 0, MAX_SCORE)
    _range(problems, "score.gravity_default_weight", score.gravity_default_weight, 0, MAX_SCORE)
    _range(problems, "score.gravity_cap", score.gravity_cap, 0, MAX_SCORE)
    parts = [score.frequency_cap, score.gravity_cap, *(b.points for b in score.recency_bands)]
    if all(_is_int(p) for p in parts) and score.max_score > MAX_SCORE:
        problems.append(
            FieldError(
                "score",
                f"the most recency points, the frequency cap and the gravity cap add up to "
                f"{score.max_score}; the score runs from 0 to {MAX_SCORE}",
            )
        )

    for cohort in Cohort:
        _range(problems, f"thresholds.{cohort.value}", policy.thresholds.of(cohort), 0, MAX_SCORE)
        _range(problems, f"capacities.{cohort.value}", policy.capacities.of(cohort), 0, 100_000)
    _range(problems, "candidacy_window_years", policy.candidacy_window_years, 1, 10)
    _range(problems, "review_interval_weeks", policy.review_interval_weeks, 1, 52)
    _range(problems, "deselection_after_months", policy.deselection_after_months, 1, 60)
    return problems


# --- parsing from JSON --------------------------------------------------------------------


_COHORTS = {c.value for c in Cohort}


class _Parser:
    """Builds a policy from JSON-like data, collecting every structural problem first."""

    def __init__(self) -> None:
        self.problems: list[FieldError] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(FieldError(path, message))

    def obj(self, data: object, path: str, keys: set[str]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            self.fail(path or "body", "must be an object")
            return {}
        for key in sorted(set(data) - keys, key=str):
            self.fail(f"{path}.{key}" if path else str(key), "is not a known field")
        return data

    def array(self, data: object, path: str) -> list[Any]:
        if not isinstance(data, list | tuple):
            self.fail(path, "must be a list")
            return []
        return list(data)

    def category(self, value: object, path: str) -> OffenceCategory | None:
        try:
            return OffenceCategory(value)
        except ValueError:
            self.fail(path, f"{value!r} is not an offence category")
            return None

    def policy(self, data: Mapping[str, Any]) -> SelectionPolicy:
        top = self.obj(
            data,
            "",
            {
                "flex_categories",
                "prolific_bands",
                "score",
                "thresholds",
                "candidacy_window_years",
                "capacities",
                "review_interval_weeks",
                "deselection_after_months",
            },
        )
        kwargs: dict[str, Any] = {}
        if "flex_categories" in top:
            items = self.array(top["flex_categories"], "flex_categories")
            cats = [self.category(v, f"flex_categories.{i}") for i, v in enumerate(items)]
            kwargs["flex_categories"] = frozenset(c for c in cats if c is not None)
        if "prolific_bands" in top:
            bands = []
            for i, item in enumerate(self.array(top["prolific_bands"], "prolific_bands")):
                if not isinstance(item, Mapping):
                    self.fail(f"prolific_bands.{i}", "must be an object")
                    continue
                band = self.obj(item, f"prolific_bands.{i}", {"min_age", "max_age", "min_offences"})
                for key in ("min_age", "min_offences"):
                    if key not in band:
                        self.fail(f"prolific_bands.{i}.{key}", "is required")
                bands.append(
                    ProlificBand(
                        band.get("min_age", 0), band.get("max_age"), band.get("min_offences", 0)
                    )
                )
            kwargs["prolific_bands"] = tuple(bands)
        if "score" in top:
            kwargs["score"] = self.score(top["score"])
        if "thresholds" in top:
            part = self.obj(top["thresholds"], "thresholds", _COHORTS)
            kwargs["thresholds"] = Thresholds(**{k: part[k] for k in part if k in _COHORTS})
        if "capacities" in top:
            part = self.obj(top["capacities"], "capacities", _COHORTS)
            kwargs["capacities"] = Capacities(**{k: part[k] for k in part if k in _COHORTS})
        for key in ("candidacy_window_years", "review_interval_weeks", "deselection_after_months"):
            if key in top:
                kwargs[key] = top[key]
        problems = list(self.problems)
        policy: SelectionPolicy | None = None
        try:
            policy = SelectionPolicy(**kwargs)
        except InvalidPolicy as invalid:
            # A field already refused for its shape is not refused again for its value.
            refused = {p.field for p in problems}
            problems.extend(
                p
                for p in invalid.field_errors
                if not any(p.field == f or p.field.startswith(f + ".") for f in refused)
            )
        if problems or policy is None:
            raise InvalidPolicy("; ".join(f"{p.field}: {p.message}" for p in problems), problems)
        return policy

    def score(self, data: object) -> ScorePolicy:
        keys = {
            "window_years",
            "recency_bands",
            "frequency_points_per_offence",
            "frequency_cap",
            "gravity_weights",
            "gravity_default_weight",
            "gravity_cap",
        }
        part = self.obj(data, "score", keys)
        kwargs: dict[str, Any] = {
            k: part[k]
            for k in (
                "window_years",
                "frequency_points_per_offence",
                "frequency_cap",
                "gravity_default_weight",
                "gravity_cap",
            )
            if k in part
        }
        if "recency_bands" in part:
            bands = []
            for i, item in enumerate(self.array(part["recency_bands"], "score.recency_bands")):
                if not isinstance(item, Mapping):
                    self.fail(f"score.recency_bands.{i}", "must be an object")
                    continue
                band = self.obj(item, f"score.recency_bands.{i}", {"max_days", "points"})
                for key in ("max_days", "points"):
                    if key not in band:
                        self.fail(f"score.recency_bands.{i}.{key}", "is required")
                bands.append(RecencyBand(band.get("max_days", 0), band.get("points", 0)))
            kwargs["recency_bands"] = tuple(bands)
        if "gravity_weights" in part:
            weights = self.obj(part["gravity_weights"], "score.gravity_weights", set())
            # `obj` flagged every key as unknown; keep only the real complaints.
            self.problems = [
                p for p in self.problems if not p.field.startswith("score.gravity_weights.")
            ]
            # Named weights replace the defaults of DOMAIN.md one by one; the rest stay.
            parsed: dict[OffenceCategory, Any] = dict(DEFAULT_GRAVITY_WEIGHTS)
            for key, weight in weights.items():
                category = self.category(key, f"score.gravity_weights.{key}")
                if category is not None:
                    parsed[category] = weight
            kwargs["gravity_weights"] = MappingProxyType(parsed)
        return ScorePolicy(**kwargs)
