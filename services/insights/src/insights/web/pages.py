"""What each dashboard page shows: its tables (one figures query each, shared where two
tables read the same answer), the chart beside each, and how an answer becomes a table.

Pure: an answer of the figures API (its JSON shape, see CONTRACT.md "Insights service") in,
a view out. A cell the figures suppressed says `[c]`; a figure that cannot be given (a rate
with nothing to divide by) says `[x]`, as ONS tables do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from insights.domain.figures import DECLINE_REASONS as DECLINE_REASON_COUNTS
from insights.web import charts
from insights.web.labels import DECLINE_REASONS, DIMENSION_NAMES, dimension_value
from pathways_shared.vocabulary import Pathway

SUPPRESSED = "[c]"
NOT_AVAILABLE = "[x]"


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    format: str = "count"  # count | percent | days | score
    # For a share worked out here: numerator, then the counts whose sum divides it.
    ratio: tuple[str, tuple[str, ...]] | None = None
    # Counts the figure is drawn from: when one is suppressed, so is this figure.
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChartSpec:
    column: str
    title: str
    style: str = "bars"  # bars | columns


@dataclass(frozen=True)
class TableSpec:
    id: str
    kind: str  # needs | unmet-need | service-levels | cohorts | duty-to-refer
    by: tuple[str, ...]
    caption: str
    columns: tuple[Column, ...] = ()
    chart: ChartSpec | None = None
    pivot_figure: str | None = None  # two dimensions: the second spread across the columns
    note: str = ""


@dataclass(frozen=True)
class PageSpec:
    slug: str
    path: str
    title: str
    intro: str
    tables: tuple[TableSpec, ...]
    uses_pathway_provider: bool = True


def _count(key: str, heading: str) -> Column:
    return Column(key, heading)


ALLOCATION_RATE = Column(
    "allocation_rate", "Allocation rate", "percent",
    ratio=("allocated", ("allocated", "unallocated")),
)
ACK_ON_TIME = Column(
    "acknowledged_on_time_share", "Share on time", "percent",
    ratio=("acknowledged_on_time", ("acknowledged_on_time", "acknowledged_late")),
)
RESPONDED_ON_TIME = Column(
    "responded_on_time_share", "Share on time", "percent",
    ratio=("responded_on_time", ("responded_on_time", "responded_late")),
)
DTR_SHARE = Column(
    "duty_to_refer_share", "Notices per at-risk need", "percent",
    ratio=("duty_to_refer_sent", ("accommodation_at_risk",)),
)
FLOW = (
    _count("submitted", "Submitted"), _count("allocated", "Allocated"),
    _count("unallocated", "Unallocated"), ALLOCATION_RATE,
)
EQUALITY = (
    _count("submitted", "Submitted"), _count("allocated", "Allocated"),
    _count("unallocated", "Unallocated"), ALLOCATION_RATE, _count("accepted", "Accepted"),
    _count("completed", "Completed"), _count("outcome_achieved", "Outcome achieved"),
)

OVERVIEW = PageSpec(
    "overview", "/", "Overview",
    "Needs referred to commissioned services, how many found a service, and why the rest did not.",
    (
        TableSpec(
            "needs-by-month", "needs", ("month",),
            "Needs submitted, allocated and left unallocated, by month", FLOW,
            ChartSpec("submitted", "Needs submitted by month", "columns"),
        ),
        TableSpec(
            "needs-by-pathway", "needs", ("pathway",),
            "Needs submitted, allocated and left unallocated, by pathway", FLOW,
            ChartSpec("submitted", "Needs submitted by pathway"),
        ),
        TableSpec(
            "unmet-need-by-reason", "unmet-need", ("reason",),
            "Unmet need: needs left unallocated, by reason",
            (_count("unallocated", "Needs unallocated"),),
            ChartSpec("unallocated", "Unmet need by reason"),
            note="The reason is the criterion that the best-placed service did not meet, "
            "or that no service delivers the pathway in the area, or that every eligible "
            "service declined.",
        ),
        TableSpec(
            "needs-by-month-pathway", "needs", ("month", "pathway"),
            "Needs submitted by month and pathway", pivot_figure="submitted",
        ),
    ),
)

PROVIDERS = PageSpec(
    "providers", "/providers", "Providers",
    "How providers meet their service levels (acknowledge within 2 working days, accept or "
    "decline within 5), what they accept and decline, and the outcomes of completed work.",
    (
        TableSpec(
            "acknowledgements-by-provider", "service-levels", ("provider",),
            "Acknowledging within 2 working days, by provider",
            (
                _count("allocated", "Allocated"),
                _count("acknowledged_on_time", "Acknowledged on time"),
                _count("acknowledged_late", "Acknowledged late"),
                ACK_ON_TIME,
            ),
            ChartSpec("acknowledged_on_time_share", "Share of referrals acknowledged on time, by provider"),
            note="An acceptance or decline that comes before any acknowledgement counts as one.",
        ),
        TableSpec(
            "responses-by-provider", "service-levels", ("provider",),
            "Accepting or declining within 5 working days, by provider",
            (
                _count("responded_on_time", "Responded on time"),
                _count("responded_late", "Responded late"),
                RESPONDED_ON_TIME,
                _count("deadlines_missed", "Deadlines missed"),
            ),
            ChartSpec("responded_on_time_share", "Share of referrals accepted or declined on time, by provider"),
        ),
        TableSpec(
            "response-times-by-provider", "service-levels", ("provider",),
            "Time to acknowledge and respond (median working days), acceptance and outcomes, by provider",
            (
                Column("median_working_days_to_acknowledge", "Median days to acknowledge", "days",
                       sources=("acknowledged_on_time", "acknowledged_late")),
                Column("median_working_days_to_respond", "Median days to respond", "days",
                       sources=("responded_on_time", "responded_late")),
                Column("acceptance_rate", "Acceptance rate", "percent",
                       sources=("responded_on_time", "responded_late")),
                Column("achievement_score", "Achievement score (0 to 1)", "score"),
            ),
            ChartSpec("median_working_days_to_respond", "Median working days to accept or decline, by provider"),
            note="Working days exclude weekends and the bank holidays of England and Wales. "
            "The achievement score is the mean over completions of achieved 1, partially "
            "achieved 0.5, not achieved 0.",
        ),
        TableSpec(
            "decisions-by-provider", "needs", ("provider",),
            "Acceptances, declines and completions by provider",
            (
                _count("allocated", "Allocated"), _count("accepted", "Accepted"),
                _count("declined", "Declined"), _count("started", "Started"),
                _count("completed", "Completed"), _count("withdrawn", "Withdrawn"),
            ),
            ChartSpec("declined", "Declines by provider"),
        ),
        TableSpec(
            "decline-reasons-by-provider", "service-levels", ("provider",),
            "Declines by reason, by provider",
            (
                _count("declined", "Declined"),
                *(_count(column, DECLINE_REASONS.get(reason, reason))
                  for reason, column in zip(DECLINE_REASON_COUNTS.categories,
                                            DECLINE_REASON_COUNTS.columns, strict=True)),
            ),
            ChartSpec("declined", "Declines by provider"),
            note="The reason code the provider gave when it declined the referral.",
        ),
        TableSpec(
            "outcomes-by-provider", "needs", ("provider",),
            "Outcomes of completed referrals by provider",
            (
                _count("completed", "Completed"), _count("outcome_achieved", "Achieved"),
                _count("outcome_partially_achieved", "Partially achieved"),
                _count("outcome_not_achieved", "Not achieved"),
            ),
            ChartSpec("completed", "Completions by provider"),
        ),
    ),
)

EQUALITY_PAGE = PageSpec(
    "equality", "/equality", "Equality",
    "Whether needs are met equally for women and men, across ages, and for people on "
    "statutory supervision and not.",
    (
        TableSpec("needs-by-sex", "needs", ("sex",), "Needs by sex", EQUALITY,
                  ChartSpec("allocation_rate", "Allocation rate by sex")),
        TableSpec("needs-by-age-band", "needs", ("age_band",), "Needs by age band (age on the day of submission)",
                  EQUALITY, ChartSpec("submitted", "Needs submitted by age band")),
        TableSpec("needs-by-supervision", "needs", ("supervision",), "Needs by supervision: statutory or not",
                  EQUALITY, ChartSpec("allocation_rate", "Allocation rate by supervision")),
        TableSpec("needs-by-pathway-sex", "needs", ("pathway", "sex"),
                  "Needs submitted by pathway and sex", pivot_figure="submitted"),
    ),
)

COHORTS = PageSpec(
    "cohorts", "/cohorts", "IOM cohorts",
    "Integrated Offender Management cohorts: members at the end of the period, adoptions "
    "and deselections in it, and members with at least one open need.",
    (
        TableSpec(
            "cohorts-by-cohort", "cohorts", ("cohort",), "IOM cohort members, adoptions and deselections",
            (
                _count("members", "Members at the end of the period"), _count("adopted", "Adopted"),
                _count("deselected", "Deselected"),
                _count("members_with_open_need", "Members with an open need"),
            ),
            ChartSpec("members", "IOM cohort members at the end of the period"),
        ),
        TableSpec(
            "cohorts-by-area", "cohorts", ("area",), "IOM cohorts by area",
            (
                _count("members", "Members at the end of the period"), _count("adopted", "Adopted"),
                _count("deselected", "Deselected"),
                _count("members_with_open_need", "Members with an open need"),
            ),
            ChartSpec("members", "IOM cohort members by area"),
        ),
        TableSpec(
            "deselections-by-reason", "cohorts", ("reason",), "Deselections by reason",
            (_count("deselected", "Deselected"),),
            ChartSpec("deselected", "Deselections by reason"),
        ),
    ),
    uses_pathway_provider=False,
)

DUTY_TO_REFER = PageSpec(
    "duty-to-refer", "/duty-to-refer", "Duty to Refer",
    "Accommodation needs flagged at risk of homelessness, and the Duty to Refer notices sent "
    "to the local authority's housing team (Homelessness Reduction Act 2017). The two should "
    "match.",
    (
        TableSpec(
            "duty-to-refer-by-area", "duty-to-refer", ("area",), "Duty to Refer by area",
            (
                _count("accommodation_at_risk", "Accommodation needs at risk"),
                _count("duty_to_refer_sent", "Notices sent"), DTR_SHARE,
            ),
            ChartSpec("duty_to_refer_share", "Duty to Refer notices per at-risk accommodation need, by area"),
        ),
        TableSpec(
            "duty-to-refer-by-month", "duty-to-refer", ("month",), "Duty to Refer by month",
            (
                _count("accommodation_at_risk", "Accommodation needs at risk"),
                _count("duty_to_refer_sent", "Notices sent"), DTR_SHARE,
            ),
            ChartSpec("duty_to_refer_sent", "Duty to Refer notices sent by month", "columns"),
        ),
    ),
    uses_pathway_provider=False,
)

PAGES: tuple[PageSpec, ...] = (OVERVIEW, PROVIDERS, EQUALITY_PAGE, COHORTS, DUTY_TO_REFER)
PAGE_BY_SLUG = {p.slug: p for p in PAGES}
TABLES: dict[str, tuple[PageSpec, TableSpec]] = {t.id: (p, t) for p in PAGES for t in p.tables}


# --- answer -> view ------------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    value: float | None = None
    code: str = ""  # "", "[c]" or "[x]"
    numeric: bool = True


@dataclass
class TableView:
    spec: TableSpec
    head: list[str]
    rows: list[tuple[str, list[Cell]]]
    total: tuple[str, list[Cell]] | None
    chart: Markup | None = None
    suppressed: bool = False
    not_available: bool = False
    numeric_head: list[bool] = field(default_factory=list)


_ORDER: dict[str, list[str]] = {
    "pathway": [p.value for p in Pathway],
    "age_band": ["18-24", "25-34", "35-49", "50-64", "65+"],
    "supervision": ["statutory", "non_statutory"],
    "sex": ["female", "male"],
    "complexity": ["low", "medium", "high"],
    "cohort": ["fixed", "flex", "free"],
}


def _sort_key(dimension: str, kind: str) -> Any:
    order = _ORDER.get(dimension)

    def key(value: Any) -> tuple:
        if value is None:
            return (2, "")
        if order is not None and str(value) in order:
            return (0, order.index(str(value)), "")
        if dimension == "month":
            return (0, 0, str(value))
        return (1, dimension_value(dimension, value, kind=kind).lower())

    return key


def format_value(value: float, fmt: str) -> str:
    if fmt == "percent":
        return f"{value * 100:.0f}%"
    if fmt == "days":
        return f"{value:.1f}".rstrip("0").rstrip(".")
    if fmt == "score":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def cell(row: Mapping[str, Any], column: Column) -> Cell:
    suppressed = set(row.get("suppressed") or ())
    if column.ratio is not None:
        top_key, bottom_keys = column.ratio
        keys = (top_key, *bottom_keys)
        if any(k in suppressed for k in keys):
            return Cell(SUPPRESSED, code=SUPPRESSED)
        if any(row.get(k) is None for k in keys):
            return Cell(NOT_AVAILABLE, code=NOT_AVAILABLE)
        bottom = sum(row[k] for k in bottom_keys)
        if not bottom:
            return Cell(NOT_AVAILABLE, code=NOT_AVAILABLE)
        value = row[top_key] / bottom
        return Cell(format_value(value, column.format), value=value)
    value = row.get(column.key)
    if value is None:
        if column.key in suppressed or any(s in suppressed for s in column.sources):
            return Cell(SUPPRESSED, code=SUPPRESSED)
        return Cell(NOT_AVAILABLE, code=NOT_AVAILABLE)
    return Cell(format_value(float(value), column.format), value=float(value))


def build_table(spec: TableSpec, answer: Mapping[str, Any], *, threshold: int) -> TableView:
    if spec.pivot_figure is not None:
        view = _pivot(spec, answer)
    else:
        view = _plain(spec, answer)
    cells = [c for _, cs in view.rows for c in cs] + (view.total[1] if view.total else [])
    view.suppressed = any(c.code == SUPPRESSED for c in cells)
    view.not_available = any(c.code == NOT_AVAILABLE for c in cells)
    if spec.chart is not None:
        view.chart = _chart(spec, view, threshold=threshold)
    return view


def _plain(spec: TableSpec, answer: Mapping[str, Any]) -> TableView:
    dimension = spec.by[0] if spec.by else ""
    rows = sorted(answer.get("rows") or [], key=lambda r: _sort_key(dimension, spec.kind)(r.get(dimension)))
    body = [
        (dimension_value(dimension, r.get(dimension), kind=spec.kind), [cell(r, c) for c in spec.columns])
        for r in rows
    ]
    # A row with no value for its dimension and nothing in it (adoptions have no deselection
    # reason; needs never allocated have no provider) only says "none": leave it out.
    body = [
        (label, cells) for (label, cells), r in zip(body, rows, strict=True)
        if r.get(dimension) is not None or any(c.value != 0 or c.code for c in cells)
    ]
    total = answer.get("total")
    head = [DIMENSION_NAMES.get(dimension, dimension.title()), *(c.heading for c in spec.columns)]
    return TableView(
        spec, head, body, ("Total", [cell(total, c) for c in spec.columns]) if total else None,
        numeric_head=[False] + [True] * len(spec.columns),
    )


def _pivot(spec: TableSpec, answer: Mapping[str, Any]) -> TableView:
    down, across = spec.by
    figure = Column(spec.pivot_figure or "", "")
    rows = answer.get("rows") or []
    across_values = sorted({r.get(across) for r in rows}, key=_sort_key(across, spec.kind))
    down_values = sorted({r.get(down) for r in rows}, key=_sort_key(down, spec.kind))
    index = {(r.get(down), r.get(across)): r for r in rows}
    body = []
    for d in down_values:
        cells = []
        for a in across_values:
            r = index.get((d, a))
            cells.append(cell(r, figure) if r is not None else Cell("0", value=0.0))
        body.append((dimension_value(down, d, kind=spec.kind), cells))
    head = [DIMENSION_NAMES.get(down, down),
            *(dimension_value(across, a, kind=spec.kind).split(" (")[0] for a in across_values)]
    return TableView(spec, head, body, None, numeric_head=[False] + [True] * len(across_values))


def _chart(spec: TableSpec, view: TableView, *, threshold: int) -> Markup | None:
    chart = spec.chart
    assert chart is not None
    position = next(i for i, c in enumerate(spec.columns) if c.key == chart.column)
    column = spec.columns[position]
    bars = [
        charts.Bar(
            label.split(" (")[0], cells[position].value if cells[position].code == "" else None,
            cells[position].code, cells[position].text,
        )
        for label, cells in view.rows
    ]
    if column.format == "percent":
        bars = [
            charts.Bar(b.label, b.value * 100 if b.value is not None else None, b.why, b.display)
            for b in bars
        ]
    shown = [b for b in bars if b.value is not None]
    if not bars:
        return None
    description = describe(chart.title, bars, threshold=threshold)
    if chart.style == "columns":
        return charts.columns(f"chart-{spec.id}", chart.title, description, bars)
    return charts.horizontal_bars(
        f"chart-{spec.id}", chart.title, description, bars,
        maximum=100.0 if column.format == "percent" and all((b.value or 0) <= 100 for b in shown) else None,
    )


def describe(title: str, bars: Sequence[charts.Bar], *, threshold: int) -> str:
    """The chart's text description: the largest and smallest shown value, and what is hidden."""
    shown = [b for b in bars if b.value is not None]
    hidden = len(bars) - len(shown)
    parts = [f"{title}: {len(bars)} bars."]
    if shown:
        top = max(shown, key=lambda b: b.value or 0)
        low = min(shown, key=lambda b: b.value or 0)
        parts.append(f"Highest {top.label} ({top.display}); lowest {low.label} ({low.display}).")
    if hidden:
        parts.append(
            f"{hidden} not shown: suppressed (fewer than {threshold}) or not available."
        )
    parts.append("The table below gives every figure.")
    return " ".join(parts)
