"""A notification's personal data erased once its delivery has finished and the period has
passed (issue 18; DOMAIN.md, "Keeping data no longer than necessary")."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import select

from notifications.erasure import ERASERS
from notifications.models import DeliveryAttemptRow, NotificationRow
from pathways_shared.clock import utc_now
from pathways_shared.db import transaction
from pathways_shared.erasure import ErasureRecord, erase_personal_data
from pathways_shared.infra_models import AccessLog
from pathways_shared.testing import auth

CRN = "X123456"
ADDRESS = "alex.officer@probation.example"


def notification(status: str) -> NotificationRow:
    now = utc_now()
    payload = {"id": str(uuid.uuid4()), "eventType": "providers.referral.allocated",
               "personReference": {"identifiers": [{"type": "CRN", "value": CRN}]}}
    return NotificationRow(
        idempotency_key=uuid.uuid4(), event_id=uuid.uuid4(), event_type=payload["eventType"],
        event_payload=json.dumps(payload), crn=CRN, referral_id=uuid.uuid4(),
        kind="referral_allocated",
        channel="email", recipient_role="practitioner", address=ADDRESS, status=status,
        attempts=1, last_error=f"550 mailbox {ADDRESS} full" if status == "failed" else None,
        created_at=now, updated_at=now)


async def erase(app: Any, days_after: int) -> dict[str, int]:
    runtime = app.state.runtime
    return await erase_personal_data(
        runtime.sessionmaker, ERASERS, runtime.settings, utc_now() + timedelta(days=days_after))


async def test_a_finished_notification_is_erased_after_the_period_and_not_before(app, client):
    sessionmaker = app.state.runtime.sessionmaker
    delivered, failed, pending = (notification(s) for s in ("delivered", "failed", "retrying"))
    pending.next_attempt_at = utc_now() + timedelta(days=1)  # not for the worker in this test
    async with transaction(sessionmaker) as session:
        session.add_all([delivered, failed, pending])
        await session.flush()
        session.add(DeliveryAttemptRow(notification_id=failed.id, number=1, started_at=utc_now(),
                                       outcome="failed", detail=f"refused {ADDRESS}"))
    period = app.state.runtime.settings.erase_personal_data_after_days

    assert await erase(app, period - 1) == {"notification": 0}
    assert await erase(app, period + 1) == {"notification": 2}
    assert await erase(app, period + 2) == {"notification": 0}

    async with sessionmaker() as session:
        rows = {r.id: r for r in (await session.exec(select(NotificationRow))).all()}
        for erased in (delivered, failed):
            row = rows[erased.id]
            assert (row.crn, row.address, row.event_payload, row.last_error) == (
                None, None, "{}", None)
            assert (row.status, row.kind, row.channel) == (
                erased.status, "referral_allocated", "email")
        assert (rows[pending.id].crn, rows[pending.id].address) == (CRN, ADDRESS)
        [attempt] = (await session.exec(select(DeliveryAttemptRow).where(
            DeliveryAttemptRow.notification_id == failed.id))).all()
        assert (attempt.outcome, attempt.detail) == ("failed", None)
        logged = (await session.exec(select(AccessLog).where(AccessLog.action == "erasure"))).all()
        assert sorted(a.resource for a in logged) == sorted(
            f"notification/{n.id}" for n in (delivered, failed))
        register = (await session.exec(select(ErasureRecord))).all()
        for row in [*logged, *register]:
            text = " ".join(str(v) for v in row.model_dump().values())
            assert CRN not in text and ADDRESS not in text
            assert getattr(row, "crn", None) is None

    # The delivery log still shows the erased notification's skeleton.
    shown = await client.get(f"/notifications/{delivered.id}", headers=auth("admin"))
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "delivered"
    sar = (await client.get(f"/subject-access-requests?crn={CRN}", headers=auth("admin"))).json()
    assert [n["id"] for n in sar["notifications"]] == [str(pending.id)]
    assert sorted(e["record_id"] for e in sar["erasures"]) == sorted(
        str(n.id) for n in (delivered, failed))
    assert {e["record_type"] for e in sar["erasures"]} == {"notification"}
