"""The email of each notification kind: what it says, and what it must not say."""

from __future__ import annotations

import re
import string
import uuid
from datetime import UTC, datetime

import pytest

from notifications.domain.intents import (
    NotificationIntent,
    NotificationKind,
    Recipient,
    RecipientRole,
    decide_notifications,
)
from notifications.domain.templates import (
    DECLINE_REASONS,
    FOOTER,
    TEMPLATES,
    WITHDRAWAL_REASONS,
    RenderContext,
    Template,
    format_time,
    one_line,
    render_email,
)
from notifications.errors import TemplateError

PERSON_NAME = "Sam Example"


@pytest.fixture
def context(ids):
    return RenderContext(
        crn="X123456",
        area="E08000029",
        practitioner_name="Alex Officer",
        practitioner_team="Solihull OMU",
        practitioner_email="alex.officer@probation.example",
        person_name=PERSON_NAME,
        need_pathways={ids.need: "accommodation", ids.other_need: "drugs_alcohol"},
    )


@pytest.fixture
def rendered(make_event, info, ids, context):
    """Every email an event type gives, by kind."""

    def render(event_type, **overrides):
        event = make_event(event_type, info(event_type, **overrides))
        intents = decide_notifications(
            event,
            allocations={ids.need: "NACRO", ids.other_need: "NACRO", ids.third_need: "NACRO"},
        )
        return {i.kind: render_email(i, event, context) for i in intents}

    return render


# Every kind: the lines a reader needs to see. Times are Europe/London.
EXPECTED = [
    (
        "providers.referral.allocated",
        NotificationKind.REFERRAL_ALLOCATED,
        "Pathways: Accommodation need allocated to CRS-ACC-M",
        [
            "Hello Alex Officer,",
            "The Accommodation need of your referral for X123456 has been allocated.",
            "Service:              CRS-ACC-M (Nacro, CRS)",
            "Acknowledge by:       Thursday 26 November 2026 at 23:59 (UK time)",
            "Accept or decline by: Tuesday 1 December 2026 at 23:59 (UK time)",
            (
                "Pathways reference: referral 11111111-1111-4111-8111-111111111111, "
                "need 22222222-2222-4222-8222-222222222222"
            ),
        ],
    ),
    (
        "providers.referral.allocated",
        NotificationKind.REFERRAL_RECEIVED,
        "Pathways: new referral for CRS-ACC-M (Accommodation)",
        [
            "To the Nacro referrals team,",
            "Service:              CRS-ACC-M (CRS)",
            "Pathway:              Accommodation",
            "Provider referral:    55555555-5555-4555-8555-555555555555",
            "Acknowledge by:       Thursday 26 November 2026 at 23:59 (UK time)",
            "Accept or decline by: Tuesday 1 December 2026 at 23:59 (UK time)",
            "Open it in your Pathways inbox",
        ],
    ),
    (
        "providers.referral.unallocated",
        NotificationKind.REFERRAL_UNALLOCATED,
        "Pathways: no service found for the Accommodation need",
        [
            "Hello Alex Officer,",
            (
                "No commissioned service could take the Accommodation need of your referral "
                "for X123456."
            ),
            (
                "Reason:               no eligible service: CRS-FBD-M requires complexity medium "
                "or high"
            ),
        ],
    ),
    (
        "providers.referral.declined",
        NotificationKind.REFERRAL_DECLINED,
        "Pathways: Accommodation need declined by CRS-ACC-M",
        [
            "The Accommodation need of your referral for X123456 was declined by Nacro (CRS-ACC-M).",
            "Reason:               the service has no capacity",
            "next eligible service",
        ],
    ),
    (
        "providers.referral.deadline-missed",
        NotificationKind.DEADLINE_MISSED,
        "Pathways: Accommodation referral not acknowledged in time",
        [
            "The provider has not acknowledged the Accommodation need of your referral for X123456",
            "Service:              CRS-ACC-M (Nacro)",
            "Was due by:           Thursday 26 November 2026 at 23:59 (UK time)",
            "The provider has been sent a reminder.",
        ],
    ),
    (
        "providers.referral.deadline-missed",
        NotificationKind.DEADLINE_REMINDER,
        "Pathways reminder: referral 55555555-5555-4555-8555-555555555555 not yet acknowledged",
        [
            "To the Nacro referrals team,",
            "has not been acknowledged within the service level",
            "Provider referral:    55555555-5555-4555-8555-555555555555",
            "Was due by:           Thursday 26 November 2026 at 23:59 (UK time)",
        ],
    ),
    (
        "referrals.referral.withdrawn",
        NotificationKind.REFERRAL_WITHDRAWN,
        (
            "Pathways: referral withdrawn (Accommodation, Drugs and alcohol, need "
            "44444444-4444-4444-8444-444444444444)"
        ),
        [
            "To the Nacro referrals team,",
            "Probation has withdrawn a referral allocated to you. Please stop work on it.",
            "Reason:               the person has moved out of the area",
            "Pathways reference: referral 11111111-1111-4111-8111-111111111111",
        ],
    ),
    (
        "referrals.referral.submitted",
        NotificationKind.DUTY_TO_REFER,
        "Duty to Refer: person at risk of homelessness in Solihull",
        [
            "To the housing options team, Solihull (E08000029),",
            "section 213B of the Housing Act 1996",
            "Homelessness Reduction Act 2017",
            "They have consented to this",
            "Name:                 Sam Example",
            "CRN:                  X123456",
            "  Alex Officer, Solihull OMU",
            "  alex.officer@probation.example",
            "Please contact the practitioner to arrange an assessment.",
        ],
    ),
]


