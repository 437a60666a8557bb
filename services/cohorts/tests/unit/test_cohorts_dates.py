from datetime import date

import pytest

from cohorts.domain.dates import (
    age_on,
    first_day_of_months_before,
    first_day_of_years_before,
    shift_months,
)


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2008, 11, 24), date(2026, 11, 24), 18),  # 18th birthday today
        (date(2008, 11, 25), date(2026, 11, 24), 17),  # 18th birthday tomorrow
        (date(2001, 11, 24), date(2026, 11, 24), 25),
        (date(2001, 11, 25), date(2026, 11, 24), 24),
        (date(2000, 2, 29), date(2025, 2, 28), 24),  # leapling: not yet in a common year
        (date(2000, 2, 29), date(2025, 3, 1), 25),
        (date(2000, 2, 29), date(2024, 2, 29), 24),
        (date(1990, 12, 31), date(2026, 1, 1), 35),
    ],
)
def test_age_on_counts_completed_years(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
        (date(2026, 1, 15), -1, date(2025, 12, 15)),
        (date(2026, 11, 24), -12, date(2025, 11, 24)),
        (date(2026, 11, 24), 3, date(2027, 2, 24)),
        (date(2028, 2, 29), -36, date(2025, 2, 28)),
    ],
)
def test_shift_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert shift_months(day, months) == expected


@pytest.mark.parametrize(
    ("as_of", "years", "first"),
    [
        (date(2026, 11, 24), 3, date(2023, 11, 25)),
        (date(2026, 11, 24), 2, date(2024, 11, 25)),
        (date(2028, 2, 29), 3, date(2025, 3, 1)),
        (date(2026, 1, 1), 1, date(2025, 1, 2)),
    ],
)
def test_the_n_years_before_start_the_day_after_the_anniversary(
    as_of: date, years: int, first: date
) -> None:
    assert first_day_of_years_before(as_of, years) == first


def test_the_months_before_start_the_day_after_the_monthiversary() -> None:
    assert first_day_of_months_before(date(2026, 11, 24), 12) == date(2025, 11, 25)
