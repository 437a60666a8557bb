"""Pure parts of the shared package: settings, envelope, field paths, cursors."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pathways_shared.config import ServiceSettings
from pathways_shared.events import EVENT_TYPES, Event, make_event, stream_name
from pathways_shared.pagination import decode_cursor, encode_cursor
from pathways_shared.problems import ValidationProblem, field_path


def test_settings_refuse_production_without_a_real_secret():
    with pytest.raises(ValidationError):
        ServiceSettings(environment="production")
    with pytest.raises(ValidationError):
        ServiceSettings(environment="production", jwt_secret="change-me")
    with pytest.raises(ValidationError):
        ServiceSettings(environment="development")  # no secret, no JWKS: refuse to start
    with pytest.raises(ValidationError, match="PATHWAYS_JWT_AUDIENCE"):
        ServiceSettings(environment="production", jwks_url="https://idp.example/jwks")
    ok = ServiceSettings(
        environment="production", jwks_url="https://idp.example/jwks", jwt_audience="pathways"
    )
    assert ok.environment == "production"


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("PATHWAYS_JWT_SECRET", "local-secret")
    monkeypatch.setenv("NATS_URL", "nats://example:4999")
    s = ServiceSettings()
    assert s.jwt_secret == "local-secret" and s.nats_url == "nats://example:4999"


def test_envelope_is_the_hmpps_shape_plus_id():
    event = make_event("providers.referral.allocated", {"referralId": "r1"}, crn="X123456",
                       detail_url="http://127.0.0.1:8002/provider-referrals/1")
    wire = json.loads(event.to_json())
    assert set(wire) == {"id", "eventType", "version", "description", "occurredAt", "detailUrl",
                         "personReference", "additionalInformation"}
    assert wire["personReference"] == {"identifiers": [{"type": "CRN", "value": "X123456"}]}
    assert wire["occurredAt"].endswith("Z") and wire["version"] == 1
    assert wire["description"] == EVENT_TYPES["providers.referral.allocated"].description
    assert Event.from_json(event.to_json()) == event
    assert event.crn == "X123456"


def test_unknown_event_type_is_refused():
    with pytest.raises(ValueError):
        make_event("referrals.referral.exploded", {})


def test_stream_names_with_a_test_prefix():
    assert stream_name("REFERRALS") == "REFERRALS"
    assert stream_name("REFERRALS", "tab12.") == "TAB12_REFERRALS"


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body", "person", "date_of_birth"), "person.date_of_birth"),
        (("body", "needs", 1, "pathway"), "needs.1.pathway"),
        (("query", "limit"), "limit"),
        (("body",), "body"),
        (("body", "person", "function-after[check(), str]"), "person"),
    ],
)
def test_field_paths(loc, field):
    assert field_path(loc) == field


def test_cursor_round_trip_and_garbage():
    cursor = encode_cursor(["2026-11-24T10:00:00Z", "abc"])
    assert decode_cursor(cursor, size=2) == ["2026-11-24T10:00:00Z", "abc"]
    with pytest.raises(ValidationProblem):
        decode_cursor("!!!", size=2)
    with pytest.raises(ValidationProblem):
        decode_cursor(encode_cursor([1]), size=2)


async def test_sqlite_gives_back_utc_times(tmp_path):
    from datetime import UTC, datetime, timedelta, timezone

    from sqlmodel import SQLModel

    from pathways_shared.db import make_engine, make_sessionmaker
    from pathways_shared.infra_models import AccessLog

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'utc.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=[AccessLog.__table__]))
    moment = datetime(2026, 11, 24, 10, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    async with make_sessionmaker(engine)() as session:
        session.add(AccessLog(at=moment, actor="a", roles="r", action="consultation",
                              resource="x", purpose="test"))
        await session.commit()
    async with make_sessionmaker(engine)() as session:
        [row] = (await session.exec(__import__("sqlmodel").select(AccessLog))).all()
    await engine.dispose()
    assert row.at == moment and row.at.tzinfo is not None
    assert row.at.utcoffset() == timedelta(0)
    assert row.at == datetime(2026, 11, 24, 9, 15, 30, tzinfo=UTC)


def test_urls_are_redacted_for_logs():
    from pathways_shared.broker import redact

    assert redact("nats://referrals:s3cret@nats:4222") == "nats://***@nats:4222"
    assert redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_a_verified_token_is_remembered_only_until_it_expires():
    import time as clock

    from pathways_shared.auth import Authenticator, mint_token
    from pathways_shared.problems import Unauthorized
    from pathways_shared.testing import TEST_JWT_SECRET

    authenticator = Authenticator(ServiceSettings(environment="test", jwt_secret=TEST_JWT_SECRET))
    token = mint_token(TEST_JWT_SECRET, sub="someone", roles=["probation"], ttl_seconds=1)
    first = authenticator.verify(token)
    assert authenticator.verify(token) == first and first.sub == "someone"
    clock.sleep(2.1)  # past `exp`: checked again, and refused
    with pytest.raises(Unauthorized):
        authenticator.verify(token)
    with pytest.raises(Unauthorized):  # a bad token is never remembered as good
        authenticator.verify(token[:-2] + "xx")


def test_identifier_patterns_match_whole_values_only():
    from pathways_shared.vocabulary import CRN_PATTERN, NOMS_PATTERN, PNC_PATTERN

    for pattern, good in (
        (CRN_PATTERN, "S391957"), (NOMS_PATTERN, "A1234BC"), (PNC_PATTERN, "2001/0000001A"),
    ):
        assert pattern.fullmatch(good) and pattern.match(good)
        for bad in (good + "\n", good + " ", "\n" + good, good + "\r\n"):
            assert not pattern.match(bad), (pattern.pattern, bad)


@pytest.mark.parametrize(
    "claims",
    [
        {"provider": ["NACRO"]},
        {"provider": {"code": "NACRO"}},
        {"provider": 7},
        {"roles": "admin"},
        {"roles": [["admin"]]},
        {"roles": None},
        {"areas": "E08000029"},
        {"areas": [{"code": "E08000029"}]},
        {"areas": [8000029]},
    ],
)
def test_a_claim_of_the_wrong_type_is_an_invalid_token(claims):
    import time as clock

    import jwt

    from pathways_shared.auth import Authenticator
    from pathways_shared.problems import Unauthorized
    from pathways_shared.testing import TEST_JWT_SECRET

    authenticator = Authenticator(ServiceSettings(environment="test", jwt_secret=TEST_JWT_SECRET))
    now = int(clock.time())
    body = {"sub": "someone", "roles": ["provider"], "exp": now + 60, **claims}
    with pytest.raises(Unauthorized):
        authenticator.verify(jwt.encode(body, TEST_JWT_SECRET, algorithm="HS256"))


def test_the_audience_is_checked_when_configured():
    from pathways_shared.auth import Authenticator, mint_token
    from pathways_shared.problems import Unauthorized
    from pathways_shared.testing import TEST_JWT_SECRET

    settings = ServiceSettings(
        environment="test", jwt_secret=TEST_JWT_SECRET, jwt_audience="pathways"
    )
    authenticator = Authenticator(settings)
    assert authenticator.verify(mint_token(TEST_JWT_SECRET, audience="pathways")).sub
    for audience in (None, "another-application"):
        with pytest.raises(Unauthorized):
            authenticator.verify(mint_token(TEST_JWT_SECRET, audience=audience))


@pytest.mark.parametrize(
    "raw",
    ["[1e30]", "[Infinity]", "[-Infinity]", "[NaN]", "[true]", "[[1]]", "[{}]", "[null]",
     f"[{2**64}]", '["0001-01-01T00:00:00+05:00"]', '["9999-12-31T23:00:00-05:00"]', "{}"],
)
def test_a_crafted_cursor_is_refused_on_the_cursor_field(raw):
    import base64

    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(ValidationProblem) as refused:
        decode_cursor(cursor, size=1)
    assert refused.value.field == "cursor"


def test_the_access_log_speaks_one_vocabulary():
    """DPA 2018 s.62's six actions, the same words in every service; no other word is written."""
    from pathways_shared.access import Action, record_access

    assert [a.value for a in Action] == [
        "collection", "alteration", "consultation", "disclosure", "combination", "erasure",
    ]
    with pytest.raises(ValueError):
        record_access(None, actor="x", action="viewed", resource="r", crn=None, purpose="p")  # type: ignore[arg-type]
