"""Who is told what, for each consumed event (domain.decide_notifications and friends)."""

from __future__ import annotations

import uuid

import pytest

from notifications.domain.intents import (
    Channel,
    Contacts,
    EventType,
    NotificationKind,
    Recipient,
    RecipientRole,
    decide_notifications,
    email_message_id,
    events_after_delivery,
    events_after_final_failure,
    idempotency_key,
    is_email_address,
    parse_envelope,
    resolve_address,
)
from notifications.errors import RecipientUnresolvable, UnparseableEvent

PRACTITIONER = RecipientRole.PRACTITIONER
PROVIDER = RecipientRole.PROVIDER_MAILBOX
HOUSING = RecipientRole.HOUSING_TEAM


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (
            "providers.referral.allocated",
            [
                (NotificationKind.REFERRAL_ALLOCATED, PRACTITIONER, "referral"),
                (NotificationKind.REFERRAL_RECEIVED, PROVIDER, "NACRO"),
            ],
        ),
        (
            "providers.referral.unallocated",
            [(NotificationKind.REFERRAL_UNALLOCATED, PRACTITIONER, "referral")],
        ),
        (
            "providers.referral.declined",
            [(NotificationKind.REFERRAL_DECLINED, PRACTITIONER, "referral")],
        ),
        (
            "providers.referral.deadline-missed",
            [
                (NotificationKind.DEADLINE_MISSED, PRACTITIONER, "referral"),
                (NotificationKind.DEADLINE_REMINDER, PROVIDER, "NACRO"),
            ],
        ),
        (
            "referrals.referral.submitted",
            [(NotificationKind.DUTY_TO_REFER, HOUSING, "E08000029")],
        ),
    ],
)
def test_each_event_tells_the_right_people(make_event, info, ids, event_type, expected):
    event = make_event(event_type, info(event_type))

    intents = decide_notifications(event)

    got = [(i.kind, i.recipient.role, i.recipient.key) for i in intents]
    want = [(k, r, str(ids.referral) if key == "referral" else key) for k, r, key in expected]
    assert got == want
    for intent in intents:
        assert intent.event_id == ids.event
        assert intent.event_type == event_type
        assert intent.referral_id == ids.referral
        assert intent.need_ids == (ids.need,)
        assert intent.channel is Channel.EMAIL
        assert intent.idempotency_key == idempotency_key(ids.event, intent.recipient)


@pytest.mark.parametrize(
    "event_type",
    [
        "providers.referral.acknowledged",
        "providers.referral.accepted",
        "providers.referral.started",
        "providers.referral.completed",
        "cohorts.member.selected",
        "notifications.duty-to-refer.sent",
        "something.else.entirely",
    ],
)
def test_events_without_email_rules_tell_nobody(make_event, event_type):
    event = make_event(event_type, {"referralId": str(uuid.uuid4()), "area": "E08000029"})

    assert decide_notifications(event) == ()


@pytest.mark.parametrize(
    ("allocations", "expected"),
    [
        # every need held by one provider: one message listing them all
        ({"need": "NACRO", "other_need": "NACRO"}, [("NACRO", ["need", "other_need"])]),
        # two providers: one message each, in provider-code order
        (
            {"need": "NACRO", "other_need": "CHANGING_LIVES", "third_need": "NACRO"},
            [("CHANGING_LIVES", ["other_need"]), ("NACRO", ["need", "third_need"])],
        ),
        # a need nobody held (unallocated) tells no provider
        ({"other_need": "SIAS"}, [("SIAS", ["other_need"])]),
        ({}, []),
    ],
)
def test_withdrawal_tells_each_provider_holding_a_need_once(
    make_event, info, ids, allocations, expected
):
    event = make_event("referrals.referral.withdrawn", info("referrals.referral.withdrawn"))
    known = {getattr(ids, name): code for name, code in allocations.items()}

    intents = decide_notifications(event, allocations=known)

    assert [(i.recipient.key, list(i.need_ids)) for i in intents] == [
        (code, [getattr(ids, name) for name in needs]) for code, needs in expected
    ]
    assert all(i.kind is NotificationKind.REFERRAL_WITHDRAWN for i in intents)
    assert all(i.recipient.role is PROVIDER for i in intents)
    assert len({i.idempotency_key for i in intents}) == len(intents)


