"""What the figures API (and the dashboard) asks and answers.

`FiguresQuery` is a validated question: areas already expanded and authorised, a period, up to
two dimensions and optional filters. `FiguresAnswer` is the contract's answer shape; rows are
plain dicts (their keys depend on `by` and on the kind of figures).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from insights.domain.dimensions import Dimension


class FiguresQuery(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    areas: tuple[str, ...]
    from_: date = Field(alias="from")
    to: date
    by: tuple[Dimension, ...] = ()
    pathway: str | None = None
    provider: str | None = None


class Suppression(BaseModel):
    threshold: int


class FiguresAnswer(BaseModel):
    """The contract's answer: `{"areas", "from", "to", "by", "suppression", "rows", "total"}`.

    In `rows` and `total` a suppressed count is null and named in the row's `suppressed`;
    a dimension with no value for a count (the provider of a need never allocated) is null.
    """

    model_config = ConfigDict(populate_by_name=True)

    kind: str = Field(exclude=True)
    areas: list[str]
    from_: date = Field(alias="from")
    to: date
    by: list[str]
    suppression: Suppression
    rows: list[dict[str, Any]]
    total: dict[str, Any]

    @property
    def columns(self) -> list[str]:
        """Dimensions, then figures, in the order the CSV and the dashboard's tables use."""
        figures = [k for k in self.total if k != "suppressed"]
        return [*self.by, *figures]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    from pathways_shared.problems import PROBLEM_JSON

    return {
        status: {"description": "Problem details (RFC 9457)",
                 "content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}
        for status in statuses
    }


class CohortEventStored(BaseModel):
    """One IOM cohort event of the person, as the service keeps it (under the pseudonym)."""

    event_id: str
    kind: str
    area: str
    cohort: str
    reason: str | None
    pathway: str | None
    status: str | None
    occurred_at: datetime


class SubjectAccessPublic(BaseModel):
    """Everything the insights service holds on a person (DPA 2018 s.45)."""

    crn: str
    service: str
    pseudonym: str = Field(description="The keyed pseudonym the person's cohort events are kept under")
    note: str
    cohort_events: list[CohortEventStored]
