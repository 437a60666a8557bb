"""Benchmark 5: the insights service. (a) Projection: events a second it projects (a backlog of
realistic need lifecycles on the REFERRALS and PROVIDERS streams, drained by its durable
consumers); goal >= 300 events/s. (b) Figures: every `/figures/*` route over three years of
1,000,000 needs across the seven areas, p99; goal < 100 ms.

    .venv/bin/python bench/bench_insights.py [--events 3000] [--needs 1000000] [--requests 100]
        [--runs 3] [--keep] [--skip-projection] [--skip-figures]

(a) The insights service runs alone on a fresh PostgreSQL database. Each run publishes
`--events` new events (a referral with one need, then allocated, acknowledged, accepted,
started, completed: six events a need) to JetStream as fast as it acks, and times until the
service has handled them all (its `processed_events`). Events a second = events / that time.

(b) The aggregates of 1,000,000 needs are generated in SQL straight into a database migrated
with the service's own migrations, shaped as the projection writes them (daily and monthly
rows of `figure_cells` and `figure_details`): needs submitted evenly over the three years up
to today in the seven areas, 85% allocated (acknowledged, 80% on time; 70% accepted, the rest
declined; 90% of accepted started, 75% of those completed), 15% unallocated by reason, 5%
withdrawn, accommodation needs 40% at risk of homelessness and 95% of those with a Duty to
Refer notice; IOM cohort events (adoptions, deselections, activity) for 2,100 members. `--keep`
keeps the database (`pathways_bench_insights_<N>`) and reuses it. Requests go one at a time
over a keep-alive connection with the default period (the 365 days up to today), as an admin
(all areas) or a partnership analyst of one area.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from _system import (
    AREA_CODES,
    NATS_URL,
    asyncpg_dsn,
    database_exists,
    database_url,
    drop_database,
    goal,
    machine_report,
    migrate,
    print_medians,
    print_run,
    recreate_database,
    system_running,
    timed_gets,
    token,
)

from pathways_shared.events import iso_z, make_event

SOLIHULL = "E08000029"

# ------------------------------------------------------------------------ (a) projection


def lifecycle(n: int, run: str, now: datetime) -> list:
    referral, need, pr = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    crn = f"B{n % 1_000_000:06d}"
    at = now - timedelta(days=n % 300, hours=1)
    info = {"referralId": referral, "needId": need, "providerReferralId": pr}
    return [
        make_event("referrals.referral.submitted", {
            "referralId": referral, "area": AREA_CODES[n % 7], "sex": ("male", "female")[n % 2],
            "ageOnSubmission": 18 + n % 60, "supervisionStatus": "licence", "rosh": "medium",
            "mappaLevel": None, "needs": [{"needId": need, "pathway": "accommodation",
                                           "complexity": "medium", "flags": []}]},
            crn=crn, occurred_at=at),
        make_event("providers.referral.allocated", {
            **info, "serviceCode": "CRS-ACC-M", "providerCode": "NACRO", "programme": "CRS",
            "acknowledgeBy": iso_z(at + timedelta(days=2)),
            "respondBy": iso_z(at + timedelta(days=5))}, crn=crn, occurred_at=at + timedelta(minutes=1)),
        make_event("providers.referral.acknowledged", info, crn=crn, occurred_at=at + timedelta(days=1)),
        make_event("providers.referral.accepted", info, crn=crn, occurred_at=at + timedelta(days=2)),
        make_event("providers.referral.started", info, crn=crn, occurred_at=at + timedelta(days=3)),
        make_event("providers.referral.completed", {**info, "outcome": "achieved"}, crn=crn,
                   occurred_at=at + timedelta(days=30)),
    ]


async def projection_run(system, url: str, events: int, run: int) -> float:
    import nats

    now = datetime.now(UTC)
    batch = [e for n in range(events // 6) for e in lifecycle(run * 1_000_000 + n, str(run), now)]
    conn = await asyncpg.connect(asyncpg_dsn(url))
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        before = await conn.fetchval("SELECT count(*) FROM processed_events")
        started = time.perf_counter()
        acks = [js.publish(f"{system.prefix}{e.event_type}", e.to_json(),
                           headers={"Nats-Msg-Id": str(e.id)}) for e in batch]
        for i in range(0, len(acks), 200):
            await asyncio.gather(*acks[i:i + 200])
        published = time.perf_counter()
        while await conn.fetchval("SELECT count(*) FROM processed_events") < before + len(batch):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        print(f"run {run}: {len(batch)} events published in {published - started:.1f}s, all "
              f"projected after {elapsed:.1f}s: {len(batch) / elapsed:.0f} events/s", flush=True)
        return len(batch) / elapsed
    finally:
        await nc.close()
        await conn.close()


def bench_projection(args) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="pathways-bench-insights-"))
    rates = []
    with system_running(workdir, ["insights"]) as system:
        url = system.urls["insights"]
        for run in range(1, args.runs + 1):
            rates.append(asyncio.run(projection_run(system, url, args.events, run)))
    return statistics.median(rates)


# ------------------------------------------------------------------------ (b) figures

# One row per need with every step it took, as a projection of its events would have them.
GENERATE_NEEDS = """
CREATE UNLOGGED TABLE gen AS
SELECT i,
       ($2::text[])[1 + i % 7] AS area,
       p.pathway, p.services, p.providers, p.programmes,
       (ARRAY['low', 'medium', 'high'])[1 + (i / 7) % 3] AS complexity,
       CASE WHEN i % 5 = 0 THEN 'female' ELSE 'male' END AS sex,
       (ARRAY['18-24', '25-34', '25-34', '35-49', '35-49', '50-64', '65+'])[1 + (i / 3) % 7] AS age_band,
       CASE WHEN i % 6 = 0 THEN 'non_statutory' ELSE 'statutory' END AS supervision,
       ($3::date - (random() * 1094)::int) AS day,
       random() AS u1, random() AS u2, random() AS u3, random() AS u4, (i / 11) % 2 AS pick
