"""Use cases: load, decide (pure domain), save with history, outbox and access log.

The caller owns the transaction (the request's session, or the consumer's): nothing here
commits. Every read or write of a person's record writes an access-log row in the same
transaction (DPA 2018 s.62).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import PermanentError
from pathways_shared.db import deferred_rows
from pathways_shared.erasure import ErasurePublic, subject_access_records
from pathways_shared.event_payloads import NeedRef
from pathways_shared.events import Addressing, Event
from pathways_shared.infra_models import AccessLog
from pathways_shared.observability import get_logger
from pathways_shared.outbox import publish
from pathways_shared.pagination import decode_cursor, encode_cursor
from pathways_shared.problems import Forbidden, NotFound, ValidationProblem
from pathways_shared.vocabulary import AREAS, CRN_PATTERN
from referrals.domain.events import Decision
from referrals.domain.need_lifecycle import (
    MalformedProviderEvent,
    apply_to_referral,
    read_provider_event,
)
from referrals.domain.referral import HistoryEntry, Referral, UnknownNeed
from referrals.domain.submission import InvalidSubmission, submit_referral
from referrals.domain.withdrawal import withdraw_referral
from referrals.repository import (
    ReferralFilter,
    ReferralRepository,
    Settling,
    read_stamped,
    settle_save,
)
from referrals.schemas import ReferralCreate, WithdrawalCreate, referral_document

log = get_logger(__name__)

PROVIDERS_ACTOR = "providers-service"


def _publish(session: AsyncSession, decision: Decision, base_url: str) -> None:
    for event in decision.events:
        publish(session, event.payload, Addressing(
            crn=event.crn,
            noms_number=event.noms_number,
            detail_url=f"{base_url.rstrip('/')}/referrals/{event.referral_id}",
            occurred_at=event.occurred_at,
        ))


def _log_access(
    session: AsyncSession,
    principal: Principal | str,
    action: Action,
    referral: Referral,
    purpose: str,
    resource: str | None = None,
) -> None:
    record_access(
        session,
        actor=principal,
        action=action,
        resource=resource or f"referrals/{referral.id}",
        crn=referral.person.crn,
        purpose=purpose,
    )


@dataclass(frozen=True)
class Submitted:
    referral: Referral
    created: bool


async def _replay(
    repo: ReferralRepository,
    client: str,
    body: ReferralCreate,
    idempotency_key: str | None,
    fingerprint: str,
) -> Referral | None:
    """The referral this client already made in the body's area for this key or source
    reference, if the body is the same. Keys are the client's own: another client's referral
    with the same key is neither found nor hinted at."""
    found = await repo.find_existing(
        client=client,
        area=body.area,
        source_reference=body.source_reference,
        idempotency_key=idempotency_key,
    )
    if found is None:
        return None
    referral, stored_fingerprint, stored_key = found
    if stored_fingerprint == fingerprint:
        return referral
    if idempotency_key is not None and stored_key == idempotency_key:
        raise ValidationProblem(
            "This Idempotency-Key was used with a different body.", field="Idempotency-Key"
        )
    raise ValidationProblem(
        "A referral with this source_reference was already submitted with a different body.",
        field="source_reference",
    )


async def submit(
    session: AsyncSession,
    principal: Principal,
    body: ReferralCreate,
    *,
    idempotency_key: str | None,
    now: datetime,
    base_url: str,
    purpose: str,
) -> Submitted:
    if body.area in AREAS and not principal.may_see_area(body.area):
        raise Forbidden(f"area {body.area} is not among the caller's areas", field="area")
    repo = ReferralRepository(session)
    fingerprint = body.fingerprint()
    invalid: InvalidSubmission | None = None
    try:
        decision = submit_referral(
            body.to_domain(), actor=principal.actor, now=now, new_id=uuid.uuid4
        )
    except InvalidSubmission as error:
        # Checked against the stored referrals first: a replay is answered with what it made,
        # even if the rules would refuse it today (its release date now past, say).
        invalid = error
    else:
        # Its event and access-log row go in with it (one statement on PostgreSQL), or not
        # at all: if this key or source reference already holds a referral (a replay, or a
        # twin request that committed first), nothing is written and it is answered.
        with deferred_rows(session) as written_with:
            _publish(session, decision, base_url)
            _log_access(session, principal, Action.COLLECTION, decision.referral, purpose)
        if await repo.add(
            decision.referral,
            fingerprint=fingerprint,
            idempotency_key=idempotency_key,
            client=principal.client,
            history=decision.history,
            with_rows=written_with,
        ):
            return Submitted(decision.referral, created=True)
    replayed = await _replay(repo, principal.client, body, idempotency_key, fingerprint)
    if replayed is None:
        # Not stored and not refused by a stored one: the body is invalid. (A refused insert
        # always has a stored referral to match: only these two keys and a fresh uuid4 id
        # are unique.)
        raise invalid or RuntimeError("the referral was refused but no stored one matches")
    _log_access(session, principal, Action.CONSULTATION, replayed, purpose)
    return Submitted(replayed, created=False)


async def _visible(
    repo: ReferralRepository, principal: Principal, referral_id: UUID, *, for_update: bool = False
) -> Referral:
    referral = await repo.get(referral_id, for_update=for_update)
    if referral is None or not principal.may_see_area(referral.area):
        # Another area's referral is answered as absent: its existence is not disclosed.
        raise NotFound(f"no referral {referral_id}")
    return referral


async def get(
    session: AsyncSession, principal: Principal, referral_id: UUID, *, purpose: str
) -> Referral:
    referral = await _visible(ReferralRepository(session), principal, referral_id)
    _log_access(session, principal, Action.CONSULTATION, referral, purpose)
    if principal.on_behalf_of:  # a peer's user: joined to their request by the correlation id
        log.info("referral.read_on_behalf", referral_id=str(referral_id),
                 caller=principal.client, on_behalf_of=principal.on_behalf_of)
    return referral


async def withdraw(
    session: AsyncSession,
    principal: Principal,
    referral_id: UUID,
    body: WithdrawalCreate,
    *,
    now: datetime,
    base_url: str,
    purpose: str,
) -> Referral:
    repo = ReferralRepository(session)
    referral = await _visible(repo, principal, referral_id, for_update=True)
    decision = withdraw_referral(
        referral,
        reason_code=body.reason_code,
        comments=body.comments,
        actor=principal.actor,
        now=now,
    )
    await repo.save(decision.referral, decision.history)
    _publish(session, decision, base_url)
    _log_access(session, principal, Action.ALTERATION, decision.referral, purpose)
    return decision.referral


def _cursor_time(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("a cursor time has a zone")
    return moment


def _parse_keyset(cursor: str | None) -> tuple[datetime, UUID] | None:
    values = decode_cursor(cursor, size=2)
    if values is None:
        return None
    try:
        return _cursor_time(values[0]), UUID(str(values[1]))
    except (TypeError, ValueError) as error:
        raise ValidationProblem("cursor is not valid", field="cursor") from error


async def list_referrals(
    session: AsyncSession,
    principal: Principal,
    where: ReferralFilter,
    *,
    limit: int,
    cursor: str | None,
    purpose: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of referrals, as the JSON documents of `ReferralPublic`, and the next cursor."""
    repo = ReferralRepository(session)
    # The caller's areas bound every search, whatever the filters ask for.
    where = replace(where, visible_areas=principal.areas)
    rows = await repo.list_rows(where, limit=limit + 1, after=_parse_keyset(cursor))
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last, _ = page[-1]
        next_cursor = encode_cursor([last["submitted_at"].isoformat(), str(last["id"])])
    for row, _ in page:
        record_access(
            session,
            actor=principal,
            action=Action.CONSULTATION,
            resource=f"referrals/{row['id']}",
            crn=row["crn"],
            purpose=purpose,
        )
    return [referral_document(row, needs) for row, needs in page], next_cursor


