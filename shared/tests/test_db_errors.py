"""A database error's text, which consumers and workers log, names its statement but never its
values: personal data in a statement's parameters stays out of the log."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from pathways_shared.db import make_engine, make_sessionmaker

from .conftest import Effect

EFFECTS = Effect.__table__
SECRET = "Jane Doe X123456"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_an_error_names_the_statement_not_its_values(backend, database_url, tmp_path):
    url = database_url if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp_path}/errors.db"
    engine = make_engine(url)
    try:
        if backend == "sqlite":
            async with engine.begin() as connection:
                await connection.run_sync(lambda sync: EFFECTS.create(sync))
        event_id = str(uuid.uuid4())
        row = {"id": uuid.uuid4().int % 2**31, "event_id": event_id, "note": SECRET}
        async with make_sessionmaker(engine)() as session:
            await session.exec(insert(EFFECTS), params=row)
            with pytest.raises(DBAPIError) as refused:  # the same primary key twice
                await session.exec(insert(EFFECTS), params=row)
            await session.rollback()
            with pytest.raises(DBAPIError) as malformed:
                await session.exec(text("SELECT no_such_column WHERE :who = :who"), params={"who": SECRET})
        for error in (refused.value, malformed.value):
            assert "INSERT INTO" in str(error) or "SELECT" in str(error)
            assert SECRET not in str(error)
            assert event_id not in str(error)
    finally:
        await engine.dispose()
