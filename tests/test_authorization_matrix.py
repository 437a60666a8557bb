"""The authorisation matrix, generated from each running service's route table (its
`/openapi.json`): every route with every role, no token, an expired token and a token with
a wrong signature; then own-versus-other checks for providers and areas.

`MATRIX` holds the roles that may call each route, from the role rules of CONTRACT.md. A
route the services serve that is not in it fails the test: add it to the matrix.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from pathways_shared.auth import mint_token
from pathways_shared.testing import TEST_JWT_SECRET, auth, wait_until

pytestmark = pytest.mark.timeout(240)

ROLES = ["probation", "provider", "police", "iom_panel", "admin", "service", "partnership"]
ALL = frozenset(ROLES)
PUBLIC = "public"
SOLIHULL, BIRMINGHAM = "E08000029", "E08000025"

ADMIN_OPS = {
    ("GET", "/admin/dead-letters"): {"admin"},
    ("POST", "/admin/dead-letters/{dead_letter_id}/replay"): {"admin"},
    ("POST", "/admin/dead-letters/{dead_letter_id}/discard"): {"admin"},
    ("GET", "/subject-access-requests"): {"admin"},
}

# (service, method, path) -> the roles that may call it (any other role: 403)
MATRIX: dict[tuple[str, str, str], set[str] | frozenset[str]] = {
    **{("referrals", m, p): r for (m, p), r in ADMIN_OPS.items()},
    ("referrals", "POST", "/referrals"): {"probation"},
    ("referrals", "GET", "/referrals"): {"probation", "service"},
    ("referrals", "GET", "/referrals/{referral_id}"): {"probation", "service"},
    ("referrals", "GET", "/referrals/{referral_id}/history"): {"probation", "service"},
    ("referrals", "POST", "/referrals/{referral_id}/withdraw"): {"probation"},
    ("referrals", "GET", "/pathways"): ALL,
    **{("providers", m, p): r for (m, p), r in ADMIN_OPS.items()},
    ("providers", "GET", "/providers"): ALL,
    ("providers", "GET", "/providers/{code}"): ALL,
    ("providers", "GET", "/services"): ALL,
    ("providers", "GET", "/services/{code}"): ALL,
    ("providers", "PUT", "/services/{code}"): {"admin"},
    ("providers", "POST", "/eligibility"): {"probation", "admin"},
    ("providers", "GET", "/needs/{need_id}/routing"): {"probation", "admin", "service"},
    ("providers", "GET", "/provider-referrals"): {"provider"},
    ("providers", "GET", "/provider-referrals/{provider_referral_id}"): {"provider"},
    ("providers", "POST", "/provider-referrals/{provider_referral_id}/acknowledge"): {"provider"},
    ("providers", "POST", "/provider-referrals/{provider_referral_id}/accept"): {"provider"},
    ("providers", "POST", "/provider-referrals/{provider_referral_id}/decline"): {"provider"},
    ("providers", "POST", "/provider-referrals/{provider_referral_id}/start"): {"provider"},
    ("providers", "POST", "/provider-referrals/{provider_referral_id}/complete"): {"provider"},
    **{("cohorts", m, p): r for (m, p), r in ADMIN_OPS.items()},
    ("cohorts", "PUT", "/nominals/{crn}"): {"police", "iom_panel", "service"},
    ("cohorts", "GET", "/nominals/{crn}"): {"police", "iom_panel", "service", "admin"},
    ("cohorts", "POST", "/nominals/{crn}/offences"): {"police", "iom_panel", "service"},
    ("cohorts", "GET", "/nominals/{crn}/offences"): {"police", "iom_panel", "service", "admin"},
    ("cohorts", "GET", "/nominals/{crn}/assessment"): {"police", "iom_panel"},
    ("cohorts", "POST", "/offences:import"): {"police", "iom_panel", "service"},
    ("cohorts", "GET", "/offence-imports/{import_id}"): {"police", "iom_panel", "service", "admin"},
    ("cohorts", "GET", "/policies/{area}"): {"admin", "police", "iom_panel"},
    ("cohorts", "PUT", "/policies/{area}"): {"admin"},
    ("cohorts", "POST", "/selection-runs"): {"iom_panel"},
    ("cohorts", "GET", "/selection-runs"): {"police", "iom_panel"},
    ("cohorts", "GET", "/selection-runs/{run_id}"): {"police", "iom_panel"},
    ("cohorts", "POST", "/cohorts/{area}/members"): {"iom_panel"},
    ("cohorts", "GET", "/cohorts/{area}/members"): {"police", "iom_panel"},
    ("cohorts", "GET", "/cohorts/{area}/members/{crn}"): {"police", "iom_panel"},
    ("cohorts", "POST", "/cohorts/{area}/members/{crn}/deselect"): {"iom_panel"},
    ("cohorts", "POST", "/cohorts/{area}/members/{crn}/move"): {"iom_panel"},
    ("cohorts", "GET", "/cohorts/{area}/deselection-suggestions"): {"police", "iom_panel"},
    **{("notifications", m, p): r for (m, p), r in ADMIN_OPS.items()},
    ("notifications", "POST", "/subscriptions"): {"admin", "police"},
    ("notifications", "GET", "/subscriptions"): {"admin", "police"},
    ("notifications", "GET", "/subscriptions/{subscription_id}"): {"admin", "police"},
    ("notifications", "DELETE", "/subscriptions/{subscription_id}"): {"admin", "police"},
    ("notifications", "POST", "/subscriptions/{subscription_id}/enable"): {"admin"},
    ("notifications", "GET", "/notifications"): {"admin", "service"},
    ("notifications", "GET", "/notifications/{notification_id}"): {"admin", "service"},
    **{("insights", m, p): r for (m, p), r in ADMIN_OPS.items()},
    **{("insights", "GET", f"/figures/{kind}"): {"partnership", "admin"}
       for kind in ("needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer")},
}

PATH_VALUES = {
    "area": SOLIHULL, "crn": "Z999999", "code": "NO-SUCH-SERVICE", "dead_letter_id": "999999999",
}


def is_public(path: str) -> bool:
    return path.startswith(("/health/", "/docs")) or path in ("/metrics", "/openapi.json", "/openapi-operator.json")


def concrete(path: str) -> str:
    import re

    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), str(uuid.uuid4())), path)


def token_headers(kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "expired":
        return {"Authorization": "Bearer " + mint_token(TEST_JWT_SECRET, roles=ROLES, sub="late",
                                                          provider="NACRO", ttl_seconds=-120)}
    if kind == "wrong-signature":
        return {"Authorization": "Bearer " + mint_token("not-the-secret-" + "x" * 32, roles=ROLES,
                                                          sub="forger", provider="NACRO")}
    return auth(kind, sub=f"matrix-{kind}", provider="NACRO" if kind == "provider" else None)


async def call(client: httpx.AsyncClient, base: str, method: str, path: str, headers: dict) -> httpx.Response:
    url = base + concrete(path)
    if path == "/offences:import":
        return await client.request(method, url, headers=headers | {"Content-Type": "text/csv"}, content=b"")
    if method in ("POST", "PUT", "PATCH"):
        return await client.request(method, url, headers=headers, json={})
    return await client.request(method, url, headers=headers)


async def routes_of(client: httpx.AsyncClient, system) -> list[tuple[str, str, str]]:
    routes = []
    # the partner's document and the operator's (dead letters, health, metrics)
    documents = ("/openapi.json", "/openapi-operator.json")
    for service, document in ((s, d) for s in system.ports for d in documents):
        r = await client.get(f"{system.url(service)}{document}")
        assert r.status_code == 200, (service, r.text[:300])
        for path, operations in r.json()["paths"].items():
            for method in operations:
                if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    routes.append((service, method.upper(), path))
    return routes


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


# Routes whose answer spans every area: an area-limited token (one with an `areas` claim) is
# refused them (403) whatever its role; national work needs a national token (no `areas`).
NATIONAL_ONLY = {
    *((service, m, p) for service in ("referrals", "providers", "cohorts", "notifications", "insights")
      for (m, p) in ADMIN_OPS),
    ("notifications", "GET", "/notifications"),
    ("notifications", "GET", "/notifications/{notification_id}"),
}


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


def referral_body(crn: str, area: str = SOLIHULL) -> dict:
    return {
        "source_reference": f"MATRIX-{uuid.uuid4().hex[:10]}",
        "area": area,
        "person": {
            "crn": crn, "noms_number": None, "pnc_number": None, "given_name": "Mat",
            "family_name": "Rix", "date_of_birth": "1991-05-06", "sex": "male",
            "needs_interpreter": False, "interpreter_language": None,
        },
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "low", "mappa_level": None},
        "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example", "team": "OMU"},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": [{"pathway": "accommodation", "complexity": "medium", "details": "A room"}],
    }


def new_crn() -> str:
    return "M" + str(uuid.uuid4().int)[:6]


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
NOT_PERSONAL = {
    ("referrals", "GET", "/pathways"),
    ("providers", "GET", "/providers"), ("providers", "GET", "/providers/{code}"),
    ("providers", "GET", "/services"), ("providers", "GET", "/services/{code}"),
    ("cohorts", "GET", "/policies/{area}"),
    ("notifications", "GET", "/subscriptions"),
    ("notifications", "GET", "/subscriptions/{subscription_id}"),
    *(("insights", "GET", f"/figures/{kind}")
      for kind in ("needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer")),
}
# Reads that name people only when they have selected or suggested some (a selection run may
# select nobody; members quiet for a year: none this new): called all the same, and must be
# logged whenever the answer names the person.
NAMES_PEOPLE_SOMETIMES = {
    ("cohorts", "GET", "/cohorts/{area}/deselection-suggestions"),
    ("cohorts", "GET", "/selection-runs"),
    ("cohorts", "GET", "/selection-runs/{run_id}"),
}


async def access_rows(system, service: str, correlation_id: str) -> list[tuple[str, str, str]]:
    import asyncpg

    from pathways_shared.harness import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(system.urls[service]))
    try:
        rows = await conn.fetch(
            "SELECT action, purpose, actor FROM access_log WHERE correlation_id = $1",
            correlation_id)
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def add_dead_letter(system, service: str) -> None:
    """A dead letter as a consumer leaves one (none fails on its own in a healthy system)."""
    import asyncpg

    from pathways_shared.harness import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(system.urls[service]))
    try:
        await conn.execute(
            "INSERT INTO dead_letters (consumer, stream, subject, event_id, payload, headers,"
            " error, deliveries, created_at) VALUES ('matrix', 'PATHWAYS', 'matrix.test',"
            " $1, '{\"crn\": \"M000001\"}', '{}', 'a test', 1, now())", str(uuid.uuid4()))
    finally:
        await conn.close()


async def records_to_read(client: httpx.AsyncClient, system) -> dict[str, str]:
    """Records of every kind a read route answers, made through the services' own routes."""
    probation = auth("probation", sub="log.officer")
    nacro = auth("provider", provider="NACRO", sub="nacro-log")
    panel = auth("iom_panel", sub="log-iom_panel", areas=[SOLIHULL])  # as reader_of reads
    crn = new_crn()
    r = await client.post(f"{system.url('referrals')}/referrals", json=referral_body(crn),
                          headers=probation)
    assert r.status_code == 201, r.text
    referral = r.json()
    providers, cohorts = system.url("providers"), system.url("cohorts")

    async def in_inbox():
        r = await client.get(f"{providers}/provider-referrals", headers=nacro, params={"limit": 200})
        return next((e for e in r.json()["data"] if e["referral_id"] == referral["id"]), None)

    entry = await wait_until(in_inbox, timeout=30)

    async def notified():
        r = await client.get(f"{system.url('notifications')}/notifications", headers=auth("admin"),
                             params={"referral_id": referral["id"]})
        return (r.json()["data"] or [None])[0]

    notification = await wait_until(notified, timeout=30)
    r = await client.put(f"{cohorts}/nominals/{crn}", headers=panel, json={
        "area": SOLIHULL, "date_of_birth": "1994-07-08", "supervision_status": "licence",
        "mappa_level": None, "pnc_number": None})
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"{cohorts}/nominals/{crn}/offences", headers=panel, json={"offences": [
        {"offence_date": "2026-10-01", "category": "burglary_domestic", "description": "x"}]})
    assert r.status_code == 201, r.text
    r = await client.post(f"{cohorts}/cohorts/{SOLIHULL}/members", headers=panel, json={
        "crn": crn, "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"})
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"{cohorts}/selection-runs", headers=panel,
                          json={"area": SOLIHULL, "as_of": "2026-11-20"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    csv = f"crn,offence_date,category,description\n{crn},2026-10-02,theft_other,y\n"
    r = await client.post(f"{cohorts}/offences:import", content=csv.encode(),
                          headers=panel | {"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    for service in system.ports:
        await add_dead_letter(system, service)
    return {
        "crn": crn, "referral_id": referral["id"], "need_id": referral["needs"][0]["id"],
        "provider_referral_id": entry["id"], "notification_id": notification["id"],
        "run_id": run_id, "import_id": r.json()["id"], "area": SOLIHULL,
    }


def reader_of(service: str, method: str, path: str) -> dict[str, str]:
    """A token allowed on the route, for the records `records_to_read` made."""
    allowed = MATRIX[(service, method, path)]
    if "provider" in allowed:
        return auth("provider", provider="NACRO", sub="nacro-log")
    for role in ("probation", "iom_panel", "admin", "service", "police"):
        if role in allowed:
            return auth(role, sub=f"log-{role}")
    raise AssertionError(f"no reader for {path}")


async def test_every_read_of_personal_records_is_access_logged(system):
    """Derived from the route tables: every GET route but the few in NOT_PERSONAL is called
    with a record to read, an X-Purpose and a correlation id of its own, and the service's
    access log must then hold rows of that correlation id with that purpose and an action of
    the shared vocabulary. A new read route fails here until it logs (or is listed above)."""
    from pathways_shared.access import Action

    problems: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        routes = [r for r in await routes_of(client, system)
                  if r[1] == "GET" and not is_public(r[2])]
        assert NOT_PERSONAL <= set(routes), sorted(NOT_PERSONAL - set(routes))
        values = await records_to_read(client, system)
        for service, method, path in routes:
            if (service, method, path) in NOT_PERSONAL:
                continue
            url = system.url(service) + path.format(**{k: values[k] for k in values if f"{{{k}}}" in path})
            params = {"crn": values["crn"]} if path in ("/referrals", "/subject-access-requests") else {}
            cid, purpose = f"log-{uuid.uuid4().hex}", f"matrix check {uuid.uuid4().hex[:8]}"
            headers = reader_of(service, method, path) | {"X-Correlation-ID": cid, "X-Purpose": purpose}
            r = await client.get(url, headers=headers, params=params)
            if r.status_code != 200:
                problems.append(f"{service} GET {path}: {r.status_code} {r.text[:200]}")
                continue
            answer = r.json()
            empty = isinstance(answer, dict) and answer.get("data") == []
            if (service, method, path) in NAMES_PEOPLE_SOMETIMES and values["crn"] not in r.text:
                continue
            if empty:
                problems.append(f"{service} GET {path}: answered no records to check")
                continue
            rows = await access_rows(system, service, cid)
            if not rows:
                problems.append(f"{service} GET {path}: read without an access log row")
            for action, logged_purpose, _ in rows:
                if action not in set(Action) or logged_purpose != purpose:
                    problems.append(f"{service} GET {path}: logged {action!r} for {logged_purpose!r}")
    assert problems == [], "\n".join(problems)


async def test_another_areas_token_reads_nothing_of_an_areas_records_on_any_route(system):
    """Derived from the route tables: every GET route that reads personal records, with each
    role allowed on it, limited to Birmingham, asked for Solihull's records (the same ones the
    access-log test reads): 403, 404, or an answer that names none of them."""
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        routes = [r for r in await routes_of(client, system)
                  if r[1] == "GET" and not is_public(r[2]) and r not in NOT_PERSONAL]
        values = await records_to_read(client, system)
        named = [values[k] for k in ("crn", "referral_id", "provider_referral_id",
                                     "notification_id", "import_id")]
        for service, method, path in routes:
            url = system.url(service) + path.format(**{k: values[k] for k in values if f"{{{k}}}" in path})
            params = {"crn": values["crn"]} if path in ("/referrals", "/subject-access-requests") else {}
            for role in sorted(MATRIX[(service, method, path)]):
                headers = auth(role, sub=f"brum-{role}", areas=[BIRMINGHAM],
                               provider="NACRO" if role == "provider" else None)
                r = await client.get(url, headers=headers, params=params)
                if r.status_code in (403, 404):
                    continue
                if r.status_code != 200 or any(value in r.text for value in named):
                    problems.append(f"{service} GET {path} {role}@{BIRMINGHAM}: {r.status_code} "
                                    f"{r.text[:200]}")
    assert problems == [], "\n".join(problems)


# Write routes that change no area's records: the national catalogue (PUT /services/{code},
# admin), subscriptions (their creator's own, tested in notifications), dead letters
# (national only, above).
NO_AREA_WRITES = {
    ("providers", "PUT", "/services/{code}"),
    ("notifications", "DELETE", "/subscriptions/{subscription_id}"),
    ("notifications", "POST", "/subscriptions/{subscription_id}/enable"),
}


def write_bodies(values: dict[str, str], policy: dict) -> dict[tuple[str, str, str], dict | None]:
    """A valid body for each write route on an area's record (so only the area can refuse it)."""
    nominal = {"area": SOLIHULL, "date_of_birth": "1994-07-08", "supervision_status": "licence",
               "mappa_level": None, "pnc_number": None}
    pr = "/provider-referrals/{provider_referral_id}"
    return {
        ("referrals", "POST", "/referrals/{referral_id}/withdraw"):
            {"reason_code": "other", "comments": "not mine"},
        ("providers", "POST", f"{pr}/acknowledge"): {},
        ("providers", "POST", f"{pr}/accept"): {},
        ("providers", "POST", f"{pr}/decline"): {"reason_code": "capacity", "comments": "full"},
        ("providers", "POST", f"{pr}/start"): {},
        ("providers", "POST", f"{pr}/complete"): {"outcome": "achieved", "notes": "x"},
        ("cohorts", "PUT", "/nominals/{crn}"): nominal,
        ("cohorts", "POST", "/nominals/{crn}/offences"): {"offences": [
            {"offence_date": "2026-10-03", "category": "theft_other", "description": "z"}]},
        ("cohorts", "PUT", "/policies/{area}"): policy,
        ("cohorts", "POST", "/cohorts/{area}/members"):
            {"crn": values["crn"], "cohort": "fixed", "decided_by": "x", "rationale": "y"},
        ("cohorts", "POST", "/cohorts/{area}/members/{crn}/deselect"):
            {"reason": "panel_decision", "decided_by": "x"},
        ("cohorts", "POST", "/cohorts/{area}/members/{crn}/move"):
            {"cohort": "fixed", "decided_by": "x", "rationale": "y"},
    }


async def test_another_areas_token_changes_nothing_of_an_areas_records_on_any_route(system):
    """Derived from the route tables: every write route on a record of an area (a path naming
    it), with each role allowed on it limited to Birmingham and a valid body, on Solihull's
    records: 403 or 404, and the records read the same afterwards."""
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        routes = [r for r in await routes_of(client, system)
                  if r[1] in ("POST", "PUT", "PATCH", "DELETE") and "{" in r[2]
                  and r not in NO_AREA_WRITES and not r[2].startswith("/admin/")]
        values = await records_to_read(client, system)
        cohorts, national = system.url("cohorts"), auth("admin", sub="log-admin")
        policy = (await client.get(f"{cohorts}/policies/{SOLIHULL}", headers=national)).json()
        bodies = write_bodies(values, policy)
        assert sorted(set(routes) - set(bodies)) == [], "add a body for each new write route"

        async def snapshot() -> list[str]:
            reads = [f"{system.url('referrals')}/referrals/{values['referral_id']}",
                     f"{system.url('providers')}/provider-referrals/{values['provider_referral_id']}",
                     f"{cohorts}/nominals/{values['crn']}", f"{cohorts}/nominals/{values['crn']}/offences",
                     f"{cohorts}/cohorts/{SOLIHULL}/members/{values['crn']}",
                     f"{cohorts}/policies/{SOLIHULL}"]
            owners = [auth("probation"), auth("provider", provider="NACRO", sub="nacro-log"),
                      *[auth("iom_panel", areas=[SOLIHULL])] * 3, national]
            answers = [await client.get(url, headers=h) for url, h in zip(reads, owners, strict=True)]
            assert [a.status_code for a in answers] == [200] * len(reads), [a.text for a in answers]
            return [a.text for a in answers]

        before = await snapshot()
        for service, method, path in routes:
            url = system.url(service) + path.format(**{k: values[k] for k in values if f"{{{k}}}" in path})
            for role in sorted(MATRIX[(service, method, path)]):
                headers = auth(role, sub=f"brum-{role}", areas=[BIRMINGHAM],
                               provider="NACRO" if role == "provider" else None)
                r = await client.request(method, url, headers=headers,
                                         json=bodies[(service, method, path)])
                if r.status_code not in (403, 404):
                    problems.append(f"{service} {method} {path} {role}@{BIRMINGHAM}: "
                                    f"{r.status_code} {r.text[:200]}")
        assert await snapshot() == before, "a refused write changed a record"
    assert problems == [], "\n".join(problems)
