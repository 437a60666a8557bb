"""Fixtures for the shared package's own tests: a PostgreSQL database holding the
infrastructure tables plus a small `effects` table, and a tiny app built with `build_app`."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PField
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.auth import require_roles
from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import Subscription
from pathways_shared.db import SessionDep
from pathways_shared.events import Event, make_event
from pathways_shared.infra_models import AccessLog, DeadLetter, OutboxMessage, ProcessedEvent
from pathways_shared.outbox import add_event
from pathways_shared.problems import Conflict
from pathways_shared.runtime import build_app
from pathways_shared.testing import TEST_JWT_SECRET, running, truncate_database


class Effect(SQLModel, table=True):
    __tablename__ = "effects"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str
    note: str = ""


TABLES = [t.__table__ for t in (OutboxMessage, ProcessedEvent, DeadLetter, AccessLog, Effect)]


async def _create_tables(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=TABLES))
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(make_database) -> str:
    url = make_database("shared")
    asyncio.run(_create_tables(url))
    return url


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = PField(max_length=20)
    count: int = 1


async def record_effect(session: AsyncSession, event: Event) -> None:
    if event.additional_information.get("poison"):
        raise RuntimeError("this event always fails")
    session.add(Effect(event_id=str(event.id), note=event.additional_information.get("note", "")))


def make_test_app(settings: ServiceSettings) -> Any:
    router = APIRouter()

    @router.post("/pings", status_code=201)
    async def ping(body: Ping, session: SessionDep, _=Depends(require_roles("admin"))) -> dict:
        if body.note == "conflict":
            raise Conflict("a conflict on purpose")
        if body.note == "boom":
            session.add(Effect(event_id="should-roll-back", note="boom"))
            raise RuntimeError("an unexpected bug")
        event = make_event("pathways.test.ping", {"note": body.note})
        add_event(session, event)
        return {"id": str(event.id)}

    subscription = Subscription(
        stream="PATHWAYS", durable="shared-test", handlers={"pathways.test.ping": record_effect}
    )
    return build_app(settings, title="test", routers=[router], subscriptions=[subscription])


@pytest.fixture
async def settings(database_url, subject_prefix, nats_url) -> ServiceSettings:
    await truncate_database(database_url)
    return ServiceSettings(
        service_name="shared-test", environment="test", database_url=database_url,
        nats_url=nats_url, subject_prefix=subject_prefix, jwt_secret=TEST_JWT_SECRET,
        log_json=False, relay_poll_seconds=0.5, consumer_max_deliveries=3,
    )


@pytest.fixture
async def app(settings):
    app = make_test_app(settings)
    async with running(app):
        yield app


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
def effect_model():
    return Effect


@pytest.fixture
def app_factory():
    return make_test_app
