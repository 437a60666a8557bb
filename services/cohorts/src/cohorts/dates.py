"""Calendar arithmetic the selection rules rest on: ages, and 'N years/months before'."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def age_on(date_of_birth: date, day: date) -> int:
    """Completed years on `day`. Someone born on 29 February turns a year older on 1 March
    in common years (the anniversary has not yet come on 28 February)."""
    before_birthday = (day.month, day.day) < (date_of_birth.month, date_of_birth.day)
    return day.year - date_of_birth.year - int(before_birthday)


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
