"""Every query of the referrals service, and the mapping between rows and domain values."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    Integer,
    Row,
    RowMapping,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.db import (
    DriverStatement,
    bound_rows,
    bound_values,
    insert_if_new,
    is_postgres,
    run_on_driver,
)
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.vocabulary import (
    Complexity,
    NeedStatus,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)
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
    Withdrawal,
)
from referrals.models import HistoryRow, NeedRow, ReferralRow


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


REFERRALS = ReferralRow.__table__
NEEDS = NeedRow.__table__
HISTORY = HistoryRow.__table__

# --------------------------------------------------------------------------- mapping
# Rows are read and written as Core rows (columns by name), not ORM objects: no identity
# map or unit of work to pay for on every request and event (bench/README.md).


def _need_to_domain(row: Any) -> Need:
    return Need(
        id=row.id,
        pathway=Pathway(row.pathway),
        complexity=Complexity(row.complexity),
        flags=tuple(NeedFlag(f) for f in row.flags),
        status=NeedStatus(row.status),
        updated_at=_aware(row.updated_at),
        details=row.details,
        service_code=row.service_code,
        provider_code=row.provider_code,
        programme=row.programme,
        provider_referral_id=row.provider_referral_id,
        status_reason=row.status_reason,
        allocated_at=_aware(row.allocated_at),
        acknowledge_by=_aware(row.acknowledge_by),
        respond_by=_aware(row.respond_by),
        last_event_at=_aware(row.last_event_at),
        missed_deadlines=frozenset(row.missed_deadlines),
    )


def _to_domain(row: Any, needs: Sequence[Any]) -> Referral:
    withdrawal = None
    if row.withdrawn_at is not None:
        withdrawal = Withdrawal(
            reason_code=WithdrawalReason(row.withdrawal_reason),
            comments=row.withdrawal_comments,
            withdrawn_at=_aware(row.withdrawn_at),
            withdrawn_by=row.withdrawn_by or "",
        )
    return Referral(
        id=row.id,
        source_reference=row.source_reference,
        area=row.area,
        submitted_at=_aware(row.submitted_at),
        submitted_by=row.submitted_by,
        person=Person(
            crn=row.crn,
            noms_number=row.noms_number,
            pnc_number=row.pnc_number,
            given_name=row.given_name,
            family_name=row.family_name,
            date_of_birth=row.date_of_birth,
            sex=Sex(row.sex),
            needs_interpreter=row.needs_interpreter,
            interpreter_language=row.interpreter_language,
        ),
        supervision=Supervision(
            status=SupervisionStatus(row.supervision_status),
            expected_release_date=row.expected_release_date,
        ),
        risk=Risk(rosh=Rosh(row.rosh), mappa_level=row.mappa_level),
        practitioner=Practitioner(
            name=row.practitioner_name, email=row.practitioner_email, team=row.practitioner_team
        ),
        consent=Consent(
            given=row.consent_given, recorded_at=_aware(row.consent_recorded_at)
        ),
        needs=tuple(_need_to_domain(n) for n in sorted(needs, key=lambda n: n.position)),
        withdrawal=withdrawal,
    )


# The columns of a need a decision may change; each is the domain field of the same name.
_NEED_CHANGES = (
    "status", "service_code", "provider_code", "programme", "provider_referral_id",
    "status_reason", "allocated_at", "acknowledge_by", "respond_by", "updated_at",
    "last_event_at", "missed_deadlines",
)


def _need_changes(need: Need) -> dict[str, Any]:
    """`_NEED_CHANGES` of `need`, by name, as stored."""
    changes = {name: getattr(need, name) for name in _NEED_CHANGES}
    changes["status"] = need.status.value
    changes["missed_deadlines"] = sorted(need.missed_deadlines)
    return changes


def _referral_values(
    referral: Referral, fingerprint: str, idempotency_key: str | None, client: str
) -> dict[str, Any]:
    p, s, r, pr, c = (
        referral.person,
        referral.supervision,
        referral.risk,
        referral.practitioner,
        referral.consent,
    )
    return {
        "id": referral.id,
        "source_reference": referral.source_reference,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "submitting_client": client,
        "area": referral.area,
        "status": referral.status.value,
        "crn": p.crn,
        "noms_number": p.noms_number,
        "pnc_number": p.pnc_number,
        "given_name": p.given_name,
        "family_name": p.family_name,
        "date_of_birth": p.date_of_birth,
        "sex": p.sex.value,
        "needs_interpreter": p.needs_interpreter,
        "interpreter_language": p.interpreter_language,
        "supervision_status": s.status.value,
        "expected_release_date": s.expected_release_date,
        "rosh": r.rosh.value,
        "mappa_level": r.mappa_level,
        "practitioner_name": pr.name,
        "practitioner_email": pr.email,
        "practitioner_team": pr.team,
        "consent_given": c.given,
        "consent_recorded_at": c.recorded_at,
        "submitted_at": referral.submitted_at,
        "submitted_by": referral.submitted_by,
        "updated_at": referral.submitted_at,
        "withdrawal_reason": None,
        "withdrawal_comments": None,
        "withdrawn_at": None,
        "withdrawn_by": None,
    }


def _need_values(referral_id: UUID, position: int, need: Need) -> dict[str, Any]:
    return {
        "id": need.id,
        "referral_id": referral_id,
        "position": position,
        "pathway": need.pathway.value,
        "complexity": need.complexity.value,
        "details": need.details,
        "flags": [f.value for f in need.flags],
        **_need_changes(need),
    }


# What a listed need shows (`schemas.referral_document`): not the bookkeeping columns.
_LISTED_NEED_COLUMNS = [
    c for c in NEEDS.c if c.name not in ("missed_deadlines", "last_event_at")
]

# One statement for every need of a referral (executemany). Parameters are `new_<column>`:
# a bound parameter may not share its name with a column being set.
_UPDATE_NEED = (
    update(NEEDS)
    .where(NEEDS.c.id == bindparam("need_id"))
    .values({name: bindparam(f"new_{name}") for name in _NEED_CHANGES})
)


def _history_values(referral_id: UUID, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "referral_id": referral_id,
        "at": entry.at,
        "actor": entry.actor[:200],
        "event": entry.event,
        "need_id": entry.need_id,
        "detail": dict(entry.detail),
    }


def history_to_domain(row: Any) -> HistoryEntry:
    return HistoryEntry(
        at=_aware(row.at), actor=row.actor, event=row.event, need_id=row.need_id, detail=row.detail
    )


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class ReferralFilter:
    crn: str | None = None
    area: str | None = None
    status: str | None = None
    pathway: str | None = None
    provider_code: str | None = None
    # None: every area (a national role); otherwise only these.
    visible_areas: frozenset[str] | None = None


def list_query(where: ReferralFilter, *, limit: int, after: tuple[datetime, UUID] | None) -> Any:
    """Keyset query, newest first: each filter leads an index that ends (submitted_at, id).
    The statement of `list_statement` with its values in it."""
    statement, params = list_statement(where, limit=limit, after=after)
    return statement.params(params)


_LIST_STATEMENTS: dict[tuple[bool, ...], Any] = {}


def list_statement(
    where: ReferralFilter, *, limit: int, after: tuple[datetime, UUID] | None
) -> tuple[Any, dict[str, Any]]:
    """`list_query` as a statement built once for each set of filters given (only the values
    vary: building and keying the expression was ~0.3 ms of each listing) and its
    parameters."""
    shape = (where.visible_areas is not None, where.area is not None, where.crn is not None,
             where.status is not None, where.pathway is not None,
             where.provider_code is not None, after is not None)
    statement = _LIST_STATEMENTS.get(shape)
    if statement is None:
        statement = _LIST_STATEMENTS[shape] = _build_list_statement(*shape)
    params: dict[str, Any] = {"limit": limit}
    if where.visible_areas is not None:
        params["visible_areas"] = sorted(where.visible_areas)
    for name in ("area", "crn", "status", "pathway", "provider_code"):
        if getattr(where, name) is not None:
            params[name] = getattr(where, name)
    if after is not None:
        params["after_at"], params["after_id"] = after
    return statement, params


def _build_list_statement(
    visible_areas: bool, area: bool, crn: bool, status: bool, pathway: bool,
    provider_code: bool, after: bool,
) -> Any:
    r, n = REFERRALS.c, NEEDS.c
    conditions: list[Any] = [r.erased_at.is_(None)]  # an erased referral is not served
    if visible_areas:
        conditions.append(r.area.in_(bindparam("visible_areas", expanding=True)))
    if area:
        conditions.append(r.area == bindparam("area"))
    if crn:
        conditions.append(r.crn == bindparam("crn"))
    if status:
        conditions.append(r.status == bindparam("status"))
    need_conditions = []
    if pathway:
        need_conditions.append(n.pathway == bindparam("pathway"))
    if provider_code:
        need_conditions.append(n.provider_code == bindparam("provider_code"))
    if need_conditions:
        conditions.append(exists().where(n.referral_id == r.id, *need_conditions))
    if after:
        conditions.append(tuple_(r.submitted_at, r.id) < tuple_(
            bindparam("after_at", type_=r.submitted_at.type),
            bindparam("after_id", type_=r.id.type),
        ))
    query = select(REFERRALS).where(and_(*conditions))
    return query.order_by(r.submitted_at.desc(), r.id.desc()).limit(
        bindparam("limit", type_=Integer))


# What `list_rows` reads of a page's needs.
_LISTED_NEEDS = select(*_LISTED_NEED_COLUMNS).where(
    NEEDS.c.referral_id.in_(bindparam("referral_ids", expanding=True)))


_Others = list[tuple[Table, tuple[str, ...], list[dict[str, Any]]]]


def _others(with_rows: Mapping[Table, list[dict[str, Any]]] | None) -> _Others:
    """The tables of `with_rows` that have rows: each with its columns' names and its rows."""
    return [(table, tuple(rows[0]), rows) for table, rows in (with_rows or {}).items() if rows]