FROM generate_series(1, $1::int) AS i
JOIN (VALUES
  (0, 'accommodation', ARRAY['CRS-ACC-M', 'CRS-ACC-F'], ARRAY['NACRO', 'CHANGING_LIVES'], ARRAY['CRS', 'CRS']),
  (1, 'education_training_employment', ARRAY['CRS-ETE-M', 'CFO3-ETE'], ARRAY['MAXIMUS', 'IXION'], ARRAY['CRS', 'CFO3']),
  (2, 'finance_benefit_debt', ARRAY['CRS-FBD-M', 'COMM-FBD'], ARRAY['INGEUS', 'CWH'], ARRAY['CRS', 'Community']),
  (3, 'children_families', ARRAY['HH-SIAS', 'EH-SMBC'], ARRAY['SIAS', 'SMBC_EARLY_HELP'], ARRAY['Hidden Harm', 'Community']),
  (4, 'drugs_alcohol', ARRAY['DA-SIAS', 'DA-SIAS'], ARRAY['SIAS', 'SIAS'], ARRAY['Community', 'Community']),
  (5, 'health', ARRAY['ND-IOM', 'ND-IOM'], ARRAY['ND_SERVICE', 'ND_SERVICE'], ARRAY['Commissioned', 'Commissioned']),
  (6, 'attitudes_thinking_behaviour', ARRAY['ATB-PS', 'ATB-PS'], ARRAY['PROBATION', 'PROBATION'], ARRAY['Probation', 'Probation'])
) AS p(k, pathway, services, providers, programmes) ON p.k = (i / 49) % 7
"""

# Every counted step: (day, dimensions, allocation, measure, detail).
GENERATE_STEPS = """
CREATE UNLOGGED TABLE steps AS
WITH g AS (
  SELECT *, services[1 + pick] AS svc, providers[1 + pick] AS prov, programmes[1 + pick] AS prog,
         u1 < 0.85 AS allocated, 1 + (u2 * 4)::int AS ack_days, 1 + (u3 * 7)::int AS resp_days
  FROM gen
)
SELECT day, area, pathway, complexity, sex, age_band, supervision, '' AS svc, '' AS prov, '' AS prog,
       'submitted' AS measure, NULL::text AS detail FROM g
UNION ALL SELECT day, area, pathway, complexity, sex, age_band, supervision, '', '', '',
       'accommodation_at_risk', NULL FROM g WHERE pathway = 'accommodation' AND u4 < 0.4
UNION ALL SELECT day + 1, area, pathway, complexity, sex, age_band, supervision, '', '', '',
       'duty_to_refer_sent', NULL FROM g WHERE pathway = 'accommodation' AND u4 < 0.38
UNION ALL SELECT day, area, pathway, complexity, sex, age_band, supervision, '', '', '',
       'unallocated', NULL FROM g WHERE NOT allocated
UNION ALL SELECT day, area, pathway, complexity, sex, age_band, supervision, '', '', '',
       'unmet_reason', (ARRAY['no_service', 'all_declined', 'sex', 'age', 'supervision_status',
                              'complexity', 'required_flags', 'iom_membership'])[1 + (i % 8)]
       FROM g WHERE NOT allocated
UNION ALL SELECT day, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'allocated', NULL FROM g WHERE allocated
UNION ALL SELECT day + ack_days, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       CASE WHEN ack_days <= 2 THEN 'acknowledged_on_time' ELSE 'acknowledged_late' END, NULL
       FROM g WHERE allocated
