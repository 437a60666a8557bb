"""The published contract tells the truth (issue 15): the OpenAPI document declares the bearer
scheme and the problem+json errors the server answers, operator routes stay out of the
partner's document, and `/docs` needs no CDN."""

from __future__ import annotations

import re

from pathways_shared.auth import mint_token

METHODS = ("get", "put", "post", "delete", "patch")


async def test_a_401_names_the_bearer_scheme_and_why(client):
    bad = mint_token("another-secret-0123456789abcdef-0123456789", roles=["admin"])
    r = await client.post("/pings", json={"note": "x"}, headers={"Authorization": f"Bearer {bad}"})
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert re.search(r'error_description="[^"]+"', challenge)


async def test_a_401_without_a_token_still_challenges(client):
    r = await client.post("/pings", json={"note": "x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")


async def test_every_protected_operation_declares_bearer_jwt_and_problem_errors(client):
    doc = (await client.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    ops = [op for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
    assert ops
    for op in ops:
        assert op["security"] == [{"bearerAuth": []}], op["operationId"]
        for status in ("401", "403", "422"):
            content = op["responses"][status]["content"]
            assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "errors" in doc["components"]["schemas"]["Problem"]["properties"]


async def test_operation_ids_are_camel_case_and_operator_routes_are_apart(client):
    doc = (await client.get("/openapi.json")).json()
    assert doc["paths"]["/pings"]["post"]["operationId"] == "ping"
    assert not [p for p in doc["paths"] if p.startswith(("/health", "/metrics", "/admin"))]
    assert doc["info"]["license"]["name"] and doc["info"]["contact"]["email"]
    assert doc["servers"][0]["url"]

    operator = (await client.get("/openapi-operator.json")).json()
    ids = {op["operationId"]: op for item in operator["paths"].values() for m, op in item.items() if m in METHODS}
    assert {"live", "ready", "metrics", "listDeadLetters", "replay", "discard"} <= set(ids)
    assert all(op["tags"] == ["operator"] for op in ids.values())
    assert list(ids["metrics"]["responses"]["200"]["content"]) == ["text/plain"]
    assert ids["listDeadLetters"]["security"] == [{"bearerAuth": []}]


async def test_docs_pages_load_their_assets_locally(client):
    for page in ("/docs", "/redoc"):
        r = await client.get(page)
        assert r.status_code == 200
        urls = re.findall(r'(?:src|href)=["\']([^"\']+)', r.text) + re.findall(r"url: ?'([^']+)'", r.text)
        assert urls, page
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "cdn" not in r.text.lower()
        for url in urls:
            assert (await client.get(url)).status_code == 200, url


async def test_metrics_still_serves_prometheus_text(client):
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
