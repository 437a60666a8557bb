"""The offence CSV import, streamed: the body is parsed and checked as it arrives (off the event
loop), the good rows spooled to a temporary file, then written in batches, each batch its own
unit of work (so it takes the sessionmaker, unlike every other use case).

Nothing is written until the whole body has arrived and been checked, so a file refused whole
(not UTF-8, a NUL, not our header: 422), a body cut off or past its limit leaves nothing behind.
Memory stays bounded by a few chunks, one CSV field and one batch, whatever the body's size.
"""

from __future__ import annotations

import asyncio
import csv
import io
import queue
import tempfile
import uuid
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import IO, Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.offences import (
    OffenceRow,
    RowError,
    check_row,
    header_problems,
)
from cohorts.models import (
    OffenceImportRecord,
)
from cohorts.repository import CohortsRepository
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.clock import london_today
from pathways_shared.problems import NotFound, ValidationProblem
from pathways_shared.vocabulary import OffenceCategory

# --- parsing, as the body arrives -----------------------------------------------------------

_COLUMNS = ("crn", "offence_date", "category", "description")
_QUEUED_CHUNKS = 8  # chunks of the body waiting for the parser: the bound on what is held
_SPOOL_IN_MEMORY = 1 << 20  # good rows past this many bytes go to disk
MAX_LINE_CHARS = 1 << 16  # a longer line refuses the file (422), read no further than this


@dataclass
class ParsedImport:
    """What checking the whole file found: its good rows spooled (line, crn, date, category,
    description), the first `max_listed_errors` row errors in line order, and the counts."""

    good: IO[str]
    good_rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0  # lines with at least one error, listed or not
    total_rows: int = 0

    def batches(self, size: int) -> Iterator[list[OffenceRow]]:
        self.good.seek(0)
        batch: list[OffenceRow] = []
        for line, crn, offence_date, category, description in csv.reader(self.good):
            batch.append(
                OffenceRow(
                    int(line),
                    crn,
                    date.fromisoformat(offence_date),
                    OffenceCategory(category),
                    description or None,
                )
            )
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self.good.close()


