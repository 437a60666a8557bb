"""The calendar pass really moves the clock the services read (see pathways_shared.testing)."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pathways_shared.events import utc_now
from pathways_shared.testing import calendar_clock

MOVED = calendar_clock()


def _kernel_now(folder: Path) -> datetime:
    """The machine's own clock, which the in-process clock does not move: a new file's mtime."""
    marker = folder / "now"
    marker.write_text("")
    return datetime.fromtimestamp(marker.stat().st_mtime, UTC)


def test_the_code_reads_the_clock_of_its_pass(tmp_path: Path) -> None:
    now = utc_now()
    kernel = _kernel_now(tmp_path)
    if MOVED is None:
        # the real-clock pass: the code reads the machine's clock
        assert abs(kernel - now) < timedelta(seconds=5)
    else:
        # the calendar pass: the session started at MOVED and the clock ticks on from there,
        # far from the machine's own clock
        assert MOVED <= now < MOVED + timedelta(hours=1)
        assert abs(kernel - now) > timedelta(days=1)
        assert datetime.now(UTC) - now < timedelta(seconds=5)
        assert date.today() in {MOVED.date(), (MOVED + timedelta(hours=1)).date()}
