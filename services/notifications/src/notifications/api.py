"""HTTP routes of the notifications service: parse, authorise, call the service layer, shape."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
