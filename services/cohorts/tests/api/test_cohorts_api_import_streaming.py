"""The offence import streams its body: memory stays far below the body's size, whatever the
size, and a bad line deep in a large file is still reported by its line number."""

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx

from pathways_shared.testing import auth

HEADER = "crn,offence_date,category,description\n"
CRN = "X100020"
BODY_BYTES = 16 * 1024 * 1024  # large enough that holding it (or its text) would show
PAD = "p" * 440


def large_body(days_ago: Any, bad_lines: dict[int, str]) -> tuple[AsyncIterator[bytes], int]:
    """About BODY_BYTES of good rows sent in 64 KiB chunks, never held whole; `bad_lines`
    replaces the row at a line (1 is the header). Answers the body and its row count."""
    row_bytes = len(f"{CRN},2026-01-01,theft_other,{0:08d}{PAD}\n")
    rows = BODY_BYTES // row_bytes

    def line_text(line: int) -> str:
        if line in bad_lines:
            return bad_lines[line]
        return f"{CRN},{days_ago(line % 3000 + 1)},theft_other,{line:08d}{PAD}\n"

    async def chunks() -> AsyncIterator[bytes]:
        pending = [HEADER]
        size = len(HEADER)
        for line in range(2, rows + 2):
            text = line_text(line)
            pending.append(text)
            size += len(text)
            if size >= 65536:
                yield "".join(pending).encode()
                pending, size = [], 0
        if pending:
            yield "".join(pending).encode()

    return chunks(), rows


def with_settings(app: Any, **update: Any) -> None:
    app.state.settings = app.state.settings.model_copy(update=update)


async def test_a_large_import_streams_in_bounded_memory_and_names_a_deep_bad_line(
    app: Any, client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed(CRN)
    with_settings(app, import_batch_size=1000)
    deep = 30_001  # far past the first chunks
    body, rows = large_body(days_ago, {deep: f"{CRN},{days_ago(1)},not_a_category,x\n"})
    headers = auth("service") | {"Content-Type": "text/csv"}
    tracemalloc.start()
    try:
        answer = await client.post("/offences:import", content=body, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "completed"
    assert (result["total_rows"], result["loaded"], result["rejected"]) == (rows, rows - 1, 1)
    assert [(e["line"], e["field"]) for e in result["errors"]] == [(deep, "category")]
    assert peak < BODY_BYTES / 4, f"peak {peak} bytes for a {BODY_BYTES} byte body"


async def test_a_background_import_spools_its_body_in_bounded_memory(
    app: Any, client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed(CRN)
    with_settings(app, import_batch_size=1000)
    deep = 25_002
    body, rows = large_body(days_ago, {deep: f"{CRN},{days_ago(2)},theft_other,too,many\n"})
    headers = auth("service") | {"Content-Type": "text/csv"}
    tracemalloc.start()
    try:
        started = await client.post(
            "/offences:import", content=body, headers=headers, params={"wait": "false"}
        )
        assert started.status_code == 202, started.text
        for _ in range(1200):
            progress = (await client.get(started.headers["location"], headers=headers)).json()
            if progress["status"] != "running":
                break
            await asyncio.sleep(0.05)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert progress["status"] == "completed", progress
    assert (progress["loaded"], progress["rejected"]) == (rows - 1, 1)
    assert [(e["line"], e["field"]) for e in progress["errors"]] == [(deep, "row")]
    assert peak < BODY_BYTES / 4, f"peak {peak} bytes for a {BODY_BYTES} byte body"


async def test_a_file_refused_late_in_its_body_leaves_nothing_written(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    """A NUL (or bytes that are not UTF-8) near the end refuses the whole file, as when the
    body was checked at once: no batch was written before the end was seen."""
    await seed(CRN)
    for bad, message in ((f"{CRN},{days_ago(1)},arson,a\x00b\n", "NUL"), ("\xff", "UTF-8")):
        body, _ = large_body(days_ago, {})
        tail = bad.encode("latin-1") if bad == "\xff" else bad.encode()

        async def then_bad(body: AsyncIterator[bytes] = body, tail: bytes = tail):
            async for chunk in body:
                yield chunk
            yield tail

        answer = await client.post(
            "/offences:import",
            content=then_bad(),
            headers=auth("service") | {"Content-Type": "text/csv"},
        )
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["body"]
        assert message in answer.json()["detail"]
        offences = await client.get(f"/nominals/{CRN}/offences", headers=auth("service"))
        assert offences.json()["data"] == []
