"""Who runs erasure (issue 18): `pathways erase` by hand, here on a SQLite database (the
simple path: no row locks, one writer), and a running service from its retention task."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlmodel import select

from pathways_shared.cli import main
from pathways_shared.clock import utc_now
from pathways_shared.db import make_engine, make_sessionmaker
from pathways_shared.erasure import ErasureRecord
from pathways_shared.infra_models import AccessLog
from pathways_shared.migrations import upgrade
from pathways_shared.testing import TEST_JWT_SECRET, running, wait_until
from referrals.app import create_app
from referrals.models import ReferralRow

SERVICE_ROOT = Path(__file__).resolve().parents[2]
SIX_YEARS = 2192


def referral(status: str, days_ago: int) -> dict:
    ended = utc_now() - timedelta(days=days_ago)
    return {
        "id": uuid.uuid4(), "source_reference": f"NDELIUS-{uuid.uuid4().hex[:8]}",
        "fingerprint": "f" * 64, "area": "E08000029", "status": status, "crn": "X123456",
        "given_name": "Sam", "family_name": "Example", "date_of_birth": date(1990, 4, 1),
        "sex": "male", "needs_interpreter": False, "supervision_status": "licence",
        "rosh": "medium", "practitioner_name": "Alex Officer",
        "practitioner_email": "alex.officer@probation.example", "consent_given": True,
        "submitted_at": ended - timedelta(days=30), "submitted_by": "probation-user",
        "submitting_client": "probation-user",
        "updated_at": ended,
    }


async def _prepare(url: str) -> list[dict]:
    rows = [referral("closed", SIX_YEARS + 1), referral("withdrawn", SIX_YEARS + 5),
            referral("withdrawn", SIX_YEARS - 1), referral("open", SIX_YEARS + 100)]
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session, session.begin():
        await session.exec(insert(ReferralRow.__table__), params=rows)
    await engine.dispose()
    return rows


async def _read(url: str) -> tuple[dict, list, list]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        crns = {r.id: r.crn for r in (await session.exec(select(ReferralRow.id, ReferralRow.crn)))}
        logged = list((await session.exec(
            select(AccessLog.resource, AccessLog.crn).where(AccessLog.action == "erasure"))).all())
        register = list((await session.exec(select(ErasureRecord.record_id))).all())
    await engine.dispose()
    return crns, logged, register


def test_pathways_erase_on_sqlite(tmp_path, monkeypatch, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path / 'referrals.db'}"
    upgrade(SERVICE_ROOT, url)
    rows = asyncio.run(_prepare(url))
    monkeypatch.setenv("PATHWAYS_JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("PATHWAYS_ERASURE_BATCH_SIZE", "1")

    main(["erase", "--service", "referrals", "--url", url, "--dry-run"])
    assert "referrals: 2 referral records due for erasure" in capsys.readouterr().out
    assert asyncio.run(_read(url))[1:] == ([], [])

    main(["erase", "--service", "referrals", "--url", url])
    assert "referrals: 2 referral records erased" in capsys.readouterr().out
    crns, logged, register = asyncio.run(_read(url))
    assert [crns[r["id"]] for r in rows] == [None, None, "X123456", "X123456"]
    assert sorted(logged) == sorted((f"referral/{r['id']}", None) for r in rows[:2])
    assert sorted(register) == sorted(str(r["id"]) for r in rows[:2])

    main(["erase", "--service", "referrals", "--url", url])
    assert "referrals: 0 referral records erased" in capsys.readouterr().out


async def test_a_running_service_erases_in_its_retention_task(settings):
    settings = settings.model_copy(
        update={"erase_personal_data_after_days": 20, "retention_interval_seconds": 0.2})
    old, recent = referral("withdrawn", 21), referral("withdrawn", 19)
    app = create_app(settings)
    async with running(app):
        sessionmaker = app.state.runtime.sessionmaker
        async with sessionmaker() as session, session.begin():
            await session.exec(insert(ReferralRow.__table__), params=[old, recent])

        async def erased() -> list:
            async with sessionmaker() as session:
                return list((await session.exec(select(ErasureRecord.record_id))).all())

        assert await wait_until(erased, timeout=10) == [str(old["id"])]
        async with sessionmaker() as session:
            crns = dict((await session.exec(select(ReferralRow.id, ReferralRow.crn))).all())
    assert (crns[old["id"]], crns[recent["id"]]) == (None, "X123456")
