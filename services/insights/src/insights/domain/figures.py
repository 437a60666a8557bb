"""The five answers of the figures API: what each counts, how it may be broken down, what is
derived from its counts, and how an answer is assembled and made safe to share.

Pure: the repository reads the aggregated counts (and the histograms behind the medians);
`assemble` turns them into rows and a total with small numbers suppressed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from insights.domain.dimensions import COHORT_DIMENSIONS, NEED_DIMENSIONS, Dimension
from insights.domain.projection import DetailMeasure
from insights.domain.suppression import TOTAL, RowRelation, is_small, suppressed_cells
from pathways_shared.vocabulary import DeclineReason


class FigureKind(StrEnum):
    NEEDS = "needs"
    UNMET_NEED = "unmet-need"
    SERVICE_LEVELS = "service-levels"
    COHORTS = "cohorts"
    DUTY_TO_REFER = "duty-to-refer"


OUTCOMES = ("outcome_achieved", "outcome_partially_achieved", "outcome_not_achieved")
OUTCOME_SCORES = {"outcome_achieved": 1.0, "outcome_partially_achieved": 0.5,
                  "outcome_not_achieved": 0.0}


@dataclass(frozen=True)
class Breakdown:
    """A count split by the categories of a detail (declines by reason code): one column per
    category, `prefix` + category; a detail outside the categories counts under `fallback`."""

    measure: DetailMeasure
    prefix: str
    categories: tuple[str, ...]
    fallback: str

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.prefix + c for c in self.categories)

    def column(self, detail: str) -> str:
        return self.prefix + (detail if detail in self.categories else self.fallback)


DECLINE_REASONS = Breakdown(
    DetailMeasure.DECLINE_REASON, "declined_", tuple(str(r) for r in DeclineReason),
    str(DeclineReason.OTHER),
)


@dataclass(frozen=True)
class FigureDefinition:
    kind: FigureKind
    counts: tuple[str, ...]  # shown, suppressed when small
    dimensions: tuple[Dimension, ...]
    hidden: tuple[str, ...] = ()  # read only to derive rates: never shown
    derived: tuple[str, ...] = ()
    histograms: tuple[DetailMeasure, ...] = ()
    relations: tuple[RowRelation, ...] = ()
    # Counts at the end of a period (not additive over months).
    stock: tuple[str, ...] = ()
    extra_dimensions: tuple[Dimension, ...] = field(default=())
    # Counts read from the details, by category (the rest are read from the cells).
    breakdowns: tuple[Breakdown, ...] = ()

    @property
    def read(self) -> tuple[str, ...]:
        return self.counts + self.hidden

    @property
    def cell_counts(self) -> tuple[str, ...]:
        """What is read from the aggregated cells (not from the details)."""
        from_details = {c for b in self.breakdowns for c in b.columns}
        return tuple(c for c in self.read if c not in from_details)


NEEDS = FigureDefinition(
    FigureKind.NEEDS,
    counts=(
        "submitted", "allocated", "unallocated", "declined", "accepted", "started", "completed",
        "withdrawn", "acknowledged_on_time", "acknowledged_late", "responded_on_time",
        "responded_late", *OUTCOMES, "duty_to_refer_sent",
    ),
    dimensions=NEED_DIMENSIONS,
    relations=(
        RowRelation(("completed",), OUTCOMES),
        RowRelation(("accepted", "declined"), ("responded_on_time", "responded_late")),
    ),
)
UNMET_NEED = FigureDefinition(
    FigureKind.UNMET_NEED,
    counts=("unallocated",),
    dimensions=(*NEED_DIMENSIONS, Dimension.REASON),
)
SERVICE_LEVELS = FigureDefinition(
    FigureKind.SERVICE_LEVELS,
    counts=(
        "allocated", "acknowledged_on_time", "acknowledged_late", "responded_on_time",
        "responded_late", "deadlines_missed", "declined", *DECLINE_REASONS.columns,
    ),
    hidden=("accepted", *OUTCOMES),
    derived=(
        "median_working_days_to_acknowledge", "median_working_days_to_respond",
        "acceptance_rate", "achievement_score",
    ),
    histograms=(DetailMeasure.WORKING_DAYS_TO_ACKNOWLEDGE, DetailMeasure.WORKING_DAYS_TO_RESPOND),
    breakdowns=(DECLINE_REASONS,),
    relations=(RowRelation(("declined",), DECLINE_REASONS.columns),),
    dimensions=NEED_DIMENSIONS,
)
COHORTS = FigureDefinition(
    FigureKind.COHORTS,
    counts=("members", "adopted", "deselected", "members_with_open_need"),
    dimensions=COHORT_DIMENSIONS,
    stock=("members", "members_with_open_need"),
)
DUTY_TO_REFER = FigureDefinition(
    FigureKind.DUTY_TO_REFER,
    counts=("accommodation_at_risk", "duty_to_refer_sent"),
    dimensions=NEED_DIMENSIONS,
)

DEFINITIONS: dict[FigureKind, FigureDefinition] = {
    d.kind: d for d in (NEEDS, UNMET_NEED, SERVICE_LEVELS, COHORTS, DUTY_TO_REFER)
}


@dataclass
class RawRow:
    """Aggregated counts for one combination of the dimensions' values."""

    key: tuple[Any, ...]
    counts: dict[str, int]
    histograms: dict[str, dict[int, int]] = field(default_factory=dict)