def test_withdrawal_ignores_allocations_of_needs_not_withdrawn(make_event, info, ids):
    event = make_event(
        "referrals.referral.withdrawn",
        info("referrals.referral.withdrawn", needIds=[str(ids.need)]),
    )

    intents = decide_notifications(event, allocations={ids.need: "NACRO", ids.other_need: "IXION"})

    assert [i.recipient.key for i in intents] == ["NACRO"]


@pytest.mark.parametrize(
    ("event_provider", "allocations", "expected_key"),
    [
        ("NACRO", {}, "NACRO"),
        ("NACRO", {"need": "IXION"}, "NACRO"),  # the event is the better witness
        (None, {"need": "IXION"}, "IXION"),
        (None, {}, None),  # unknown: kept, and fails visibly when its address is resolved
    ],
)
def test_deadline_reminder_names_the_provider_from_the_event_or_what_is_known(
    make_event, info, ids, drop, event_provider, allocations, expected_key
):
    event = make_event(
        "providers.referral.deadline-missed",
        info("providers.referral.deadline-missed", providerCode=event_provider or drop),
    )
    known = {getattr(ids, name): code for name, code in allocations.items()}

    intents = decide_notifications(event, allocations=known)

    reminder = [i for i in intents if i.kind is NotificationKind.DEADLINE_REMINDER]
    assert [i.recipient.key for i in reminder] == [expected_key]


def _need(need_id, pathway, flags):
    return {"needId": str(need_id), "pathway": pathway, "complexity": "medium", "flags": flags}


@pytest.mark.parametrize(
    ("pathway", "flags", "consent", "notices"),
    [
        ("accommodation", ["at_risk_of_homelessness"], None, 1),
        ("accommodation", ["at_risk_of_homelessness", "women_specific"], True, 1),
        ("accommodation", ["at_risk_of_homelessness"], False, 0),
        ("accommodation", [], None, 0),
        ("accommodation", ["children_in_household"], None, 0),
        ("finance_benefit_debt", ["at_risk_of_homelessness"], None, 0),
        ("health", ["at_risk_of_homelessness"], True, 0),
    ],
)
def test_duty_to_refer_only_for_an_accommodation_need_at_risk_of_homelessness_with_consent(
    make_event, info, ids, drop, pathway, flags, consent, notices
):
    event = make_event(
        "referrals.referral.submitted",
        info(
            "referrals.referral.submitted",
            needs=[_need(ids.need, pathway, flags), _need(ids.other_need, "drugs_alcohol", [])],
            consentGiven=drop if consent is None else consent,
        ),
    )

    intents = decide_notifications(event)

    assert len(intents) == notices
    for intent in intents:
        assert intent.kind is NotificationKind.DUTY_TO_REFER
        assert intent.recipient == Recipient(HOUSING, "E08000029")
        assert intent.need_ids == (ids.need,)


@pytest.mark.parametrize("area", ["E08000029", "E08000025", "E08000031"])
def test_duty_to_refer_goes_to_the_housing_team_of_the_referral_area(make_event, info, area):
    event = make_event(
        "referrals.referral.submitted", info("referrals.referral.submitted", area=area)
    )

    (intent,) = decide_notifications(event)

    assert intent.recipient == Recipient(HOUSING, area)


def test_same_event_decided_twice_gives_the_same_keys(make_event, info):
    event_type = "providers.referral.allocated"
    first = decide_notifications(make_event(event_type, info(event_type)))
    again = decide_notifications(make_event(event_type, info(event_type)))

    assert [i.idempotency_key for i in first] == [i.idempotency_key for i in again]
    assert first == again


def test_another_event_gives_other_keys(make_event, info):
    event_type = "providers.referral.allocated"
    first = decide_notifications(make_event(event_type, info(event_type)))
    other = decide_notifications(make_event(event_type, info(event_type), event_id=uuid.uuid4()))

    assert not {i.idempotency_key for i in first} & {i.idempotency_key for i in other}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (Recipient(PRACTITIONER, "a"), Recipient(PRACTITIONER, "b")),
        (Recipient(PRACTITIONER, "NACRO"), Recipient(PROVIDER, "NACRO")),
        (Recipient(PROVIDER, None), Recipient(PROVIDER, "NACRO")),
        (Recipient(HOUSING, "E08000029"), Recipient(RecipientRole.SUBSCRIBER, "E08000029")),
    ],
)
def test_idempotency_key_differs_per_recipient(one, other):
    event_id = uuid.UUID("66666666-6666-4666-8666-666666666666")

    assert idempotency_key(event_id, one) != idempotency_key(event_id, other)
    assert idempotency_key(event_id, one) == idempotency_key(event_id, one)