UNION ALL SELECT day + ack_days, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'working_days_to_acknowledge', ack_days::text FROM g WHERE allocated
UNION ALL SELECT day + resp_days, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       m, NULL FROM g,
       LATERAL (VALUES (CASE WHEN u2 < 0.7 THEN 'accepted' ELSE 'declined' END),
                       (CASE WHEN resp_days <= 5 THEN 'responded_on_time' ELSE 'responded_late' END)) AS v(m)
       WHERE allocated
UNION ALL SELECT day + resp_days, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'working_days_to_respond', resp_days::text FROM g WHERE allocated
UNION ALL SELECT day + resp_days, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'decline_reason', 'capacity' FROM g WHERE allocated AND u2 >= 0.7
UNION ALL SELECT day + 6, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'deadlines_missed', NULL FROM g WHERE allocated AND ack_days > 3
UNION ALL SELECT day + 10, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'started', NULL FROM g WHERE allocated AND u2 < 0.63
UNION ALL SELECT day + 60, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       m, NULL FROM g, LATERAL (VALUES ('completed'), ((ARRAY['outcome_achieved',
              'outcome_partially_achieved', 'outcome_not_achieved'])[1 + i % 3])) AS v(m)
       WHERE allocated AND u2 < 0.47
UNION ALL SELECT day + 20, area, pathway, complexity, sex, age_band, supervision, svc, prov, prog,
       'withdrawn', NULL FROM g WHERE allocated AND u3 < 0.05
"""

COUNT_MEASURES = (
    "submitted", "allocated", "unallocated", "declined", "accepted", "started", "completed",
    "withdrawn", "acknowledged_on_time", "acknowledged_late", "responded_on_time",
    "responded_late", "deadlines_missed", "outcome_achieved", "outcome_partially_achieved",
    "outcome_not_achieved", "duty_to_refer_sent", "accommodation_at_risk",
)
CUBES = {
    "F": "area, pathway, complexity, sex, age_band, supervision, svc, prov, prog",
    "S": "area, pathway, ''::text, ''::text, ''::text, ''::text, svc, prov, prog",
    "P": "area, pathway, complexity, sex, age_band, supervision, ''::text, ''::text, ''::text",
}


def aggregate_sql(cube: str, grain: str) -> tuple[str, str]:
    period = "day" if grain == "D" else "date_trunc('month', day)::date"
    dims = CUBES[cube]
    sums = ", ".join(f"count(*) FILTER (WHERE measure = '{m}')" for m in COUNT_MEASURES)
    cells = f"""
    INSERT INTO figure_cells (cube, grain, period, month, area, pathway, complexity, sex, age_band,
        supervision, service_code, provider_code, programme, {", ".join(COUNT_MEASURES)})
    SELECT '{cube}', '{grain}', {period}, to_char(day, 'YYYY-MM'), {dims}, {sums}
    FROM steps WHERE detail IS NULL AND day <= $1
    GROUP BY {period}, to_char(day, 'YYYY-MM'), {dims}
    """
    details = f"""
    INSERT INTO figure_details (cube, grain, period, month, area, pathway, complexity, sex, age_band,
        supervision, service_code, provider_code, programme, measure, detail, count)
    SELECT '{cube}', '{grain}', {period}, to_char(day, 'YYYY-MM'), {dims}, measure, detail, count(*)
    FROM steps WHERE detail IS NOT NULL AND day <= $1
    GROUP BY {period}, to_char(day, 'YYYY-MM'), {dims}, measure, detail
    """
    return cells, details


COHORT_FACTS = """
INSERT INTO cohort_facts (event_id, kind, member_key, area, cohort, reason, pathway, status, occurred_at)
SELECT gen_random_uuid()::text, k.kind, md5(m::text), ($2::text[])[1 + m % 7],
       (ARRAY['fixed', 'flex', 'free'])[1 + m % 3],
       CASE WHEN k.kind = 'deselected' THEN (ARRAY['desisted', 'sentence_ended', 'moved_out_of_area',
              'custody_long_term', 'panel_decision'])[1 + m % 5] END,
       CASE WHEN k.kind = 'activity' THEN 'accommodation' END,
       CASE WHEN k.kind = 'activity' THEN (ARRAY['allocated', 'accepted', 'completed'])[1 + m % 3] END,
       $3::timestamptz - ((m * 37) % 1000) * interval '1 day' + k.offset_days * interval '1 day'
FROM generate_series(1, $1::int) AS m,
     LATERAL (VALUES ('selected', 0), ('activity', 5), ('deselected', 400)) AS k(kind, offset_days)
