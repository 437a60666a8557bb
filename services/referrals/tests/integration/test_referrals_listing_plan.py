"""Listing stays fast at a million referrals: every filter is served by an index in the
requested order (no sort, no scan of the whole table). The planner is told to avoid
whole-table scans and sorts, as it would on a large table; on a tiny one it would rightly
prefer them."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from pathways_shared.db import make_engine
from referrals.repository import ReferralFilter, list_query

AFTER = (datetime(2026, 11, 24, 10, 0, tzinfo=UTC), UUID(int=1))


@pytest.mark.parametrize(
    ("where", "index"),
    [
        (ReferralFilter(), "ix_referrals_submitted"),
        (ReferralFilter(area="E08000029"), "ix_referrals_area_submitted"),
        (ReferralFilter(crn="X123456"), "ix_referrals_crn_submitted"),
        (ReferralFilter(status="open"), "ix_referrals_status_submitted"),
        (ReferralFilter(pathway="health"), "ix_needs_pathway_referral"),
        (ReferralFilter(provider_code="NACRO"), "ix_needs_provider_referral"),
    ],
)
@pytest.mark.parametrize("after", [None, AFTER])
async def test_each_list_filter_is_served_by_an_index(database_url, where, index, after):
    sql = str(
        list_query(where, limit=51, after=after).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            # As on a large table: no whole-table scans, and a sort only where no index
            # gives the order.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await conn.execute(text(f"SET {setting} = off"))
            plan = "\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {sql}")))
    finally:
        await engine.dispose()
    assert index in plan, plan
    assert "Seq Scan" not in plan, plan
    if where.pathway is None and where.provider_code is None:
        assert "Sort" not in plan, plan
