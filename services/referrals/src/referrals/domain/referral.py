"""The referral aggregate: the person, their needs and the referral's status, and the history
entries decisions record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pathways_shared.errors import PathwaysError
from pathways_shared.vocabulary import (
    ENDED_NEED_STATUSES,
    Complexity,
    NeedStatus,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)


class NeedFlag(StrEnum):
    AT_RISK_OF_HOMELESSNESS = "at_risk_of_homelessness"
    PARENTAL_SUBSTANCE_MISUSE = "parental_substance_misuse"
    CHILDREN_IN_HOUSEHOLD = "children_in_household"
    WOMEN_SPECIFIC = "women_specific"


class ReferralStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class UnknownNeed(PathwaysError):
    status = 404
    code = "need-not-found"
    title = "The referral has no such need"


def require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


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
    return referral_status_of([need.status for need in needs])


def referral_status_of(statuses: Sequence[str]) -> ReferralStatus:
    """`referral_status` from the needs' statuses alone (listing reads them off stored rows)."""
    if not statuses:
        raise ValueError("a referral has at least one need")
    if any(status not in ENDED_NEED_STATUSES for status in statuses):
        return ReferralStatus.OPEN
    if NeedStatus.WITHDRAWN in statuses:
        return ReferralStatus.WITHDRAWN
    return ReferralStatus.CLOSED


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    event: str
    need_id: UUID | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
