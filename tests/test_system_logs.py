"""No personal data in logs: a person's details go through every service of the running system,
by the paths that carry them (submission, refused submissions, the provider's view, decline,
withdrawal, emails, subject access, a cohort nominal, an offence import whose first line is
data, the same in the background, a webhook delivery of a cohort member), and then every line
every service process logged is searched for the values used. None
may be there: logs name records by identifier, and fields by name, never by content."""

from __future__ import annotations

import random
import string
import uuid

import httpx

from pathways_shared.testing import auth, wait_until

NACRO = auth("provider", provider="NACRO", sub="nacro-user")
PROBATION = auth("probation", sub="alex.officer")
ADMIN = auth("admin", sub="ops")
PANEL = auth("iom_panel", sub="panel-chair", areas=["E08000029"])


def _word(length: int = 8) -> str:
    letters = random.choices(string.ascii_lowercase, k=length)
    return "".join(letters).capitalize()


def personal_values() -> dict[str, str]:
    """Values found nowhere else: a match in a log can only be this person's."""
    year = random.randint(1960, 1999)
    return {
        "given_name": f"Zeb{_word()}",
        "family_name": f"Quill{_word()}",
        "date_of_birth": f"{year}-0{random.randint(1, 9)}-1{random.randint(0, 9)}",
        "practitioner_name": f"Officer {_word()}",
        "practitioner_email": f"{_word().lower()}.officer@probation.example",
        "practitioner_team": f"Team {_word()}",
        "need_details": f"Sofa surfing at {_word()} Road",
        "decline_comments": f"Declined because of {_word()} history",
        "withdrawal_comments": f"Withdrawn after {_word()} review",
        "offence_description": f"Assault at {_word()} Street",
        "nominal_date_of_birth": f"{year - 1}-1{random.randint(0, 2)}-2{random.randint(0, 8)}",
        "background_offence": f"Robbery near {_word()} Park",
        "panel_rationale": f"Nominated after {_word()} incident",
    }


def new_crn() -> str:
    return "X" + str(uuid.uuid4().int)[:6]


def referral_body(crn: str, v: dict[str, str], **overrides) -> dict:
    body = {
        "source_reference": f"NDELIUS-{uuid.uuid4().hex[:10]}",
        "area": "E08000029",
        "person": {
            "crn": crn, "noms_number": "A1234BC", "pnc_number": None,
            "given_name": v["given_name"], "family_name": v["family_name"],
            "date_of_birth": v["date_of_birth"], "sex": "male", "needs_interpreter": False,
            "interpreter_language": None,
        },
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "medium", "mappa_level": None},
        "practitioner": {"name": v["practitioner_name"], "email": v["practitioner_email"],
                         "team": v["practitioner_team"]},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": [{"pathway": "accommodation", "complexity": "medium",
                   "details": v["need_details"], "flags": ["at_risk_of_homelessness"]},
                  {"pathway": "finance_benefit_debt", "complexity": "medium",
                   "details": v["need_details"]}],
    }
    body.update(overrides)
    return body


