"""The offence CSV import: parsed off the event loop, written in batches, each batch its own
unit of work (so it takes the sessionmaker, unlike every other use case)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.offences import (
    RowError,
    check_row,
    header_problems,
)
from cohorts.models import (
    OffenceImportRecord,
)
from cohorts.repository import CohortsRepository
from pathways_shared.access import Action
from pathways_shared.auth import Principal
from pathways_shared.clock import london_today
from pathways_shared.problems import NotFound, ValidationProblem

# --- the CSV import -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedImport:
    good: list[Any]  # OffenceRow
    errors: list[Any]  # RowError
    total_rows: int


def parse_offence_csv(data: bytes, today: date) -> ParsedImport:
    """Every row checked; the whole file refused (422) only when it is not a CSV of ours."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationProblem("the file is not UTF-8 text", field="body") from exc
    if "\x00" in text:  # PostgreSQL stores no NUL: refuse the file rather than fail (a 500)
        raise ValidationProblem("the file contains a NUL character", field="body")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValidationProblem("the file is not CSV", field="body") from exc
    problems = header_problems(header)
    if problems:
        raise ValidationProblem(problems[0].message, field="header")
    good, errors, total = [], [], 0
    columns = ("crn", "offence_date", "category", "description")
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            line = reader.line_num
            total += 1
            errors.append(RowError(line, "row", "is not valid CSV"))
            continue
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        total += 1
        raw: dict[Any, Any] = dict(zip(columns, cells))
        if len(cells) > len(columns):
            raw[None] = cells[len(columns) :]
        checked = check_row(line, raw, today)
        if isinstance(checked, list):
            errors.extend(checked)
        else:
            good.append(checked)
    return ParsedImport(good, errors, total)


async def start_import(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, *, now: datetime
) -> str:
    import_id = str(uuid.uuid4())
    async with sessionmaker() as session, session.begin():
        CohortsRepository(session).add(
            OffenceImportRecord(
                id=import_id,
                status="running",
                created_by=principal.actor,
                started_at=now,
                errors=[],
            ),
        )
    return import_id


async def run_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    import_id: str,
    data: bytes,
    *,
    now: datetime,
    batch_size: int,
    max_listed_errors: int = 1000,
) -> None:
    """Load the good rows in batches; each batch, with its progress, is one transaction, so a
    batch is loaded whole or not at all. Rows of nominals in areas the caller cannot see, and,
    for an area-bound caller, rows of CRNs with no nominal yet, are refused like bad rows."""
    try:
        # Checking hundreds of thousands of rows takes CPU: off the event loop.
        parsed = await asyncio.to_thread(parse_offence_csv, data, london_today(now))
    except ValidationProblem as problem:
        await _finish_import(sessionmaker, import_id, status="failed", failure=problem.detail)
        raise
    batches = [parsed.good[i : i + batch_size] for i in range(0, len(parsed.good), batch_size)]
    errors = [e.as_dict() for e in parsed.errors]
    async with sessionmaker() as session, session.begin():
        record = await CohortsRepository(session).get_import(import_id)
        assert record is not None
        record.total_rows = parsed.total_rows
        record.rejected = len({e.line for e in parsed.errors})
        record.batches_total = len(batches)
        record.processed_rows = record.rejected
        record.errors = sorted(errors, key=lambda e: e["line"])[:max_listed_errors]
    for batch in batches:
        try:
            async with sessionmaker() as session, session.begin():
                repository = CohortsRepository(session)
                areas = await repository.areas_of(sorted({row.crn for row in batch}))
                # An area-bound caller loads offences only of nominals recorded in its areas:
                # a row for a CRN with no nominal yet is refused too (else it would count in
                # whichever area later records that nominal). Same answer either way, so the
                # answer does not tell whether the CRN is recorded elsewhere.
                refused = [
                    row for row in batch if not principal.may_see_area(areas.get(row.crn))
                ]
                refused_lines = {row.line for row in refused}
                rows = [
                    {
                        "crn": row.crn,
                        "offence_date": row.offence_date,
                        "category": row.category.value,
                        "description": row.description or "",
                        "recorded_at": now,
                        "import_id": import_id,
                    }
                    for row in batch
                    if row.line not in refused_lines
                ]
                loaded = await repository.insert_offences(rows)
                await repository.log_access_many(
                    actor=principal,
                    action=Action.COLLECTION,
                    crns=sorted({row["crn"] for row in rows}),
                    resource=f"/offence-imports/{import_id}",
                    purpose="bulk load of police offence records",
                )
                record = await repository.get_import(import_id)
                assert record is not None
                record.loaded += loaded
                record.duplicates += len(rows) - loaded
                record.rejected += len(refused)
                record.processed_rows += len(batch)
                record.batches_done += 1
                if refused:
                    record.errors = sorted(
                        [
                            *record.errors,
                            *(
                                {
                                    "line": r.line,
                                    "field": "crn",
                                    "message": "the nominal is not in your areas",
                                }
                                for r in refused
                            ),
                        ],
                        key=lambda e: e["line"],
                    )[:max_listed_errors]
        except Exception as exc:
            await _finish_import(
                sessionmaker,
                import_id,
                status="failed",
                failure=f"batch {batches.index(batch) + 1} of {len(batches)} was not loaded: {type(exc).__name__}",
            )
            raise
    await _finish_import(sessionmaker, import_id, status="completed")


async def _finish_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    import_id: str,
    *,
    status: str,
    failure: str | None = None,
) -> None:
    async with sessionmaker() as session, session.begin():
        record = await CohortsRepository(session).get_import(import_id)
        if record is not None:
            record.status = status
            record.failure = failure
            record.finished_at = datetime.now(UTC)


async def get_import(
    session: AsyncSession, principal: Principal, import_id: str
) -> OffenceImportRecord:
    record = await CohortsRepository(session).get_import(import_id)
    if record is None or (record.created_by != principal.actor and not principal.has("admin")):
        raise NotFound(f"no import {import_id}")
    return record
