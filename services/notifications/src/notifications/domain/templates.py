"""Email templates, one per notification kind: plain text, a subject and a body. Pure.

Each recipient gets what it needs to act and no more:
- the practitioner: the CRN (their own case), the pathway, the service and the reason;
- a provider's referral mailbox: its provider referral id, the service and the deadlines,
  not the person (their details are in the provider inbox, behind its access checks);
- the housing team (Duty to Refer): the person's name and CRN and the practitioner to
  contact, which the statutory referral needs; never the date of birth or risk details.
Free-text comments from other parties are never copied into an email.

Times are shown in Europe/London, as people in England read them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from notifications.domain.intents import (
    AllocatedInfo,
    DeadlineMissedInfo,
    DeclinedInfo,
    InboundEvent,
    NotificationIntent,
    NotificationKind,
    SubmittedInfo,
    UnallocatedInfo,
    WithdrawnInfo,
)
from notifications.errors import TemplateError
from pathways_shared.clock import LONDON
from pathways_shared.vocabulary import AREAS, PATHWAY_NAMES, PROVIDER_NAMES, Pathway

NOT_GIVEN = "not given"
MAX_FREE_TEXT = 300

DECLINE_REASONS: dict[str, str] = {
    "capacity": "the service has no capacity",
    "not_eligible": "the person is not eligible for the service",
    "risk_too_high": "the risk is too high for the service",
    "unable_to_engage": "the service could not engage the person",
    "duplicate": "it duplicates another referral",
    "other": "another reason (the provider's comments are in Pathways)",
}

WITHDRAWAL_REASONS: dict[str, str] = {
    "recalled_to_custody": "the person has been recalled to custody",
    "moved_out_of_area": "the person has moved out of the area",
    "sentence_ended": "the sentence has ended",
    "deceased": "the person has died",
    "no_longer_required": "the service is no longer required",
    "disengaged": "the person has disengaged",
    "duplicate": "it duplicated another referral",
    "other": "another reason",
}

DEADLINE_ACTIONS: dict[str, str] = {
    "acknowledge": "acknowledged",
    "respond": "accepted or declined",
}

FOOTER = (
    "This is an automated message from Pathways. Replies to it are not read.\n"
    "It may contain personal data: keep it secure and delete it when no longer needed."
)


@dataclass(frozen=True)
class EmailContent:
    subject: str
    body: str


@dataclass(frozen=True)
class RenderContext:
    """What the owning services answer about the referral when the email is sent (never
    taken from the bus). Only the Duty to Refer notice uses ``person_name``."""

    crn: str | None = None
    area: str | None = None
    practitioner_name: str | None = None
    practitioner_team: str | None = None
    practitioner_email: str | None = None
    person_name: str | None = None
    need_pathways: Mapping[uuid.UUID, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Template:
    subject: str
    body: str

    def render(self, values: Mapping[str, str]) -> EmailContent:
        try:
            subject = self.subject.format_map(values)
            body = self.body.format_map(values)
        except KeyError as exc:
            raise TemplateError(f"template value {exc.args[0]!r} is missing") from exc
        return EmailContent(subject=subject, body=f"{body.rstrip()}\n\n-- \n{FOOTER}\n")


# --------------------------------------------------------------------------- the templates

TEMPLATES: dict[NotificationKind, Template] = {
    NotificationKind.REFERRAL_ALLOCATED: Template(
        subject="Pathways: {pathway} need allocated to {service}",
        body="""\
Hello {practitioner},

The {pathway} need of your referral for {crn} has been allocated.

Service:              {service} ({provider}, {programme})
Acknowledge by:       {acknowledge_by}
Accept or decline by: {respond_by}

You will be told if the provider declines it or misses a deadline.

Pathways reference: referral {referral_id}, need {need_id}
""",
    ),
    NotificationKind.REFERRAL_RECEIVED: Template(
        subject="Pathways: new referral for {service} ({pathway})",
        body="""\
