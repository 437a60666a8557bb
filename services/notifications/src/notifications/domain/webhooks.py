"""Standard Webhooks signing (https://www.standardwebhooks.com/), pure.

- A secret is ``whsec_`` + base64 of random key bytes (24 to 64 bytes; we make 32).
- A delivery carries ``webhook-id`` (the event id), ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``
  keyed with the decoded key bytes. Several signatures may be sent space-separated (during
  a secret rotation); a verifier accepts any one that matches.

The random source and the clock are arguments: nothing here reads either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from notifications.errors import InvalidSignature, InvalidWebhookSecret

SECRET_PREFIX = "whsec_"
KEY_BYTES = 32
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = timedelta(minutes=5)

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


def generate_secret(random_bytes: Callable[[int], bytes]) -> str:
    """A new secret from ``random_bytes(n)`` (``secrets.token_bytes`` in production)."""
    key = random_bytes(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise ValueError(f"the random source gave {len(key)} bytes, not {KEY_BYTES}")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; ``InvalidWebhookSecret`` if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(
            f"a webhook secret starts with {SECRET_PREFIX!r}", field="secret"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidWebhookSecret(
            "a webhook secret is base64 after its prefix", field="secret"
        ) from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidWebhookSecret(
            f"a webhook key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}",
            field="secret",
        )
    return key


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def signed_content(msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + _as_bytes(body)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` with the decoded key."""
    digest = hmac.new(
        decode_secret(secret), signed_content(msg_id, timestamp, body), hashlib.sha256
    )
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest.digest()).decode('ascii')}"


def webhook_headers(secret: str, msg_id: str, now: datetime, body: bytes | str) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt at ``now``."""
    timestamp = int(now.timestamp())
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``InvalidSignature`` unless the headers sign the body with this secret and the
    timestamp is within ``tolerance`` of ``now`` (replay protection)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        msg_id = lowered[HEADER_ID]
        timestamp_text = lowered[HEADER_TIMESTAMP]
        signatures = lowered[HEADER_SIGNATURE]
    except KeyError as exc:
        raise InvalidSignature(f"missing header {exc.args[0]}") from exc
    try:
        timestamp = int(timestamp_text)
    except ValueError as exc:
        raise InvalidSignature("webhook-timestamp is not an integer") from exc
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        raise InvalidSignature("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            return
    raise InvalidSignature("no signature matches")
