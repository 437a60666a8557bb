"""A submission (what probation sends), the rules it must keep, and the referral it makes.

Rules come from the project's DOMAIN.md and CONTRACT.md;
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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from pathways_shared.clock import age_on, in_utc_range, london_day
from pathways_shared.errors import FieldError, PathwaysError
from pathways_shared.event_payloads import ReferralSubmitted, SubmittedNeed
from pathways_shared.vocabulary import (
    AREAS,
    CRN_PATTERN,
    NOMS_PATTERN,
    PNC_PATTERN,
    Complexity,
    NeedStatus,
    Pathway,
    SupervisionStatus,
    is_email_address,
)
from referrals.domain.events import Decision, DomainEvent
from referrals.domain.referral import (
    Consent,
    HistoryEntry,
    Need,
    NeedFlag,
    Person,
    Practitioner,
    Referral,
    Risk,
    Supervision,
    is_blank,
    require_aware,
)

MINIMUM_AGE = 18
MAXIMUM_PLAUSIBLE_AGE = 120
MIN_NEEDS = 1
MAX_NEEDS = 7
CONSENT_CLOCK_SKEW = timedelta(minutes=5)
MAPPA_LEVELS = frozenset({1, 2, 3})


class InvalidSubmission(PathwaysError):
    status = 422
    code = "invalid-referral"
    title = "The referral is not valid"


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
    if is_blank(person.given_name):
        errors.append(FieldError("person.given_name", "must not be blank"))
    if is_blank(person.family_name):
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

    if person.needs_interpreter and is_blank(person.interpreter_language):
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
    require_aware(now, "now")
    day = london_day(now)
    errors: list[FieldError] = []
    if is_blank(submission.source_reference):
        errors.append(FieldError("source_reference", "must not be blank"))
    if submission.area not in AREAS:
        errors.append(
            FieldError("area", f"must be one of the GSS codes {', '.join(sorted(AREAS))}")
        )
    errors += _person_errors(submission.person, day)
    errors += _supervision_errors(submission.supervision, day)
    if submission.risk.mappa_level is not None and submission.risk.mappa_level not in MAPPA_LEVELS:
        errors.append(FieldError("risk.mappa_level", "must be null, 1, 2 or 3"))
    if is_blank(submission.practitioner.name):
        errors.append(FieldError("practitioner.name", "must not be blank"))
    if not is_email_address(submission.practitioner.email or ""):  # as notifications sends
        errors.append(FieldError("practitioner.email", "must be an email address"))
    if not submission.consent.given:
        errors.append(
            FieldError("consent.given", "must be true: the referral is voluntary engagement")
        )
    recorded_at = submission.consent.recorded_at
    if recorded_at is not None:
        require_aware(recorded_at, "consent.recorded_at")
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
    event = DomainEvent(
        ReferralSubmitted(
            referral_id=referral_id,
            area=submission.area,
            needs=[
                SubmittedNeed(
                    need_id=need.id,
                    pathway=need.pathway,
                    complexity=need.complexity,
                    flags=list(need.flags),
                )
                for need in needs
            ],
            sex=submission.person.sex,
            age_on_submission=age_on(submission.person.date_of_birth, london_day(now)),
            supervision_status=submission.supervision.status,
            rosh=submission.risk.rosh,
            mappa_level=submission.risk.mappa_level,
        ),
        crn=submission.person.crn,
        noms_number=submission.person.noms_number,
        occurred_at=now,
    )
    return Decision(referral=referral, history=history, events=(event,))