To the {provider} referrals team,

A new referral has been allocated to you.

Service:              {service} ({programme})
Pathway:              {pathway}
Provider referral:    {provider_referral_id}
Acknowledge by:       {acknowledge_by}
Accept or decline by: {respond_by}

Open it in your Pathways inbox to see the person's details and act on it.
""",
    ),
    NotificationKind.REFERRAL_UNALLOCATED: Template(
        subject="Pathways: no service found for the {pathway} need",
        body="""\
Hello {practitioner},

No commissioned service could take the {pathway} need of your referral for {crn}.

Reason:               {reason}

The need is closed as unallocated. Consider another way to meet it.

Pathways reference: referral {referral_id}, need {need_id}
""",
    ),
    NotificationKind.REFERRAL_DECLINED: Template(
        subject="Pathways: {pathway} need declined by {service}",
        body="""\
Hello {practitioner},

The {pathway} need of your referral for {crn} was declined by {provider} ({service}).

Reason:               {reason}

Pathways will offer the need to the next eligible service, if there is one, and tell you
where it goes.

Pathways reference: referral {referral_id}, need {need_id}
""",
    ),
    NotificationKind.DEADLINE_MISSED: Template(
        subject="Pathways: {pathway} referral not {action} in time",
        body="""\
Hello {practitioner},

The provider has not {action} the {pathway} need of your referral for {crn}
within the service level.

Service:              {service} ({provider})
Was due by:           {due_at}

The provider has been sent a reminder.

Pathways reference: referral {referral_id}, need {need_id}
""",
    ),
    NotificationKind.DEADLINE_REMINDER: Template(
        subject="Pathways reminder: referral {provider_referral_id} not yet {action}",
        body="""\
To the {provider} referrals team,

A referral allocated to you has not been {action} within the service level.

Service:              {service}
Pathway:              {pathway}
Provider referral:    {provider_referral_id}
Was due by:           {due_at}

Please act on it in your Pathways inbox now.
""",
    ),
    NotificationKind.REFERRAL_WITHDRAWN: Template(
        subject="Pathways: referral withdrawn ({pathways})",
        body="""\
To the {provider} referrals team,

Probation has withdrawn a referral allocated to you. Please stop work on it.

Need(s):              {pathways}
Reason:               {reason}

Pathways reference: referral {referral_id}
""",
    ),
    NotificationKind.DUTY_TO_REFER: Template(
        subject="Duty to Refer: person at risk of homelessness in {area_name}",
        body="""\
To the housing options team, {area_name} ({area}),

This is a referral under the duty to refer (section 213B of the Housing Act 1996, inserted
by the Homelessness Reduction Act 2017). The person below, supervised by the Probation
Service, may be homeless or threatened with homelessness. They have consented to this
referral and to their details being shared with you.

Name:                 {person_name}
CRN:                  {crn}

Referring practitioner:
  {practitioner}, {practitioner_team}
  {practitioner_email}

Please contact the practitioner to arrange an assessment.

