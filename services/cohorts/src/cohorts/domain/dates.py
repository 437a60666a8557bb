"""Calendar arithmetic the selection rules rest on: 'N years/months before' (ages:
`pathways_shared.clock.age_on`)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from pathways_shared.clock import age_on  # noqa: F401  (the selection rules' ages)


def shift_months(day: date, months: int) -> date:
    """The same day of the month `months` later (negative: earlier), clamped to the month end."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def shift_years(day: date, years: int) -> date:
    return shift_months(day, 12 * years)


def first_day_of_years_before(as_of: date, years: int) -> date:
    """First day of the period 'the N years before `as_of`', which ends on `as_of` itself.

    The period starts the day after the anniversary, so that it holds exactly N years of days:
    for 2026-11-24 and 3 years, 2023-11-25 to 2026-11-24 inclusive. An offence on the
    anniversary itself (2023-11-24) is outside.
    """
    return shift_years(as_of, -years) + timedelta(days=1)


def first_day_of_months_before(as_of: date, months: int) -> date:
    return shift_months(as_of, -months) + timedelta(days=1)
