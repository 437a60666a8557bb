"""Tables every service has: the outbox, processed events, dead letters and the access log.

Each service's first migration creates them with `pathways_shared.migrations`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

# SQLite only autoincrements INTEGER PRIMARY KEY; Postgres gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utc_column(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    seq: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=36, unique=True)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    created_at: datetime = Field(sa_column=utc_column())
    published_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("consumer", "event_id", name="uq_processed_events"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    consumer: str = Field(max_length=200)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=200)
    processed_at: datetime = Field(sa_column=utc_column())


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    consumer: str = Field(max_length=200)
    stream: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    stream_sequence: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    event_id: str | None = Field(default=None, max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    error: str = Field(sa_column=Column(Text, nullable=False))
    deliveries: int = 1
    created_at: datetime = Field(sa_column=utc_column())
    resolved_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    resolution: str | None = Field(default=None, max_length=50)


class AccessLog(SQLModel, table=True):
    """DPA 2018 s.62 logging: who did what to whose record, when and why."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_crn_at", "crn", "at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    at: datetime = Field(sa_column=utc_column())
    actor: str = Field(max_length=200)
    roles: str = Field(max_length=200)
    action: str = Field(max_length=30)  # collection, alteration, consultation, disclosure, ...
    resource: str = Field(max_length=300)
    crn: str | None = Field(default=None, max_length=20)
    purpose: str = Field(max_length=300)
    correlation_id: str | None = Field(default=None, max_length=100)