def median(histogram: Mapping[int, int]) -> float | None:
    """The median of whole numbers given as value -> how many; halves for an even count."""
    n = sum(histogram.values())
    if n <= 0:
        return None
    ordered = sorted((v, c) for v, c in histogram.items() if c > 0)

    def nth(k: int) -> int:  # 0-based
        seen = 0
        for value, count in ordered:
            seen += count
            if k < seen:
                return value
        raise AssertionError("unreachable")

    if n % 2:
        return float(nth(n // 2))
    return (nth(n // 2 - 1) + nth(n // 2)) / 2


def _merge(histograms: Sequence[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[value] = merged.get(value, 0) + count
    return merged


def assemble(
    definition: FigureDefinition,
    by: Sequence[Dimension],
    raw: Sequence[RawRow],
    threshold: int,
    *,
    total_counts: Mapping[str, int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (sorted by their dimension values, nulls first) and the total, suppressed.

    `total_counts` is given where the total is not the sum of the rows (end-of-period stock
    counts when broken down by month); otherwise it is summed here.
    """
    raw = sorted(raw, key=lambda r: tuple((v is not None, str(v)) for v in r.key))
    columns = definition.read
    rows_counts = [{c: int(r.counts.get(c, 0)) for c in columns} for r in raw]
    total = {c: sum(row[c] for row in rows_counts) for c in columns}
    if total_counts is not None:
        total.update({c: int(v) for c, v in total_counts.items() if c in total})
    by_month = Dimension.MONTH in by
    additive = [c for c in definition.counts if not (by_month and c in definition.stock)]
    if not by:
        additive = []  # one row: the total is the row
    hidden_cells = suppressed_cells(
        rows_counts, total, columns=definition.counts, additive=additive,
        relations=definition.relations, threshold=threshold,
    )
    total_histograms = {
        str(m): _merge([r.histograms.get(str(m), {}) for r in raw]) for m in definition.histograms
    }

    def shape(index: int, counts: dict[str, int], histograms: Mapping[str, Mapping[int, int]],
              dims: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict(dims)
        suppressed: list[str] = []
        for column in definition.counts:
            if (index, column) in hidden_cells:
                out[column] = None
                suppressed.append(column)
            else:
                out[column] = counts[column]
        out.update(_derived(definition, counts, histograms, suppressed, threshold))
        out["suppressed"] = suppressed
        return out

    if not by:
        only = shape(TOTAL, total, total_histograms, {})
        return [dict(only)], only
    rows = [
        shape(i, rows_counts[i], r.histograms, {str(d): v for d, v in zip(by, r.key, strict=True)})
        for i, r in enumerate(raw)
    ]
    return rows, shape(TOTAL, total, total_histograms, {})


def _derived(
    definition: FigureDefinition,
    counts: Mapping[str, int],
    histograms: Mapping[str, Mapping[int, int]],
    suppressed: Sequence[str],
    threshold: int,
) -> dict[str, float | None]:
    """Rates and medians; null when drawn from a suppressed (or suppressible) count."""
    if definition.kind is not FigureKind.SERVICE_LEVELS:
        return {}

    def unsafe(*names: str) -> bool:
        return any(n in suppressed or is_small(counts.get(n, 0), threshold) for n in names)

    out: dict[str, float | None] = {}
    for name, measure, inputs in (
        ("median_working_days_to_acknowledge", DetailMeasure.WORKING_DAYS_TO_ACKNOWLEDGE,
         ("acknowledged_on_time", "acknowledged_late")),
        ("median_working_days_to_respond", DetailMeasure.WORKING_DAYS_TO_RESPOND,
         ("responded_on_time", "responded_late")),
    ):
        value = median(histograms.get(str(measure), {}))
        out[name] = None if value is None or unsafe(*inputs) else value
    responses = counts.get("accepted", 0) + counts.get("declined", 0)
    out["acceptance_rate"] = (
        None if responses == 0 or unsafe("accepted", "declined")
        else round(counts.get("accepted", 0) / responses, 4)
    )
    completions = sum(counts.get(o, 0) for o in OUTCOMES)
    out["achievement_score"] = (
        None if completions == 0 or unsafe(*OUTCOMES)
        else round(sum(counts.get(o, 0) * s for o, s in OUTCOME_SCORES.items()) / completions, 4)
    )
    return out
