"""Parsing the offence CSV as a stream gives what parsing it at once gives, however the body
is cut into chunks."""

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import pytest

from cohorts.service import EmptyBody, parse_arriving, parse_offence_csv
from cohorts.service.offence_import import MAX_LINE_CHARS
from pathways_shared.problems import ValidationProblem

TODAY = date(2026, 11, 24)
TEXT = (
    "\ufeffCRN,Offence_Date,Category,Description\r\n"
    'X123456,2026-01-31,burglary_domestic,"two\r\nlines, é"\r\n'
    "X123456,2026-02-30,theft_other,\r\n"
    "\r\n"
    "X123456,2026-03-01,theft_other,too,many\r"
    "X654321,2026-03-02,theft_other,last ✓"
)


def summary(parsed) -> tuple:
    rows = [
        (r.line, r.crn, r.offence_date, r.category, r.description)
        for batch in parsed.batches(2)
        for r in batch
    ]
    return rows, parsed.errors, parsed.rejected, parsed.total_rows


async def arriving(data: bytes, size: int, **kwargs) -> tuple:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]
            await asyncio.sleep(0)

    parsed = await parse_arriving(chunks(), TODAY, max_listed_errors=1000, **kwargs)
    try:
        return summary(parsed)
    finally:
        parsed.close()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 65536])
async def test_any_chunking_parses_as_the_whole_body_does(size: int) -> None:
    data = TEXT.encode()
    whole = parse_offence_csv(data, TODAY)
    expected = summary(whole)
    whole.close()
    assert [r[0] for r in expected[0]] == [3, 7]  # a record is numbered by its last line
    assert [(e.line, e.field) for e in expected[1]] == [(4, "offence_date"), (6, "row")]
    assert await arriving(data, size) == expected


async def test_the_listed_errors_are_capped_and_the_rest_counted() -> None:
    rows = "".join(f"X12345{i},2026-01-01,nope,\n" for i in range(6))
    parsed = parse_offence_csv(
        ("crn,offence_date,category,description\n" + rows).encode(), TODAY, max_listed_errors=2
    )
    assert (len(parsed.errors), parsed.rejected, parsed.total_rows) == (2, 6, 6)
    parsed.close()


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"crn,date\n" + b"x" * 100 + b"\xff\n", "body", "UTF-8"),  # worse than the header
        (b"crn,date\nX\x00\n", "body", "NUL"),
        (b"crn,date\nX1,2026-01-01\n", "header", "header"),
    ],
)
async def test_a_file_refused_whole_names_the_worst_problem(
    data: bytes, field: str, words: str
) -> None:
    for size in (1, 5, 1 << 16):
        with pytest.raises(ValidationProblem) as refused:
            await arriving(data, size)
        assert refused.value.field_errors[0].field == field
        assert words in refused.value.detail


async def test_an_empty_body_is_refused_as_empty() -> None:
    for data in (b"", b" \r\n\t "):
        with pytest.raises(EmptyBody):
            await arriving(data, 1)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("x" * (3 * MAX_LINE_CHARS), 1),  # one endless line: not even a header
        ("crn,offence_date,category,description\nX123456,2026-01-01,theft_other,ok\n"
         "X123456,2026-01-02,theft_other," + "d" * MAX_LINE_CHARS + "\nX123456,2026-01-03,theft_other,\n",
         3),
    ],
)
async def test_a_line_too_long_refuses_the_file_naming_the_line_never_held_whole(
    text: str, line: int
) -> None:
    for parse in (lambda: parse_offence_csv(text.encode(), TODAY), lambda: arriving(text.encode(), 4096)):
        with pytest.raises(ValidationProblem) as refused:
            result = parse()
            if asyncio.iscoroutine(result):
                await result
        assert refused.value.detail == f"line {line} is longer than {MAX_LINE_CHARS} characters"
        assert "ddd" not in str(refused.value.errors)


async def test_a_line_just_within_the_limit_is_read() -> None:
    description = "d" * (MAX_LINE_CHARS - len("X123456,2026-01-02,theft_other,\n") - 1)
    data = f"crn,offence_date,category,description\nX123456,2026-01-02,theft_other,{description}\n"
    rows, errors, _, total = summary(parse_offence_csv(data.encode(), TODAY))
    assert total == 1 and len(rows) + len(errors) == 1