async def test_no_log_line_holds_the_personal_data_that_went_through(system):
    crn = new_crn()
    v = personal_values()
    async with httpx.AsyncClient(timeout=15) as client:
        referrals = system.url("referrals")
        # Refused submissions carrying the person: a bad field, a bad date, an unknown field.
        for bad in (
            referral_body(crn, v, area="Nowhere"),
            referral_body(crn, v, consent={"given": True, "recorded_at": v["date_of_birth"]}),
            {**referral_body(crn, v), "surprise": v["given_name"]},
        ):
            r = await client.post(f"{referrals}/referrals", json=bad, headers=PROBATION)
            assert 400 <= r.status_code < 500, r.text
        r = await client.post(f"{referrals}/referrals", json=referral_body(crn, v),
                              headers=PROBATION)
        assert r.status_code == 201, r.text
        referral_id = r.json()["id"]

        # The provider reads the person (providers fetches them from referrals), then declines.
        async def nacro_entry():
            r = await client.get(f"{system.url('providers')}/provider-referrals", headers=NACRO,
                                 params={"limit": 200})
            return next((e for e in r.json()["data"] if e["referral_id"] == referral_id
                         and e["pathway"] == "accommodation"), None)

        entry = await wait_until(nacro_entry, timeout=40)
        base = f"{system.url('providers')}/provider-referrals/{entry['id']}"
        detail = (await client.get(base, headers=NACRO)).json()
        assert detail["person"]["given_name"] == v["given_name"], detail
        r = await client.post(f"{base}/decline", headers=NACRO, json={
            "reason_code": "other", "comments": v["decline_comments"]})
        assert r.status_code == 200, r.text

        # The practitioner is emailed; then probation withdraws the referral.
        async def emailed():
            return [m for m in system.emails() if v["practitioner_email"] in m["To"]] or None

        await wait_until(emailed, timeout=40)
        r = await client.post(f"{referrals}/referrals/{referral_id}/withdraw", headers=PROBATION,
                              json={"reason_code": "other",
                                    "comments": v["withdrawal_comments"]})
        assert r.status_code == 200, r.text

        # The police cohort tool: a nominal, and an offence import whose first line is data.
        cohorts = system.url("cohorts")
        r = await client.put(f"{cohorts}/nominals/{crn}", headers=PANEL, json={
            "area": "E08000029", "date_of_birth": v["nominal_date_of_birth"],
            "supervision_status": "licence", "mappa_level": None, "pnc_number": None})
        assert r.status_code in (200, 201), r.text
        csv = (f"{crn},2026-01-02,violence,{v['offence_description']}\n"
               f"{crn},not-a-date,violence,{v['offence_description']} {v['given_name']}\n")
        r = await client.post(f"{cohorts}/offences:import", content=csv.encode(),
                              headers={**PANEL, "Content-Type": "text/csv"})
        assert r.status_code < 500, r.text
        # The same, imported in the background (wait=false): its lines logged when it ends.
        csv = ("crn,offence_date,category,description\n"
               f"{crn},2026-01-03,robbery_personal,{v['background_offence']}\n"
               f"{crn},2026-01-04,violence,{v['background_offence']} {v['given_name']}\n"
               f"{crn},2026-01-05,robbery_personal,{v['background_offence']} again\n")
        r = await client.post(f"{cohorts}/offences:import", content=csv.encode(),
                              params={"wait": "false"}, headers={**PANEL, "Content-Type": "text/csv"})
        assert r.status_code == 202, r.text
        report = f"{cohorts}{r.headers['location']}"

        async def imported():
            answer = (await client.get(report, headers=PANEL)).json()
            return answer["status"] != "running" and answer

        await wait_until(imported, timeout=40)

        # A webhook receiver subscribed to cohort members: the nominal adopted, the member
        # event delivered to it (CRN, area, cohort) and the delivery logged.
        r = await client.post(f"{system.url('notifications')}/subscriptions", headers=ADMIN, json={
            "url": system.webhook_url, "event_types": ["cohorts.member.*"],
            "description": "logs test"})
        assert r.status_code == 201, r.text
        r = await client.post(f"{cohorts}/cohorts/E08000029/members", headers=PANEL, json={
            "crn": crn, "cohort": "free", "decided_by": v["practitioner_name"],
            "rationale": v["panel_rationale"]})
        assert r.status_code in (200, 201), r.text

        async def delivered():
            return [w for w in system.webhooks() if crn in w["body"]] or None

        await wait_until(delivered, timeout=40)

        # Subject access across every service, as `pathways sar` asks it.
        for service in ("referrals", "providers", "cohorts", "notifications", "insights"):
            r = await client.get(f"{system.url(service)}/subject-access-requests",
                                 params={"crn": crn}, headers=ADMIN)
            assert r.status_code == 200, (service, r.text)

    found = {
        (log.name, name)
        for log in sorted(system.workdir.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        for name, value in v.items()
        if value in line
    }
    assert found == set(), f"personal data in logs: {sorted(found)}"
    # The flow's own lines were among those searched (its reads name the referral by id).
    assert referral_id in (system.workdir / "referrals.log").read_text(errors="replace")
