"""Working days in England and Wales and the service-level deadlines (CONTRACT.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from providers.domain.working_days import WorkingCalendar, end_of_london_day, london_day

CALENDAR = WorkingCalendar()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 24), True),  # Tuesday
        (date(2026, 11, 28), False),  # Saturday
        (date(2026, 11, 29), False),  # Sunday
        (date(2026, 12, 25), False),  # Christmas Day, Friday
        (date(2026, 12, 28), False),  # Boxing Day (substitute), Monday
        (date(2026, 12, 29), True),
        (date(2027, 1, 1), False),  # New Year's Day
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 6), False),  # Easter Monday
        (date(2026, 5, 4), False),  # Early May bank holiday
        (date(2026, 5, 25), False),  # Spring bank holiday
        (date(2026, 8, 31), False),  # Summer bank holiday (England and Wales)
        (date(2026, 8, 3), True),  # Scotland's summer bank holiday is not one here
        (date(2026, 3, 17), True),  # St Patrick's Day: Northern Ireland only
        (date(2026, 11, 30), True),  # St Andrew's Day: Scotland only
        (date(2027, 12, 27), False),  # Christmas Day (substitute) 2027
        (date(2027, 12, 28), False),  # Boxing Day (substitute) 2027
        (date(2028, 2, 29), True),  # a leap day, Tuesday
        (date(2027, 3, 26), False),  # Good Friday 2027
        (date(2027, 3, 29), False),  # Easter Monday 2027, the day after the clocks go forward
        (date(2027, 5, 3), False),  # Early May bank holiday 2027
    ],
)
def test_working_days_of_england_and_wales(day: date, working: bool) -> None:
    assert CALENDAR.is_working_day(day) is working


@pytest.mark.parametrize(
    ("allocated_at", "days", "deadline"),
    [
        # Thursday 24 December 2026: Christmas, the weekend and Boxing Day (substitute) skipped
        (utc(2026, 12, 24, 10, 0), 2, utc(2026, 12, 30, 23, 59, 59)),
        (utc(2026, 12, 24, 10, 0), 5, utc(2027, 1, 5, 23, 59, 59)),
        # an ordinary Tuesday in winter (GMT)
        (utc(2026, 11, 24, 9, 0), 1, utc(2026, 11, 25, 23, 59, 59)),
        (utc(2026, 11, 24, 9, 0), 2, utc(2026, 11, 26, 23, 59, 59)),
        (utc(2026, 11, 24, 9, 0), 5, utc(2026, 12, 1, 23, 59, 59)),
        # Friday: the weekend does not count
        (utc(2026, 11, 27, 16, 0), 1, utc(2026, 11, 30, 23, 59, 59)),
        # allocated on a Saturday: the first working day after is Monday
        (utc(2026, 11, 28, 12, 0), 1, utc(2026, 11, 30, 23, 59, 59)),
        (utc(2026, 11, 28, 12, 0), 2, utc(2026, 12, 1, 23, 59, 59)),
        # summer (BST): 23:59:59 in London is 22:59:59 UTC
        (utc(2026, 7, 1, 9, 0), 2, utc(2026, 7, 3, 22, 59, 59)),
        # 23:30 UTC on 30 June is 00:30 on 1 July in London: the day of allocation is 1 July
        (utc(2026, 6, 30, 23, 30), 2, utc(2026, 7, 3, 22, 59, 59)),
        (utc(2026, 6, 30, 22, 59), 2, utc(2026, 7, 2, 22, 59, 59)),
        # Easter 2026: Good Friday 3 April and Easter Monday 6 April skipped
        (utc(2026, 4, 2, 9, 0), 2, utc(2026, 4, 8, 22, 59, 59)),
        # the deadline falls after the clocks go back (25 October 2026)
        (utc(2026, 10, 23, 9, 0), 2, utc(2026, 10, 27, 23, 59, 59)),
        # allocated in BST, deadline in BST, across the spring bank holiday
        (utc(2026, 5, 22, 9, 0), 1, utc(2026, 5, 26, 22, 59, 59)),
        # a leap day is a working day like another (Tuesday 29 February 2028)
        (utc(2028, 2, 28, 9, 0), 1, utc(2028, 2, 29, 23, 59, 59)),
        (utc(2028, 2, 29, 9, 0), 2, utc(2028, 3, 2, 23, 59, 59)),
        # month ends: February of a common year, January, and April into the May bank holiday
        (utc(2027, 2, 26, 9, 0), 1, utc(2027, 3, 1, 23, 59, 59)),
        (utc(2028, 1, 31, 9, 0), 1, utc(2028, 2, 1, 23, 59, 59)),
        (utc(2027, 4, 30, 9, 0), 1, utc(2027, 5, 4, 22, 59, 59)),
        # the clocks go forward on Easter Sunday 2027 (28 March, 01:00 UTC): Good Friday and
        # Easter Monday skipped, the deadline ends at 23:59:59 BST
        (utc(2027, 3, 26, 12, 0), 1, utc(2027, 3, 30, 22, 59, 59)),
        (utc(2027, 3, 27, 23, 59), 1, utc(2027, 3, 30, 22, 59, 59)),  # Saturday, still GMT
        (utc(2027, 3, 28, 1, 30), 1, utc(2027, 3, 30, 22, 59, 59)),  # 02:30 BST, just after
        # the clocks go back on 31 October 2027: allocated in BST, the deadline in GMT
        (utc(2027, 10, 29, 9, 0), 1, utc(2027, 11, 1, 23, 59, 59)),
        (utc(2027, 10, 31, 0, 30), 1, utc(2027, 11, 1, 23, 59, 59)),  # the first 01:30 BST
        # Christmas 2027 falls on a Saturday: both substitute days skipped
        (utc(2027, 12, 24, 9, 0), 1, utc(2027, 12, 29, 23, 59, 59)),
    ],
)
def test_deadline_is_end_of_nth_working_day_after_allocation(
    allocated_at: datetime, days: int, deadline: datetime
) -> None:
    result = CALENDAR.deadline(allocated_at, days)
    assert result == deadline
    assert result.tzinfo == UTC


def test_deadline_accepts_any_aware_time_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    # 08:00 in Tokyo on 25 Nov is 23:00 UTC on 24 Nov, which is 24 Nov in London
    assert CALENDAR.deadline(datetime(2026, 11, 25, 8, 0, tzinfo=tokyo), 1) == utc(
        2026, 11, 25, 23, 59, 59
    )


def test_deadline_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="time zone"):
        CALENDAR.deadline(datetime(2026, 11, 24, 9, 0), 2)


@pytest.mark.parametrize("days", [0, -1])
def test_deadline_needs_at_least_one_working_day(days: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CALENDAR.deadline(utc(2026, 11, 24, 9, 0), days)


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (utc(2026, 6, 30, 23, 0), date(2026, 7, 1)),
        (utc(2026, 6, 30, 22, 59, 59), date(2026, 6, 30)),
        (utc(2026, 12, 31, 23, 59, 59), date(2026, 12, 31)),
        (utc(2026, 3, 29, 0, 30), date(2026, 3, 29)),
        # around the spring change of 2027 (01:00 UTC on 28 March)
        (utc(2027, 3, 27, 23, 59, 59), date(2027, 3, 27)),  # GMT: the same day as UTC
        (utc(2027, 3, 28, 22, 59, 59), date(2027, 3, 28)),
        (utc(2027, 3, 28, 23, 0), date(2027, 3, 29)),  # BST: London is an hour ahead
        # around the autumn change (01:00 UTC on 31 October 2027)
        (utc(2027, 10, 30, 23, 0), date(2027, 10, 31)),  # BST
        (utc(2027, 10, 31, 23, 0), date(2027, 10, 31)),  # GMT again
        # month and year ends, leap day
        (utc(2028, 2, 28, 23, 59, 59), date(2028, 2, 28)),
        (utc(2028, 2, 29, 23, 59, 59), date(2028, 2, 29)),
        (utc(2028, 6, 30, 23, 30), date(2028, 7, 1)),
    ],
)
def test_london_day(moment: datetime, day: date) -> None:
    assert london_day(moment) == day


@pytest.mark.parametrize(
    ("day", "end"),
    [
        (date(2026, 1, 15), utc(2026, 1, 15, 23, 59, 59)),
        (date(2026, 7, 15), utc(2026, 7, 15, 22, 59, 59)),
        (date(2026, 3, 29), utc(2026, 3, 29, 22, 59, 59)),  # the day the clocks go forward
        (date(2026, 10, 25), utc(2026, 10, 25, 23, 59, 59)),  # the day the clocks go back
        (date(2027, 3, 27), utc(2027, 3, 27, 23, 59, 59)),  # the last day of GMT
        (date(2027, 3, 28), utc(2027, 3, 28, 22, 59, 59)),  # the clocks go forward
        (date(2028, 2, 29), utc(2028, 2, 29, 23, 59, 59)),
    ],
)
def test_end_of_london_day(day: date, end: datetime) -> None:
    assert end_of_london_day(day) == end


def test_a_calendar_with_given_holidays() -> None:
    calendar = WorkingCalendar.with_holidays([date(2026, 11, 25)])
    assert not calendar.is_working_day(date(2026, 11, 25))
    assert calendar.is_working_day(date(2026, 12, 25))
    assert calendar.deadline(utc(2026, 11, 24, 9, 0), 1) == utc(2026, 11, 26, 23, 59, 59)
