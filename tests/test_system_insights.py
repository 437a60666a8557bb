"""The partnership's figures follow real referrals through the whole system: submitted by
probation, routed by providers (an unmet need with its structured reason), projected by the
insights service from the streams, read by a partnership analyst of that area only."""

from __future__ import annotations

import uuid

import httpx

from pathways_shared.testing import auth, wait_until

WOLVERHAMPTON, BIRMINGHAM = "E08000031", "E08000025"
PROBATION = auth("probation", sub="alex.officer")
ANALYST = auth("partnership", sub="csp-analyst", areas=[WOLVERHAMPTON])


def body(n: int) -> dict:
    return {
        "source_reference": f"INSIGHTS-{uuid.uuid4().hex[:10]}",
        "area": WOLVERHAMPTON,
        "person": {"crn": "W" + str(uuid.uuid4().int)[:6], "noms_number": None, "pnc_number": None,
                   "given_name": "Sam", "family_name": "Example", "date_of_birth": "1990-04-01",
                   "sex": "male", "needs_interpreter": False, "interpreter_language": None},
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "medium", "mappa_level": None},
        "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example",
                         "team": "Wolverhampton OMU"},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": [
            {"pathway": "accommodation", "complexity": "medium", "details": f"NFA {n}",
             "flags": ["at_risk_of_homelessness"]},
            # SIAS serves Solihull only: no service for drugs and alcohol in Wolverhampton
            {"pathway": "drugs_alcohol", "complexity": "high", "details": "Alcohol"},
        ],
    }


async def test_the_partnership_sees_the_figures_of_its_area(system):
    insights = system.url("insights")
    async with httpx.AsyncClient(timeout=20) as client:
        for n in range(6):
            r = await client.post(f"{system.url('referrals')}/referrals", json=body(n), headers=PROBATION)
            assert r.status_code == 201, r.text

        async def counted():
            r = await client.get(f"{insights}/figures/needs", headers=ANALYST,
                                 params={"by": "pathway"})
            assert r.status_code == 200, r.text
            rows = {row["pathway"]: row for row in r.json()["rows"]}
            accommodation = rows.get("accommodation", {})
            return r.json() if (accommodation.get("allocated") or 0) >= 6 else None

        needs = await wait_until(counted, timeout=60)
        assert needs["areas"] == [WOLVERHAMPTON]
        rows = {row["pathway"]: row for row in needs["rows"]}
        assert rows["accommodation"]["submitted"] >= 6
        assert rows["drugs_alcohol"]["unallocated"] >= 6

        unmet = (await client.get(f"{insights}/figures/unmet-need", headers=ANALYST,
                                  params={"by": "reason"})).json()
        assert {row["reason"]: row["unallocated"] for row in unmet["rows"]}.get("no_service", 0) >= 6

        duty = await wait_until(lambda: _duty(client, insights), timeout=60)
        assert duty["accommodation_at_risk"] >= 6

        refused = await client.get(f"{insights}/figures/needs", headers=ANALYST,
                                   params={"area": BIRMINGHAM})
        assert refused.status_code == 403
        csv = await client.get(f"{insights}/figures/needs", headers=ANALYST,
                               params={"by": "pathway", "format": "csv"})
        assert csv.text.splitlines()[0].startswith("pathway,submitted,allocated")


async def _duty(client, insights):
    r = await client.get(f"{insights}/figures/duty-to-refer", headers=ANALYST)
    total = r.json()["total"]
    return total if (total["duty_to_refer_sent"] or 0) >= 6 else None