def test_idempotency_key_is_stable_across_releases():
    # Pinned: a change here would resend every notification still in flight.
    key = idempotency_key(
        uuid.UUID("66666666-6666-4666-8666-666666666666"), Recipient(PROVIDER, "NACRO")
    )

    assert key == uuid.uuid5(
        uuid.UUID("6f1c7a52-2f0c-4d8e-9a57-3b0e8f4d2c11"),
        "66666666-6666-4666-8666-666666666666|provider_mailbox|NACRO",
    )
    assert email_message_id(key, "pathways.example") == f"<{key}@pathways.example>"


# --------------------------------------------------------------------------- parsing


def test_envelope_parsed_to_what_the_rules_read(raw_envelope, info, ids):
    event = parse_envelope(
        raw_envelope("providers.referral.allocated", info("providers.referral.allocated"))
    )

    assert event.id == ids.event
    assert event.event_type == "providers.referral.allocated"
    assert event.crn == "X123456"
    assert event.referral_id == ids.referral
    assert event.occurred_at.isoformat() == "2026-11-24T10:15:30.123000+00:00"
    assert event.detail_url == "http://127.0.0.1:8002/provider-referrals/x"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"id": None}, "id"),
        ({"eventType": None}, "eventType"),
        ({"eventType": "nodots"}, "eventType"),
        ({"eventType": "Bad.Case"}, "eventType"),
        ({"occurredAt": "yesterday"}, "occurredAt"),
        ({"occurredAt": "2026-11-24T10:15:30"}, "occurredAt"),  # no zone
        ({"additionalInformation": "text"}, "additionalInformation"),
    ],
)
def test_unparseable_envelopes_are_refused_with_the_field(raw_envelope, change, field):
    raw = raw_envelope("providers.referral.allocated", {}) | change

    with pytest.raises(UnparseableEvent) as caught:
        parse_envelope(raw)

    assert caught.value.field == field
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("event_type", "key", "value", "field"),
    [
        ("providers.referral.allocated", "needId", None, "additionalInformation.needId"),
        (
            "providers.referral.allocated",
            "providerCode",
            None,
            "additionalInformation.providerCode",
        ),
        (
            "providers.referral.allocated",
            "acknowledgeBy",
            "soon",
            "additionalInformation.acknowledgeBy",
        ),
        ("providers.referral.unallocated", "referralId", "x", "additionalInformation.referralId"),
        ("providers.referral.declined", "reasonCode", None, "additionalInformation.reasonCode"),
        (
            "providers.referral.deadline-missed",
            "deadline",
            "lunch",
            "additionalInformation.deadline",
        ),
        ("referrals.referral.withdrawn", "needIds", "one", "additionalInformation.needIds"),
        ("referrals.referral.submitted", "area", None, "additionalInformation.area"),
        (
            "referrals.referral.submitted",
            "needs",
            [{"pathway": "health"}],
            "additionalInformation.needs.0.needId",
        ),
    ],
)
def test_events_missing_what_their_rules_need_are_unparseable(
    make_event, info, event_type, key, value, field
):
    event = make_event(event_type, info(event_type, **{key: value}))

    with pytest.raises(UnparseableEvent) as caught:
        decide_notifications(event)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("event_type", "key", "value"),
    [
        # tolerant reader: new codes and extra fields never dead-letter a notification
        ("providers.referral.declined", "reasonCode", "a_reason_added_later"),
        ("referrals.referral.withdrawn", "reasonCode", "a_reason_added_later"),
        ("providers.referral.allocated", "somethingNew", {"nested": True}),
        ("providers.referral.allocated", "acknowledgeBy", None),
    ],
)
def test_unknown_codes_and_extra_fields_are_tolerated(
    make_event, info, ids, event_type, key, value
):
    event = make_event(event_type, info(event_type, **{key: value}))

    assert decide_notifications(event, allocations={ids.need: "NACRO"})


def test_an_event_without_a_person_reference_has_no_crn(make_event, info):
    event = make_event(
        "referrals.referral.submitted", info("referrals.referral.submitted"), crn=None
    )

    assert event.crn is None


# --------------------------------------------------------------------------- addresses

CONTACTS = Contacts(
    practitioner_email="alex.officer@probation.example",
    provider_mailboxes={"NACRO": "referrals@nacro.example", "IXION": "not an address"},
    housing_teams={"E08000029": "housing.options@solihull.example"},
)