Pathways reference: referral {referral_id}, need {need_id}
""",
    ),
}


# --------------------------------------------------------------------------- values


def format_time(moment: datetime | None) -> str:
    """``Thursday 26 November 2026 at 23:59 (UK time)``, or "not given"."""
    if moment is None:
        return NOT_GIVEN
    local = moment.astimezone(LONDON)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} (UK time)"


def one_line(value: object | None, limit: int = MAX_FREE_TEXT) -> str:
    """A value fit for a header or a line: no line breaks, bounded, "not given" if empty."""
    if value is None:
        return NOT_GIVEN
    text = " ".join(str(value).split())
    if not text:
        return NOT_GIVEN
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pathway_name(code: str | None) -> str:
    if code is None:
        return "referred"
    try:
        return PATHWAY_NAMES[Pathway(code)]
    except ValueError:
        return one_line(code)


def provider_name(code: str | None) -> str:
    if code is None:
        return "the provider"
    return PROVIDER_NAMES.get(code, one_line(code))


def _common(
    intent: NotificationIntent, event: InboundEvent, context: RenderContext
) -> dict[str, str]:
    need_id = intent.need_ids[0] if intent.need_ids else None
    pathway = context.need_pathways.get(need_id) if need_id else None
    if pathway is None and isinstance(event.info.get("pathway"), str):
        pathway = event.info["pathway"]
    return {
        "practitioner": one_line(context.practitioner_name or "colleague"),
        "crn": one_line(context.crn or "the person"),
        "referral_id": one_line(intent.referral_id),
        "need_id": one_line(need_id),
        "pathway": pathway_name(pathway),
    }


def _allocated(info: AllocatedInfo) -> dict[str, str]:
    return {
        "service": one_line(info.service_code),
        "provider": provider_name(info.provider_code),
        "programme": one_line(info.programme),
        "provider_referral_id": str(info.provider_referral_id),
        "acknowledge_by": format_time(info.acknowledge_by),
        "respond_by": format_time(info.respond_by),
    }


def _values(
    intent: NotificationIntent, event: InboundEvent, context: RenderContext
) -> dict[str, str]:
    values = _common(intent, event, context)
    details = event.details()
    match intent.kind, details:
        case (
            (NotificationKind.REFERRAL_ALLOCATED | NotificationKind.REFERRAL_RECEIVED),
            AllocatedInfo(),
        ):
            values |= _allocated(details)
        case NotificationKind.REFERRAL_UNALLOCATED, UnallocatedInfo():
            values["reason"] = one_line(details.reason)
        case NotificationKind.REFERRAL_DECLINED, DeclinedInfo():
            values |= {
                "service": one_line(details.service_code or "the service"),
                "provider": provider_name(details.provider_code),
                "reason": DECLINE_REASONS.get(details.reason_code, one_line(details.reason_code)),
            }
        case (
            (NotificationKind.DEADLINE_MISSED | NotificationKind.DEADLINE_REMINDER),
            DeadlineMissedInfo(),
        ):
            values |= {
                "service": one_line(details.service_code),
                "provider": provider_name(details.provider_code or intent.recipient.key),
                "provider_referral_id": str(details.provider_referral_id),
                "action": DEADLINE_ACTIONS[details.deadline.value],
                "due_at": format_time(details.due_at),
            }
        case NotificationKind.REFERRAL_WITHDRAWN, WithdrawnInfo():
            values |= {
                "provider": provider_name(intent.recipient.key),
                "pathways": ", ".join(
                    pathway_name(context.need_pathways.get(need))
                    if need in context.need_pathways
                    else f"need {need}"
                    for need in intent.need_ids
                )
                or NOT_GIVEN,
                "reason": WITHDRAWAL_REASONS.get(
                    details.reason_code, one_line(details.reason_code)
                ),
            }
        case NotificationKind.DUTY_TO_REFER, SubmittedInfo():
            area = intent.recipient.key or details.area
            values |= {
                "pathway": PATHWAY_NAMES[Pathway.ACCOMMODATION],
                "area": one_line(area),
                "area_name": AREAS.get(area, one_line(area)),
                "person_name": one_line(context.person_name),
                "practitioner": one_line(context.practitioner_name),
                "practitioner_team": one_line(context.practitioner_team),
                "practitioner_email": one_line(context.practitioner_email),
            }
        case _:
            raise TemplateError(
                f"no email for a {intent.kind.value} notification from {event.event_type}"
            )
    return values


def render_email(
    intent: NotificationIntent, event: InboundEvent, context: RenderContext
) -> EmailContent:
    """The email of an intent, from the event it was decided from and what is known now."""
    if event.id != intent.event_id:
        raise TemplateError("the event is not the one the notification was decided from")
    template = TEMPLATES.get(intent.kind)
    if template is None:
        raise TemplateError(f"{intent.kind.value} notifications are not emails")
    return template.render(_values(intent, event, context))
