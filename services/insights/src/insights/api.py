"""Routes: parse, authorise, call the service, shape the response."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["figures"])
