"""The dashboard's filters: a plain GET form (area, period, pathway, provider), read from the
query string and checked here, so a bad value is shown back on the form with its error
(never a 500). Pure: the query, the caller's areas and today in; filters or errors out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import urlencode

from pathways_shared.vocabulary import AREAS, PROVIDER_CODES, REGIONS, Pathway

LONGEST_PERIOD_DAYS = 366 * 5
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)  # beyond: a typing slip, not a period


@dataclass(frozen=True)
class Filters:
    areas: tuple[str, ...]  # () means every area the caller may see
    date_from: date
    date_to: date
    pathway: str | None = None
    provider: str | None = None

    def query(self, **extra: str) -> str:
        """The query string that gives these filters back (for links and CSV downloads)."""
        pairs: list[tuple[str, str]] = [("area", a) for a in self.areas]
        pairs += [("from", self.date_from.isoformat()), ("to", self.date_to.isoformat())]
        if self.pathway:
            pairs.append(("pathway", self.pathway))
        if self.provider:
            pairs.append(("provider", self.provider))
        pairs += list(extra.items())
        return urlencode(pairs)


@dataclass
class FilterErrors:
    """Field -> message, in the order the form shows them (GOV.UK error summary)."""

    messages: dict[str, str] = field(default_factory=dict)
    forbidden_areas: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.messages)


def default_period(today: date) -> tuple[date, date]:
    """The 365 days up to today, as the figures API defaults."""
    return today - timedelta(days=364), today


def _parse_date(raw: str | None) -> date | None:
    if raw is None or raw.strip() == "":
        return None
    return date.fromisoformat(raw.strip())


def parse_filters(
    params: Iterable[tuple[str, str]], *, allowed_areas: frozenset[str] | None, today: date
) -> tuple[Filters, FilterErrors]:
    """Filters from the query string; when something is wrong, the defaults in its place and
    a message naming the field. Areas outside the caller's areas are named apart (a 403)."""
    values: dict[str, list[str]] = {}
    for key, value in params:
        values.setdefault(key, []).append(value)
    errors = FilterErrors()
    default_from, default_to = default_period(today)

    areas: list[str] = []
    forbidden: list[str] = []
    for raw in values.get("area", []):
        code = raw.strip()
        if code == "":
            continue
        if code not in AREAS and code not in REGIONS:
            errors.messages.setdefault("area", f"Choose an area from the list ({code!r} is not one)")
            continue
        for area in sorted(REGIONS.get(code, {code})):
            if allowed_areas is not None and area not in allowed_areas:
                forbidden.append(area)
            elif area not in areas:
                areas.append(area)
    errors.forbidden_areas = tuple(forbidden)

    date_from = date_to = None
    try:
        date_from = _parse_date(values.get("from", [None])[0])
    except ValueError:
        errors.messages["from"] = "The start of the period must be a real date, like 2026-04-01"
    try:
        date_to = _parse_date(values.get("to", [None])[0])
    except ValueError:
        errors.messages["to"] = "The end of the period must be a real date, like 2026-12-06"
    for name, value in (("from", date_from), ("to", date_to)):
        if value is not None and not EARLIEST <= value <= LATEST:
            errors.messages[name] = f"The period must lie between {EARLIEST.year} and {LATEST.year}"
    if errors.messages.get("from") or errors.messages.get("to"):
        date_from = date_to = None
    if date_from is None and date_to is None:
        date_from, date_to = default_from, default_to
    elif date_to is None:
        date_to = max(date_from, today) if date_from else default_to  # type: ignore[type-var]
    elif date_from is None:
        date_from = date_to - timedelta(days=364)
    if date_from > date_to and "from" not in errors.messages:
        errors.messages["from"] = "The start of the period must be on or before its end"
    elif (date_to - date_from).days > LONGEST_PERIOD_DAYS:
        errors.messages["from"] = "The period can be at most five years"
    if errors.messages.get("from") or errors.messages.get("to"):
        date_from, date_to = default_from, default_to

    pathway = (values.get("pathway", [""])[0] or "").strip() or None
    if pathway is not None and pathway not in {p.value for p in Pathway}:
        errors.messages["pathway"] = "Choose a pathway from the list"
        pathway = None
    provider = (values.get("provider", [""])[0] or "").strip() or None
    if provider is not None and provider not in PROVIDER_CODES:
        errors.messages["provider"] = "Choose a provider from the list"
        provider = None

    return Filters(tuple(areas), date_from, date_to, pathway, provider), errors
