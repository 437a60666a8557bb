"""A cohort membership's personal data erased once the person was deselected and the period
has passed (issue 18; DOMAIN.md, "Keeping data no longer than necessary")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import select

from cohorts.erasure import ERASERS
from cohorts.models import MembershipRecord
from pathways_shared.clock import utc_now
from pathways_shared.erasure import ErasureRecord, erase_personal_data
from pathways_shared.infra_models import AccessLog

SOLIHULL = "E08000029"


async def erase(app: Any, days_after: int) -> dict[str, int]:
    runtime = app.state.runtime
    return await erase_personal_data(
        runtime.sessionmaker, ERASERS, runtime.settings, utc_now() + timedelta(days=days_after))


async def test_a_deselected_membership_is_erased_after_the_period_and_not_before(
    app: Any, client: httpx.AsyncClient, seed: Any, panel: dict, admin: dict
) -> None:
    for crn in ("X500001", "X500002"):
        await seed(crn, dob="2004-01-01", offences=[(10, "burglary_domestic")] * 8)
        adopted = await client.post(
            f"/cohorts/{SOLIHULL}/members",
            json={"crn": crn, "cohort": "fixed", "decided_by": "Panel",
                  "rationale": "Prolific burglar, known to Sam Example"},
            headers=panel)
        assert adopted.status_code == 201, adopted.text
    gone = await client.post(
        f"/cohorts/{SOLIHULL}/members/X500001/deselect",
        json={"reason": "moved_out_of_area", "decided_by": "Panel", "comments": "Moved to Leeds"},
        headers=panel)
    assert gone.status_code == 200, gone.text
    period = app.state.runtime.settings.erase_personal_data_after_days

    assert await erase(app, period - 1) == {"cohort-membership": 0}
    assert await erase(app, period + 1) == {"cohort-membership": 1}
    assert await erase(app, period + 2) == {"cohort-membership": 0}

    async with app.state.runtime.sessionmaker() as session:
        rows = {r.id: r for r in (await session.exec(select(MembershipRecord))).all()}
        [erased] = [r for r in rows.values() if r.erased_at is not None]
        assert (erased.crn, erased.rationale, erased.criteria_reasons,
                erased.deselection_comments) == (None, None, [], None)
        assert (erased.status, erased.cohort, erased.deselection_reason) == (
            "deselected", "fixed", "moved_out_of_area")
        [kept] = [r for r in rows.values() if r.erased_at is None]
        assert (kept.crn, kept.status) == ("X500002", "active")
        [logged] = (await session.exec(select(AccessLog).where(AccessLog.action == "erasure"))).all()
        assert (logged.actor, logged.resource, logged.crn) == (
            "system:erasure", f"cohort-membership/{erased.id}", None)
        [register] = (await session.exec(select(ErasureRecord))).all()
        for row in (logged, register):
            text = " ".join(str(v) for v in row.model_dump().values())
            assert "X500001" not in text and "Leeds" not in text and "Sam" not in text

    listed = await client.get(f"/cohorts/{SOLIHULL}/members", params={"status": "all"},
                              headers=panel)
    assert [m["crn"] for m in listed.json()["data"]] == ["X500002"]
    sar = (await client.get("/subject-access-requests", params={"crn": "X500001"},
                            headers=admin)).json()
    assert sar["memberships"] == []
    [erasure] = sar["erasures"]
    assert (erasure["record_type"], erasure["record_id"]) == ("cohort-membership", erased.id)
    assert "rationale" in erasure["fields"] and erasure["erased_at"].endswith("Z")