async def history(
    session: AsyncSession,
    principal: Principal,
    referral_id: UUID,
    *,
    limit: int,
    cursor: str | None,
    purpose: str,
) -> tuple[list[HistoryEntry], str | None]:
    repo = ReferralRepository(session)
    referral = await _visible(repo, principal, referral_id)
    values = decode_cursor(cursor, size=2)
    after = None
    if values is not None:
        try:
            if not isinstance(values[1], int):
                raise TypeError("a history cursor ends in an integer id")
            after = (_cursor_time(values[0]), values[1])
        except (TypeError, ValueError) as error:
            raise ValidationProblem("cursor is not valid", field="cursor") from error
    rows = await repo.history(referral_id, limit=limit + 1, after=after)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last_id, last = page[-1]
        next_cursor = encode_cursor([last.at.isoformat(), last_id])
    _log_access(
        session,
        principal,
        Action.CONSULTATION,
        referral,
        purpose,
        resource=f"referrals/{referral_id}/history",
    )
    return [entry for _, entry in page], next_cursor


@dataclass(frozen=True)
class SubjectAccess:
    crn: str
    referrals: list[tuple[Referral, list[HistoryEntry]]]
    access_log: list[AccessLog]
    # Referrals whose personal data was erased (no longer found by the CRN above).
    erasures: list[ErasurePublic]


