"""What a decision publishes, and the decision itself (the new referral, its history and its
events). An event's payload is the shared model (`pathways_shared.event_payloads`), the one
definition of the event: routing facts only, never names, dates of birth or contact details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pathways_shared.event_payloads import ReferralSubmitted, ReferralWithdrawn
from referrals.domain.referral import HistoryEntry, Referral


@dataclass(frozen=True)
class DomainEvent:
    """An event to publish: its payload and what its envelope says (who, when)."""

    payload: ReferralSubmitted | ReferralWithdrawn
    crn: str
    noms_number: str | None
    occurred_at: datetime

    @property
    def event_type(self) -> str:
        return self.payload.event_type

    @property
    def referral_id(self) -> UUID:
        return self.payload.referral_id

    def person_identifiers(self) -> list[dict[str, str]]:
        identifiers = [{"type": "CRN", "value": self.crn}]
        if self.noms_number:
            identifiers.append({"type": "NOMS", "value": self.noms_number})
        return identifiers

    def additional_information(self) -> dict[str, Any]:
        return self.payload.additional_information()


@dataclass(frozen=True)
class Decision:
    """What a use case decided: the new referral, what to record and what to publish."""

    referral: Referral
    history: tuple[HistoryEntry, ...]
    events: tuple[DomainEvent, ...] = ()
