"""The HTTP API: subscriptions, the delivery log, subject access; errors as problem+json."""

from __future__ import annotations

import httpx
import pytest

from notifications.app import create_app
from pathways_shared.testing import auth, running

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
ADMIN = auth("admin")
POLICE = auth("police", sub="police-solihull", areas=[SOLIHULL])
OTHER_POLICE = auth("police", sub="police-birmingham", areas=[BIRMINGHAM])
HOOK = "http://127.0.0.1:9/hook"


def problem(response, status: int, field: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


async def create(client, headers=ADMIN, **body):
    payload = {"url": HOOK, "event_types": ["cohorts.member.*"], "description": "IOM tool"}
    payload.update(body)
    return await client.post("/subscriptions", json=payload, headers=headers)


async def test_an_admin_subscribes_and_sees_the_secret_once(client):
    response = await create(client)

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert response.headers["location"] == f"/subscriptions/{created['id']}"
    assert created["event_types"] == ["cohorts.member.*"]
    assert created["active"] is True
    assert created["areas"] is None
    shown = (await client.get(f"/subscriptions/{created['id']}", headers=ADMIN)).json()
    assert "secret" not in shown
    listed = (await client.get("/subscriptions", headers=ADMIN)).json()
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]
    assert listed["next_cursor"] is None


async def test_the_secret_is_not_stored_in_clear(app, client):
    created = (await create(client)).json()

    from sqlalchemy import text

    async with app.state.sessionmaker() as session:
        connection = await session.connection()
        sealed = (
            await connection.execute(text("SELECT secret_sealed FROM subscriptions"))
        ).scalar()
    assert created["secret"] not in sealed
    assert created["secret"].removeprefix("whsec_") not in sealed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["cohorts.member.*", "cohorts..x"]}, "event_types.1"),
        ({"event_types": ["cohorts.>.x"]}, "event_types.0"),
        ({"event_types": "cohorts.>"}, "event_types"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": ""}, "url"),
        ({"url": "http://[::1"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({"url": None}, "url"),
        ({"event_types": [1]}, "event_types.0"),
        ({"event_types": ["x" * 300]}, "event_types.0"),
        ({"areas": ["E09999999"]}, "areas"),
        ({"areas": []}, "areas"),
        ({"description": "x" * 501}, "description"),
    ],
)
async def test_bad_subscriptions_are_refused_with_the_field(client, body, field):
    problem(await create(client, **body), 422, field)


async def test_an_unresolvable_host_is_refused(client):
    problem(await create(client, url="http://no-such-host.invalid/hook"), 422, "url")


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {}, 401),
        ({"Authorization": "Bearer nonsense"}, {}, 401),
        (auth("probation"), {}, 403),
        (auth("provider", provider="NACRO"), {}, 403),
        (auth("service"), {}, 403),
        (POLICE, {"event_types": ["referrals.>"]}, 403),
        (POLICE, {"event_types": [">"]}, 403),
        (POLICE, {"event_types": ["cohorts.>", "*.member.selected"]}, 403),
        (POLICE, {"areas": [BIRMINGHAM]}, 403),
        (auth("police"), {}, 403),  # no areas claim
    ],
)
async def test_who_may_not_subscribe(client, headers, body, status):
    problem(await create(client, headers=headers, **body), status)


async def test_police_subscribe_to_cohort_events_of_their_areas(client):
    response = await create(client, headers=POLICE, event_types=["cohorts.>"])

    assert response.status_code == 201, response.text
    assert response.json()["areas"] == [SOLIHULL]


async def test_police_see_and_delete_only_their_own_subscriptions(client):
    ours = (await create(client, headers=POLICE)).json()
    theirs = (await create(client, headers=OTHER_POLICE)).json()
    admins = (await create(client)).json()

    listed = (await client.get("/subscriptions", headers=POLICE)).json()
    assert [s["id"] for s in listed["data"]] == [ours["id"]]
    for other in (theirs, admins):
        problem(await client.get(f"/subscriptions/{other['id']}", headers=POLICE), 404)
        problem(await client.delete(f"/subscriptions/{other['id']}", headers=POLICE), 404)
    everyone = (await client.get("/subscriptions", headers=ADMIN)).json()
    assert len(everyone["data"]) == 3


async def test_delete_then_gone(client):
    created = (await create(client, headers=POLICE)).json()

    response = await client.delete(f"/subscriptions/{created['id']}", headers=POLICE)

    assert response.status_code == 204
    problem(await client.get(f"/subscriptions/{created['id']}", headers=POLICE), 404)
    problem(await client.delete(f"/subscriptions/{created['id']}", headers=ADMIN), 404)