@pytest.mark.parametrize(
    ("event_type", "kind", "subject", "lines"),
    EXPECTED,
    ids=[row[1].value for row in EXPECTED],
)
def test_each_kind_says_what_its_reader_needs(rendered, event_type, kind, subject, lines):
    email = rendered(event_type)[kind]

    assert email.subject == subject
    for line in lines:
        assert line in email.body, f"{line!r} not in:\n{email.body}"
    assert email.body.endswith(FOOTER + "\n")


def test_every_email_kind_has_a_template_and_is_covered():
    email_kinds = {k for k in NotificationKind if k is not NotificationKind.WEBHOOK}

    assert set(TEMPLATES) == email_kinds
    assert {row[1] for row in EXPECTED} == email_kinds


@pytest.mark.parametrize(("kind", "template"), list(TEMPLATES.items()))
def test_templates_use_only_fields_the_renderer_provides(kind, template):
    known = {
        "practitioner", "crn", "referral_id", "need_id", "pathway", "service", "provider",
        "programme", "provider_referral_id", "acknowledge_by", "respond_by", "reason",
        "action", "due_at", "pathways", "area", "area_name", "person_name",
        "practitioner_team", "practitioner_email",
    }  # fmt: skip
    used = {
        name
        for text in (template.subject, template.body)
        for _, name, _, _ in string.Formatter().parse(text)
        if name
    }

    assert used <= known


# --------------------------------------------------------------------------- data minimisation

PROVIDER_KINDS = [
    NotificationKind.REFERRAL_RECEIVED,
    NotificationKind.DEADLINE_REMINDER,
    NotificationKind.REFERRAL_WITHDRAWN,
]
PRACTITIONER_KINDS = [
    NotificationKind.REFERRAL_ALLOCATED,
    NotificationKind.REFERRAL_UNALLOCATED,
    NotificationKind.REFERRAL_DECLINED,
    NotificationKind.DEADLINE_MISSED,
]


@pytest.mark.parametrize(("event_type", "kind", "subject", "lines"), EXPECTED)
def test_only_the_duty_to_refer_notice_names_the_person(rendered, event_type, kind, subject, lines):
    email = rendered(event_type)[kind]

    named = PERSON_NAME in email.body or PERSON_NAME in email.subject
    assert named is (kind is NotificationKind.DUTY_TO_REFER)


@pytest.mark.parametrize(("event_type", "kind", "subject", "lines"), EXPECTED)
def test_provider_mailboxes_get_no_crn_and_no_practitioner(
    rendered, event_type, kind, subject, lines
):
    email = rendered(event_type)[kind]
    text = email.subject + email.body

    if kind in PROVIDER_KINDS:
        assert "X123456" not in text
        assert "Alex Officer" not in text
        assert "alex.officer@probation.example" not in text
    else:
        assert "X123456" in email.body


@pytest.mark.parametrize(("event_type", "kind", "subject", "lines"), EXPECTED)
def test_no_subject_carries_the_crn_or_a_line_break(rendered, event_type, kind, subject, lines):
    email = rendered(event_type)[kind]

    assert "X123456" not in email.subject
    assert "\n" not in email.subject and "\r" not in email.subject


def test_free_text_cannot_break_a_line_or_grow_without_bound(rendered):
    reason = "line one\r\nBcc: someone@else.example\n" + "x" * 1000

    email = rendered("providers.referral.unallocated", reason=reason)[
        NotificationKind.REFERRAL_UNALLOCATED
    ]

    (line,) = [ln for ln in email.body.splitlines() if ln.startswith("Reason:")]
    assert "line one Bcc: someone@else.example x" in line
    assert len(line) < 350
    assert line.endswith("…")


def test_a_provider_s_decline_comments_are_never_copied(rendered):
    email = rendered(
        "providers.referral.declined", reasonCode="other", comments="He told us about his family"
    )[NotificationKind.REFERRAL_DECLINED]

    assert "family" not in email.body
    assert "another reason (the provider's comments are in Pathways)" in email.body


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("code", "text"),
    [(code, text) for code, text in DECLINE_REASONS.items()] + [("new_code", "new_code")],
)
def test_decline_reasons_in_words(rendered, code, text):
    email = rendered("providers.referral.declined", reasonCode=code)[
        NotificationKind.REFERRAL_DECLINED
    ]

    assert f"Reason:               {text}\n" in email.body


