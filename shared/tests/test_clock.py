"""The one time module: ages across leap days, the London day across midnight and clock
changes, and the ISO form with milliseconds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from pathways_shared.clock import age_on, iso_z, london_day, london_today, utc_now


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # common year: not yet on 28 February
        (date(2008, 2, 29), date(2026, 3, 1), 18),  # ... but on 1 March
        (date(2008, 2, 29), date(2028, 2, 28), 19),  # leap year: the day before
        (date(2008, 2, 29), date(2028, 2, 29), 20),  # ... and on the day itself
        (date(2008, 2, 29), date(2008, 2, 29), 0),
        (date(2000, 3, 1), date(2024, 2, 29), 23),
        (date(2000, 3, 1), date(2024, 3, 1), 24),
        (date(1990, 12, 31), date(2026, 12, 30), 35),
        (date(1990, 12, 31), date(2026, 12, 31), 36),
        (date(1990, 1, 1), date(2026, 1, 1), 36),
    ],
)
def test_age_on_counts_completed_years_across_leap_days(born, day, age):
    assert age_on(born, day) == age


def test_the_london_day_follows_british_summer_time():
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST); in winter London is UTC.
    assert london_day(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 1)
    assert london_day(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == date(2026, 12, 31)
    assert london_day(datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) == date(2026, 3, 29)
    assert london_today(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 1)
    assert london_today() in {london_day(utc_now()), london_day(utc_now() - timedelta(seconds=1))}


def test_a_naive_instant_has_no_london_day():
    with pytest.raises(ValueError):
        london_day(datetime(2026, 6, 30, 12, 0))


def test_instants_are_written_in_utc_with_milliseconds():
    moment = datetime(2026, 6, 30, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert iso_z(moment) == "2026-06-30T22:59:59.123Z"
    assert iso_z(datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)) == "2026-01-05T23:59:59.000Z"
    assert utc_now().tzinfo is UTC


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),  # truncated, never rounded up
        datetime(2026, 2, 28, 0, 0, 0, 1000, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, 0, 999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(987, 7, 4, 12, 3, 4, 5000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_iso_z_writes_what_isoformat_writes(moment):
    """`iso_z` puts the string together from the fields (faster); it must be isoformat's."""
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_z(moment) == expected
