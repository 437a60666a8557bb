"""Where the dashboard's figures come from: the insights service's own figures function, the
one behind `/figures/*` (`insights.service.figures` and `render_csv`), called in-process with
the caller's scope, so a page and the API cannot disagree. A page's queries run at once, each
on its own session."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from insights import service
from insights.domain.figures import FigureKind
from insights.schemas import FiguresAnswer, FiguresQuery
from insights.web.filters import Filters
from pathways_shared.auth import Principal

Wanted = tuple[str, tuple[str, ...]]


def _query(principal: Principal, filters: Filters, kind: str, by: tuple[str, ...]) -> FiguresQuery:
    """The API's own validation and area scoping (a 422 or 403 problem if ever at fault)."""
    return service.parse_query(
        kind, areas=service.resolve_areas(principal, list(filters.areas)),
        start=filters.date_from, end=filters.date_to, by=",".join(by),
        pathway=filters.pathway, provider=filters.provider, today=filters.date_to,
    )


async def _answer(request: Request, principal: Principal, filters: Filters, kind: str,
                  by: tuple[str, ...]) -> FiguresAnswer:
    runtime = request.app.state.runtime
    threshold = request.app.state.settings.suppression_threshold
    async with runtime.sessionmaker() as session:
        return await service.figures(session, FigureKind(kind), _query(principal, filters, kind, by),
                                     threshold=threshold)


async def answers(
    request: Request, principal: Principal, filters: Filters, wanted: set[Wanted]
) -> dict[Wanted, dict[str, Any]]:
    """Each wanted (kind, by) answered as the API's JSON would be."""
    order = sorted(wanted)
    results = await asyncio.gather(*(_answer(request, principal, filters, k, b) for k, b in order))
    return {w: a.model_dump(mode="json", by_alias=True) for w, a in zip(order, results, strict=True)}


async def csv(request: Request, principal: Principal, filters: Filters, kind: str,
              by: tuple[str, ...]) -> str:
    """The CSV the API answers for the same question."""
    return service.render_csv(await _answer(request, principal, filters, kind, by))
