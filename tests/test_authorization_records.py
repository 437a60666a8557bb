"""Personal records, area by area, on every route of every running service: each read of
people's records is access-logged under the caller's correlation id and purpose, and a token
limited to another area reads and changes nothing of an area's records. The routes come from
each service's `/openapi.json` and the tables of `support/authorization.py`.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from support.authorization import (
    BIRMINGHAM,
    MATRIX,
    SOLIHULL,
    is_public,
    new_crn,
    referral_body,
    routes_of,
)

from pathways_shared.testing import auth, wait_until

pytestmark = pytest.mark.timeout(240)

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
