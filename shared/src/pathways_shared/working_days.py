"""Working days in England and Wales, and the service-level deadlines built on them.

CONTRACT.md: a deadline of N working days falls at the end (23:59:59 Europe/London, given in
UTC) of the Nth working day after the day of allocation; working days exclude weekends and the
bank holidays of England and Wales. The bank holidays come from the maintained `holidays`
library (England and Wales share one list), never from a hand-written one.

A pure calendar (no clock reads), shared because two services count working days: providers
sets service-level deadlines with it, insights measures the time taken against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import holidays

from pathways_shared.clock import LONDON, london_day

END_OF_DAY = time(23, 59, 59)
SATURDAY = 5


def end_of_london_day(day: date) -> datetime:
    """23:59:59 Europe/London of `day`, in UTC."""
    return datetime.combine(day, END_OF_DAY, tzinfo=LONDON).astimezone(UTC)


def england_and_wales_bank_holidays() -> Callable[[date], bool]:
    bank_holidays = holidays.country_holidays("GB", subdiv="ENG")
    return lambda day: day in bank_holidays


@dataclass(frozen=True)
class WorkingCalendar:
    """Which days are working days: not a weekend, not a bank holiday."""

    is_bank_holiday: Callable[[date], bool] = field(default_factory=england_and_wales_bank_holidays)

    @classmethod
    def with_holidays(cls, days: Iterable[date]) -> WorkingCalendar:
        """A calendar with a given list of bank holidays (for tests and what-ifs)."""
        fixed = frozenset(days)
        return cls(is_bank_holiday=fixed.__contains__)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < SATURDAY and not self.is_bank_holiday(day)

    def nth_working_day_after(self, day: date, n: int) -> date:
        """The Nth working day strictly after `day` (n >= 1)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        found = 0
        current = day
        while found < n:
            current += timedelta(days=1)
            if self.is_working_day(current):
                found += 1
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Whole working days after `start` up to and including `end` (0 when `end` <= `start`)."""
        count = 0
        current = start
        while current < end:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count += 1
        return count

    def deadline(self, allocated_at: datetime, working_days: int) -> datetime:
        """End of the Nth working day after the London day of `allocated_at`, in UTC."""
        return end_of_london_day(self.nth_working_day_after(london_day(allocated_at), working_days))