def _other_inserts(others: _Others) -> list[tuple[Table, tuple[str, ...], int, str]]:
    """What `_inserting_if` inserts of `others`: the rows of the n-th table prefixed `o<n>_`."""
    return [(table, names, len(rows), f"o{n}_") for n, (table, names, rows) in enumerate(others)]


def _other_values(others: _Others) -> dict[str, Any]:
    """The parameters of `_other_inserts(others)`."""
    params: dict[str, Any] = {}
    for n, (_, _, rows) in enumerate(others):
        params.update(bound_values(rows, f"o{n}_"))
    return params


def _inserting_if(
    statement: Any, guard: Any, inserts: Sequence[tuple[Table, tuple[str, ...], int, str]]
) -> Any:
    """`statement` with a data-modifying CTE for each `(table, names, count, prefix)` of
    `inserts` that has rows: an INSERT of its `count` bound rows (`bound_rows`) that writes
    them only when the CTE `guard` returned a row (the referral inserted, or saved)."""
    for table, names, count, prefix in inserts:
        if count:
            given = bound_rows(table, names, count, prefix).subquery(f"{table.name}_given")
            statement = statement.add_cte(
                insert(table)
                .from_select(names, select(given).where(exists(select(guard.c.id))))
                .cte(f"new_{table.name}")
            )
    return statement


