"""`outbox.publish` takes the payload model: the model names the event type, the envelope is
what `make_event` made from the same facts, and anything but an event's model is refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from pathways_shared.db import transaction
from pathways_shared.event_payloads import (
    PAYLOADS,
    DeadlineMissed,
    MemberDeselected,
    NeedRef,
    ProviderReferralRef,
    ReferralAcknowledged,
    ReferralDeclined,
)
from pathways_shared.event_payloads import (
    TestPing as Ping,  # (not a test class)
)
from pathways_shared.events import EVENT_TYPES, Addressing, envelope, make_event
from pathways_shared.outbox import publish
from pathways_shared.testing import stream_events

AT = datetime(2027, 3, 28, 1, 30, 0, 123456, tzinfo=UTC)
IDS = {"referral_id": "r1", "need_id": "n1", "provider_referral_id": "p1"}


def test_every_event_type_has_one_model_that_names_it():
    assert set(PAYLOADS) == set(EVENT_TYPES)
    assert all(model.event_type == name for name, model in PAYLOADS.items())
    assert len(set(PAYLOADS.values())) == len(PAYLOADS)


def test_the_envelope_is_the_one_make_event_makes_from_the_same_facts():
    event_id = uuid.uuid4()
    payload = ReferralDeclined(**IDS, service_code="CRS-ACC-M", provider_code="NACRO",
                               programme="CRS", pathway="accommodation", reason_code="capacity")
    typed = envelope(payload, Addressing(crn="X123456", detail_url="http://x/provider-referrals/p1",
                                         occurred_at=AT, event_id=event_id))
    plain = make_event("providers.referral.declined", {
        "referralId": "r1", "needId": "n1", "providerReferralId": "p1", "serviceCode": "CRS-ACC-M",
        "providerCode": "NACRO", "programme": "CRS", "pathway": "accommodation",
        "reasonCode": "capacity",
    }, crn="X123456", detail_url="http://x/provider-referrals/p1", occurred_at=AT, event_id=event_id)
    assert typed.to_json() == plain.to_json()
    wire = json.loads(typed.to_json())
    assert wire["occurredAt"] == "2027-03-28T01:30:00.123Z"
    assert wire["description"] == EVENT_TYPES["providers.referral.declined"].description


def test_addressing_names_the_crn_then_the_noms_number_and_defaults_the_rest():
    event = envelope(Ping(), Addressing(crn="X123456", noms_number="A1234BC"))
    assert event.person_reference is not None
    assert [(i.type, i.value) for i in event.person_reference.identifiers] == [
        ("CRN", "X123456"), ("NOMS", "A1234BC")]
    bare = envelope(Ping())
    assert bare.person_reference is None and bare.detail_url is None
    assert bare.id != envelope(Ping()).id


def test_instants_travel_in_the_one_form_and_empty_optional_fields_are_left_out():
    missed = DeadlineMissed(**IDS, deadline="respond", due_at=AT)
    assert missed.additional_information()["dueAt"] == "2027-03-28T01:30:00.123Z"
    left = MemberDeselected(area="E08000029", cohort="fixed", reason="desisted")
    assert "movedTo" not in left.additional_information()
    moved = MemberDeselected(area="E08000029", cohort="fixed", reason="panel_decision", moved_to="flex")
    assert moved.additional_information()["movedTo"] == "flex"


class NotAnEvent(ReferralAcknowledged):
    pass


@pytest.mark.parametrize(
    "payload",
    [
        {"referralId": "r1", "needId": "n1"},  # a plain dict
        NeedRef(referral_id="r1", need_id="n1"),  # a part of payloads, not an event
        ProviderReferralRef(**IDS),  # the shape several events share
        NotAnEvent(**IDS),  # a subclass of an event's model
    ],
)
def test_anything_but_an_events_model_is_refused(payload):
    with pytest.raises(TypeError):
        envelope(payload)


async def test_publish_writes_the_typed_event_and_refuses_the_rest(app, nc, subject_prefix):
    sessionmaker = app.state.runtime.sessionmaker
    with pytest.raises(TypeError):
        async with transaction(sessionmaker) as session:
            publish(session, {"note": "untyped"})  # type: ignore[arg-type]
    async with transaction(sessionmaker) as session:
        written = publish(session, Ping(note="typed"), Addressing(crn="X123456", occurred_at=AT))
    [received] = await stream_events(nc.jetstream(), "PATHWAYS", subject_prefix, expect=1)
    assert received == written
    assert received.crn == "X123456" and received.additional_information == {"note": "typed"}