WHERE k.kind <> 'deselected' OR m % 3 = 0
"""


async def load(url: str, needs: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), command_timeout=7200)
    today = datetime.now(UTC).date()
    try:
        started = time.perf_counter()
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SELECT setseed(0.2026)")
        await conn.execute(GENERATE_NEEDS, needs, AREA_CODES, today)
        await conn.execute(GENERATE_STEPS)
        generated = time.perf_counter()
        for cube in CUBES:
            for grain in ("D", "M"):
                cells, details = aggregate_sql(cube, grain)
                await conn.execute(cells, today)
                await conn.execute(details, today)
        await conn.execute(COHORT_FACTS, 2100, AREA_CODES, datetime.now(UTC))
        await conn.execute("DROP TABLE steps")
        await conn.execute("DROP TABLE gen")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CREATE TABLE bench_loaded (needs int NOT NULL)")
        await conn.execute("INSERT INTO bench_loaded VALUES ($1)", needs)
        await conn.execute("CHECKPOINT")
        rows = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM figure_cells) AS c, (SELECT count(*) FROM figure_details) AS d,"
            " (SELECT sum(submitted) FROM figure_cells WHERE cube = 'F' AND grain = 'M') AS n")
        print(f"generated {rows['n']} needs' steps ({generated - started:.0f}s); aggregates: "
              f"{rows['c']} figure_cells rows, {rows['d']} figure_details rows "
              f"({time.perf_counter() - generated:.0f}s)", flush=True)
    finally:
        await conn.close()


async def loaded_count(url: str) -> int | None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_loaded') IS NOT NULL"):
            return None
        return await conn.fetchval("SELECT needs FROM bench_loaded")
    finally:
        await conn.close()


CASES = [
    ("needs by pathway, all areas", "/figures/needs", {"by": "pathway"}, "admin"),
    ("needs by month and pathway, one area", "/figures/needs", {"by": "month,pathway"}, "partnership"),
    ("needs by sex and age band, all areas", "/figures/needs", {"by": "sex,age_band"}, "admin"),
    ("unmet need by reason, all areas", "/figures/unmet-need", {"by": "reason"}, "admin"),
    ("unmet need by reason and pathway, one area", "/figures/unmet-need", {"by": "reason,pathway"}, "partnership"),
    ("service levels by provider, all areas", "/figures/service-levels", {"by": "provider"}, "admin"),
    ("service levels by service and month, one area", "/figures/service-levels", {"by": "service,month"}, "partnership"),
    ("cohorts by cohort and reason, all areas", "/figures/cohorts", {"by": "cohort,reason"}, "admin"),
    ("duty to refer by area, all areas", "/figures/duty-to-refer", {"by": "area"}, "admin"),
    ("needs, total, all areas, filtered by provider", "/figures/needs", {"provider": "NACRO"}, "admin"),
]


def bench_figures(args) -> float:
    dbname = f"pathways_bench_insights_{args.needs}"
    if not args.keep:
        dbname += f"_{os.getpid()}"
    url = database_url(dbname)
    if args.keep and asyncio.run(database_exists(dbname)) and \
            asyncio.run(loaded_count(url)) == args.needs:
        print(f"reusing the loaded database {dbname} (--keep)", flush=True)
    else:
        asyncio.run(recreate_database(dbname))
        migrate("insights", url)
        asyncio.run(load(url, args.needs))
    results: dict[str, list[list[float]]] = {name: [] for name, *_ in CASES}
    try:
        workdir = Path(tempfile.mkdtemp(prefix="pathways-bench-insights-"))
        with system_running(workdir, ["insights"], databases={"insights": url}) as system:
            headers = {
                "admin": {"Authorization": f"Bearer {token('admin')}"},
                "partnership": {"Authorization": f"Bearer {token('partnership', areas=[SOLIHULL])}"},
            }
            with httpx.Client(base_url=system.url("insights"), timeout=60) as client:
                for _, path, params, role in CASES:
                    timed_gets(client, path, 10, params=params, headers=headers[role])
                for i in range(args.runs):
                    for name, path, params, role in CASES:
                        times = timed_gets(client, path, args.requests, params=params,
                                           headers=headers[role])
                        results[name].append(times)
                        print_run(i + 1, name, times)
    finally:
        if not args.keep:
            asyncio.run(drop_database(dbname))
    return max(print_medians(results).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events a projection run")
    parser.add_argument("--needs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per case per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the loaded database and reuse it")
    parser.add_argument("--skip-projection", action="store_true")
    parser.add_argument("--skip-figures", action="store_true")
    args = parser.parse_args()
    machine_report("insights: projection throughput and /figures/* latency")
    rate = worst = None
    if not args.skip_projection:
        rate = bench_projection(args)
    if not args.skip_figures:
        worst = bench_figures(args)
    print()
    if rate is not None:
        goal("5a. insights projection", f"median {rate:.0f} events/s", ">= 300 events/s",
             rate >= 300)
    if worst is not None:
        goal("5b. insights figures", f"worst p99 {worst:.1f} ms over {len(CASES)} cases",
             "p99 < 100 ms", worst < 100)


if __name__ == "__main__":
    main()
