"""What a decision publishes: routing facts only, never names, dates of birth or contact
details; and the decision itself (the new referral, its history and its events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pathways_shared.vocabulary import (
    Complexity,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)

from referrals.domain.referral import HistoryEntry, NeedFlag, Referral


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
