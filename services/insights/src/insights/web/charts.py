"""Charts as server-rendered SVG, drawn from the very rows the figures API answers.

Why SVG from the server rather than a chart library in the browser: the numbers a chart shows
are then the numbers of the table beside it by construction (one answer feeds both), the chart
is there with JavaScript off, no script or font has to be fetched, and each chart is a small,
accessible image (`role="img"` with a title and a description; its table is the full text
alternative). Pure functions: values in, markup out.

A suppressed value draws no bar and says `[c]`; a value the figures cannot give says `[x]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

BAR = "#1d70b8"  # GOV.UK blue: 5.2:1 against white
TEXT = "#0b0c0c"
MUTED = "#484949"  # secondary text: 9:1 against white
GRID = "#b1b4b6"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: not shown (see `why`)
    why: str = ""  # "[c]" suppressed, "[x]" not available
    display: str | None = None  # the value as the table writes it (e.g. "85%")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = step * magnitude
        if top >= value:
            return float(top)
    return float(value)


def horizontal_bars(
    chart_id: str, title: str, description: str, bars: Sequence[Bar], *,
    maximum: float | None = None, width: int = 440,
) -> Markup:
    """One bar per row, its label above it and the value at its end. Labels above bars (not
    beside them) keep the drawing narrow, so its text stays readable on a phone, where the
    whole drawing is scaled down to the screen's width."""
    value_w = 70
    row_h = 50
    top = 4
    plot_w = width - value_w
    height = top + row_h * max(len(bars), 1) + 4
    shown = [b.value for b in bars if b.value is not None]
    scale_max = maximum if maximum is not None else _nice_max(max(shown, default=0))
    parts = [_open(chart_id, title, description, width, height)]
    for i, bar in enumerate(bars):
        y = top + i * row_h
        parts.append(
            f'<text x="0" y="{y + 15}" fill="{TEXT}" font-size="15">'
            f'{escape(_shorten(bar.label, 52))}</text>'
        )
        if bar.value is None:
            parts.append(
                f'<text x="0" y="{y + 38}" fill="{MUTED}" font-size="15">'
                f'{escape(bar.why or "[x]")}</text>'
            )
            continue
        w = 0 if scale_max <= 0 else max(0.0, min(1.0, bar.value / scale_max)) * plot_w
        parts.append(
            f'<rect x="0" y="{y + 22}" width="{w:.1f}" height="20" fill="{BAR}"/>'
        )
        parts.append(
            f'<text x="{w + 6:.1f}" y="{y + 38}" fill="{TEXT}" font-size="15">'
            f'{escape(bar.display or _fmt(bar.value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(
    chart_id: str, title: str, description: str, bars: Sequence[Bar], *,
    width: int = 440, height: int = 240,
) -> Markup:
    """One column per row (months): a scale on the left, labels below. Drawn narrow, as the
    bars are, so its text stays readable when scaled down to a phone's width."""
    left = 48
    bottom = 44
    top = 14
    plot_h = height - top - bottom
    n = max(len(bars), 1)
    slot = (width - left - 8) / n
    bar_w = max(4.0, slot * 0.7)
    shown = [b.value for b in bars if b.value is not None]
    scale_max = _nice_max(max(shown, default=0))
    parts = [_open(chart_id, title, description, width, height)]
    # gridlines at whole numbers where the scale allows: 0-50 in tens, 0-20 in fives
    steps = next((n for n in (4, 5) if float(scale_max / n).is_integer()), 4)
    for k in range(steps + 1):
        value = scale_max * k / steps
        y = top + plot_h - plot_h * k / steps
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" stroke="{GRID}" '
            f'stroke-width="1"/><text x="{left - 6}" y="{y + 5:.1f}" text-anchor="end" '
            f'fill="{MUTED}" font-size="14">{_fmt(value)}</text>'
        )
    every = max(1, round(n / 12))  # at most about twelve labels below
    year = ""
    for i, bar in enumerate(bars):
        x = left + i * slot + (slot - bar_w) / 2
        cx = x + bar_w / 2
        if bar.value is None:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h - 6}" text-anchor="middle" fill="{MUTED}" '
                f'font-size="12">{escape(bar.why or "[x]")}</text>'
            )
        else:
            h = plot_h * max(0.0, min(1.0, bar.value / scale_max))
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{BAR}"/>'
            )
        if i % every == 0:
            # "Jan 2026": the month on one line, the year below it where the year changes
            first, _, second = bar.label.partition(" ")
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle" fill="{TEXT}" '
                f'font-size="14">{escape(_shorten(first, 10))}</text>'
            )
            if second and second != year:
                parts.append(
                    f'<text x="{cx:.1f}" y="{top + plot_h + 34}" text-anchor="middle" '
                    f'fill="{MUTED}" font-size="14">{escape(second)}</text>'
                )
            year = second
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(chart_id: str, title: str, description: str, width: int, height: int) -> str:
    cid = escape(chart_id)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="app-chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{cid}-title {cid}-desc" focusable="false">'
        f'<title id="{cid}-title">{escape(title)}</title>'
        f'<desc id="{cid}-desc">{escape(description)}</desc>'
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
