"""Tables of the insights service: the facts each event brings, and the figures made from them.

No names, dates of birth, contact details or CRNs: ids, categories, codes and times only.

Facts are the source of truth and arrive in any order; each is keyed by the event that
brought it and inserted unless already there, so a redelivered or replayed event changes
nothing:
- `need_facts`: one row per need, from its submission: the dimensions fixed then.
- `allocation_facts`: one row per allocation (provider referral): its service and deadlines.
- `step_facts`: one row per (event, need) for every later step, with the provider referral
  it happened in where the event names one.
- `cohort_facts`: one row per cohort event (adoption, deselection, pathway activity), the
  person known only by a keyed pseudonym (`member_key`), never the CRN.

Figures are read from pre-aggregates, never from the facts, so a query over a million needs
costs the same as over a thousand: `figure_cells` holds the counts of each step per day
(`grain` "D") and per calendar month ("M") for each combination of the dimensions, in three
cubes: "F" every dimension, "S" without the person's (sex, age band, supervision, complexity:
stored as ""), "P" without the allocation's (service, provider, programme); a question reads
the smallest cube that has its dimensions, a few thousand rows a year instead of a hundred
thousand. A period is read as its whole months plus the days left over at either end (or
a month less its days outside the period, when those are fewer: `domain.periods.period_terms`);
`figure_details` the counts of categorical details (unmet-need reason, decline reason, whole
working days to acknowledge and to respond, for medians). A need's contribution to both is a
pure function of its facts (`insights.domain.projection`); each change to a need's facts
applies the difference between its contribution after and before, under a per-need lock, so
the aggregates equal the sum over needs whatever the arrival order.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, String
from sqlmodel import Field, SQLModel

from pathways_shared.infra_models import (  # noqa: F401  (registers the infrastructure tables)
    AccessLog,
    BigIntPK,
    DeadLetter,
    OutboxMessage,
    ProcessedEvent,
    utc_column,
)

# A dimension with no value (a step before any allocation has no provider) is stored as ""
# in the aggregates, so it takes part in their unique keys, and answered as null.
NO_VALUE = ""


class NeedFact(SQLModel, table=True):
    __tablename__ = "need_facts"

    need_id: str = Field(primary_key=True, max_length=36)
    referral_id: str = Field(max_length=36, index=True)
    event_id: str = Field(max_length=36)
    area: str = Field(max_length=20)
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=10)
    sex: str = Field(max_length=10)
    age_band: str = Field(max_length=10)
    supervision: str = Field(max_length=20)
    at_risk_of_homelessness: bool = False
    submitted_at: datetime = Field(sa_column=utc_column(nullable=False))


class AllocationFact(SQLModel, table=True):
    __tablename__ = "allocation_facts"

    provider_referral_id: str = Field(primary_key=True, max_length=36)
    need_id: str = Field(max_length=36, index=True)
    event_id: str = Field(max_length=36)
    service_code: str = Field(max_length=40)
    provider_code: str = Field(max_length=40)
    programme: str = Field(max_length=40)
    allocated_at: datetime = Field(sa_column=utc_column(nullable=False))
    acknowledge_by: datetime = Field(sa_column=utc_column(nullable=False))
    respond_by: datetime = Field(sa_column=utc_column(nullable=False))


class StepFact(SQLModel, table=True):
    __tablename__ = "step_facts"
    __table_args__ = (PrimaryKeyConstraint("event_id", "need_id", name="pk_step_facts"),)

    event_id: str = Field(max_length=36)
    need_id: str = Field(max_length=36, index=True)
    step: str = Field(max_length=30)
    provider_referral_id: str | None = Field(default=None, max_length=36)
    detail: str | None = Field(default=None, max_length=40)
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))


class CohortFact(SQLModel, table=True):
    __tablename__ = "cohort_facts"
    # Covering (migration 0003): the cohort figures read only this index.
    __table_args__ = (Index("ix_cohort_facts_read", "area", "occurred_at", postgresql_include=[
        "event_id", "kind", "member_key", "cohort", "reason", "pathway", "status"]),)

    event_id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=20)  # selected, deselected, activity
    member_key: str = Field(max_length=64, index=True)
    area: str = Field(max_length=20)
    cohort: str = Field(max_length=10)
    reason: str | None = Field(default=None, max_length=40)
    pathway: str | None = Field(default=None, max_length=40)
    status: str | None = Field(default=None, max_length=20)
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))


class NeedClaim(SQLModel, table=True):
    """One row per need whose facts anyone stores, inserted (unless there) by every writer on
    PostgreSQL before it reads the need's facts: what makes a one-statement projection, which
    reads nothing, safe beside the transactions (`insights.repository.settle_in_one`). The
    transaction's insert waits for a concurrent one-statement claim of the need to end, so
    then reads what it stored; the one statement, finding the need claimed, writes nothing."""

    __tablename__ = "need_claims"

    need_id: str = Field(primary_key=True, max_length=36)


CELL_KEY = (
    "cube", "grain", "period", "month", "area", "pathway", "complexity", "sex", "age_band",
    "supervision", "service_code", "provider_code", "programme",
)

CELL_MEASURES = (
    "submitted", "allocated", "unallocated", "declined", "accepted", "started", "completed",
    "withdrawn", "acknowledged_on_time", "acknowledged_late", "responded_on_time",
    "responded_late", "deadlines_missed", "outcome_achieved", "outcome_partially_achieved",
    "outcome_not_achieved", "duty_to_refer_sent", "accommodation_at_risk",
)


def _count() -> Column:
    return Column(BigInteger().with_variant(Integer(), "sqlite"), nullable=False, default=0,
                  server_default="0")


class FigureCell(SQLModel, table=True):
    __tablename__ = "figure_cells"
    __table_args__ = (
        PrimaryKeyConstraint(*CELL_KEY, name="pk_figure_cells"),
        Index("ix_figure_cells_area_period", "cube", "grain", "area", "period"),
    )

    cube: str = Field(sa_column=Column(String(1), nullable=False))  # F, S or P: see CUBES
    grain: str = Field(sa_column=Column(String(1), nullable=False))  # D: a day, M: a month
    period: date  # the day, or the first day of the month
    month: str = Field(max_length=7)  # YYYY-MM of the period
    area: str = Field(max_length=20)
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=10)
    sex: str = Field(max_length=10)
    age_band: str = Field(max_length=10)
    supervision: str = Field(max_length=20)
    service_code: str = Field(max_length=40)
    provider_code: str = Field(max_length=40)
    programme: str = Field(max_length=40)
    submitted: int = Field(sa_column=_count())
    allocated: int = Field(sa_column=_count())
    unallocated: int = Field(sa_column=_count())
    declined: int = Field(sa_column=_count())
    accepted: int = Field(sa_column=_count())
    started: int = Field(sa_column=_count())
    completed: int = Field(sa_column=_count())
    withdrawn: int = Field(sa_column=_count())
    acknowledged_on_time: int = Field(sa_column=_count())
    acknowledged_late: int = Field(sa_column=_count())
    responded_on_time: int = Field(sa_column=_count())
    responded_late: int = Field(sa_column=_count())
    deadlines_missed: int = Field(sa_column=_count())
    outcome_achieved: int = Field(sa_column=_count())
    outcome_partially_achieved: int = Field(sa_column=_count())
    outcome_not_achieved: int = Field(sa_column=_count())
    duty_to_refer_sent: int = Field(sa_column=_count())
    accommodation_at_risk: int = Field(sa_column=_count())


class FigureDetail(SQLModel, table=True):
    __tablename__ = "figure_details"
    __table_args__ = (
        PrimaryKeyConstraint(*CELL_KEY, "measure", "detail", name="pk_figure_details"),
        # Covering (migration 0003): medians and decline reasons read only this index.
        Index("ix_figure_details_read", "measure", "cube", "grain", "area", "period",
              postgresql_include=["pathway", "complexity", "sex", "age_band", "supervision",
                                  "service_code", "provider_code", "programme", "month",
                                  "detail", "count"]),
    )

    cube: str = Field(sa_column=Column(String(1), nullable=False))
    grain: str = Field(sa_column=Column(String(1), nullable=False))
    period: date
    month: str = Field(max_length=7)
    area: str = Field(max_length=20)
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=10)
    sex: str = Field(max_length=10)
    age_band: str = Field(max_length=10)
    supervision: str = Field(max_length=20)
    service_code: str = Field(max_length=40)
    provider_code: str = Field(max_length=40)
    programme: str = Field(max_length=40)
    # unmet_reason, decline_reason, working_days_to_acknowledge, working_days_to_respond
    measure: str = Field(max_length=40)
    detail: str = Field(max_length=40)
    count: int = Field(sa_column=_count())


# cube -> the dimensions it keeps ("" in the others)
CUBES: dict[str, frozenset[str]] = {
    "F": frozenset({"area", "pathway", "complexity", "sex", "age_band", "supervision",
                    "service_code", "provider_code", "programme"}),
    "S": frozenset({"area", "pathway", "service_code", "provider_code", "programme"}),
    "P": frozenset({"area", "pathway", "complexity", "sex", "age_band", "supervision"}),
}

PROJECTION_TABLES = (
    "need_facts", "allocation_facts", "step_facts", "cohort_facts", "figure_cells",
    "figure_details", "need_claims",
)
