"""The calendar pass really moves the clock the services read (see pathways_shared.testing)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from pathways_shared.events import utc_now
from pathways_shared.testing import calendar_clock

MOVED = calendar_clock()


@pytest.mark.skipif(MOVED is None, reason="runs in the calendar pass (PATHWAYS_TEST_CLOCK)")
def test_the_calendar_pass_moves_the_clock_the_code_reads() -> None:
    assert MOVED is not None
    now = utc_now()
    # the session started at MOVED and the clock ticks on from there
    assert MOVED <= now < MOVED + timedelta(hours=1)
    assert datetime.now(UTC) - now < timedelta(seconds=5)
    assert date.today() in {MOVED.date(), (MOVED + timedelta(hours=1)).date()}
