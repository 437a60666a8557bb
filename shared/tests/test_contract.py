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


async def test_a_405_allows_every_method_the_path_takes(settings):
    """The router names only the first route whose path matched: `Allow` must list them all."""
    import httpx
    from fastapi import APIRouter

    from pathways_shared.runtime import build_app

    router = APIRouter()

    @router.get("/things/{code}")
    async def get_thing(code: str) -> dict:
        return {"code": code}

    @router.put("/things/{code}")
    async def put_thing(code: str) -> dict:
        return {"code": code}

    @router.delete("/things/{code}", status_code=204)
    async def delete_thing(code: str) -> None:
        return None

    app = build_app(settings, title="allow", routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.patch("/things/x", json={})
        assert r.status_code == 405
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["allow"] == "DELETE, GET, PUT"
        r = await c.options("/docs-assets/swagger-ui.css")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        # a method that takes a body, without a token: still 405, the assets are public
        for method in ("POST", "PUT", "DELETE"):
            r = await c.request(method, "/docs-assets/swagger-ui.css", content=b"x")
            assert r.status_code == 405, (method, r.text)
            assert r.headers["allow"] == "GET, HEAD"
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await c.options("/health/live")
        assert r.status_code == 405 and r.headers["allow"] == "GET"


async def test_every_created_answer_documents_its_location(client):
    doc = (await client.get("/openapi.json")).json()
    created = doc["paths"]["/pings"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["schema"] == {"type": "string"}


async def test_an_empty_cursor_is_refused_as_the_schema_says(client):
    """The last page answers `next_cursor: null`, never ""; the schema says a cursor is never
    empty, and the server refuses one with a 422 naming `cursor`."""
    from pathways_shared.testing import auth

    r = await client.get("/admin/dead-letters", params={"cursor": ""}, headers=auth("admin"))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["cursor"]
    first = await client.get("/admin/dead-letters", headers=auth("admin"))
    assert first.status_code == 200 and first.json()["next_cursor"] is None

    operator = (await client.get("/openapi-operator.json")).json()
    params = operator["paths"]["/admin/dead-letters"]["get"]["parameters"]
    cursor = next(p for p in params if p["name"] == "cursor")["schema"]["anyOf"][0]
    assert cursor["minLength"] == 1 and cursor["pattern"]
    page = operator["components"]["schemas"]["Page_DeadLetterPublic_"]["properties"]["next_cursor"]
    assert "null on the last page" in page["description"]
