"""Benchmark 3: `GET /referrals` list latency with 1,000,000 referrals loaded, filtered by area
and status, first page and a deep cursor: p50 and p99. Goal: p99 < 20 ms.

    .venv/bin/python bench/bench_list_latency.py [--referrals 1000000] [--requests 200]
        [--runs 3] [--keep]

The referrals (and their needs: one to three each, two on average) are generated in SQL
straight into a scratch database migrated with the referrals service's own migrations,
shaped as the service writes them (models.py and migrations/versions/0002_referrals.py):
seven areas evenly, 70% open / 25% closed / 5% withdrawn, submitted over three years,
needs whose statuses fit the referral's. Secondary indexes are dropped for the load and
rebuilt from their own definitions afterwards, then VACUUM ANALYZE. History and access-log
rows of the loaded referrals are not generated (the list neither reads nor filters on them).

`--keep` keeps the loaded database (`pathways_bench_list_<N>`) afterwards and reuses it when
present, to save the load on the next run; without it a database of the run's own is made
and dropped (a kept one is left alone).

The referrals service runs alone on that database (one uvicorn worker); requests are sent one
at a time over a keep-alive connection with a probation token scoped to the area (as a
probation user's would be), so `limit` is the default 50. Each case: a warm-up, then
`--requests` timed requests per run; per-run p50 and p99, and the median over runs. Each case
is also EXPLAIN ANALYZEd (the SQL the service issues, written out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from _system import (
    AREA_CODES,
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

AREA = "E08000029"
DEEP = 0.9  # the deep cursor sits 90% of the way down the filtered list

LOAD_REFERRALS = """
INSERT INTO referrals (id, source_reference, idempotency_key, fingerprint, area, status, crn,
    noms_number, pnc_number, given_name, family_name, date_of_birth, sex, needs_interpreter,
    interpreter_language, supervision_status, expected_release_date, rosh, mappa_level,
    practitioner_name, practitioner_email, practitioner_team, consent_given,
    consent_recorded_at, submitted_at, submitted_by, updated_at, withdrawal_reason,
    withdrawal_comments, withdrawn_at, withdrawn_by, submitting_client)
SELECT gen_random_uuid(), 'LOAD-' || lpad(i::text, 8, '0'), NULL,
       encode(sha256(i::text::bytea), 'hex'),
       ($2::text[])[1 + i % 7],
       s.status,
       'X' || lpad((i % 400000)::text, 6, '0'),
       chr(65 + i % 26) || lpad((i % 10000)::text, 4, '0') || 'BC', NULL,
       'Given' || (i % 5000), 'Family' || (i % 20000),
       date '1960-01-01' + (i % 15000),
       CASE WHEN i % 5 = 0 THEN 'female' ELSE 'male' END,
       i % 50 = 0, CASE WHEN i % 50 = 0 THEN 'Polish' END,
       (ARRAY['community_order', 'suspended_sentence_order', 'licence',
              'post_sentence_supervision'])[1 + i % 4],
       NULL,
       (ARRAY['low', 'medium', 'high', 'very_high'])[1 + i % 4],
       CASE WHEN i % 40 = 0 THEN 2 END,
       'Officer ' || (i % 900), 'officer' || (i % 900) || '@probation.example',
       'Team ' || (i % 60), true,
       s.submitted_at - interval '1 day', s.submitted_at, 'bench-probation',
       s.submitted_at + interval '3 days',
       CASE WHEN s.status = 'withdrawn' THEN 'no_longer_required' END,
       CASE WHEN s.status = 'withdrawn' THEN 'generated' END,
       CASE WHEN s.status = 'withdrawn' THEN s.submitted_at + interval '3 days' END,
       CASE WHEN s.status = 'withdrawn' THEN 'bench-probation' END,
       'bench-probation'