@pytest.mark.parametrize(
    ("code", "text"),
    [(code, text) for code, text in WITHDRAWAL_REASONS.items()] + [("new_code", "new_code")],
)
def test_withdrawal_reasons_in_words(rendered, code, text):
    email = rendered("referrals.referral.withdrawn", reasonCode=code)[
        NotificationKind.REFERRAL_WITHDRAWN
    ]

    assert f"Reason:               {text}\n" in email.body


@pytest.mark.parametrize(
    ("deadline", "subject_end", "body_line"),
    [
        ("acknowledge", "not acknowledged in time", "has not acknowledged the"),
        ("respond", "not accepted or declined in time", "has not accepted or declined the"),
    ],
)
def test_deadline_missed_says_which_deadline(rendered, deadline, subject_end, body_line):
    email = rendered("providers.referral.deadline-missed", deadline=deadline)[
        NotificationKind.DEADLINE_MISSED
    ]

    assert email.subject.endswith(subject_end)
    assert body_line in email.body


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC), "Thursday 26 November 2026 at 23:59 (UK time)"),
        # British Summer Time: 22:59:59Z is 23:59 in London
        (datetime(2026, 7, 1, 22, 59, 59, tzinfo=UTC), "Wednesday 1 July 2026 at 23:59 (UK time)"),
        (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "Sunday 29 March 2026 at 00:30 (UK time)"),
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "Sunday 29 March 2026 at 02:30 (UK time)"),
        (None, "not given"),
    ],
)  # fmt: skip
def test_times_are_shown_in_london(moment, text):
    assert format_time(moment) == text


def test_missing_deadlines_say_not_given(rendered, drop):
    email = rendered("providers.referral.allocated", acknowledgeBy=drop, respondBy=None)[
        NotificationKind.REFERRAL_ALLOCATED
    ]

    assert "Acknowledge by:       not given" in email.body
    assert "Accept or decline by: not given" in email.body


def test_the_pathway_on_the_event_is_used_when_the_referral_is_not_known(make_event, info):
    event = make_event(
        "providers.referral.allocated", info("providers.referral.allocated", pathway="health")
    )
    intent = decide_notifications(event)[0]

    email = render_email(intent, event, RenderContext())

    assert (
        email.subject
        == "Pathways: Health (mental and physical, neuro-diversity) need allocated to CRS-ACC-M"
    )


def test_declined_by_an_unnamed_provider_reads_well(make_event, info, drop, context):
    event = make_event(
        "providers.referral.declined", info("providers.referral.declined", providerCode=drop)
    )
    intent = decide_notifications(event)[0]

    email = render_email(intent, event, context)

    assert "was declined by the provider (CRS-ACC-M)." in email.body


def test_unknown_need_and_practitioner_still_read_well(make_event, info):
    event = make_event("providers.referral.allocated", info("providers.referral.allocated"))
    intent = decide_notifications(event)[0]

    email = render_email(intent, event, RenderContext())

    assert email.subject == "Pathways: referred need allocated to CRS-ACC-M"
    assert "Hello colleague," in email.body
    assert "of your referral for the person has been allocated" in email.body


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "not given"),
        ("", "not given"),
        ("  \n ", "not given"),
        ("a\nb\r\nc\td", "a b c d"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ("x" * 301, "x" * 299 + "…"),
    ],
)
def test_one_line(value, text):
    assert one_line(value) == text


# --------------------------------------------------------------------------- refusals


def test_a_webhook_is_not_an_email(make_event, info, ids):
    event = make_event("cohorts.member.selected", {"area": "E08000029"})
    intent = NotificationIntent(
        idempotency_key=uuid.uuid4(),
        event_id=event.id,
        event_type=event.event_type,
        kind=NotificationKind.WEBHOOK,
        recipient=Recipient(RecipientRole.SUBSCRIBER, "s"),
    )

    with pytest.raises(TemplateError):
        render_email(intent, event, RenderContext())


def test_rendering_with_another_event_is_refused(make_event, info):
    event = make_event("providers.referral.allocated", info("providers.referral.allocated"))
    other = make_event(
        "providers.referral.allocated", info("providers.referral.allocated"), event_id=uuid.uuid4()
    )
    intent = decide_notifications(event)[0]

    with pytest.raises(TemplateError):
        render_email(intent, other, RenderContext())


def test_a_kind_rendered_from_the_wrong_event_type_is_refused(make_event, info):
    allocated = make_event("providers.referral.allocated", info("providers.referral.allocated"))
    intent = decide_notifications(allocated)[0]
    declined = make_event("providers.referral.declined", info("providers.referral.declined"))
    mismatched = NotificationIntent(
        idempotency_key=intent.idempotency_key,
        event_id=declined.id,
        event_type=declined.event_type,
        kind=intent.kind,
        recipient=intent.recipient,
    )

    with pytest.raises(TemplateError, match="no email for a referral_allocated"):
        render_email(mismatched, declined, RenderContext())


def test_a_template_naming_an_unknown_value_fails_loudly():
    with pytest.raises(TemplateError, match="'nope'"):
        Template(subject="{nope}", body="").render({})


def test_body_lines_stay_readable():
    for template in TEMPLATES.values():
        for line in template.body.splitlines():
            if not re.search(r"\{\w+\}", line):
                assert len(line) <= 100, line
