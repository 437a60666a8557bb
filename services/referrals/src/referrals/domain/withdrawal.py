"""Withdrawal by probation: every need not yet ended is withdrawn, with the reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from pathways_shared.errors import FieldError, PathwaysError
from pathways_shared.event_payloads import ReferralWithdrawn
from pathways_shared.vocabulary import NeedStatus, WithdrawalReason
from referrals.domain.events import Decision, DomainEvent
from referrals.domain.referral import (
    HistoryEntry,
    Need,
    Referral,
    ReferralStatus,
    Withdrawal,
    is_blank,
    require_aware,
)


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


def withdraw_referral(
    referral: Referral,
    *,
    reason_code: WithdrawalReason,
    comments: str | None,
    actor: str,
    now: datetime,
) -> Decision:
    """Withdraw every need not yet ended. 409 if already withdrawn or closed."""
    require_aware(now, "now")
    status = referral.status
    if status is ReferralStatus.WITHDRAWN:
        raise ReferralAlreadyWithdrawn(f"Referral {referral.id} is already withdrawn.")
    if status is ReferralStatus.CLOSED:
        raise ReferralClosed(
            f"Referral {referral.id} is closed: every need has ended, nothing to withdraw."
        )
    if reason_code is WithdrawalReason.OTHER and is_blank(comments):
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
    event = DomainEvent(
        ReferralWithdrawn(referral_id=referral.id, need_ids=withdrawn_ids, reason_code=reason_code),
        crn=referral.person.crn,
        noms_number=referral.person.noms_number,
        occurred_at=now,
    )
    return Decision(referral=withdrawn, history=tuple(history), events=(event,))
