"""NATS least privilege, proved against a real nats-server running deploy/nats's configuration.

Each service, as its own user, runs the project's real start-up code (`Broker` declares the
streams, `Consumer.declare` its durable consumers, as its real `create_app` passes them),
publishes its own events and fetches and acks what it consumes; anything else is refused.
The police cohort tool, in its own account, may only pull from its COHORTS consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pathways_shared.broker import Broker, ensure_streams
from pathways_shared.consumer import Consumer, Subscription

pytestmark = pytest.mark.timeout(60)

SERVICES = ("referrals", "providers", "cohorts", "notifications", "insights")
OWN_SUBJECT = {
    "referrals": "referrals.referral.submitted",
    "providers": "providers.referral.allocated",
    "cohorts": "cohorts.member.selected",
    "notifications": "notifications.duty-to-refer.sent",
}
# Who may publish on each stream's subjects (pathways.> is the operators' smoke test).
PUBLISHER = {
    "REFERRALS": "referrals", "PROVIDERS": "providers", "COHORTS": "cohorts",
    "NOTIFICATIONS": "notifications", "PATHWAYS": "pathways-admin",
}


class Conn:
    """A connection as one user that records the permission violations the server reports."""

    def __init__(self, nc, errors: list[str]) -> None:
        self.nc, self.errors = nc, errors
        self.js = nc.jetstream(timeout=2)

    async def violation(self, timeout: float = 2.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for error in self.errors:
                if "permissions violation" in error.lower():
                    return error
            await asyncio.sleep(0.02)
        return ""


@contextlib.asynccontextmanager
async def connect(server, user: str):
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(server.url(user), error_cb=on_error, allow_reconnect=False,
                            connect_timeout=2)
    try:
        yield Conn(nc, errors)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def envelope(event_type: str) -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "eventType": event_type, "version": 1}).encode()


async def setup_streams(server) -> None:
    async with connect(server, "pathways-admin") as admin:
        await ensure_streams(admin.js)


@pytest.fixture(scope="module")
def streams(dev_nats):
    asyncio.run(setup_streams(dev_nats))
    return dev_nats


# --- what each service does at start-up and at work is allowed ------------------------------

@pytest.mark.parametrize("service", SERVICES)
async def test_service_starts_publishes_and_consumes_its_own(streams, service_info, service):
    server = streams
    broker = Broker(server.url(service), name=service)
    broker.start()
    try:
        js = await broker.wait_ready(timeout=10)  # declares every stream, as at start-up
        subscriptions = [Subscription(**s, handlers={}) for s in service_info[service]["subscriptions"]]
        assert subscriptions, f"{service} consumes nothing?"
        for subscription in subscriptions:
            await Consumer(subscription, sessionmaker=None, broker=broker).declare()
        # its own events go out, acknowledged by JetStream (insights publishes nothing)
        if service in OWN_SUBJECT:
            ack = await js.publish(OWN_SUBJECT[service], envelope(OWN_SUBJECT[service]),
                                   headers={"Nats-Msg-Id": str(uuid.uuid4())})
            assert ack.stream == OWN_SUBJECT[service].split(".")[0].upper()
        # and it fetches and acks from each of its consumers
        for subscription in subscriptions:
            subject = subscription.filter_subject or f"{subscription.stream.lower()}.>"
            subject = subject.replace(">", "deploy-test")
            async with connect(server, PUBLISHER[subscription.stream]) as publisher:
                await publisher.js.publish(subject, envelope(subject))
        for subscription in subscriptions:
            psub = await js.pull_subscribe_bind(subscription.durable, stream=subscription.stream)
            messages = await psub.fetch(1, timeout=3)
            assert messages, f"{service} got nothing from {subscription.durable}"
            await messages[0].ack_sync(timeout=2)
            await psub.unsubscribe()
    finally:
        await broker.close()


# --- what it must not do is refused ------------------------------------------------------------

@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("referrals", "providers.referral.allocated"),
        ("referrals", "cohorts.member.selected"),
        ("providers", "referrals.referral.submitted"),
        ("cohorts", "notifications.duty-to-refer.sent"),
        ("notifications", "referrals.referral.withdrawn"),
        ("insights", "referrals.referral.submitted"),
        ("insights", "providers.referral.allocated"),
        ("police-cohort-tool", "cohorts.member.selected"),
    ],
)
async def test_publishing_anothers_subject_is_refused(streams, user, subject):
    async with connect(streams, user) as conn:
        await conn.nc.publish(subject, envelope(subject))
        await conn.nc.flush()
        violation = await conn.violation()
        assert subject in violation and "publish" in violation.lower(), violation


async def test_a_refused_publish_never_reaches_the_stream(streams):
    async with connect(streams, "pathways-admin") as admin:
        before = (await admin.js.stream_info("PROVIDERS")).state.messages
    async with connect(streams, "referrals") as conn:
        with pytest.raises(Exception):  # noqa: B017  (the server answers nothing: a timeout)
            await conn.js.publish("providers.referral.allocated", b"{}", timeout=0.5)
    async with connect(streams, "pathways-admin") as admin:
        assert (await admin.js.stream_info("PROVIDERS")).state.messages == before


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("referrals", "providers.>"),
        ("providers", "referrals.>"),
        ("cohorts", ">"),
        ("police-cohort-tool", "referrals.>"),
        ("police-cohort-tool", "providers.>"),
        ("police-cohort-tool", "cohorts.>"),  # only through its durable consumer
    ],
)
async def test_subscribing_beyond_its_inbox_is_refused(streams, user, subject):
    async with connect(streams, user) as conn:
        await conn.nc.subscribe(subject)
        await conn.nc.flush()
        violation = await conn.violation()
        assert subject in violation and "subscription" in violation.lower(), violation


@pytest.mark.parametrize(
    ("user", "stream", "durable"),
    [
        ("referrals", "REFERRALS", "providers-from-referrals"),  # another's durable
        ("referrals", "COHORTS", "referrals-snoop"),  # a stream it does not consume
        ("cohorts", "PROVIDERS", "providers-from-cohorts"),
        ("police-cohort-tool", "REFERRALS", "police-cohort-tool"),
        ("police-cohort-tool", "COHORTS", "police-extra"),
    ],
)
async def test_consumers_of_others_cannot_be_created(streams, user, stream, durable):
    async with connect(streams, user) as conn:
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT)
        with pytest.raises(Exception):  # noqa: B017  (refused: no answer)
            await conn.js.add_consumer(stream, config, timeout=0.5)
        assert "permissions violation" in await conn.violation()


async def test_a_service_cannot_pull_from_anothers_consumer(streams):
    async with connect(streams, "referrals") as conn:
        await conn.nc.publish("$JS.API.CONSUMER.MSG.NEXT.REFERRALS.providers-from-referrals",
                              b'{"batch": 1}', reply=conn.nc.new_inbox())
        await conn.nc.flush()
        assert "consumer.msg.next.referrals" in (await conn.violation()).lower()


async def test_a_service_cannot_delete_streams(streams):
    async with connect(streams, "providers") as conn:
        await conn.nc.publish("$JS.API.STREAM.DELETE.REFERRALS", b"", reply=conn.nc.new_inbox())
        await conn.nc.flush()
        assert "stream.delete.referrals" in (await conn.violation()).lower()
    async with connect(streams, "pathways-admin") as admin:
        assert (await admin.js.stream_info("REFERRALS")).config.name == "REFERRALS"


# --- the police cohort tool: its own account, only cohorts.> --------------------------------

async def test_police_tool_consumes_cohorts_through_its_consumer(streams):
    async with connect(streams, "pathways-admin") as admin:
        # created by the stream set-up job (deploy/k8s/base/nats/streams-job.yaml)
        await admin.js.add_consumer("COHORTS", ConsumerConfig(
            durable_name="police-cohort-tool", ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW, filter_subject="cohorts.>",
        ))
    async with connect(streams, "cohorts") as cohorts:
        await cohorts.js.publish("cohorts.member.selected", envelope("cohorts.member.selected"))
    async with connect(streams, "police-cohort-tool") as police:
        psub = await police.js.pull_subscribe_bind("police-cohort-tool", stream="COHORTS")
        messages = await psub.fetch(1, timeout=3)
        assert [m.subject for m in messages] == ["cohorts.member.selected"]
        await messages[0].ack_sync(timeout=2)
        assert not await police.violation(timeout=0.2)
    async with connect(streams, "pathways-admin") as admin:
        info = await admin.js.consumer_info("COHORTS", "police-cohort-tool")
        assert info.num_ack_pending == 0 and info.delivered.stream_seq >= 1


async def test_police_tool_is_in_another_account(streams):
    """Even its inbox cannot see the services' traffic: a referrals event fetched by a
    service never reaches a police subscription on _INBOX.>."""
    async with connect(streams, "police-cohort-tool") as police:
        seen: list[str] = []

        async def take(msg):
            seen.append(msg.subject)

        await police.nc.subscribe("_INBOX.>", cb=take)
        await police.nc.flush()
        async with connect(streams, "referrals") as referrals:
            await referrals.js.publish("referrals.referral.submitted",
                                       envelope("referrals.referral.submitted"))
        await asyncio.sleep(0.3)
        assert seen == []
        assert not await police.violation(timeout=0.1)


async def test_unknown_user_and_wrong_password_are_refused(streams):
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(streams.url("referrals").replace("pw-", "wrong-"),
                           allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(f"nats://127.0.0.1:{streams.port}", allow_reconnect=False,
                           connect_timeout=2, max_reconnect_attempts=0)
