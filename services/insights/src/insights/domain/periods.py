"""Periods as the fewest stored rows to read: whole calendar months, and days added or
subtracted at either end. Pure: dates in, dates out."""

from __future__ import annotations

from datetime import date, timedelta


def split_period(start: date, end: date) -> tuple[list[date], list[tuple[date, date]]]:
    """[start, end] as whole calendar months (their first days) and the days left over."""
    months: list[date] = []
    first = start if start.day == 1 else (start.replace(day=1) + timedelta(days=32)).replace(day=1)
    current = first
    while True:
        next_month = (current + timedelta(days=32)).replace(day=1)
        if next_month - timedelta(days=1) > end:
            break
        months.append(current)
        current = next_month
    if not months:
        return [], [(start, end)]
    ranges = []
    if start < months[0]:
        ranges.append((start, months[0] - timedelta(days=1)))
    after = (months[-1] + timedelta(days=32)).replace(day=1)
    if after <= end:
        ranges.append((after, end))
    return months, ranges


def _month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def period_terms(
    start: date, end: date
) -> tuple[list[date], list[tuple[date, date]], list[tuple[date, date]]]:
    """[start, end] as the fewest rows to read: whole months (their first days) and day ranges
    added, and day ranges subtracted. Days left over in a month are read as that month less
    its other days when those are fewer (8 December to 31 December: December less 1 to 7
    December), so a period never reads more than half a month of daily rows at either end."""
    months, ranges = split_period(start, end)
    added: list[tuple[date, date]] = []
    subtracted: list[tuple[date, date]] = []
    pieces = []
    for low, high in ranges:  # each within one month (a range may span two without months)
        while low <= high:
            last = _month_bounds(low)[1]
            pieces.append((low, min(high, last)))
            low = last + timedelta(days=1)
    for low, high in pieces:
        first, last = _month_bounds(low)
        inside = (high - low).days + 1
        if (last - first).days + 1 - inside < inside:
            months.append(first)
            if first < low:
                subtracted.append((first, low - timedelta(days=1)))
            if high < last:
                subtracted.append((high + timedelta(days=1), last))
        else:
            added.append((low, high))
    return sorted(months), added, subtracted
