"""Local HTTP far ends for tests: `serving_http(routes)` serves handlers from a thread on a
free port; `LocalIdentityProvider` is an RS256 JWKS and a client-credentials token endpoint on
one, for tests that run a service with production-like (JWKS-only) settings. Re-exported by
`pathways_shared.testing`."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import jwt

Route = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]


@contextlib.contextmanager
def serving_http(routes: dict[str, Route]) -> Iterator[str]:
    """Serve `routes` ({path prefix: handler(path, headers, body) -> (status, json)}) from a
    thread on a free local port; yields the base URL. A thread, not the test's event loop:
    PyJWKClient fetches keys with blocking urllib from inside the app's request handling."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            path = urllib.parse.urlsplit(self.path).path
            route = next((r for prefix, r in routes.items() if path.startswith(prefix)), None)
            status, answer = (404, {"title": "not found"}) if route is None else route(
                path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class LocalIdentityProvider:
    """An RS256 signing key, its JWKS (`jwks_url`) and an OAuth2 client-credentials token
    endpoint (`client_credentials_url`, HTTP Basic client authentication) for the registered
    `clients` ({client id: (secret, roles)}). `sign(...)` makes a user's token with the same
    key."""

    KID = "pathways-test-key"

    def __init__(self, clients: dict[str, tuple[str, list[str]]], *, ttl_seconds: int = 300) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.clients = clients
        self.ttl_seconds = ttl_seconds
        self.issued: list[str] = []  # client ids, one per token issued
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._serving: contextlib.ExitStack | None = None
        self.url = ""

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    @property
    def client_credentials_url(self) -> str:
        return f"{self.url}/oauth/token"

    def sign(self, *, sub: str, roles: list[str], **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": sub, "roles": roles, "iat": now, "exp": now + self.ttl_seconds, **claims}
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": self.KID})

    def _jwks(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return 200, {"keys": [{**jwk, "kid": self.KID, "use": "sig", "alg": "RS256"}]}

    def _token(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        form = urllib.parse.parse_qs(body.decode())
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        client_id, _, secret = (
            base64.b64decode(encoded).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
        )
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        if client_id not in self.clients or self.clients[client_id][0] != secret:
            return 401, {"error": "invalid_client"}
        self.issued.append(client_id)
        token = self.sign(sub=client_id, roles=self.clients[client_id][1])
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl_seconds}

    def __enter__(self) -> Self:
        self._serving = contextlib.ExitStack()
        self.url = self._serving.enter_context(
            serving_http({"/.well-known/jwks.json": self._jwks, "/oauth/token": self._token})
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._serving is not None
        self._serving.close()
