"""The authorisation matrix, generated from each running service's route table (its
`/openapi.json`): every route with every role, no token, an expired token and a token with
a wrong signature; then own-versus-other checks for providers and areas.

`MATRIX` (in `support/authorization.py`) holds the roles that may call each route, from the
role rules of CONTRACT.md. A route the services serve that is not in it fails the test: add it
to the matrix. The access-log and area checks of personal records on every route are in
`test_authorization_records.py`.
"""

from __future__ import annotations

import httpx
import pytest
from support.authorization import (
    BIRMINGHAM,
    MATRIX,
    NATIONAL_ONLY,
    ROLES,
    SOLIHULL,
    call,
    is_public,
    new_crn,
    referral_body,
    routes_of,
    token_headers,
)

from pathways_shared.testing import auth, wait_until

pytestmark = pytest.mark.timeout(240)

async def test_every_route_and_every_role(system):
    problems: list[str] = []
    checked = 0
    async with httpx.AsyncClient(timeout=20) as client:
        routes = await routes_of(client, system)
        missing = [r for r in routes if not is_public(r[2]) and r not in MATRIX]
        assert missing == [], f"routes not in the authorisation matrix (add them to MATRIX): {missing}"
        stale = sorted(set(MATRIX) - set(routes))
        assert stale == [], f"MATRIX lists routes the services no longer serve: {stale}"

        for service, method, path in routes:
            base = system.url(service)
            if is_public(path):
                r = await call(client, base, method, path, {})
                if r.status_code not in (200, 503):
                    problems.append(f"{service} {method} {path} public: {r.status_code}")
                continue
            allowed = MATRIX[(service, method, path)]
            for kind in ["none", "expired", "wrong-signature"]:
                r = await call(client, base, method, path, token_headers(kind))
                checked += 1
                if r.status_code != 401:
                    problems.append(f"{service} {method} {path} {kind}: {r.status_code} (want 401)")
                elif not r.headers.get("content-type", "").startswith("application/problem+json"):
                    problems.append(f"{service} {method} {path} {kind}: 401 not problem+json")
            for role in ROLES:
                r = await call(client, base, method, path, token_headers(role))
                checked += 1
                if role in allowed:
                    if r.status_code in (401, 403) or r.status_code >= 500:
                        problems.append(f"{service} {method} {path} {role}: {r.status_code} "
                                        f"(allowed) {r.text[:200]}")
                elif r.status_code != 403:
                    problems.append(f"{service} {method} {path} {role}: {r.status_code} (want 403)")
    assert problems == [], "\n".join(problems)
    assert checked > 400


async def test_area_limited_tokens_are_limited_on_every_route(system):
    """Every route, every role allowed on it, with a token limited to one area: routes of
    national work refuse it (403), the others answer it without a 401 or a 5xx."""
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=20) as client:
        routes = await routes_of(client, system)
        assert NATIONAL_ONLY <= set(routes), sorted(NATIONAL_ONLY - set(routes))
        for service, method, path in routes:
            if is_public(path):
                continue
            for role in sorted(MATRIX[(service, method, path)]):
                headers = auth(role, sub=f"area-{role}", areas=[BIRMINGHAM],
                               provider="NACRO" if role == "provider" else None)
                r = await call(client, system.url(service), method, path, headers)
                if (service, method, path) in NATIONAL_ONLY:
                    if r.status_code != 403:
                        problems.append(f"{service} {method} {path} {role}@{BIRMINGHAM}: "
                                        f"{r.status_code} (want 403)")
                elif r.status_code == 401 or r.status_code >= 500:
                    problems.append(f"{service} {method} {path} {role}@{BIRMINGHAM}: "
                                    f"{r.status_code} {r.text[:200]}")
        # and with a real subject: an area-limited admin gets no other area's data
        for service in ("referrals", "providers", "cohorts", "notifications", "insights"):
            r = await client.get(f"{system.url(service)}/subject-access-requests",
                                 params={"crn": "S391957"},
                                 headers=auth("admin", sub="area-admin", areas=[SOLIHULL]))
            if r.status_code != 403:
                problems.append(f"{service} subject access, admin@{SOLIHULL}: {r.status_code}")
    assert problems == [], "\n".join(problems)


