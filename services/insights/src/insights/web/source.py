"""Where the dashboard's figures come from: the insights service's own figures function, the
one behind `/figures/*`, called in-process with the caller's scope (no HTTP hop, no token).
Filled in when the figures service lands (branch `insights`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from insights.web.filters import Filters
from pathways_shared.auth import Principal


async def answers(
    request: Request, principal: Principal, filters: Filters, wanted: set[tuple[str, tuple[str, ...]]]
) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    raise NotImplementedError


async def csv(
    request: Request, principal: Principal, filters: Filters, kind: str, by: tuple[str, ...]
) -> str:
    raise NotImplementedError
