"""The dimensions of a need and of the figures (DOMAIN.md, "Partnership insight").

A need's dimensions are fixed when it is submitted: pathway, area, complexity, sex, age band
(age on the submission day) and supervision (statutory or not). Provider, service and
programme belong to an allocation. `month` is the London month of the step's day.
"""

from __future__ import annotations

from enum import StrEnum

from pathways_shared.vocabulary import STATUTORY_STATUSES, SupervisionStatus


class Dimension(StrEnum):
    PATHWAY = "pathway"
    AREA = "area"
    PROVIDER = "provider"
    SERVICE = "service"
    PROGRAMME = "programme"
    MONTH = "month"
    SEX = "sex"
    AGE_BAND = "age_band"
    SUPERVISION = "supervision"
    COMPLEXITY = "complexity"
    # unmet need only
    REASON = "reason"
    # cohorts only
    COHORT = "cohort"


NEED_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension.PATHWAY, Dimension.AREA, Dimension.PROVIDER, Dimension.SERVICE,
    Dimension.PROGRAMME, Dimension.MONTH, Dimension.SEX, Dimension.AGE_BAND,
    Dimension.SUPERVISION, Dimension.COMPLEXITY,
)
COHORT_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension.AREA, Dimension.COHORT, Dimension.MONTH, Dimension.REASON,
)
MAX_DIMENSIONS = 2

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-49", "50-64", "65+")


def age_band(age: int) -> str:
    """The band of an age on the submission day; 18-24 is the prolific rule's young adults.

    Nobody under 18 is referred (the Youth Justice Service's); such an age, should one ever
    arrive, is counted with the youngest band rather than lost.
    """
    for upper, band in ((24, "18-24"), (34, "25-34"), (49, "35-49"), (64, "50-64")):
        if age <= upper:
            return band
    return "65+"


def supervision_category(status: SupervisionStatus | str) -> str:
    return "statutory" if SupervisionStatus(status) in STATUTORY_STATUSES else "non_statutory"


class InvalidDimensions(ValueError):
    """`by` names an unknown dimension, one twice, or more than two."""


def parse_by(raw: str | None, allowed: tuple[Dimension, ...]) -> tuple[Dimension, ...]:
    """`"pathway,month"` -> the dimensions, in order; refuses what the contract refuses."""
    if raw is None or not raw.strip():
        return ()
    names = [part.strip() for part in raw.split(",")]
    if any(not name for name in names):
        raise InvalidDimensions("an empty dimension name")
    allowed_names = {str(d) for d in allowed}
    unknown = [n for n in names if n not in allowed_names]
    if unknown:
        raise InvalidDimensions(
            f"unknown dimension {unknown[0]!r}; choose from {', '.join(str(d) for d in allowed)}"
        )
    if len(set(names)) != len(names):
        raise InvalidDimensions("a dimension is named twice")
    if len(names) > MAX_DIMENSIONS:
        raise InvalidDimensions(f"at most {MAX_DIMENSIONS} dimensions")
    return tuple(Dimension(n) for n in names)