async def test_a_provider_sees_only_its_own_referrals(system):
    probation = auth("probation", sub="matrix.officer")
    nacro = auth("provider", provider="NACRO", sub="nacro-matrix")
    maximus = auth("provider", provider="MAXIMUS", sub="maximus-matrix")
    providers = system.url("providers")
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.post(f"{system.url('referrals')}/referrals", json=referral_body(new_crn()),
                              headers=probation)
        assert r.status_code == 201, r.text
        referral_id = r.json()["id"]

        async def in_nacro_inbox():
            r = await client.get(f"{providers}/provider-referrals", headers=nacro, params={"limit": 200})
            assert r.status_code == 200, r.text
            return next((e for e in r.json()["data"] if e["referral_id"] == referral_id), None)

        entry = await wait_until(in_nacro_inbox, timeout=30)
        own = f"{providers}/provider-referrals/{entry['id']}"
        assert (await client.get(own, headers=nacro)).status_code == 200
        # another provider: not found, whatever it tries
        assert (await client.get(own, headers=maximus)).status_code == 404
        for action, body in [("acknowledge", {}), ("accept", {}),
                             ("decline", {"reason_code": "capacity", "comments": "full"}),
                             ("start", {}), ("complete", {"outcome": "achieved", "notes": "x"})]:
            r = await client.post(f"{own}/{action}", json=body, headers=maximus)
            assert r.status_code == 404, (action, r.status_code, r.text)
        r = await client.get(f"{providers}/provider-referrals", headers=maximus, params={"limit": 200})
        assert all(e["referral_id"] != referral_id for e in r.json()["data"])
        # a provider user without a provider claim sees nothing
        r = await client.get(f"{providers}/provider-referrals", headers=auth("provider", sub="nobody"))
        assert r.status_code in (403, 404) or r.json()["data"] == [], r.text
        # and the referral itself is not the provider's to read in the referrals service
        r = await client.get(f"{system.url('referrals')}/referrals/{referral_id}", headers=nacro)
        assert r.status_code == 403
        # nothing was changed by the other provider
        r = await client.get(own, headers=nacro)
        assert r.json()["status"] == "allocated"


async def test_probation_with_areas_sees_only_its_areas(system):
    probation = auth("probation", sub="matrix.officer")
    solihull = auth("probation", sub="solihull.officer", areas=[SOLIHULL])
    birmingham = auth("probation", sub="brum.officer", areas=[BIRMINGHAM])
    referrals = system.url("referrals")
    crn = new_crn()
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.post(f"{referrals}/referrals", json=referral_body(crn), headers=probation)
        assert r.status_code == 201, r.text
        referral_id = r.json()["id"]

        assert (await client.get(f"{referrals}/referrals/{referral_id}", headers=solihull)).status_code == 200
        r = await client.get(f"{referrals}/referrals", headers=solihull, params={"crn": crn})
        assert [x["id"] for x in r.json()["data"]] == [referral_id]

        for url in (f"{referrals}/referrals/{referral_id}", f"{referrals}/referrals/{referral_id}/history"):
            r = await client.get(url, headers=birmingham)
            assert r.status_code in (403, 404), (url, r.status_code)
        r = await client.post(f"{referrals}/referrals/{referral_id}/withdraw", headers=birmingham,
                              json={"reason_code": "other", "comments": "not mine"})
        assert r.status_code in (403, 404), r.text
        for params in ({"crn": crn}, {"area": SOLIHULL}, {}):
            r = await client.get(f"{referrals}/referrals", headers=birmingham, params=params)
            assert r.status_code in (200, 403, 422), r.text
            if r.status_code == 200:
                assert all(x["area"] == BIRMINGHAM for x in r.json()["data"]), params
                assert referral_id not in {x["id"] for x in r.json()["data"]}
        # submitting for an area that is not the caller's
        r = await client.post(f"{referrals}/referrals", json=referral_body(new_crn()), headers=birmingham)
        assert r.status_code in (403, 404, 422), r.text
        # still open and untouched
        r = await client.get(f"{referrals}/referrals/{referral_id}", headers=probation)
        assert r.json()["status"] == "open"


