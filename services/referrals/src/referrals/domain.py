"""The pure domain of referrals: values in, decisions, history and events out.

No database, broker, HTTP, clock or environment here: every function takes `now` (an aware
datetime) and the ids it needs. Rules come from the project's DOMAIN.md and CONTRACT.md;
where a rule is a product decision it says so.

Product decisions made here:
- Age is counted on the submission day in Europe/London; someone born on 29 February turns
  18 on 1 March in a non-leap year (the tuple comparison of month and day gives that).
- `expected_release_date` is required for `custody_pre_release` and must fall on or after the
  submission day (people are referred on their release day); every other status must leave it
  empty (the contract says "forbidden otherwise", so a past date is refused like any other).
- `interpreter_language` is required when `needs_interpreter` is true and must be empty when
  it is false, so the record cannot say two things.
- `consent.recorded_at` may not lie in the future (beyond a few minutes of clock skew).
- Withdrawal with reason `other` needs comments, as decline with `other` does.
- Field paths are dotted and zero-based, as pydantic reports them: `needs.1.pathway` is the
  second need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from pathways_shared.clock import age_on, in_utc_range, london_day
from pathways_shared.errors import FieldError, PathwaysError
from pathways_shared.vocabulary import (
    AREAS,
    CRN_PATTERN,
    ENDED_NEED_STATUSES,
    NOMS_PATTERN,
    PNC_PATTERN,
    Complexity,
    NeedStatus,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
    is_email_address,
)

MINIMUM_AGE = 18
MAXIMUM_PLAUSIBLE_AGE = 120
MIN_NEEDS = 1
MAX_NEEDS = 7
CONSENT_CLOCK_SKEW = timedelta(minutes=5)
MAPPA_LEVELS = frozenset({1, 2, 3})



class NeedFlag(StrEnum):
    AT_RISK_OF_HOMELESSNESS = "at_risk_of_homelessness"
    PARENTAL_SUBSTANCE_MISUSE = "parental_substance_misuse"
    CHILDREN_IN_HOUSEHOLD = "children_in_household"
    WOMEN_SPECIFIC = "women_specific"


class ReferralStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


# --------------------------------------------------------------------------- errors


class InvalidSubmission(PathwaysError):
    status = 422
    code = "invalid-referral"
    title = "The referral is not valid"


class InvalidWithdrawal(PathwaysError):
    status = 422
    code = "invalid-withdrawal"
    title = "The withdrawal is not valid"


class ReferralAlreadyWithdrawn(PathwaysError):
    status = 409
    code = "referral-already-withdrawn"
    title = "The referral is already withdrawn"


class ReferralClosed(PathwaysError):
    status = 409
    code = "referral-closed"
    title = "The referral is closed"


class UnknownNeed(PathwaysError):
    status = 404
    code = "need-not-found"
    title = "The referral has no such need"


# --------------------------------------------------------------------------- time


def _require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


# --------------------------------------------------------------------------- submission


@dataclass(frozen=True)
class Person:
    crn: str
    given_name: str
    family_name: str
    date_of_birth: date
    sex: Sex
    noms_number: str | None = None
    pnc_number: str | None = None
    needs_interpreter: bool = False
    interpreter_language: str | None = None


@dataclass(frozen=True)
class Supervision:
    status: SupervisionStatus
    expected_release_date: date | None = None


@dataclass(frozen=True)
class Risk:
    rosh: Rosh
    mappa_level: int | None = None


@dataclass(frozen=True)
class Practitioner:
    name: str
    email: str
    team: str | None = None


@dataclass(frozen=True)
class Consent:
    given: bool
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class NeedRequest:
    pathway: Pathway
    complexity: Complexity
    details: str | None = None
    flags: tuple[NeedFlag, ...] = ()


@dataclass(frozen=True)
class Submission:
    source_reference: str
    area: str
    person: Person
    supervision: Supervision
    risk: Risk
    practitioner: Practitioner
    consent: Consent
    needs: tuple[NeedRequest, ...]


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _person_errors(person: Person, submission_day: date) -> list[FieldError]:
    errors: list[FieldError] = []
    if not CRN_PATTERN.fullmatch(person.crn or ""):
        errors.append(FieldError("person.crn", "must be one letter and six digits, e.g. X123456"))
    if person.noms_number is not None and not NOMS_PATTERN.fullmatch(person.noms_number):
        errors.append(
            FieldError(
                "person.noms_number",
                "must be a letter, four digits and two letters, e.g. A1234BC",
            )
        )
    if person.pnc_number is not None and not PNC_PATTERN.fullmatch(person.pnc_number):
        errors.append(FieldError("person.pnc_number", "must be YYYY/NNNNNNNL, e.g. 2010/1234567A"))
    if _blank(person.given_name):
        errors.append(FieldError("person.given_name", "must not be blank"))
    if _blank(person.family_name):
        errors.append(FieldError("person.family_name", "must not be blank"))

    if person.date_of_birth > submission_day:
        errors.append(FieldError("person.date_of_birth", "must not be in the future"))
    else:
        age = age_on(person.date_of_birth, submission_day)
        if age < MINIMUM_AGE:
            errors.append(
                FieldError(
                    "person.date_of_birth",
                    f"the person is {age} on {submission_day.isoformat()}; people under "
                    f"{MINIMUM_AGE} are referred to the Youth Justice Service",
                )
            )
        elif age > MAXIMUM_PLAUSIBLE_AGE:
            errors.append(
                FieldError(
                    "person.date_of_birth",
                    f"gives an age of {age}, which is not plausible",
                )
            )

    if person.needs_interpreter and _blank(person.interpreter_language):
        errors.append(
            FieldError("person.interpreter_language", "is required when needs_interpreter is true")
        )
    if not person.needs_interpreter and person.interpreter_language is not None:
        errors.append(
            FieldError(
                "person.interpreter_language", "must be empty when needs_interpreter is false"
            )
        )
    return errors


def _supervision_errors(supervision: Supervision, submission_day: date) -> list[FieldError]:
    path = "supervision.expected_release_date"
    release = supervision.expected_release_date
    if supervision.status is SupervisionStatus.CUSTODY_PRE_RELEASE:
        if release is None:
            return [FieldError(path, "is required when the status is custody_pre_release")]
        if release < submission_day:
            return [
                FieldError(
                    path,
                    f"must not be before the submission day ({submission_day.isoformat()})",
                )
            ]
        return []
    if release is not None:
        return [FieldError(path, "must be empty unless the status is custody_pre_release")]
    return []


def _needs_errors(needs: tuple[NeedRequest, ...]) -> list[FieldError]:
    if not MIN_NEEDS <= len(needs) <= MAX_NEEDS:
        return [
            FieldError("needs", f"must hold {MIN_NEEDS} to {MAX_NEEDS} needs, not {len(needs)}")
        ]
    errors: list[FieldError] = []
    first_index: dict[Pathway, int] = {}
    for index, need in enumerate(needs):
        if need.pathway in first_index:
            errors.append(
                FieldError(
                    f"needs.{index}.pathway",
                    f"duplicate pathway {need.pathway.value}: already needs.{first_index[need.pathway]}",
                )
            )
        else:
            first_index[need.pathway] = index
        if len(set(need.flags)) != len(need.flags):
            errors.append(FieldError(f"needs.{index}.flags", "must not repeat a flag"))
    return errors


def submission_errors(submission: Submission, now: datetime) -> list[FieldError]:
    """Every rule the submission breaks beyond field types, in body order."""
    _require_aware(now, "now")
    day = london_day(now)
    errors: list[FieldError] = []
    if _blank(submission.source_reference):
        errors.append(FieldError("source_reference", "must not be blank"))
    if submission.area not in AREAS:
        errors.append(
            FieldError("area", f"must be one of the GSS codes {', '.join(sorted(AREAS))}")
        )
    errors += _person_errors(submission.person, day)
    errors += _supervision_errors(submission.supervision, day)
    if submission.risk.mappa_level is not None and submission.risk.mappa_level not in MAPPA_LEVELS:
        errors.append(FieldError("risk.mappa_level", "must be null, 1, 2 or 3"))
    if _blank(submission.practitioner.name):
        errors.append(FieldError("practitioner.name", "must not be blank"))
    if not is_email_address(submission.practitioner.email or ""):  # as notifications sends
        errors.append(FieldError("practitioner.email", "must be an email address"))
    if not submission.consent.given:
        errors.append(
            FieldError("consent.given", "must be true: the referral is voluntary engagement")
        )
    recorded_at = submission.consent.recorded_at
    if recorded_at is not None:
        _require_aware(recorded_at, "consent.recorded_at")
        if not in_utc_range(recorded_at):  # 0001-01-01T00:00+05:00 is before year 1 in UTC
            errors.append(FieldError("consent.recorded_at", "is out of range"))
        elif recorded_at > now + CONSENT_CLOCK_SKEW:
            errors.append(FieldError("consent.recorded_at", "must not be in the future"))
    errors += _needs_errors(submission.needs)
    return errors


def validate_submission(submission: Submission, now: datetime) -> None:
    errors = submission_errors(submission, now)
    if errors:
        raise InvalidSubmission(
            f"The referral breaks {len(errors)} rule(s); see errors.", errors=errors
        )


# --------------------------------------------------------------------------- aggregate


@dataclass(frozen=True)
class Need:
    id: UUID
    pathway: Pathway
    complexity: Complexity
    flags: tuple[NeedFlag, ...]
    status: NeedStatus
    updated_at: datetime
    details: str | None = None
    service_code: str | None = None
    provider_code: str | None = None
    programme: str | None = None
    provider_referral_id: UUID | None = None
    status_reason: str | None = None
    allocated_at: datetime | None = None
    acknowledge_by: datetime | None = None
    respond_by: datetime | None = None
    # The occurredAt of the latest provider event applied; older ones for other provider
    # referrals are stale.
    last_event_at: datetime | None = None
    # Deadlines already reported missed for the current provider referral.
    missed_deadlines: frozenset[str] = frozenset()

    @property
    def ended(self) -> bool:
        return self.status in ENDED_NEED_STATUSES


@dataclass(frozen=True)
class Withdrawal:
    reason_code: WithdrawalReason
    comments: str | None
    withdrawn_at: datetime
    withdrawn_by: str


@dataclass(frozen=True)
class Referral:
    id: UUID
    source_reference: str
    area: str
    submitted_at: datetime
    submitted_by: str
    person: Person
    supervision: Supervision
    risk: Risk
    practitioner: Practitioner
    consent: Consent
    needs: tuple[Need, ...]
    withdrawal: Withdrawal | None = None

    @property
    def status(self) -> ReferralStatus:
        return referral_status(self.needs)

    def need(self, need_id: UUID) -> Need:
        for need in self.needs:
            if need.id == need_id:
                return need
        raise UnknownNeed(f"Referral {self.id} has no need {need_id}.")


def referral_status(needs: Iterable[Need]) -> ReferralStatus:
    """Open while any need has not ended; then withdrawn if probation withdrew any, else closed.

    A need only ends `withdrawn` through withdrawal of the referral, which ends every need
    left open, so "all ended and one withdrawn" is exactly "withdrawn".
    """
    statuses = [need.status for need in needs]
    if not statuses:
        raise ValueError("a referral has at least one need")
    if any(status not in ENDED_NEED_STATUSES for status in statuses):
        return ReferralStatus.OPEN
    if NeedStatus.WITHDRAWN in statuses:
        return ReferralStatus.WITHDRAWN
    return ReferralStatus.CLOSED


# --------------------------------------------------------------------------- history, events


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    event: str
    need_id: UUID | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmittedNeed:
    need_id: UUID
    pathway: Pathway
    complexity: Complexity
    flags: tuple[NeedFlag, ...]


@dataclass(frozen=True)
class ReferralSubmitted:
    """Routing facts only: identifiers, never names, dates of birth or contact details."""

    event_type = "referrals.referral.submitted"
    description = "A referral was submitted by probation"

    referral_id: UUID
    crn: str
    noms_number: str | None
    area: str
    needs: tuple[SubmittedNeed, ...]
    sex: Sex
    age_on_submission: int
    supervision_status: SupervisionStatus
    rosh: Rosh
    mappa_level: int | None
    occurred_at: datetime

    def person_identifiers(self) -> list[dict[str, str]]:
        identifiers = [{"type": "CRN", "value": self.crn}]
        if self.noms_number:
            identifiers.append({"type": "NOMS", "value": self.noms_number})
        return identifiers

    def additional_information(self) -> dict[str, Any]:
        return {
            "referralId": str(self.referral_id),
            "area": self.area,
            "needs": [
                {
                    "needId": str(need.need_id),
                    "pathway": need.pathway.value,
                    "complexity": need.complexity.value,
                    "flags": [flag.value for flag in need.flags],
                }
                for need in self.needs
            ],
            "sex": self.sex.value,
            "ageOnSubmission": self.age_on_submission,
            "supervisionStatus": self.supervision_status.value,
            "rosh": self.rosh.value,
            "mappaLevel": self.mappa_level,
        }


@dataclass(frozen=True)
class ReferralWithdrawn:
    event_type = "referrals.referral.withdrawn"
    description = "A referral was withdrawn by probation"

    referral_id: UUID
    crn: str
    noms_number: str | None
    need_ids: tuple[UUID, ...]
    reason_code: WithdrawalReason
    occurred_at: datetime

    def person_identifiers(self) -> list[dict[str, str]]:
        identifiers = [{"type": "CRN", "value": self.crn}]
        if self.noms_number:
            identifiers.append({"type": "NOMS", "value": self.noms_number})
        return identifiers

    def additional_information(self) -> dict[str, Any]:
        return {
            "referralId": str(self.referral_id),
            "needIds": [str(need_id) for need_id in self.need_ids],
            "reasonCode": self.reason_code.value,
        }


DomainEvent = ReferralSubmitted | ReferralWithdrawn


@dataclass(frozen=True)
class Decision:
    """What a use case decided: the new referral, what to record and what to publish."""

    referral: Referral
    history: tuple[HistoryEntry, ...]
    events: tuple[DomainEvent, ...] = ()


# --------------------------------------------------------------------------- use cases


def submit_referral(
    submission: Submission,
    *,
    actor: str,
    now: datetime,
    new_id: Callable[[], UUID],
) -> Decision:
    """Validate, then create the referral with every need `submitted`, awaiting routing."""
    validate_submission(submission, now)
    referral_id = new_id()
    needs = tuple(
        Need(
            id=new_id(),
            pathway=request.pathway,
            complexity=request.complexity,
            flags=tuple(sorted(set(request.flags))),
            details=request.details,
            status=NeedStatus.SUBMITTED,
            updated_at=now,
        )
        for request in submission.needs
    )
    referral = Referral(
        id=referral_id,
        source_reference=submission.source_reference,
        area=submission.area,
        submitted_at=now,
        submitted_by=actor,
        person=submission.person,
        supervision=submission.supervision,
        risk=submission.risk,
        practitioner=submission.practitioner,
        consent=submission.consent,
        needs=needs,
    )
    history = (
        HistoryEntry(
            at=now,
            actor=actor,
            event="submitted",
            detail={"area": submission.area, "needs": len(needs)},
        ),
        *(
            HistoryEntry(
                at=now,
                actor=actor,
                event="need-submitted",
                need_id=need.id,
                detail={"pathway": need.pathway.value, "complexity": need.complexity.value},
            )
            for need in needs
        ),
    )
    event = ReferralSubmitted(
        referral_id=referral_id,
        crn=submission.person.crn,
        noms_number=submission.person.noms_number,
        area=submission.area,
        needs=tuple(
            SubmittedNeed(need.id, need.pathway, need.complexity, need.flags) for need in needs
        ),
        sex=submission.person.sex,
        age_on_submission=age_on(submission.person.date_of_birth, london_day(now)),
        supervision_status=submission.supervision.status,
        rosh=submission.risk.rosh,
        mappa_level=submission.risk.mappa_level,
        occurred_at=now,
    )
    return Decision(referral=referral, history=history, events=(event,))


def withdraw_referral(
    referral: Referral,
    *,
    reason_code: WithdrawalReason,
    comments: str | None,
    actor: str,
    now: datetime,
) -> Decision:
    """Withdraw every need not yet ended. 409 if already withdrawn or closed."""
    _require_aware(now, "now")
    status = referral.status
    if status is ReferralStatus.WITHDRAWN:
        raise ReferralAlreadyWithdrawn(f"Referral {referral.id} is already withdrawn.")
    if status is ReferralStatus.CLOSED:
        raise ReferralClosed(
            f"Referral {referral.id} is closed: every need has ended, nothing to withdraw."
        )
    if reason_code is WithdrawalReason.OTHER and _blank(comments):
        raise InvalidWithdrawal(
            "Comments are required when the reason is other.",
            errors=[FieldError("comments", "is required when reason_code is other")],
        )

    withdrawn_ids: list[UUID] = []
    needs: list[Need] = []
    history: list[HistoryEntry] = [
        HistoryEntry(
            at=now,
            actor=actor,
            event="withdrawn",
            detail={"reason_code": reason_code.value, "comments": comments},
        )
    ]
    for need in referral.needs:
        if need.ended:
            needs.append(need)
            continue
        withdrawn_ids.append(need.id)
        needs.append(
            replace(
                need,
                status=NeedStatus.WITHDRAWN,
                status_reason=reason_code.value,
                updated_at=now,
            )
        )
        history.append(
            HistoryEntry(
                at=now,
                actor=actor,
                event="need-withdrawn",
                need_id=need.id,
                detail={"from": need.status.value, "reason_code": reason_code.value},
            )
        )
    withdrawn = replace(
        referral,
        needs=tuple(needs),
        withdrawal=Withdrawal(
            reason_code=reason_code, comments=comments, withdrawn_at=now, withdrawn_by=actor
        ),
    )
    event = ReferralWithdrawn(
        referral_id=referral.id,
        crn=referral.person.crn,
        noms_number=referral.person.noms_number,
        need_ids=tuple(withdrawn_ids),
        reason_code=reason_code,
        occurred_at=now,
    )
    return Decision(referral=withdrawn, history=tuple(history), events=(event,))