async def subject_access(
    session: AsyncSession, principal: Principal, crn: str, *, purpose: str,
    settings: ServiceSettings,
) -> SubjectAccess:
    # The answer must be complete, so it is for national callers only (the route checks it
    # too): an admin bound to some areas would otherwise see records of the others.
    principal.require_national("a subject access request")
    if not CRN_PATTERN.fullmatch(crn):
        raise ValidationProblem("crn must be one letter and six digits", field="crn")
    repo = ReferralRepository(session)
    referrals = await repo.all_for_crn(crn)
    access, erasures = await subject_access_records(session, principal, crn, settings,
                                                    purpose=purpose)
    return SubjectAccess(crn=crn, referrals=referrals, access_log=access, erasures=erasures)


def _log_ignored(event: Event, need_id: UUID, reason: str | None) -> None:
    log.info("referrals.provider_event_ignored", event_id=str(event.id),
             event_type=event.event_type, need_id=str(need_id), reason=reason)


async def apply_provider_event(
    session: AsyncSession, event: Event, payload: NeedRef, *, now: datetime
) -> bool:
    """Bring a need up to date with a provider event (its payload validated as the shared
    model); False when it was stale or repeated.

    Raises PermanentError for an event that can never apply (malformed, unknown referral or
    need), so the consumer dead-letters it at once instead of retrying.
    """
    try:
        provider_event = read_provider_event(event.event_type, event.occurred_at, payload)
    except MalformedProviderEvent as error:
        raise PermanentError(error.detail) from error
    repo = ReferralRepository(session)
    referral = await repo.get(provider_event.referral_id, for_update=True)
    if referral is None:
        raise PermanentError(f"no referral {provider_event.referral_id}")
    try:
        decision = apply_to_referral(referral, provider_event, now=now)
    except UnknownNeed as error:
        raise PermanentError(error.detail) from error
    if not decision.applied:
        _log_ignored(event, provider_event.need_id, decision.ignored)
        return False
    # Its access-log row goes in with the change, in the same statement on PostgreSQL.
    with deferred_rows(session) as written_with:
        _log_access(
            session,
            PROVIDERS_ACTOR,
            Action.ALTERATION,
            decision.referral,
            f"provider event {event.event_type}",
        )
    await repo.save(decision.referral, decision.history, with_rows=written_with)
    return True


async def settle_provider_event(
    connection: AsyncConnection, consumer: str, event: Event, payload: NeedRef, *, now: datetime
) -> str | None:
    """`apply_provider_event` with the event recorded processed by `consumer`, outside any
    transaction (PostgreSQL, the consumer's `settle_in_one`): the referral read unlocked,
    decided, then recorded and saved in one statement only if none of its rows changed in
    between (`repository.settle_save`). "handled", "duplicate", or None (nothing written) for
    anything else: a malformed event, an unknown referral or need, a change in between; the
    ordinary path handles those, and reports them. An event the domain ignores (stale,
    repeated) is recorded alone, on the same condition.

    A provider event publishes nothing here (its decision has no events): no outbox row is
    written, so there is no relay to wake."""
    try:
        provider_event = read_provider_event(event.event_type, event.occurred_at, payload)
    except MalformedProviderEvent:
        return None
    read = await read_stamped(connection, provider_event.referral_id)
    if read is None:
        return None
    referral, stamps = read
    try:
        decision = apply_to_referral(referral, provider_event, now=now)
    except UnknownNeed:
        return None
    settling = Settling(consumer=consumer, event_id=str(event.id), event_type=event.event_type,
                        processed_at=datetime.now(UTC), stamps=stamps)
    if not decision.applied:
        settled = await settle_save(connection, referral, (), {}, settling, changed=False)
        if settled == "handled":
            _log_ignored(event, provider_event.need_id, decision.ignored)
        return settled
    # The access-log row, as `apply_provider_event` writes it, taken from a session that
    # never reaches the database (`deferred_rows`: nothing is written at its commit).
    async with AsyncSession() as rows_of:
        with deferred_rows(rows_of) as written_with:
            _log_access(rows_of, PROVIDERS_ACTOR, Action.ALTERATION, decision.referral,
                        f"provider event {event.event_type}")
    return await settle_save(connection, decision.referral, decision.history, written_with,
                             settling)
