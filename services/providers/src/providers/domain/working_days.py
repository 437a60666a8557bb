"""Working days and deadlines: the pure calendar lives in the shared package (insights counts
working days too); re-exported here so the providers service keeps one import path."""

from pathways_shared.working_days import (  # noqa: F401
    END_OF_DAY,
    LONDON,
    SATURDAY,
    WorkingCalendar,
    end_of_london_day,
    england_and_wales_bank_holidays,
    london_day,
)
