"""A client that hangs up mid-body, on a real server and socket: the offence import (waited for
or in the background) and a JSON write leave nothing behind, answer nothing, log no error and
no traceback, and are counted as 499 (`http.client_gone`)."""

from typing import Any

import pytest
import structlog
from sqlalchemy import func
from sqlmodel import select

from cohorts.models import OffenceImportRecord, OffenceRecord
from pathways_shared.infra_models import AccessLog
from pathways_shared.testing import (
    auth,
    raw_request,
    send_and_hang_up,
    serving_on_socket,
    wait_until,
)

CRN = "X100030"
HEADER = b"crn,offence_date,category,description\n"


def csv_rows(days_ago: Any, count: int) -> bytes:
    return b"".join(
        f"{CRN},{days_ago(i % 300 + 1)},theft_other,row {i:06d}\n".encode() for i in range(count)
    )


def gone_count(app: Any, route: str) -> float:
    return app.state.metrics.registry.get_sample_value(
        "pathways_http_requests_total", {"method": "POST", "route": route, "status": "499"}
    ) or 0


@pytest.mark.parametrize(
    ("target", "route", "content_type"),
    [
        ("/offences:import", "/offences:import", "text/csv"),
        ("/offences:import?wait=false", "/offences:import", "text/csv"),
        (f"/nominals/{CRN}/offences", "/nominals/{crn}/offences", "application/json"),
    ],
)
async def test_a_client_gone_mid_body_leaves_nothing_and_is_counted_499(
    app: Any, sessionmaker: Any, seed: Any, days_ago: Any, caplog: Any,
    target: str, route: str, content_type: str,
) -> None:
    await seed(CRN)
    if content_type == "text/csv":  # several chunks in: the parser or the spool has begun
        sent = HEADER + csv_rows(days_ago, 8000)
    else:
        sent = b'{"offences": [' + b'{"offence_date": "2026-01-01", "category": "theft_other"},' * 500
    headers = auth("service") | {"Content-Type": content_type}
    head = raw_request("POST", target, headers, content_length=len(sent) * 4)
    async with serving_on_socket(app) as address:
        with structlog.testing.capture_logs() as logged:
            await send_and_hang_up(address, head, sent)

            async def counted() -> float:
                return gone_count(app, route)

            await wait_until(counted)
    [gone] = [e for e in logged if e["event"] == "http.client_gone"]
    assert gone["route"] == route and gone["received_bytes"] > 0, gone
    assert not [e for e in logged if e["log_level"] in ("warning", "error", "critical")], logged
    assert "Traceback" not in caplog.text and not [
        r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")
    ], caplog.text
    async with sessionmaker() as session:
        for table in (OffenceRecord, OffenceImportRecord):
            assert (await session.exec(select(func.count()).select_from(table))).one() == 0
        written = select(func.count()).select_from(AccessLog).where(AccessLog.action == "collection")
        collected = (await session.exec(written)).one()
    assert collected == 1, "only the seeded nominal's collection is logged"
    assert not getattr(app.state, "import_tasks", None), "no background import was started"