@pytest.mark.parametrize(
    ("recipient", "address"),
    [
        (Recipient(PRACTITIONER, "r"), "alex.officer@probation.example"),
        (Recipient(PROVIDER, "NACRO"), "referrals@nacro.example"),
        (Recipient(HOUSING, "E08000029"), "housing.options@solihull.example"),
    ],
)
def test_addresses_resolve_from_contacts(recipient, address):
    assert resolve_address(recipient, CONTACTS) == address


@pytest.mark.parametrize(
    ("recipient", "contacts", "message"),
    [
        (Recipient(PRACTITIONER, "r"), Contacts(), "the practitioner of the referral"),
        (Recipient(PROVIDER, "MAXIMUS"), CONTACTS, "provider MAXIMUS"),
        (Recipient(PROVIDER, None), CONTACTS, "not known"),
        (Recipient(PROVIDER, "IXION"), CONTACTS, "not valid"),
        (Recipient(HOUSING, "E08000025"), CONTACTS, "area E08000025"),
        (Recipient(HOUSING, None), CONTACTS, "housing team"),
        (Recipient(RecipientRole.SUBSCRIBER, "s"), CONTACTS, "not reached by email"),
        (
            Recipient(PRACTITIONER, "r"),
            Contacts(practitioner_email="a@b.example\r\nBcc: x@y.example"),
            "not valid",
        ),
    ],
)
def test_unresolvable_recipients_fail_with_the_reason(recipient, contacts, message):
    with pytest.raises(RecipientUnresolvable) as caught:
        resolve_address(recipient, contacts)

    assert message in caught.value.detail


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("alex.officer@probation.example", True),
        ("a+tag@x.gov.uk", True),
        ("no-at-sign.example", False),
        ("two@@ats.example", False),
        ("space in@x.example", False),
        ("a@nodot", False),
        ("a@b.example\n", False),
        ("x" * 250 + "@b.example", False),
    ],
)
def test_email_address_check(value, valid):
    assert is_email_address(value) is valid


# --------------------------------------------------------------------------- events out


def test_duty_to_refer_delivered_publishes_duty_to_refer_sent(make_event, info, ids):
    event = make_event("referrals.referral.submitted", info("referrals.referral.submitted"))
    (intent,) = decide_notifications(event)

    (sent,) = events_after_delivery(intent, event)

    assert sent.event_type == EventType.DUTY_TO_REFER_SENT == "notifications.duty-to-refer.sent"
    assert dict(sent.additional_information) == {
        "referralId": str(ids.referral),
        "needId": str(ids.need),
        "area": "E08000029",
    }
    assert sent.crn == "X123456"
    assert events_after_delivery(intent, event)[0].id == sent.id  # the same id on a redo


@pytest.mark.parametrize(
    "event_type",
    [
        "providers.referral.allocated",
        "providers.referral.unallocated",
        "providers.referral.declined",
        "providers.referral.deadline-missed",
    ],
)
def test_other_notifications_publish_nothing(make_event, info, event_type):
    event = make_event(event_type, info(event_type))

    for intent in decide_notifications(event):
        assert events_after_delivery(intent, event) == ()


@pytest.mark.parametrize(
    ("event_type", "kind_index"),
    [
        ("providers.referral.allocated", 0),
        ("providers.referral.allocated", 1),
        ("referrals.referral.submitted", 0),
    ],
)
def test_a_final_failure_publishes_delivery_failed_without_the_error_text(
    make_event, info, ids, event_type, kind_index
):
    event = make_event(event_type, info(event_type))
    intent = decide_notifications(event)[kind_index]
    notification_id = uuid.uuid4()

    (failed,) = events_after_final_failure(
        intent, event, notification_id=notification_id, attempts=10
    )

    assert failed.event_type == "notifications.delivery.failed"
    assert dict(failed.additional_information) == {
        "notificationId": str(notification_id),
        "kind": intent.kind.value,
        "channel": "email",
        "recipientRole": intent.recipient.role.value,
        "recipientKey": intent.recipient.key,
        "referralId": str(ids.referral),
        "sourceEventId": str(ids.event),
        "sourceEventType": event_type,
        "attempts": 10,
    }
    again = events_after_final_failure(intent, event, notification_id=notification_id, attempts=10)
    assert again[0].id == failed.id
    assert failed.id not in {e.id for e in events_after_delivery(intent, event)}
