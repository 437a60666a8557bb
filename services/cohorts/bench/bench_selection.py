"""Selection-run benchmark: 100,000 nominals and 1,000,000 offences in one area.

Makes a scratch PostgreSQL database, migrates it, generates the data in SQL (deterministic:
a fixed seed), then times the selection run the API performs (`service.run_selection`: the
SQL aggregate, the pure rules, storing the run and its outbox event) several times and prints
the median. Not part of the test suite.

    uv run --frozen python services/cohorts/bench/bench_selection.py [--runs 5]
        [--nominals 100000] [--offences 1000000] [--keep]

PostgreSQL: `PATHWAYS_TEST_PG_URL` (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from cohorts import service
from cohorts.domain.policy import default_policy
from cohorts.domain.selection import select
from cohorts.repository import CohortsRepository
from pathways_shared.auth import Principal
from pathways_shared.db import make_engine, make_sessionmaker, transaction
from pathways_shared.migrations import upgrade
from pathways_shared.vocabulary import OffenceCategory, SupervisionStatus

SERVICE_ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "PATHWAYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
AREA = "E08000029"
AS_OF = date(2026, 11, 24)


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def make_database(name: str) -> str:
    conn = await asyncpg.connect(dsn(ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(dsn(ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def generate(url: str, nominals: int, offences: int) -> None:
    """A skewed, repeatable population: offences fall on people by the square of a uniform
    draw (a few people have many, most have a few), each person offends over five years that
    ended between today and six years ago (many have desisted), 2% are under MAPPA level 2
    or 3, ages 16 to 66, all six supervision statuses."""
    statuses = [s.value for s in SupervisionStatus]
    categories = [c.value for c in OffenceCategory]
    conn = await asyncpg.connect(dsn(url))
    try:
        await conn.execute("SELECT setseed(0.2026)")
        await conn.execute(
            """
            INSERT INTO nominals (crn, area, date_of_birth, supervision_status, mappa_level,
                                  pnc_number, created_at, updated_at)
            SELECT 'X' || lpad(i::text, 6, '0'), $1,
                   $2::date - (16 * 365 + floor(random() * 50 * 365))::int,
                   ($3::text[])[1 + floor(random() * 6)::int],
                   CASE WHEN random() < 0.02 THEN 2 + floor(random() * 2)::int END,
                   NULL, now(), now()
            FROM generate_series(1, $4::int) AS i
            """,
            AREA,
            AS_OF,
            statuses,
            nominals,
        )
        await conn.execute(
            """
            INSERT INTO offences (crn, offence_date, category, description, recorded_at)
            SELECT 'X' || lpad(who::text, 6, '0'),
                   $2::date - (quiet + floor(random() * 1825))::int,
                   ($3::text[])[1 + floor(random() * 22)::int],
                   'generated ' || j, now()
            FROM (
                SELECT j, who, (hashint4(who) & 2147483647) % 2200 AS quiet
                FROM (
                    SELECT j, 1 + floor(power(random(), 2) * $1::int)::int AS who
                    FROM generate_series(1, $4::int) AS j
                ) AS drawn
            ) AS offences
            ON CONFLICT DO NOTHING
            """,
            nominals,
            AS_OF,
            categories,
            offences,
        )
        await conn.execute("VACUUM ANALYZE")
        loaded = await conn.fetchval("SELECT count(*) FROM offences")
        print(f"generated {nominals} nominals and {loaded} offences")
    finally:
        await conn.close()


async def bench(url: str, runs: int) -> None:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    panel = Principal(sub="bench", roles=frozenset({"iom_panel"}))
    policy = default_policy()
    aggregate, whole = [], []
    try:
        for i in range(runs):
            async with sessionmaker() as session:
                started = time.perf_counter()
                summaries = await CohortsRepository(session).summaries(AS_OF, policy, area=AREA)
                queried = time.perf_counter()
                run = select(summaries, AS_OF, policy, area=AREA, policy_version=0)
                ended = time.perf_counter()
            aggregate.append(ended - started)
            async with transaction(sessionmaker) as session:
                begun = time.perf_counter()
                await service.run_selection(
                    session,
                    panel,
                    area=AREA,
                    as_of=AS_OF,
                    now=datetime.now(UTC),
                    base_url="http://bench",
                )
            whole.append(time.perf_counter() - begun)
            print(
                f"run {i + 1}: SQL aggregate {queried - started:.2f}s + rules "
                f"{ended - queried:.2f}s = {aggregate[-1]:.2f}s "
                f"({len(summaries)} summaries, {len(run.candidates)} candidates, "
                f"{len(run.excluded)} excluded); whole run incl. storing {whole[-1]:.2f}s"
            )
    finally:
        await engine.dispose()
    print(
        f"median of {runs}: selection {statistics.median(aggregate):.2f}s, "
        f"whole run (as POST /selection-runs) {statistics.median(whole):.2f}s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nominals", type=int, default=100_000)
    parser.add_argument("--offences", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    name = f"pathways_bench_cohorts_{os.getpid()}"
    url = await make_database(name)
    try:
        await asyncio.to_thread(upgrade, SERVICE_ROOT, url)
        started = time.perf_counter()
        await generate(url, args.nominals, args.offences)
        print(f"data generated in {time.perf_counter() - started:.1f}s")
        await bench(url, args.runs)
    finally:
        if not args.keep:
            await drop_database(name)


if __name__ == "__main__":
    asyncio.run(main())
