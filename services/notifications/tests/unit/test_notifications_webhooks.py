"""Standard Webhooks signing: secrets, the signature, the headers, verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain.webhooks import (
    decode_secret,
    generate_secret,
    sign,
    verify,
    webhook_headers,
)
from notifications.errors import InvalidSignature, InvalidWebhookSecret

# The worked example of the Standard Webhooks specification (and its reference libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW = datetime(2026, 11, 24, 10, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("body", [SPEC_BODY, SPEC_BODY.encode()])
def test_signature_matches_the_specification_example(body):
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, body) == SPEC_SIGNATURE


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "body"),
    [
        ("evt-1", 1_700_000_000, b"{}"),
        ("evt-1", 1_700_000_001, b"{}"),
        ("evt-2", 1_700_000_000, b"{}"),
        ("evt-1", 1_700_000_000, b'{"a":1}'),
        ("evt-1", 1_700_000_000, "caf\u00e9".encode()),
    ],
)
def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_key(
    msg_id, timestamp, body
):
    key = bytes(range(32))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()

    assert sign(SECRET, msg_id, timestamp, body) == "v1," + base64.b64encode(mac).decode()


def test_headers_carry_id_unix_seconds_and_signature():
    body = b'{"id":"e"}'

    headers = webhook_headers(SECRET, "e", NOW, body)

    assert headers == {
        "webhook-id": "e",
        "webhook-timestamp": "1795515330",
        "webhook-signature": sign(SECRET, "e", 1795515330, body),
    }


def test_generated_secret_is_whsec_and_base64_of_32_random_bytes():
    asked = []

    def fake_random(n: int) -> bytes:
        asked.append(n)
        return b"\x07" * n

    secret = generate_secret(fake_random)

    assert asked == [32]
    assert secret == "whsec_" + base64.b64encode(b"\x07" * 32).decode()
    assert decode_secret(secret) == b"\x07" * 32


def test_generated_secrets_differ_with_the_random_source():
    assert generate_secret(lambda n: b"\x01" * n) != generate_secret(lambda n: b"\x02" * n)


def test_a_short_random_source_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        generate_secret(lambda n: b"\x01" * 16)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with"),
        ("whsec_", "bytes"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "24 to 64 bytes, not 23"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24 to 64 bytes, not 65"),
    ],
)
def test_bad_secrets_are_refused(secret, message):
    with pytest.raises(InvalidWebhookSecret, match=message) as caught:
        decode_secret(secret)

    assert caught.value.status == 422


@pytest.mark.parametrize("size", [24, 32, 64])
def test_keys_of_24_to_64_bytes_are_accepted(size):
    secret = "whsec_" + base64.b64encode(b"k" * size).decode()

    assert decode_secret(secret) == b"k" * size


# --------------------------------------------------------------------------- verification


def _headers(body=b"{}", msg_id="e", at=NOW, secret=SECRET):
    return webhook_headers(secret, msg_id, at, body)


@pytest.mark.parametrize(
    "headers",
    [
        _headers(),
        {k.title(): v for k, v in _headers().items()},  # header names are case-insensitive
        _headers(at=NOW - timedelta(minutes=5)),
        _headers(at=NOW + timedelta(minutes=5)),
        # during a secret rotation several signatures are sent; one match is enough
        _headers() | {"webhook-signature": "v1,bm9wZQ== " + _headers()["webhook-signature"]},
    ],
)
def test_verify_accepts_a_good_delivery(headers):
    verify(SECRET, headers, b"{}", NOW)


OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (_headers(), b"{ }", "no signature matches"),
        (_headers(secret=OTHER_SECRET), b"{}", "no signature matches"),
        (_headers() | {"webhook-id": "other"}, b"{}", "no signature matches"),
        (_headers(at=NOW - timedelta(minutes=5, seconds=1)), b"{}", "tolerance"),
        (_headers(at=NOW + timedelta(minutes=6)), b"{}", "tolerance"),
        (_headers() | {"webhook-timestamp": "soon"}, b"{}", "not an integer"),
        (
            _headers() | {"webhook-signature": "v2," + _headers()["webhook-signature"][3:]},
            b"{}",
            "no signature matches",
        ),
        ({"webhook-id": "e", "webhook-timestamp": "1"}, b"{}", "webhook-signature"),
        ({}, b"{}", "webhook-id"),
    ],
)
def test_verify_refuses_a_bad_delivery(headers, body, message):
    with pytest.raises(InvalidSignature, match=message):
        verify(SECRET, headers, body, NOW)
