"""A referral's personal data erased once it has ended and the period has passed (issue 18;
DOMAIN.md, "Keeping data no longer than necessary")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlmodel import select

from pathways_shared.clock import utc_now
from pathways_shared.erasure import ErasureRecord, erase_personal_data
from pathways_shared.infra_models import AccessLog, OutboxMessage
from pathways_shared.testing import auth
from referrals.erasure import ERASERS
from referrals.models import HistoryRow, NeedRow, ReferralRow

PERSONAL = ("X123456", "Sam", "Example", "1990-04-01", "Alex Officer",
            "alex.officer@probation.example", "No fixed abode", "Moved to Leeds")


async def submit(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/referrals", json=body, headers=auth("probation"))
    assert response.status_code == 201, response.text
    return response.json()


async def withdraw(client: Any, referral_id: str) -> None:
    response = await client.post(
        f"/referrals/{referral_id}/withdraw",
        json={"reason_code": "moved_out_of_area", "comments": "Moved to Leeds"},
        headers=auth("probation"))
    assert response.status_code == 200, response.text


async def outbox_count(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage))


async def erase(sessionmaker: Any, settings: Any, days_after: int, **overrides: Any) -> dict:
    settings = settings.model_copy(update=overrides)
    return await erase_personal_data(
        sessionmaker, ERASERS, settings, utc_now() + timedelta(days=days_after))


async def test_an_ended_referral_is_erased_after_the_period_and_not_before(
    client, referral_body, sessionmaker, settings
):
    ended = await submit(client, referral_body())
    await withdraw(client, ended["id"])
    open_one = await submit(client, referral_body(source_reference="NDELIUS-OPEN"))
    period = settings.erase_personal_data_after_days
    assert period == 2192  # six years by default

    events_before = await outbox_count(sessionmaker)
    assert await erase(sessionmaker, settings, period - 1) == {"referral": 0}
    assert await erase(sessionmaker, settings, period + 1) == {"referral": 1}
    assert await erase(sessionmaker, settings, period + 2) == {"referral": 0}
    # Erasure publishes nothing: the insights service, which counts from events alone (and
    # holds no personal data), sees no change, so its figures stay as they were.
    assert await outbox_count(sessionmaker) == events_before

    async with sessionmaker() as session:
        row = (await session.exec(select(ReferralRow).where(ReferralRow.id == UUID(ended["id"])))).one()
        assert (row.crn, row.noms_number, row.given_name, row.family_name, row.date_of_birth,
                row.practitioner_name, row.practitioner_email, row.withdrawal_comments) == (None,) * 8
        assert row.erased_at is not None
        # The skeleton stays for the figures: ids, area, status, dates, categories.
        assert (row.status, row.area, row.sex, row.withdrawal_reason) == (
            "withdrawn", "E08000029", "male", "moved_out_of_area")
        needs = (await session.exec(select(NeedRow).where(NeedRow.referral_id == row.id))).all()
        assert [(n.pathway, n.status, n.details) for n in needs] == [
            ("accommodation", "withdrawn", None)]
        history = (await session.exec(
            select(HistoryRow).where(HistoryRow.referral_id == row.id))).all()
        assert history and all(h.detail == {} for h in history)
        untouched = (await session.exec(
            select(ReferralRow).where(ReferralRow.id == UUID(open_one["id"])))).one()
        assert (untouched.crn, untouched.given_name, untouched.erased_at) == ("X123456", "Sam", None)

        [logged] = (await session.exec(
            select(AccessLog).where(AccessLog.action == "erasure"))).all()
        assert (logged.actor, logged.resource, logged.crn) == (
            "system:erasure", f"referral/{ended['id']}", None)
        [register] = (await session.exec(select(ErasureRecord))).all()
        for text in (*[str(v) for v in logged.model_dump().values()],
                     *[str(v) for v in register.model_dump().values()]):
            assert not any(p in text for p in PERSONAL), text

    assert (await client.get(f"/referrals/{ended['id']}", headers=auth("probation"))).status_code == 404
    listed = await client.get("/referrals", headers=auth("probation"))
    assert [r["id"] for r in listed.json()["data"]] == [open_one["id"]]

    sar = await client.get("/subject-access-requests", params={"crn": "X123456"},
                           headers=auth("admin"))
    assert sar.status_code == 200, sar.text
    body = sar.json()
    assert [r["referral"]["id"] for r in body["referrals"]] == [open_one["id"]]
    [erasure] = body["erasures"]
    assert (erasure["record_type"], erasure["record_id"]) == ("referral", ended["id"])
    assert erasure["erased_at"].endswith("Z") and "date_of_birth" in erasure["fields"]
    other = await client.get("/subject-access-requests", params={"crn": "Y654321"},
                             headers=auth("admin"))
    assert other.json()["erasures"] == []


async def test_erasure_goes_in_batches_until_nothing_is_due(
    client, referral_body, sessionmaker, settings
):
    for i in range(5):
        referral = await submit(client, referral_body(source_reference=f"NDELIUS-B{i}"))
        await withdraw(client, referral["id"])
    period = settings.erase_personal_data_after_days
    assert await erase(sessionmaker, settings, period + 1, erasure_batch_size=2) == {"referral": 5}
    async with sessionmaker() as session:
        assert len((await session.exec(select(ErasureRecord))).all()) == 5
        rows = (await session.exec(select(ReferralRow.crn))).all()
        assert rows == [None] * 5


async def test_a_dry_run_counts_and_changes_nothing(client, referral_body, sessionmaker, settings):
    referral = await submit(client, referral_body())
    await withdraw(client, referral["id"])
    settings = settings.model_copy(update={})
    done = await erase_personal_data(
        sessionmaker, ERASERS, settings,
        utc_now() + timedelta(days=settings.erase_personal_data_after_days + 1), dry_run=True)
    assert done == {"referral": 1}
    async with sessionmaker() as session:
        assert (await session.exec(select(ReferralRow.crn))).all() == ["X123456"]
        assert (await session.exec(select(ErasureRecord))).all() == []