FROM (
    SELECT i, submitted_at,
           CASE WHEN u < 0.70 THEN 'open' WHEN u < 0.95 THEN 'closed' ELSE 'withdrawn' END AS status
    FROM (SELECT i, random() AS u,
                 timestamptz '2026-11-20 00:00:00+00' - random() * interval '1095 days' AS submitted_at
          FROM generate_series(1, $1::int) AS i) AS drawn
) AS s
"""

LOAD_NEEDS = """
INSERT INTO needs (id, referral_id, position, pathway, complexity, details, flags, status,
    service_code, provider_code, programme, provider_referral_id, status_reason, allocated_at,
    acknowledge_by, respond_by, updated_at, last_event_at, missed_deadlines)
SELECT gen_random_uuid(), r.id, k,
       (ARRAY['accommodation', 'education_training_employment', 'finance_benefit_debt',
              'children_families', 'drugs_alcohol', 'health',
              'attitudes_thinking_behaviour'])[1 + (r.n + k) % 7],
       (ARRAY['low', 'medium', 'high'])[1 + (r.n + k) % 3],
       'generated need', '[]'::json,
       CASE r.status WHEN 'withdrawn' THEN 'withdrawn' WHEN 'closed' THEN 'completed'
            ELSE (ARRAY['allocated', 'acknowledged', 'accepted', 'in_progress'])[1 + (r.n + k) % 4]
       END,
       'CRS-SVC-' || ((r.n + k) % 7), (ARRAY['NACRO', 'CHANGING_LIVES', 'INGEUS', 'MAXIMUS',
              'IXION', 'SIAS', 'CWH'])[1 + (r.n + k) % 7], 'CRS', gen_random_uuid(),
       NULL, r.submitted_at + interval '1 second', r.submitted_at + interval '5 days',
       r.submitted_at + interval '10 days', r.updated_at, r.updated_at, '[]'::json
FROM (SELECT id, status, submitted_at, updated_at,
             substr(source_reference, 6)::int AS n FROM referrals) AS r,
     generate_series(0, (r.n % 3)) AS k