_SUBMIT_STATEMENTS: dict[tuple, DriverStatement] = {}


def _submit_statement(
    referral: dict[str, Any], needs: list[dict[str, Any]], history: list[dict[str, Any]],
    with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """PostgreSQL: the referral (`INSERT ... ON CONFLICT DO NOTHING RETURNING id`), its needs,
    its history and `with_rows` (rows of other tables that go with it: its outbox event, its
    access-log row) in one statement, with data-modifying CTEs: the others go in only when
    the referral did. What `ReferralRepository._add_in_steps` does in steps (SQLite; a test
    holds the rows of the two equal). One statement per count of needs, history entries and
    other rows, built and compiled once: only the parameters vary.
    Answers the statement (for `run_on_driver`) and its parameters."""
    need_names = tuple(needs[0]) if needs else ()
    history_names = tuple(history[0]) if history else ()
    others = _others(with_rows)
    shape = (tuple(referral), need_names, len(needs), history_names, len(history),
             tuple((table.name, names, len(rows)) for table, names, rows in others))
    statement = _SUBMIT_STATEMENTS.get(shape)
    if statement is None:
        new = (
            pg_insert(REFERRALS)
            .values({name: bindparam(f"r_{name}", type_=REFERRALS.c[name].type)
                     for name in referral})
            .on_conflict_do_nothing()
            .returning(REFERRALS.c.id)
            .cte("new_referral")
        )
        statement = _SUBMIT_STATEMENTS[shape] = DriverStatement(_inserting_if(
            select(new.c.id), new,
            [(NEEDS, need_names, len(needs), "n"), (HISTORY, history_names, len(history), "h"),
             *_other_inserts(others)],
        ))
    params = {f"r_{name}": value for name, value in referral.items()}
    params.update(bound_values(needs, "n") | bound_values(history, "h"))
    params.update(_other_values(others))
    return statement, params


def _saved_values(referral: Referral) -> tuple[dict[str, Any], datetime]:
    """What `save` writes to the referral's row (but `updated_at`), and its needs' latest
    change (the referral's `updated_at` unless that is later)."""
    values: dict[str, Any] = {"status": referral.status.value}
    if referral.withdrawal is not None:
        values.update(
            withdrawal_reason=referral.withdrawal.reason_code.value,
            withdrawal_comments=referral.withdrawal.comments,
            withdrawn_at=referral.withdrawal.withdrawn_at,
            withdrawn_by=referral.withdrawal.withdrawn_by,
        )
    return values, max(n.updated_at for n in referral.needs)


def _never_backwards(latest: Any) -> Any:
    """The referral's new `updated_at`: a stale event must not make it look older."""
    return case((REFERRALS.c.updated_at < latest, latest), else_=REFERRALS.c.updated_at)


_SAVE_STATEMENTS: dict[tuple, DriverStatement] = {}


def _save_statement(
    referral_id: UUID, values: dict[str, Any], latest: datetime,
    needs: list[dict[str, Any]], history: list[dict[str, Any]],
    with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
    settling: Settling | None = None,
) -> tuple[DriverStatement, dict[str, Any]]:
    """PostgreSQL: `_save_in_steps` in one statement, with data-modifying CTEs: the referral's
    UPDATE ... RETURNING id, then its needs updated from bound rows, its history and
    `with_rows` (rows of other tables that go with the change: its access-log row) inserted,
    only when the referral was. No row back: the referral is not stored. One statement per
    shape (withdrawal or not, count of needs, history entries and other rows), built and
    compiled once. Answers the statement (for `run_on_driver`) and its parameters.

    With `settling` (`settle_save`), the referral is updated only when the event is recorded
    processed in the same statement, and that only when the referral and its needs are as
    they were read (`_settled_if_unchanged`); it answers what `settle_save` reads."""
    need_names = tuple(needs[0])
    history_names = tuple(history[0]) if history else ()
    others = _others(with_rows)
    shape = (settling is not None, tuple(values), len(needs), history_names, len(history),
             tuple((table.name, names, len(rows)) for table, names, rows in others))
    statement = _SAVE_STATEMENTS.get(shape)
    if statement is None:
        saving = update(REFERRALS).where(
            REFERRALS.c.id == bindparam("r_id", type_=REFERRALS.c.id.type))
        if settling is not None:
            marked = _settled_if_unchanged()
            saving = saving.where(exists(select(marked.c.id)))
        saved = (
            saving
            .values({name: bindparam(f"r_{name}", type_=REFERRALS.c[name].type)
                     for name in values}
                    | {"updated_at": _never_backwards(
                        bindparam("r_latest", type_=REFERRALS.c.updated_at.type))})
            .returning(REFERRALS.c.id)
            .cte("saved_referral")
        )
        built = select(saved.c.id) if settling is None else _settle_answer(marked, saved)
        given = bound_rows(NEEDS, need_names, len(needs), "n").subquery("needs_given")
        built = built.add_cte(
            update(NEEDS)
            .where(NEEDS.c.id == given.c.id, exists(select(saved.c.id)))
            .values({name: given.c[name] for name in need_names if name != "id"})
            .cte("saved_needs")
        )
        built = _inserting_if(
            built, saved,
            [(HISTORY, history_names, len(history), "h"), *_other_inserts(others)],
        )
        statement = _SAVE_STATEMENTS[shape] = DriverStatement(built)
    params = {f"r_{name}": value for name, value in values.items()}
    params.update({"r_id": referral_id, "r_latest": latest})
    params.update(bound_values(needs, "n") | bound_values(history, "h"))
    params.update(_other_values(others))
    if settling is not None:
        params.update(settling.params())
    return statement, params


# --------------------------------------------------------------------------- settling
# A provider event settled in two statements outside any transaction (PostgreSQL, the
# consumer's `settle_in_one`): the referral read unlocked with the stamps of its rows
# (`read_stamped`), then, once the domain has decided, one statement that records the event
# processed and saves the change only if no row was changed in between (`settle_save`).

# A row's stamp: its `xmin`, the transaction that wrote this version of it. Every UPDATE of a
# row, whoever makes it (a provider event, a withdrawal, the deadline scan, an erasure), writes
# a new version with a new `xmin`, whether or not it changes `updated_at`; taking a lock does
# not. So "the stamps are those read" is "no row was changed since": optimistic concurrency
# without a version column every writer would have to keep. One stamp for the referral's row
# with each of its needs' rows (a row of `_GET_STAMPED`, of `_settled_if_unchanged`'s lock).
_STAMP = literal_column(
    f"concat_ws('/', {REFERRALS.name}.xmin, {NEEDS.name}.id, {NEEDS.name}.xmin)", Text
)

# `read_stamped`: the referral joined to its needs, as `_GET_LOCKED` but unlocked, stamped.
_GET_STAMPED = (
    select(REFERRALS, *[c.label(f"need_{c.name}") for c in NEEDS.c], _STAMP.label("stamp"))
    .join_from(REFERRALS, NEEDS, NEEDS.c.referral_id == REFERRALS.c.id)
    .where(REFERRALS.c.id == bindparam("referral_id", type_=REFERRALS.c.id.type),
           REFERRALS.c.erased_at.is_(None))
)

PROCESSED = ProcessedEvent.__table__


@dataclass(frozen=True)
class Settling:
    """What `settle_save` records of the event, and the stamps the referral was read with."""

    consumer: str
    event_id: str
    event_type: str
    processed_at: datetime
    stamps: tuple[str, ...]

    def params(self) -> dict[str, Any]:
        return {"p_consumer": self.consumer, "p_event_id": self.event_id,
                "p_event_type": self.event_type, "p_processed_at": self.processed_at,
                "s_stamps": list(self.stamps), "s_count": len(self.stamps)}


def _settled_if_unchanged() -> Any:
    """The CTEs that record the event processed (`INSERT ... ON CONFLICT DO NOTHING RETURNING
    id`, as `mark_processed`) only when the referral and its needs are as read: their rows
    locked (FOR UPDATE: a change in flight is waited for, then its newest rows are read), and
    their stamps exactly those read, as many and the same. The referral's UPDATE then writes
    only if this returned a row, and everything else only if that did: all or nothing. The
    rows stay locked to the statement's end, so nothing can change between check and write."""
    locked = (
        select(_STAMP.label("stamp"))
        .join_from(REFERRALS, NEEDS, NEEDS.c.referral_id == REFERRALS.c.id)
        .where(REFERRALS.c.id == bindparam("r_id", type_=REFERRALS.c.id.type),
               REFERRALS.c.erased_at.is_(None))
        .with_for_update()
        .cte("locked")
    )
    unchanged = (
        select(func.count().label("n"))
        .select_from(locked)
        .having(and_(
            func.count() == bindparam("s_count", type_=Integer),
            func.bool_and(locked.c.stamp == any_(bindparam("s_stamps", type_=ARRAY(Text)))),
        ))
        .cte("unchanged")
    )
    given = {name: bindparam(f"p_{name}", type_=PROCESSED.c[name].type)
             for name in ("consumer", "event_id", "event_type", "processed_at")}
    return (
        pg_insert(PROCESSED)
        .from_select(list(given), select(*given.values()).where(exists(select(unchanged.c.n))))
        .on_conflict_do_nothing()
        .returning(PROCESSED.c.id)
        .cte("marked")
    )


def _settle_answer(marked: Any, saved: Any | None) -> Any:
    """What a settling statement answers: whether the event was recorded, whether the
    referral was saved (as recorded when there is nothing to save), and whether the event had
    been recorded before (a duplicate)."""
    seen = exists().where(
        PROCESSED.c.consumer == bindparam("p_consumer", type_=PROCESSED.c.consumer.type),
        PROCESSED.c.event_id == bindparam("p_event_id", type_=PROCESSED.c.event_id.type),
    )
    recorded = select(func.count()).select_from(marked).scalar_subquery()
    return select(
        recorded.label("marked"),
        (recorded if saved is None
         else select(func.count()).select_from(saved).scalar_subquery()).label("saved"),
        seen.label("seen"),
    )


# `settle_save` of an event the domain ignores (stale, repeated): only its record.
_SETTLE_IGNORED = DriverStatement(_settle_answer(_settled_if_unchanged(), None))


async def read_stamped(
    connection: AsyncConnection, referral_id: UUID
) -> tuple[Referral, tuple[str, ...]] | None:
    """PostgreSQL, on a connection outside any transaction: the referral (not erased) and the
    stamps of its rows, unlocked, in one statement; None if it is not stored."""
    rows = (await connection.execute(_GET_STAMPED, {"referral_id": referral_id})).all()
    if not rows:
        return None
    width = len(REFERRALS.c)
    referral = _to_domain(rows[0], [_NeedView._make(row[width:-1]) for row in rows])
    return referral, tuple(row.stamp for row in rows)


async def settle_save(
    connection: AsyncConnection, referral: Referral, history: Sequence[HistoryEntry],
    with_rows: Mapping[Table, list[dict[str, Any]]], settling: Settling, *, changed: bool = True,
) -> str | None:
    """PostgreSQL, one statement on a connection outside any transaction (autocommit): record
    the event processed and write what `ReferralRepository.save` writes (nothing more when
    not `changed`: an event the domain ignored), both only if the referral's rows still bear
    the stamps they were read with (`read_stamped`). "handled";
    "duplicate" (nothing written) if the event was recorded before; None (nothing written)
    if a row was changed since it was read, or the referral is gone: the ordinary path, with
    its locked read, handles the event then."""
    if changed:
        values, latest = _saved_values(referral)
        needs = [{"id": need.id} | _need_changes(need) for need in referral.needs]
        histories = [_history_values(referral.id, entry) for entry in history]
        statement, params = _save_statement(
            referral.id, values, latest, needs, histories, with_rows, settling)
    else:
        statement, params = _SETTLE_IGNORED, {"r_id": referral.id} | settling.params()
    statement = statement.compiled(connection.dialect)
    driver = (await connection.get_raw_connection()).driver_connection
    [(marked, saved, seen)] = await driver.fetch(statement.sql, *statement.arguments(params))
    if marked:
        if saved != 1:  # cannot be: the referral's rows were locked and as read
            raise RuntimeError(f"referral {referral.id}: event recorded but not saved")
        return "handled"
    return "duplicate" if seen else None


# `ReferralRepository._get_locked`: a referral and its needs, all their rows locked.
_GET_LOCKED = (
    select(REFERRALS, *[c.label(f"need_{c.name}") for c in NEEDS.c])
    .join_from(REFERRALS, NEEDS, NEEDS.c.referral_id == REFERRALS.c.id)
    .where(REFERRALS.c.id == bindparam("referral_id", type_=REFERRALS.c.id.type),
           REFERRALS.c.erased_at.is_(None))
    .with_for_update()
)
_NeedView = namedtuple("_NeedView", [c.name for c in NEEDS.c])  # a need's row from the join


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        referral: Referral,
        *,
        fingerprint: str,
        idempotency_key: str | None,
        client: str,
        history: Sequence[HistoryEntry],
        with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
    ) -> bool:
        """Insert the referral, its needs and history, and `with_rows` (rows of other tables
        that go with it: `db.deferred_rows` of its outbox event and access log); False, writing
        nothing, when a referral with this source reference or idempotency key is already
        stored for this client and area.

        Core statements, not ORM objects (bench/README.md): one INSERT ... ON CONFLICT DO
        NOTHING for the referral (a twin request still in flight is waited for, then seen),
        one multi-row INSERT each for the needs, the history and each table of `with_rows`.
        """
        values = _referral_values(referral, fingerprint, idempotency_key, client)
        needs = [_need_values(referral.id, position, need)
                 for position, need in enumerate(referral.needs)]
        histories = [_history_values(referral.id, entry) for entry in history]
        if is_postgres(self.session):
            # The same inserts as one statement, one round trip (below), run on the driver's
            # connection: the first statement of a request, so on its own (`run_on_driver`).
            statement, params = _submit_statement(values, needs, histories, with_rows)
            return bool(await run_on_driver(self.session, statement, params))
        return await self._add_in_steps(values, needs, histories, with_rows)

    async def _add_in_steps(
        self, values: dict[str, Any], needs: list[dict[str, Any]], histories: list[dict[str, Any]],
        with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
    ) -> bool:
        inserted = await self.session.exec(
            insert_if_new(self.session, REFERRALS, REFERRALS.c.id), params=values
        )
        if inserted.first() is None:
            return False
        await self.session.exec(insert(NEEDS), params=needs)
        if histories:
            await self.session.exec(insert(HISTORY), params=histories)
        for table, rows in (with_rows or {}).items():
            if rows:
                await self.session.exec(insert(table), params=rows)
        return True

    async def _needs_of(
        self, referral_ids: Sequence[UUID], columns: Sequence[Any] = NEEDS.c
    ) -> dict[UUID, list[Row]]:
        out: dict[UUID, list[Row]] = {rid: [] for rid in referral_ids}
        if referral_ids:
            result = await self.session.exec(
                select(*columns).where(NEEDS.c.referral_id.in_(list(referral_ids)))
            )
            for row in result:
                out[row.referral_id].append(row)
        return out

    async def _with_needs(self, rows: Sequence[Row]) -> list[Referral]:
        needs = await self._needs_of([row.id for row in rows])
        return [_to_domain(row, needs[row.id]) for row in rows]

    async def get(self, referral_id: UUID, *, for_update: bool = False) -> Referral | None:
        """The referral; `for_update` locks its row so concurrent changes queue behind us
        (on PostgreSQL in one statement with its needs: `_get_locked`)."""
        if for_update and is_postgres(self.session):
            return await self._get_locked(referral_id)
        query = select(REFERRALS).where(
            REFERRALS.c.id == referral_id, REFERRALS.c.erased_at.is_(None))
        if for_update:
            query = query.with_for_update()
        row = (await self.session.exec(query)).first()
        if row is None:
            return None
        [referral] = await self._with_needs([row])
        return referral

    async def _get_locked(self, referral_id: UUID) -> Referral | None:
        """`get(for_update=True)` in one round trip (PostgreSQL): the referral joined to its
        needs, the referral's row and its needs' rows locked. Locking the needs too is what
        makes one statement safe: after waiting for the lock, PostgreSQL re-reads every locked
        row at its newest version (the needs a concurrent change just committed), where an
        unlocked joined row would still be read as of the statement's start."""
        rows = (await self.session.exec(
            _GET_LOCKED, params={"referral_id": referral_id})).all()
        if not rows:
            return None
        width = len(REFERRALS.c)
        return _to_domain(rows[0], [_NeedView._make(row[width:]) for row in rows])

    async def find_existing(
        self, *, client: str, area: str, source_reference: str, idempotency_key: str | None
    ) -> tuple[Referral, str, str | None] | None:
        """The referral this client already made in this area with this key or source
        reference, its fingerprint and key. Other clients' referrals are never found."""
        conditions = [REFERRALS.c.source_reference == source_reference]
        if idempotency_key is not None:
            conditions.insert(0, REFERRALS.c.idempotency_key == idempotency_key)
        query = select(REFERRALS).where(
            REFERRALS.c.submitting_client == client, REFERRALS.c.area == area, or_(*conditions)
        )
        rows = list((await self.session.exec(query)).all())
        if not rows:
            return None
        # The idempotency key wins over the source reference when both match different rows.
        rows.sort(key=lambda r: r.idempotency_key != idempotency_key or idempotency_key is None)
        row = rows[0]
        [referral] = await self._with_needs([row])
        return referral, row.fingerprint, row.idempotency_key

    async def save(
        self, referral: Referral, history: Sequence[HistoryEntry],
        with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Write back what a decision changed: status, withdrawal and needs; add history and
        `with_rows` (rows of other tables that go with the change: `db.deferred_rows` of its
        access log).

        On PostgreSQL one statement (data-modifying CTEs, `_save_statement`) run on the
        driver's connection, inside the transaction of the locked read that comes before it;
        on SQLite in steps (`_save_in_steps`); a test holds the rows the two write equal."""
        values, latest = _saved_values(referral)
        needs = [{"id": need.id} | _need_changes(need) for need in referral.needs]
        histories = [_history_values(referral.id, entry) for entry in history]
        if is_postgres(self.session):
            statement, params = _save_statement(
                referral.id, values, latest, needs, histories, with_rows)
            if not await run_on_driver(self.session, statement, params):
                raise LookupError(f"referral {referral.id} is not stored")
            return
        await self._save_in_steps(referral.id, values, latest, needs, histories, with_rows)

    async def _save_in_steps(
        self, referral_id: UUID, values: dict[str, Any], latest: datetime,
        needs: list[dict[str, Any]], histories: list[dict[str, Any]],
        with_rows: Mapping[Table, list[dict[str, Any]]] | None = None,
    ) -> None:
        updated = await self.session.exec(
            update(REFERRALS).where(REFERRALS.c.id == referral_id)
            .values(**values, updated_at=_never_backwards(latest))
        )
        if updated.rowcount != 1:
            raise LookupError(f"referral {referral_id} is not stored")
        await self.session.exec(
            _UPDATE_NEED,
            params=[{"need_id": need["id"]} | {f"new_{k}": need[k] for k in _NEED_CHANGES}
                    for need in needs],
        )
        if histories:
            await self.session.exec(insert(HISTORY), params=histories)
        for table, rows in (with_rows or {}).items():
            if rows:
                await self.session.exec(insert(table), params=rows)

    async def list_rows(
        self, where: ReferralFilter, *, limit: int, after: tuple[datetime, UUID] | None
    ) -> list[tuple[RowMapping, list[RowMapping]]]:
        """Newest first; up to `limit` referrals strictly after the keyset `after`, as stored
        rows with their needs' rows (in order), each as a mapping of its columns: listing
        builds its answer straight from them (`schemas.referral_document`)."""
        statement, params = list_statement(where, limit=limit, after=after)
        rows = list((await self.session.exec(statement, params=params)).mappings())
        needs: dict[UUID, list[RowMapping]] = {row["id"]: [] for row in rows}
        if rows:
            result = await self.session.exec(_LISTED_NEEDS, params={"referral_ids": list(needs)})
            for need in result.mappings():
                needs[need["referral_id"]].append(need)
        return [(row, sorted(needs[row["id"]], key=itemgetter("position"))) for row in rows]

    async def history(
        self, referral_id: UUID, *, limit: int, after: tuple[datetime, int] | None
    ) -> list[tuple[int, HistoryEntry]]:
        """Oldest first by when it happened, then by when it was recorded."""
        h = HISTORY.c
        query = select(HISTORY).where(h.referral_id == referral_id)
        if after is not None:
            query = query.where(tuple_(h.at, h.id) > tuple_(*after))
        query = query.order_by(h.at, h.id).limit(limit)
        rows = (await self.session.exec(query)).all()
        return [(row.id, history_to_domain(row)) for row in rows]

    async def all_for_crn(self, crn: str) -> list[tuple[Referral, list[HistoryEntry]]]:
        result = await self.session.exec(
            select(REFERRALS)
            .where(REFERRALS.c.crn == crn)
            .order_by(REFERRALS.c.submitted_at, REFERRALS.c.id)
        )
        referrals = await self._with_needs(list(result.all()))
        out = []
        for referral in referrals:
            history = await self.session.exec(
                select(HISTORY)
                .where(HISTORY.c.referral_id == referral.id)
                .order_by(HISTORY.c.at, HISTORY.c.id)
            )
            out.append((referral, [history_to_domain(h) for h in history]))
        return out
