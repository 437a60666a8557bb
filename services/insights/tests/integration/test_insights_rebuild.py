"""`pathways insights rebuild` empties the projection and replays the streams: the figures
afterwards equal the figures before, with the service running throughout."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from insights.models import FigureCell
from insights.rebuild import rebuild
from pathways_shared.cli import main as pathways
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import auth, wait_until

KINDS = ("needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer")
QUESTIONS = [(kind, by) for kind in KINDS for by in ("", "area")] + [
    ("needs", "provider,month"), ("service-levels", "service"), ("unmet-need", "reason"),
    ("cohorts", "cohort,reason"),
]


async def all_figures(client) -> dict:
    out = {}
    for kind, by in QUESTIONS:
        r = await client.get(f"/figures/{kind}", headers=auth("admin"), params={"by": by})
        assert r.status_code == 200, r.text
        out[(kind, by)] = r.json()
    return out


async def test_figures_after_a_rebuild_equal_the_figures_before(
    app, client, settings, sessionmaker, factory, publish, monkeypatch
):
    events = factory.scenario()
    await publish(*events)

    async def handled() -> bool:
        async with sessionmaker() as session:
            return (await session.scalar(select(func.count()).select_from(ProcessedEvent))) >= len(events)

    await wait_until(handled, timeout=30)
    before = await all_figures(client)
    assert before[("needs", "")]["total"]["submitted"] == 7

    report = await rebuild(settings, timeout=60)
    assert sum(report.streams.values()) >= len(events)
    assert await all_figures(client) == before

    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(FigureCell)) > 0

    # The same through the command line (in a thread: it runs its own event loop).
    monkeypatch.setenv("PATHWAYS_SUBJECT_PREFIX", settings.subject_prefix)
    monkeypatch.setenv("NATS_URL", settings.nats_url)
    monkeypatch.setenv("PATHWAYS_JWT_SECRET", settings.jwt_secret)
    monkeypatch.setenv("PATHWAYS_ENV", "test")
    await asyncio.to_thread(pathways, ["insights", "rebuild", "--url", settings.database_url])
    assert await all_figures(client) == before


def test_the_command_line_offers_the_rebuild(capsys):
    try:
        pathways(["insights", "--help"])
    except SystemExit:
        pass
    assert "rebuild" in capsys.readouterr().out
