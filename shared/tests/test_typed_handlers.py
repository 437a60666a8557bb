"""Handlers receive the shared payload model: validated, unknown fields allowed, a malformed
payload a permanent error (dead-lettered by the consumer)."""

from __future__ import annotations

import uuid

import pytest

from pathways_shared.consumer import PermanentError, RetryLater, typed
from pathways_shared.event_payloads import ReferralSubmitted, ReferralWithdrawn
from pathways_shared.events import make_event

REFERRAL_ID = uuid.uuid4()
NEED_ID = uuid.uuid4()
SUBMITTED = {
    "referralId": str(REFERRAL_ID),
    "area": "E08000029",
    "needs": [{"needId": str(NEED_ID), "pathway": "accommodation", "complexity": "low"}],
    "sex": "female",
    "ageOnSubmission": 30,
    "supervisionStatus": "licence",
    "somethingNew": {"added": "by a later producer"},
}


async def test_the_handler_receives_the_validated_payload_and_unknown_fields_are_kept():
    received = []

    async def on_submitted(session, event, submitted: ReferralSubmitted) -> None:
        received.append(submitted)

    handler = typed(ReferralSubmitted, on_submitted)
    await handler(None, make_event("referrals.referral.submitted", SUBMITTED, crn="X123456"))
    [submitted] = received
    assert submitted.referral_id == REFERRAL_ID and submitted.needs[0].need_id == NEED_ID
    assert submitted.needs[0].flags == []
    assert submitted.model_extra == {"somethingNew": {"added": "by a later producer"}}
    assert handler.__name__ == "on_submitted"


@pytest.mark.parametrize(
    "payload",
    [
        {**SUBMITTED, "referralId": "not-a-uuid"},
        {**SUBMITTED, "needs": []},
        {**SUBMITTED, "ageOnSubmission": -1},
        {key: value for key, value in SUBMITTED.items() if key != "sex"},
    ],
)
async def test_a_malformed_payload_is_a_permanent_error(payload):
    async def never(session, event, submitted) -> None:
        raise AssertionError("a malformed payload reached the handler")

    with pytest.raises(PermanentError, match="referrals.referral.submitted: malformed payload"):
        await typed(ReferralSubmitted, never)(
            None, make_event("referrals.referral.submitted", payload, crn="X123456")
        )


async def test_retry_later_is_not_permanent():
    async def not_yet(session, event, withdrawn: ReferralWithdrawn) -> None:
        raise RetryLater("the submitted referral has not been seen yet")

    event = make_event(
        "referrals.referral.withdrawn",
        {"referralId": str(REFERRAL_ID), "needIds": [str(NEED_ID)], "reasonCode": "duplicate"},
        crn="X123456",
    )
    with pytest.raises(RetryLater) as caught:
        await typed(ReferralWithdrawn, not_yet)(None, event)
    assert not isinstance(caught.value, PermanentError)