"""


def _indexdefs_sql() -> str:
    return """
    SELECT i.indexname, i.indexdef FROM pg_indexes i
    WHERE i.schemaname = 'public' AND i.tablename IN ('referrals', 'needs')
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
    """


async def load(url: str, referrals: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), command_timeout=3600)
    try:
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET synchronous_commit = off")
        # The rows are consistent by construction: skip the per-row foreign-key triggers.
        await conn.execute("SET session_replication_role = replica")
        indexes = await conn.fetch(_indexdefs_sql())
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.execute("SELECT setseed(0.2026)")
        await conn.execute(LOAD_REFERRALS, referrals, AREA_CODES)
        loaded = time.perf_counter()
        await conn.execute(LOAD_NEEDS)
        needs = time.perf_counter()
        for row in indexes:
            await conn.execute(row["indexdef"])
        indexed = time.perf_counter()
        await conn.execute("SET session_replication_role = DEFAULT")
        await conn.execute("VACUUM ANALYZE referrals")
        await conn.execute("VACUUM ANALYZE needs")
        await conn.execute("CREATE TABLE bench_loaded (referrals int NOT NULL)")
        await conn.execute("INSERT INTO bench_loaded VALUES ($1)", referrals)
        # Write out the gigabytes just loaded now, not during the measurement: otherwise the
        # next checkpoint lands in the middle of it and the p99 measures the bulk load.
        await conn.execute("CHECKPOINT")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM referrals) AS r, (SELECT count(*) FROM needs) AS n")
        print(f"loaded {counts['r']} referrals ({loaded - started:.0f}s) and {counts['n']} needs "
              f"({needs - loaded:.0f}s); {len(indexes)} indexes rebuilt ({indexed - needs:.0f}s); "
              f"analyzed ({time.perf_counter() - indexed:.0f}s)", flush=True)
    finally:
        await conn.close()


async def loaded_count(url: str) -> int | None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_loaded') IS NOT NULL"):
            return None
        return await conn.fetchval("SELECT referrals FROM bench_loaded")
    finally:
        await conn.close()


LIST_SQL = """
SELECT * FROM referrals
WHERE area IN ($1) AND area = $1 AND status = $2 {after}
ORDER BY submitted_at DESC, id DESC LIMIT 51
"""


async def cases(url: str) -> list[dict]:
    """The four cases, with the keyset of the deep cursor and the plan of each."""
    from pathways_shared.pagination import encode_cursor

    conn = await asyncpg.connect(asyncpg_dsn(url))
    out = []
    try:
        for status in ("open", "withdrawn"):
            total = await conn.fetchval(
                "SELECT count(*) FROM referrals WHERE area = $1 AND status = $2", AREA, status)
            deep = await conn.fetchrow(
                "SELECT submitted_at, id FROM referrals WHERE area = $1 AND status = $2 "
                "ORDER BY submitted_at DESC, id DESC OFFSET $3 LIMIT 1",
                AREA, status, int(total * DEEP))
            for depth, keyset in (("first page", None), (f"deep cursor (row {int(total * DEEP)})", deep)):
                params = {"area": AREA, "status": status}
                after = ""
                args: list = [AREA, status]
                if keyset is not None:
                    params["cursor"] = encode_cursor([keyset["submitted_at"].isoformat(),
                                                      str(keyset["id"])])
                    after = "AND (submitted_at, id) < ($3, $4)"
                    args += [keyset["submitted_at"], keyset["id"]]
                plan = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS) " + LIST_SQL.format(after=after), *args)
                out.append({"name": f"area+status={status}, {depth} ({total} match)",
                            "params": params,
                            "plan": [r[0] for r in plan]})
    finally:
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per case per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true",
                        help="keep the loaded database and reuse it next time")
    args = parser.parse_args()
    machine_report("GET /referrals list latency at 1,000,000 referrals")
    print(f"settings    {args.referrals} referrals, {args.runs} runs x {args.requests} sequential "
          f"requests per case (after 20 warm-up), limit 50, one uvicorn worker", flush=True)
    # The kept database has a fixed name (to be found again); a throw-away one is this run's.
    dbname = f"pathways_bench_list_{args.referrals}"
    if not args.keep:
        dbname += f"_{os.getpid()}"
    url = database_url(dbname)
    if args.keep and asyncio.run(database_exists(dbname)) and \
            asyncio.run(loaded_count(url)) == args.referrals:
        print(f"reusing the loaded database {dbname} (--keep)", flush=True)
    else:
        asyncio.run(recreate_database(dbname))
        migrate("referrals", url)
        asyncio.run(load(url, args.referrals))
    try:
        workdir = Path(tempfile.mkdtemp(prefix="pathways-bench-list-"))
        with system_running(workdir, ["referrals"], databases={"referrals": url}) as system:
            the_cases = asyncio.run(cases(url))
            headers = {"Authorization": f"Bearer {token('probation', areas=[AREA])}"}
            results: dict[str, list[list[float]]] = {c["name"]: [] for c in the_cases}
            with httpx.Client(base_url=system.url("referrals"), headers=headers,
                              timeout=30) as client:
                for case in the_cases:
                    timed_gets(client, "/referrals", 20, params=case["params"])
                for i in range(args.runs):
                    for case in the_cases:
                        times = timed_gets(client, "/referrals", args.requests,
                                           params=case["params"])
                        results[case["name"]].append(times)
                        print_run(i + 1, case["name"], times, 55)
            print("\nEXPLAIN ANALYZE of each case's query (database side only):")
            for case in the_cases:
                timing = [line for line in case["plan"] if line.startswith("Execution Time")]
                print(f"  {case['name']}: {case['plan'][0].strip()[:110]} ... "
                      f"{timing[0] if timing else ''}")
                for line in case["plan"][1:4]:
                    print(f"      {line.strip()[:120]}")
    finally:
        if not args.keep:
            asyncio.run(drop_database(dbname))

    worst = max(print_medians(results, 55).values())
    goal("3. GET /referrals at 1,000,000", f"worst p99 {worst:.1f} ms", "p99 < 20 ms", worst < 20)


if __name__ == "__main__":
    main()
