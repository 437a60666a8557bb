"""The route tables and calls of the authorisation tests (`tests/test_authorization_*.py`):
which roles may call each route of each service (from the role rules of CONTRACT.md), how a
route is called with made-up values, and the routes each running service serves."""

from __future__ import annotations

import uuid

import httpx

from pathways_shared.auth import mint_token
from pathways_shared.testing import TEST_JWT_SECRET, auth

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


# Routes whose answer spans every area: an area-limited token (one with an `areas` claim) is
# refused them (403) whatever its role; national work needs a national token (no `areas`).
NATIONAL_ONLY = {
    *((service, m, p) for service in ("referrals", "providers", "cohorts", "notifications", "insights")
      for (m, p) in ADMIN_OPS),
    ("notifications", "GET", "/notifications"),
    ("notifications", "GET", "/notifications/{notification_id}"),
}


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