class _Lines:
    """The body's lines, decoded as they are read (a BOM dropped, line ends kept, as csv
    wants), each read no further than `MAX_LINE_CHARS` (a body of one endless line is not held
    whole); a body that is not UTF-8, holds a NUL or a line past that length is noted, not
    raised, and the rest still read, so the answer is the one a check of the whole body at
    once gives. After the first such fault no more lines are given to the parser."""

    def __init__(self, binary: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
        self.not_utf8 = False
        self.has_nul = False
        self.too_long_at: int | None = None  # the first line past MAX_LINE_CHARS
        self.iterator = self._lines()

    def _read(self) -> Iterator[tuple[str, bool]]:
        """(piece, whole): each line, or the pieces of one too long, the first marked."""
        while line := self._text.readline(MAX_LINE_CHARS):
            if len(line) < MAX_LINE_CHARS or line.endswith(("\n", "\r")):
                yield line, True
                continue
            yield line, False
            while (rest := self._text.readline(MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                pass  # the rest of a line too long: read and dropped

    def _lines(self) -> Iterator[str]:
        number = 0
        try:
            for line, whole in self._read():
                number += 1
                if self.has_nul or self.too_long_at:
                    continue
                if not whole:
                    self.too_long_at = number
                    continue
                if "\x00" in line:  # PostgreSQL stores no NUL: the file is refused (not a 500)
                    self.has_nul = True
                    continue
                yield line
        except UnicodeDecodeError:
            self.not_utf8 = True

    def drain(self) -> None:
        for _ in self.iterator:
            pass

    def problem(self) -> ValidationProblem | None:
        if self.not_utf8:
            return ValidationProblem("the file is not UTF-8 text", field="body")
        if self.has_nul:
            return ValidationProblem("the file contains a NUL character", field="body")
        if self.too_long_at:
            return ValidationProblem(
                f"line {self.too_long_at} is longer than {MAX_LINE_CHARS} characters",
                field="body",
            )
        return None


def parse_offence_stream(
    binary: IO[bytes], today: date, *, max_listed_errors: int = 1000
) -> ParsedImport:
    """Every row checked, the body read as a stream; the whole file refused (422) only when
    it is not a CSV of ours. Blocking: run it off the event loop."""
    lines = _Lines(binary)
    parsed = ParsedImport(
        tempfile.SpooledTemporaryFile(  # noqa: SIM115  (closed by ParsedImport.close)
            max_size=_SPOOL_IN_MEMORY, mode="w+", newline="", encoding="utf-8"
        )
    )
    try:
        _parse_rows(lines, parsed, today, max_listed_errors)
    except ValidationProblem as header_problem:
        lines.drain()
        parsed.close()
        raise (lines.problem() or header_problem) from None
    except BaseException:  # aborted (the body stopped arriving), or a bug
        parsed.close()
        raise
    lines.drain()
    if problem := lines.problem():
        parsed.close()
        raise problem
    return parsed


def parse_offence_csv(data: bytes, today: date, *, max_listed_errors: int = 1000) -> ParsedImport:
    """A body already in memory (tests, small files): parsed as the stream would be."""
    return parse_offence_stream(io.BytesIO(data), today, max_listed_errors=max_listed_errors)


def _parse_rows(lines: _Lines, parsed: ParsedImport, today: date, max_listed: int) -> None:
    reader = csv.reader(lines.iterator)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValidationProblem("the file is not CSV", field="body") from exc
    problems = header_problems(header)
    if problems:
        raise ValidationProblem(problems[0].message, field="header")
    good = csv.writer(parsed.good)
    last_rejected = 0

    def reject(found: list[RowError]) -> None:
        nonlocal last_rejected
        room = max_listed - len(parsed.errors)
        if room > 0:
            parsed.errors.extend(found[:room])
        if found[0].line != last_rejected:  # lines come in order: one count per line
            parsed.rejected += 1
            last_rejected = found[0].line

    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            parsed.total_rows += 1
            reject([RowError(reader.line_num, "row", "is not valid CSV")])
            continue
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        parsed.total_rows += 1
        raw: dict[Any, Any] = dict(zip(_COLUMNS, cells))
        if len(cells) > len(_COLUMNS):
            raw[None] = cells[len(_COLUMNS) :]
        checked = check_row(line, raw, today)
        if isinstance(checked, list):
            reject(checked)
        else:
            parsed.good_rows += 1
            good.writerow(
                (
                    checked.line,
                    checked.crn,
                    checked.offence_date.isoformat(),
                    checked.category.value,
                    checked.description or "",
                )
            )


class _Chunks(io.RawIOBase):
    """A blocking binary stream over the chunks the event loop hands over a bounded queue:
    the parser's thread reads the body as it arrives. `None` ends it; an exception aborts."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._ended = False  # asked again after the end, it stays ended

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._ended:
                return 0
            item = self._chunks.get()
            if item is None:
                self._ended = True
                return 0
            if isinstance(item, BaseException):
                raise item
            self._pending = memoryview(item)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class EmptyBody(ValidationProblem):
    """No CSV at all: refused before any import is recorded."""

    def __init__(self) -> None:
        super().__init__("the body is empty: send the CSV", field="body")


class _Aborted(Exception):
    """The body stopped arriving (cut off, past its limit, timed out): the parser stops too."""


async def parse_arriving(
    body: AsyncIterable[bytes], today: date, *, max_listed_errors: int
) -> ParsedImport:
    """Parse a body as it arrives: a thread checks the rows while the loop receives the next
    chunks, at most `_QUEUED_CHUNKS` of them waiting. An empty body is a 422 on `body`."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
    parsing = asyncio.ensure_future(
        asyncio.to_thread(
            parse_offence_stream,
            io.BufferedReader(_Chunks(chunks)),
            today,
            max_listed_errors=max_listed_errors,
        )
    )
    empty = True
    try:
        async for chunk in body:
            if empty and chunk.strip():
                empty = False
            if chunk:
                await _hand_over(chunks, chunk, parsing)
        await _hand_over(chunks, None, parsing)
    except BaseException:
        _abort(chunks)
        await asyncio.wait({parsing})
        if parsing.done() and not parsing.cancelled() and parsing.exception() is None:
            parsing.result().close()
        raise
    try:
        parsed = await parsing
    except ValidationProblem:
        if empty:
            raise EmptyBody from None
        raise
    if empty:
        parsed.close()
        raise EmptyBody
    return parsed


async def _hand_over(
    chunks: queue.Queue[bytes | BaseException | None],
    item: bytes | None,
    parsing: asyncio.Future[Any],
) -> None:
    """Queue a chunk for the parser, waiting while the queue is full (the bound on memory);
    a parser that has stopped reading takes nothing more."""
    while not parsing.done():
        try:
            chunks.put_nowait(item)
            return
        except queue.Full:
            await asyncio.wait({parsing}, timeout=0.002)


def _abort(chunks: queue.Queue[bytes | BaseException | None]) -> None:
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            break
    chunks.put_nowait(_Aborted())


async def spool_body(body: AsyncIterable[bytes]) -> IO[bytes]:
    """A body for a background import, written to a temporary file as it arrives (not held
    in memory); an empty body is a 422 on `body`. The caller closes the file."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115  (handed to the background import)
    empty = True
    try:
        async for chunk in body:
            if empty and chunk.strip():
                empty = False
            await asyncio.to_thread(spool.write, chunk)
        if empty:
            raise EmptyBody
        await asyncio.to_thread(spool.seek, 0)
    except BaseException:
        spool.close()
        raise
    return spool


# --- loading, in batches --------------------------------------------------------------------


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


async def import_arriving(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    body: AsyncIterable[bytes],
    *,
    now: datetime,
    batch_size: int,
    max_listed_errors: int = 1000,
) -> str:
    """`wait=true`: parse the body as it arrives, then load it; answers the import's id.
    An empty body records no import; a file refused whole records a failed one (and 422)."""
    try:
        parsed: ParsedImport | ValidationProblem = await parse_arriving(
            body, london_today(now), max_listed_errors=max_listed_errors
        )
    except EmptyBody:
        raise
    except ValidationProblem as problem:
        parsed = problem
    import_id = await start_import(sessionmaker, principal, now=now)
    if isinstance(parsed, ValidationProblem):
        await _finish_import(sessionmaker, import_id, status="failed", failure=parsed.detail)
        raise parsed
    try:
        await load_import(
            sessionmaker, principal, import_id, parsed, now=now, batch_size=batch_size,
            max_listed_errors=max_listed_errors,
        )
    finally:
        parsed.close()
    return import_id


async def run_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    import_id: str,
    spool: IO[bytes],
    *,
    now: datetime,
    batch_size: int,
    max_listed_errors: int = 1000,
) -> None:
    """`wait=false`: parse the spooled body (off the event loop, as a stream) and load it;
    closes the spool."""
    try:
        with spool:
            # Checking hundreds of thousands of rows takes CPU: off the event loop.
            parsed = await asyncio.to_thread(
                parse_offence_stream, spool, london_today(now), max_listed_errors=max_listed_errors
            )
    except ValidationProblem as problem:
        await _finish_import(sessionmaker, import_id, status="failed", failure=problem.detail)
        raise
    try:
        await load_import(
            sessionmaker, principal, import_id, parsed, now=now, batch_size=batch_size,
            max_listed_errors=max_listed_errors,
        )
    finally:
        parsed.close()


async def load_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    import_id: str,
    parsed: ParsedImport,
    *,
    now: datetime,
    batch_size: int,
    max_listed_errors: int = 1000,
) -> None:
    """Load the good rows in batches; each batch, with its progress, is one transaction, so a
    batch is loaded whole or not at all. Rows of nominals in areas the caller cannot see, and,
    for an area-bound caller, rows of CRNs with no nominal yet, are refused like bad rows."""
    batches_total = -(-parsed.good_rows // batch_size)
    async with sessionmaker() as session, session.begin():
        record = await CohortsRepository(session).get_import(import_id)
        assert record is not None
        record.total_rows = parsed.total_rows
        record.rejected = parsed.rejected
        record.batches_total = batches_total
        record.processed_rows = record.rejected
        record.errors = [e.as_dict() for e in parsed.errors[:max_listed_errors]]
    batches = parsed.batches(batch_size)
    for number in range(1, batches_total + 1):
        try:
            batch = await asyncio.to_thread(next, batches, [])
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
                failure=f"batch {number} of {batches_total} was not loaded: {type(exc).__name__}",
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
    session: AsyncSession, principal: Principal, import_id: str, *, purpose: str | None = None
) -> OffenceImportRecord:
    """The import's report; read by a caller (`purpose` given), the read is logged: the
    report is about police records of people, though it names them by line only."""
    record = await CohortsRepository(session).get_import(import_id)
    # Its creator reads it; else a national admin only (an import spans every area).
    if record is None or (
        record.created_by != principal.actor and not (principal.has("admin") and principal.national)
    ):
        raise NotFound(f"no import {import_id}")
    if purpose is not None:
        record_access(
            session,
            actor=principal,
            action=Action.CONSULTATION,
            resource=f"/offence-imports/{import_id}",
            crn=None,
            purpose=purpose,
        )
    return record
