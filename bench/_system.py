"""Shared helpers of the benchmarks: the machine report, scratch databases, the services as
real processes (`pathways_shared.harness`, the system tests' harness), tokens, referral
bodies and percentiles. Loopback only.

PostgreSQL: `PATHWAYS_TEST_PG_URL` (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
NATS: `NATS_URL` (default nats://127.0.0.1:4223, the lock file's nats-server).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from pathways_shared.harness import (  # noqa: F401  (the benchmarks import these from here)
    NATS_URL,
    PG_ADMIN_URL,
    PY,
    ROOT,
    SERVICES,
    TEST_JWT_SECRET,
    System,
    asyncpg_dsn,
    database_url_for,
    delete_streams,
    drop_database,
    free_port,
    migrate,
    recreate_database,
    wait_port,
)
from pathways_shared.harness import system_running as harness_system_running

BENCH = Path(__file__).resolve().parent
JWT_SECRET = TEST_JWT_SECRET


# --------------------------------------------------------------------------- machine


database_url = database_url_for


async def _pg_info() -> str:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
        }
    finally:
        await conn.close()
    return f"PostgreSQL {version} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"


async def _nats_info() -> str:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=3)
    try:
        info = getattr(nc, "_server_info", {}) or {}
        return f"NATS {info.get('version', '?')} (JetStream {'on' if info.get('jetstream') else '?'})"
    finally:
        await nc.close()


def machine_report(title: str) -> str:
    """Print (and return) what the figures were measured on."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    pg = asyncio.run(_pg_info())
    nats_version = asyncio.run(_nats_info())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"# {title}",
        f"date        {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine     {os.cpu_count()} cores ({model}), {mem} memory, load average {load}",
        f"python      {platform.python_implementation()} {platform.python_version()} on {platform.platform()}",
        f"postgresql  {pg}",
        f"nats        {nats_version}",
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# --------------------------------------------------------------------------- databases


async def database_exists(dbname: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname))
    finally:
        await conn.close()


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_running(
    workdir: Path,
    services: list[str],
    *,
    databases: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
):
    """The system tests' harness (`pathways_shared.harness.system_running`) with `services`
    only, quiet logs, and the services' own connection pools (as measured)."""
    # `kill <pid>` of a benchmark still stops its services and drops its databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return harness_system_running(
        workdir, services, databases=databases, name="bench",
        extra_env={"PATHWAYS_LOG_LEVEL": "WARNING", **(extra_env or {})},
    )


# --------------------------------------------------------------------------- requests


def token(role: str = "probation", **claims) -> str:
    from pathways_shared.auth import mint_token

    return mint_token(JWT_SECRET, roles=[role], sub=f"bench-{role}", ttl_seconds=6 * 3600, **claims)


AREA_CODES = ["E08000025", "E08000026", "E08000027", "E08000028", "E08000029", "E08000030",
              "E08000031"]


def referral_body(n: int, run: str, *, area: str = "E08000029") -> dict:
    """A valid referral (male, on licence, accommodation + ETE needs: both route in every
    West Midlands area); `n` and `run` make the source reference and CRN unique."""
    return {
        "source_reference": f"BENCH-{run}-{n:08d}",
        "area": area,
        "person": {
            "crn": f"X{n % 1_000_000:06d}", "noms_number": None, "pnc_number": None,
            "given_name": "Sam", "family_name": "Example", "date_of_birth": "1990-04-01",
            "sex": "male", "needs_interpreter": False, "interpreter_language": None,
        },
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "medium", "mappa_level": None},
        "practitioner": {"name": "Alex Officer", "email": "alex.officer@probation.example",
                         "team": "Solihull OMU"},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": [
            {"pathway": "accommodation", "complexity": "medium",
             "details": "No fixed abode on release", "flags": ["at_risk_of_homelessness"]},
        ],
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- reporting


def timed_gets(client, path: str, n: int, *, params: dict | None = None,
               headers: dict | None = None, check=None) -> list[float]:
    """`n` sequential GETs of `path` on an `httpx.Client`: each one's milliseconds. A status
    other than 200 (or an answer `check(response)` refuses) stops the benchmark."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, params=params, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or (check is not None and not check(response)):
            raise RuntimeError(f"{path}: {response.status_code}: {response.text[:300]}")
    return times


def print_run(run: int, name: str, times: list[float], width: int = 50) -> None:
    """One case's line of one run: p50 and p99."""
    print(f"run {run} {name:{width}s} p50 {percentile(times, 50):6.1f} ms"
          f"  p99 {percentile(times, 99):6.1f} ms", flush=True)


def print_medians(results: dict[str, list[list[float]]], width: int = 50) -> dict[str, float]:
    """Per case, the median over runs of each run's p50 and p99, printed; returns each case's
    median p99."""
    runs = max((len(r) for r in results.values()), default=0)
    print(f"\nmedians of {runs} runs (client-side, whole HTTP request):")
    p99s = {}
    for name, times in results.items():
        p50 = statistics.median(percentile(t, 50) for t in times)
        p99s[name] = statistics.median(percentile(t, 99) for t in times)
        print(f"  {name:{width}s} p50 {p50:6.1f} ms  p99 {p99s[name]:6.1f} ms")
    return p99s


def goal(name: str, figure: str, target: str, met: bool) -> bool:
    """The one-line summary every benchmark ends with, per goal: the figure, the goal, MET or
    MISSED (`make bench | grep ^GOAL` is the table)."""
    print(f"GOAL  {name}: {figure}; goal {target}: {'MET' if met else 'MISSED'}", flush=True)
    return met
