"""The projection's write statements are built once per dialect (and table) and reused: the
cached statement is the one built afresh would be, on both dialects, and the same object
each call."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from insights import repository
from insights.models import CELL_KEY, CELL_MEASURES

DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}


def sql(statement, name: str) -> str:
    return str(statement.compile(dialect=DIALECTS[name].dialect()))


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_cached_upserts_are_those_built_afresh(name):
    cells = DIALECTS[name].insert(repository.CELLS)
    fresh_cells = cells.on_conflict_do_update(
        index_elements=list(CELL_KEY),
        set_={m: repository.CELLS.c[m] + cells.excluded[m] for m in CELL_MEASURES},
    )
    details = DIALECTS[name].insert(repository.DETAILS)
    fresh_details = details.on_conflict_do_update(
        index_elements=[*CELL_KEY, "measure", "detail"],
        set_={"count": repository.DETAILS.c["count"] + details.excluded["count"]},
    )
    assert sql(repository._add_to_cells(name), name) == sql(fresh_cells, name)
    assert sql(repository._add_to_details(name), name) == sql(fresh_details, name)
    assert repository._add_to_cells(name) is repository._add_to_cells(name)
    for table in (repository.NEEDS, repository.ALLOCATIONS, repository.STEPS,
                  repository.COHORT_FACTS):
        fresh = DIALECTS[name].insert(table).on_conflict_do_nothing().returning(
            *table.primary_key.columns)
        assert sql(repository._insert_if_new(name, table), name) == sql(fresh, name)
        assert repository._insert_if_new(name, table) is repository._insert_if_new(name, table)
