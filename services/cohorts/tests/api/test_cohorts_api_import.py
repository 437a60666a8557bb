import asyncio
from typing import Any

import httpx

from pathways_shared.testing import auth

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
HEADER = "crn,offence_date,category,description\n"


async def post_csv(
    client: httpx.AsyncClient, text: str, headers: dict, **params: Any
) -> httpx.Response:
    return await client.post(
        "/offences:import",
        content=text.encode(),
        headers={**headers, "Content-Type": "text/csv"},
        params=params,
    )


async def offences_of(client: httpx.AsyncClient, crn: str) -> list[dict]:
    answer = await client.get(
        f"/nominals/{crn}/offences", headers=auth("service"), params={"limit": 200}
    )
    return answer.json()["data"]


async def test_a_good_file_loads_in_batches(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed("X100001")
    rows = [f"X100001,{days_ago(i + 1)},burglary_domestic,house {i}" for i in range(7)]
    answer = await post_csv(
        client, HEADER + "\n".join(rows) + "\n", auth("police", areas=[SOLIHULL])
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "completed"
    assert (result["total_rows"], result["loaded"], result["rejected"], result["duplicates"]) == (
        7,
        7,
        0,
        0,
    )
    assert (result["batches_total"], result["batches_done"]) == (3, 3)  # batches of 3 in tests
    assert result["errors"] == []
    assert len(await offences_of(client, "X100001")) == 7


async def test_a_bad_file_reports_every_row_with_its_line(
    client: httpx.AsyncClient, days_ago: Any
) -> None:
    text = HEADER + (
        "x1,2026-01-01,burglary_domestic,\n"
        f"X100002,{days_ago(-3)},burglary_domestic,\n"
        "X100002,2026-02-30,arson,\n"
    )
    answer = await post_csv(client, text, auth("service"))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["total_rows"], result["loaded"], result["rejected"]) == (3, 0, 3)
    assert [(e["line"], e["field"]) for e in result["errors"]] == [
        (2, "crn"),
        (3, "offence_date"),
        (4, "offence_date"),
        (4, "category"),
    ]


async def test_a_mixed_file_loads_the_good_rows_and_a_repeat_adds_nothing(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed("X100003")
    text = HEADER + (
        f"X100003,{days_ago(5)},robbery_personal,phone\n"
        f"X100003,{days_ago(6)},not_a_thing,\n"
        "\n"
        f'X100003,{days_ago(7)},theft_other,"a, quoted"\n'
        f"X100003,{days_ago(8)},shoplifting,too,many\n"
        f"X100004,{days_ago(9)},shoplifting,unknown nominal is kept\n"
    )
    first = (await post_csv(client, text, auth("service"))).json()
    assert (first["loaded"], first["rejected"], first["duplicates"]) == (3, 2, 0)
    assert [(e["line"], e["field"]) for e in first["errors"]] == [(3, "category"), (6, "row")]
    second = (await post_csv(client, text, auth("service"))).json()
    assert (second["loaded"], second["rejected"], second["duplicates"]) == (0, 2, 3)
    descriptions = {o["description"] for o in await offences_of(client, "X100003")}
    assert descriptions == {"phone", "a, quoted"}


async def test_a_file_that_is_not_ours_is_refused(client: httpx.AsyncClient) -> None:
    cases = [
        ("crn,date\nX1,2026-01-01\n", "header"),
        ("", "body"),
        (b"\xff\xfe\x00garbage", "body"),
    ]
    for text, field in cases:
        answer = await client.post(
            "/offences:import",
            content=text if isinstance(text, bytes) else text.encode(),
            headers={**auth("service"), "Content-Type": "text/csv"},
        )
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_rows_of_another_areas_nominal_are_refused_for_an_area_bound_caller(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed("X100005", area=BIRMINGHAM)
    await seed("X100006", area=SOLIHULL)
    text = HEADER + (
        f"X100005,{days_ago(5)},robbery_personal,\nX100006,{days_ago(5)},robbery_personal,\n"
    )
    result = (await post_csv(client, text, auth("police", areas=[SOLIHULL]))).json()
    assert (result["loaded"], result["rejected"]) == (1, 1)
    assert result["errors"] == [
        {"line": 2, "field": "crn", "message": "the nominal is not in your areas"}
    ]


async def test_an_area_bound_caller_cannot_load_offences_of_a_crn_not_yet_recorded(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    """Loaded now, the offence would count in whichever area later records the nominal."""
    text = HEADER + f"X100099,{days_ago(5)},robbery_personal,\n"
    result = (await post_csv(client, text, auth("police", areas=[SOLIHULL]))).json()
    assert (result["loaded"], result["rejected"]) == (0, 1)
    assert result["errors"] == [
        {"line": 2, "field": "crn", "message": "the nominal is not in your areas"}
    ]
    await seed("X100099", area=BIRMINGHAM)
    assert await offences_of(client, "X100099") == []


async def test_a_long_import_reports_progress(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed("X100007")
    rows = [f"X100007,{days_ago(i + 1)},theft_other,item {i}" for i in range(20)]
    started = await post_csv(client, HEADER + "\n".join(rows), auth("service"), wait="false")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    for _ in range(100):
        progress = (await client.get(location, headers=auth("service"))).json()
        assert progress["batches_total"] in (0, 7)
        if progress["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert progress["status"] == "completed"
    assert (progress["loaded"], progress["batches_done"], progress["processed_rows"]) == (20, 7, 20)
    other = await client.get(location, headers=auth("police", areas=[SOLIHULL]))
    assert other.status_code == 404


async def test_import_needs_a_writer_role(client: httpx.AsyncClient) -> None:
    answer = await post_csv(client, HEADER, auth("provider", provider="NACRO"))
    assert answer.status_code == 403


async def test_a_windows_export_with_a_bom_and_crlf_loads(
    client: httpx.AsyncClient, seed: Any, days_ago: Any
) -> None:
    await seed("X100008")
    text = "\ufeffCRN,Offence_Date,Category,Description\r\n" + "".join(
        f'X100008,{days_ago(i + 1)},public_order,"line\r\nbreak {i}"\r\n' for i in range(4)
    )
    result = (await post_csv(client, text, auth("service"))).json()
    assert (result["loaded"], result["rejected"]) == (4, 0), result
    assert {o["description"] for o in await offences_of(client, "X100008")} == {
        f"line\r\nbreak {i}" for i in range(4)
    }


async def test_bodies_are_limited_and_authenticated_before_they_are_read(
    app: Any, client: httpx.AsyncClient, seed: Any
) -> None:
    """No token: 401 with nothing read. Past its limit (CSV and JSON limits apart): 413
    problem+json having read no more than the limit, so a huge body is never buffered whole."""
    app.state.settings = app.state.settings.model_copy(
        update={"max_csv_body_bytes": 100_000, "max_json_body_bytes": 4096}
    )
    pulled: list[int] = []

    async def huge():  # 64 MB if it were read whole
        for i in range(1024):
            pulled.append(i)
            yield b"X" * 65536

    csv_headers = {"Content-Type": "text/csv"}
    answer = await client.post("/offences:import", content=huge(), headers=csv_headers)
    assert answer.status_code == 401 and pulled == []
    police = auth("police", areas=[SOLIHULL])
    answer = await client.post("/offences:import", content=huge(), headers=police | csv_headers)
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert len(pulled) <= 2  # stopped once past the 100 kB limit
    declared = await client.put(
        "/nominals/X100001", content=b" " * 5000 + b"{}",
        headers=police | {"Content-Type": "application/json"},
    )
    assert declared.status_code == 413, declared.text
    # a CSV past the JSON limit but within its own is read
    await seed("X100001")
    rows = "".join(f"X100001,2026-0{1 + i % 9}-1{i % 10},arson,row {i:04}\n" for i in range(300))
    answer = await post_csv(client, HEADER + rows, police)
    assert len(HEADER + rows) > 4096 and answer.status_code == 200, answer.text


async def test_import_errors_name_line_and_field_never_content_and_are_capped(
    app: Any, client: httpx.AsyncClient, caplog: Any
) -> None:
    police = auth("police", areas=[SOLIHULL])
    secret = "Jo Bloggs 1 High Street"
    answer = await post_csv(client, f"X100001,2026-01-01,{secret},\n", police)
    assert answer.status_code == 422 and secret not in answer.text, answer.text
    app.state.settings = app.state.settings.model_copy(update={"import_max_listed_errors": 2})
    rows = "".join(f"X10000{i},2026-01-0{i + 1},{secret},\n" for i in range(5))
    result = (await post_csv(client, HEADER + rows, police)).json()
    assert secret not in json_text(result)
    assert (result["rejected"], len(result["errors"]), result["rejected_not_listed"]) == (5, 2, 3)
    assert all(set(e) == {"line", "field", "message"} for e in result["errors"])
    assert secret not in caplog.text


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)