async def test_subscriptions_page_with_a_cursor(client):
    ids = [(await create(client)).json()["id"] for _ in range(3)]

    first = (await client.get("/subscriptions?limit=2", headers=ADMIN)).json()
    second = (
        await client.get(f"/subscriptions?limit=2&cursor={first['next_cursor']}", headers=ADMIN)
    ).json()

    assert len(first["data"]) == 2 and first["next_cursor"]
    assert second["next_cursor"] is None
    assert sorted(s["id"] for s in first["data"] + second["data"]) == sorted(ids)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/subscriptions?limit=0", "limit"),
        ("/subscriptions?limit=201", "limit"),
        ("/subscriptions?cursor=nonsense", "cursor"),
        ("/subscriptions/not-a-uuid", "subscription_id"),
        ("/notifications?status=lost", "status"),
        ("/notifications?referral_id=x", "referral_id"),
        ("/notifications?cursor=bm9wZQ", "cursor"),
        ("/notifications?cursor=WyJ4IiwieSJd", "cursor"),  # ["x","y"]: ours in shape only
        ("/subscriptions?cursor=WyJ4IiwieSJd", "cursor"),
        ("/notifications/not-a-uuid", "notification_id"),
        ("/subject-access-requests?crn=123", "crn"),
        ("/subject-access-requests", "crn"),
    ],
)
async def test_bad_parameters_are_422_with_the_parameter(client, path, field):
    problem(await client.get(path, headers=ADMIN), 422, field)


async def test_an_admin_re_enables_a_disabled_subscription(app, client):
    created = (await create(client)).json()
    from sqlalchemy import text

    async with app.state.sessionmaker() as session:
        connection = await session.connection()
        await connection.execute(
            text("UPDATE subscriptions SET active = false, disabled_reason = 'x', "
                 "consecutive_failures = 10")
        )  # fmt: skip
        await session.commit()

    problem(await client.post(f"/subscriptions/{created['id']}/enable", headers=POLICE), 403)
    response = await client.post(f"/subscriptions/{created['id']}/enable", headers=ADMIN)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["active"], body["disabled_reason"], body["consecutive_failures"]) == (
        True, None, 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (auth("probation"), 403), (POLICE, 403), (ADMIN, 200), (auth("service"), 200)],
)
async def test_who_reads_the_delivery_log(client, headers, status):
    response = await client.get("/notifications", headers=headers)

    assert response.status_code == status
    if status == 200:
        assert response.json() == {"data": [], "next_cursor": None}


async def test_an_unknown_notification_is_404(client):
    problem(
        await client.get("/notifications/00000000-0000-4000-8000-000000000000", headers=ADMIN),
        404,
    )


@pytest.mark.parametrize(("headers", "status"), [(auth("probation"), 403), (POLICE, 403)])
async def test_subject_access_is_for_admins(client, headers, status):
    problem(await client.get("/subject-access-requests?crn=X123456", headers=headers), status)


async def test_subject_access_answers_what_is_held_and_is_itself_logged(client):
    first = (await client.get("/subject-access-requests?crn=X123456", headers=ADMIN)).json()
    second = (await client.get("/subject-access-requests?crn=X123456", headers=ADMIN)).json()

    assert first == {"crn": "X123456", "notifications": [], "access_log": [], "erasures": []}
    assert [e["purpose"] for e in second["access_log"]] == ["subject access request"]


async def test_production_refuses_private_and_plain_http_urls(make_settings):
    settings = make_settings(
        environment="production",
        secret_key="a-production-secret-key-of-enough-length",
        allow_private_webhook_urls=None,
    )
    application = create_app(settings)
    async with (
        running(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://n"
        ) as client,
    ):
        for url, message in [
            ("https://127.0.0.1/hook", "loopback"),
            ("https://169.254.169.254/latest", "link-local"),
            ("https://10.0.0.8/hook", "private"),
            ("http://93.184.215.14/hook", "https"),
        ]:
            body = problem(await create(client, url=url), 422, "url")
            assert message in body["detail"]


def test_production_settings_refuse_the_development_secret_key(make_settings):
    with pytest.raises(ValueError, match="NOTIFICATIONS_SECRET_KEY"):
        make_settings(environment="production")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"delivery_lease_seconds": 40}, "NOTIFICATIONS_DELIVERY_LEASE_SECONDS"),
        (
            {
                "environment": "production",
                "secret_key": "a-production-secret-key-of-enough-length",
                "allow_private_webhook_urls": True,
            },
            "never allowed in production",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(make_settings, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_settings(**overrides)


@pytest.mark.parametrize(
    ("environment", "setting", "allowed"),
    [("development", None, True), ("test", None, True), ("production", None, False),
     ("development", False, False)],
)  # fmt: skip
def test_private_webhook_urls_by_environment(make_settings, environment, setting, allowed):
    settings = make_settings(
        environment=environment,
        secret_key="a-production-secret-key-of-enough-length",
        allow_private_webhook_urls=setting,
    )

    assert settings.webhooks_allow_private is allowed


async def test_health_and_openapi(client):
    assert (await client.get("/health/live")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/subscriptions", "/subscriptions/{subscription_id}", "/notifications",
            "/subject-access-requests"} <= set(paths)  # fmt: skip
