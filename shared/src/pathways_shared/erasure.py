"""Personal data erased a set period after a record ends (DOMAIN.md, "Keeping data no longer
than necessary"; DPA 2018 Part 3, s.62).

Each service says, with one `Eraser` per kind of record, which records have ended and when,
and what erasing one blanks: names, dates of birth, contacts, free text and the identifiers
(CRN, NOMS and PNC numbers). What remains is the record's skeleton: its own ids, dates,
statuses and categories, which the figures count. `erase_personal_data` runs every eraser in
batches (`PATHWAYS_ERASURE_BATCH_SIZE` records, one short transaction each; on PostgreSQL the
rows are taken `FOR UPDATE SKIP LOCKED`, so two replicas share the work and neither waits on a
row a request holds), and for each record erased writes, in the same transaction:
- an s.62 access-log entry, action "erasure", by the system, naming the record by type and id
  only (no CRN, never the erased content);
- a line of the erasure register (`erasures`): the record's type and id, when it ended, when
  it was erased, the names of the fields blanked, and a keyed hash of the CRN
  (`subject_key`, HMAC-SHA256 with `PATHWAYS_ERASURE_REGISTER_KEY`). The CRN cannot be
  recovered from it, but a subject access request, which brings the CRN, finds by it what was
  erased and when (`erasures_for`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Column, Index, Text, insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.access import Action, access_log_for, record_access
from pathways_shared.auth import Principal
from pathways_shared.config import ServiceSettings
from pathways_shared.infra_models import AccessLog, BigIntPK, utc_column
from pathways_shared.observability import get_logger
from pathways_shared.outputs import UtcDateTime

log = get_logger(__name__)

ERASURE_ACTOR = "system:erasure"
ERASURE_PURPOSE = "retention period ended: personal data erased (DOMAIN.md)"


class ErasureRecord(SQLModel, table=True):
    """The erasure register: what was erased and when, findable only with the CRN in hand."""

    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_subject", "subject_key", "erased_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    subject_key: str | None = Field(default=None, max_length=64)
    record_type: str = Field(max_length=40)
    record_id: str = Field(max_length=64)
    ended_at: datetime = Field(sa_column=utc_column())
    erased_at: datetime = Field(sa_column=utc_column())
    fields: str = Field(sa_column=Column(Text, nullable=False))  # comma-separated names


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ErasurePublic(BaseModel):
    """One erasure, as a subject access request reports it: which record (by type and id),
    when it ended, when its personal data was erased, and which fields were blanked."""

    record_type: str
    record_id: str
    ended_at: UtcDateTime
    erased_at: UtcDateTime
    fields: list[str]

    @classmethod
    def of(cls, row: ErasureRecord) -> ErasurePublic:
        return cls(record_type=row.record_type, record_id=row.record_id,
                   ended_at=_utc(row.ended_at), erased_at=_utc(row.erased_at),
                   fields=[f for f in row.fields.split(",") if f])


@dataclass(frozen=True)
class Erasable:
    """A record whose personal data is due to be erased: its id, whose it is, when it ended."""

    record_id: str
    crn: str | None
    ended_at: datetime


class Eraser(Protocol):
    """One kind of record of one service."""

    record_type: str  # e.g. "referral": with the id, names the record in the log and register
    fields: tuple[str, ...]  # what erasing blanks, by name

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        """Records not yet erased that ended before `ended_before`, at most `limit`, locked
        for this transaction (`lock_due`)."""
        ...

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        """Blank `fields` of these records and mark them erased at `now`."""
        ...


def lock_due(query: Any, *tables: Any) -> Any:
    """`FOR UPDATE OF tables SKIP LOCKED` on PostgreSQL (SQLite, one writer, renders none)."""
    return query.with_for_update(of=list(tables) or None, skip_locked=True)


async def ended_records(
    session: AsyncSession, table: Any, *, ended: Any, ended_at: Any, ended_before: datetime,
    limit: int | None,
) -> list[Erasable]:
    """The usual `Eraser.due`: the rows of `table` (with `id`, `crn` and `erased_at` columns)
    not yet erased for which `ended` holds and whose end, the column `ended_at`, came before
    `ended_before`; oldest end first, at most `limit`, locked (`lock_due`)."""
    c = table.c
    query = lock_due(
        select(c.id, c.crn, ended_at)
        .where(c.erased_at.is_(None), ended, ended_at < ended_before)
        .order_by(ended_at, c.id).limit(limit),
        table,
    )
    return [Erasable(str(r[0]), r[1], r[2]) for r in (await session.exec(query)).all()]


def register_key(settings: ServiceSettings) -> str:
    """PATHWAYS_ERASURE_REGISTER_KEY, else one derived from the JWT secret (set a key of its
    own in production, and keep it: with another key the register finds nothing)."""
    return settings.erasure_register_key or hashlib.sha256(
        f"pathways-erasure:{settings.jwt_secret or settings.jwks_url or ''}".encode()
    ).hexdigest()


def subject_key(crn: str, key: str) -> str:
    return hmac.new(key.encode(), crn.strip().upper().encode(), hashlib.sha256).hexdigest()


async def erase_personal_data(
    sessionmaker: async_sessionmaker[AsyncSession],
    erasers: Sequence[Eraser],
    settings: ServiceSettings,
    now: datetime,
    *,
    dry_run: bool = False,
) -> dict[str, int]:
    """One pass: erase what is due, batch by batch; how many records of each type (in a dry
    run, how many are due, nothing changed)."""
    ended_before = now - timedelta(days=settings.erase_personal_data_after_days)
    batch_size = settings.erasure_batch_size
    key = register_key(settings)
    done: dict[str, int] = {}
    for eraser in erasers:
        if dry_run:
            async with sessionmaker() as session:
                done[eraser.record_type] = len(await eraser.due(session, ended_before, None))
            continue
        count = 0
        seen: set[str] = set()
        while True:
            async with sessionmaker() as session, session.begin():
                due = await eraser.due(session, ended_before, batch_size)
                if {r.record_id for r in due} & seen:
                    # An eraser that does not mark what it erased would loop for ever.
                    raise RuntimeError(f"{eraser.record_type}: erased records came back as due")
                if due:
                    await eraser.erase(session, due, now)
                    await _record_erasures(session, eraser, due, now, key)
            seen.update(r.record_id for r in due)
            count += len(due)
            if len(due) < batch_size:
                break
        done[eraser.record_type] = count
    if any(done.values()):
        log.info("erasure.dry_run" if dry_run else "erasure.erased", **done)
    return done


async def _record_erasures(
    session: AsyncSession, eraser: Eraser, records: Sequence[Erasable], now: datetime, key: str,
) -> None:
    fields = ",".join(eraser.fields)
    await session.exec(insert(ErasureRecord.__table__), params=[
        {"subject_key": subject_key(r.crn, key) if r.crn else None,
         "record_type": eraser.record_type, "record_id": r.record_id,
         "ended_at": r.ended_at, "erased_at": now, "fields": fields}
        for r in records
    ])
    await session.exec(insert(AccessLog.__table__), params=[
        {"at": now, "actor": ERASURE_ACTOR, "roles": "system", "action": Action.ERASURE.value,
         "resource": f"{eraser.record_type}/{r.record_id}", "crn": None,
         "purpose": ERASURE_PURPOSE, "correlation_id": None}
        for r in records
    ])


async def erasures_for(
    session: AsyncSession, crn: str, settings: ServiceSettings
) -> list[ErasurePublic]:
    """What this service erased of the person with this CRN, and when (oldest first)."""
    e = ErasureRecord.__table__.c
    rows = (await session.exec(
        select(ErasureRecord).where(e.subject_key == subject_key(crn, register_key(settings)))
        .order_by(e.erased_at, e.id)
    )).all()
    return [ErasurePublic.of(row) for row in rows]


async def subject_access_records(
    session: AsyncSession, principal: Principal, crn: str, settings: ServiceSettings,
    *, purpose: str = "subject access request",
) -> tuple[list[AccessLog], list[ErasurePublic]]:
    """What every service's answer to a subject access request holds besides its own records:
    the access log about the person and what was erased of them. The request itself is logged
    as a disclosure (after the log is read, so the answer does not list itself)."""
    log = await access_log_for(session, crn)
    erasures = await erasures_for(session, crn, settings)
    record_access(session, actor=principal, action=Action.DISCLOSURE,
                  resource=f"/subject-access-requests?crn={crn}", crn=crn, purpose=purpose)
    return log, erasures


def create_erasure_register() -> None:
    """For a service's migration: the `erasures` table."""
    import sqlalchemy as sa
    from alembic import op

    from pathways_shared.migrations import BIGINT_PK

    op.create_table(
        "erasures",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("subject_key", sa.String(64), nullable=True),
        sa.Column("record_type", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
    )
    op.create_index("ix_erasures_subject", "erasures", ["subject_key", "erased_at"])


def drop_erasure_register() -> None:
    from alembic import op

    op.drop_index("ix_erasures_subject", table_name="erasures")
    op.drop_table("erasures")