async def test_police_and_panel_with_areas_see_only_their_areas_cohorts(system):
    cohorts = system.url("cohorts")
    panel = auth("iom_panel", sub="solihull-panel", areas=[SOLIHULL])
    police = auth("police", sub="solihull-police", areas=[SOLIHULL])
    other_police = auth("police", sub="brum-police", areas=[BIRMINGHAM])
    other_panel = auth("iom_panel", sub="brum-panel", areas=[BIRMINGHAM])
    crn = new_crn()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{cohorts}/nominals/{crn}", headers=panel, json={
            "area": SOLIHULL, "date_of_birth": "1994-07-08", "supervision_status": "licence",
            "mappa_level": None, "pnc_number": None})
        assert r.status_code in (200, 201), r.text
        r = await client.post(f"{cohorts}/nominals/{crn}/offences", headers=panel, json={"offences": [
            {"offence_date": "2026-10-01", "category": "burglary_domestic", "description": "x"}]})
        assert r.status_code in (200, 201), r.text
        r = await client.post(f"{cohorts}/cohorts/{SOLIHULL}/members", headers=panel, json={
            "crn": crn, "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"})
        assert r.status_code in (200, 201), r.text
        r = await client.post(f"{cohorts}/selection-runs", headers=panel,
                              json={"area": SOLIHULL, "as_of": "2026-11-20"})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        # their own area: seen
        r = await client.get(f"{cohorts}/cohorts/{SOLIHULL}/members", headers=police, params={"limit": 200})
        assert r.status_code == 200 and crn in {m["crn"] for m in r.json()["data"]}, r.text
        assert (await client.get(f"{cohorts}/nominals/{crn}", headers=police)).status_code == 200
        assert (await client.get(f"{cohorts}/selection-runs/{run_id}", headers=police)).status_code == 200

        # another area's: refused, hidden or empty
        for headers in (other_police, other_panel):
            for url in (f"{cohorts}/cohorts/{SOLIHULL}/members", f"{cohorts}/cohorts/{SOLIHULL}/members/{crn}",
                        f"{cohorts}/cohorts/{SOLIHULL}/deselection-suggestions",
                        f"{cohorts}/nominals/{crn}", f"{cohorts}/nominals/{crn}/offences",
                        f"{cohorts}/nominals/{crn}/assessment", f"{cohorts}/selection-runs/{run_id}"):
                r = await client.get(url, headers=headers)
                assert r.status_code in (403, 404), (url, r.status_code, r.text[:300])
            r = await client.get(f"{cohorts}/selection-runs", headers=headers, params={"limit": 200})
            assert r.status_code in (200, 403, 404), r.text
            if r.status_code == 200:
                assert all(run["area"] != SOLIHULL for run in r.json()["data"]), r.text
            r = await client.get(f"{cohorts}/selection-runs", headers=headers, params={"area": SOLIHULL})
            assert r.status_code in (403, 404) or r.json()["data"] == [], r.text
        # and the other area's panel cannot act on this area's members
        for url, body in [
            (f"{cohorts}/cohorts/{SOLIHULL}/members",
             {"crn": crn, "cohort": "free", "decided_by": "x", "rationale": "y"}),
            (f"{cohorts}/cohorts/{SOLIHULL}/members/{crn}/deselect",
             {"reason": "panel_decision", "decided_by": "x"}),
            (f"{cohorts}/selection-runs", {"area": SOLIHULL, "as_of": "2026-11-20"}),
        ]:
            r = await client.post(url, headers=other_panel, json=body)
            assert r.status_code in (403, 404), (url, r.status_code, r.text[:300])
        r = await client.put(f"{cohorts}/nominals/{crn}", headers=other_police, json={
            "area": SOLIHULL, "date_of_birth": "1994-07-08", "supervision_status": "licence",
            "mappa_level": None, "pnc_number": None})
        assert r.status_code in (403, 404), r.text
        # the member is still a member
        r = await client.get(f"{cohorts}/cohorts/{SOLIHULL}/members/{crn}", headers=police)
        assert r.status_code == 200, r.text


# GET routes that answer nobody's personal records (reference data, policies, subscriptions,
# aggregate figures): not access-logged. Every other read must be.
