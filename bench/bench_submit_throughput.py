"""Benchmark 1: `POST /referrals` throughput on PostgreSQL, one uvicorn worker, concurrency 32,
against a baseline measured in the same run: a bare FastAPI endpoint (bench/_baseline_app.py,
same uvicorn set-up) doing the same inserts (a referral row and an outbox row) with raw
asyncpg into a database with the referrals service's own schema. Goal: ratio >= 0.5.

    .venv/bin/python bench/bench_submit_throughput.py [--runs 5] [--seconds 10] [--warmup 3]
        [--concurrency 32]

The referrals service runs alone (no other service consumes its events, so the two cores
are shared only by the server, PostgreSQL, NATS and the client); its outbox relay publishes
to JetStream as in production. The client is bench/_load.py in a process of its own (raw
keep-alive HTTP/1.1 on uvloop); each run alternates baseline and service so noise on this
shared machine falls on both. Every request is a new referral (a unique source_reference).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _system import (
    BENCH,
    PY,
    asyncpg_dsn,
    cpu_seconds,
    drop_database,
    free_port,
    goal,
    machine_report,
    migrate,
    recreate_database,
    referral_body,
    system_running,
    token,
)


def load(port: int, pid: int, *, concurrency: int, seconds: float, warmup: float, start: int,
         headers: dict[str, str], body: str) -> dict:
    config = {"port": port, "path": "/referrals", "concurrency": concurrency, "seconds": seconds,
              "warmup": warmup, "start": start, "headers": headers, "body": body}
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    out = subprocess.run([PY, str(BENCH / "_load.py"), json.dumps(config)], check=True,
                         capture_output=True, text=True, timeout=seconds + warmup + 120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    used = cpu_seconds(pid) - cpu_before
    result["server_cpu"] = used / (time.monotonic() - wall_before)
    result["cpu_ms_per_request"] = 1000 * used / max(1, result["total_requests"])
    result["client_cpu"] = result["client_cpu_seconds"] / result["client_wall_seconds"]
    return result


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    machine_report("POST /referrals throughput vs. a bare FastAPI + asyncpg baseline")
    print(f"settings    {args.runs} runs x ({args.warmup:g}s warm-up + {args.seconds:g}s measured) "
          f"per target, concurrency {args.concurrency}, one uvicorn worker each", flush=True)

    run = uuid.uuid4().hex[:6]
    body = json.dumps(referral_body(0, run)).replace(f"BENCH-{run}-00000000", f"BENCH-{run}-__N__")
    headers = {"Authorization": f"Bearer {token('probation')}", "Content-Type": "application/json"}
    baseline_db = f"pathways_bench_baseline_{run}"
    baseline_url = asyncio.run(recreate_database(baseline_db))
    migrate("referrals", baseline_url)
    baseline_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pathways-bench-submit-"))
    baseline = subprocess.Popen(
        [PY, str(BENCH / "_baseline_app.py"), "--port", str(baseline_port), "--dsn",
         asyncpg_dsn(baseline_url)],
        stdout=open(workdir / "baseline.log", "ab"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
    )
    rows: dict[str, list[dict]] = {"baseline": [], "service": []}
    try:
        wait_http(f"http://127.0.0.1:{baseline_port}/openapi.json")
        with system_running(workdir, ["referrals"]) as system:
            targets = {
                "baseline": (baseline_port, baseline.pid),
                "service": (system.ports["referrals"], system.pid("referrals")),
            }
            for i in range(args.runs):
                for name, (port, pid) in targets.items():
                    result = load(port, pid, concurrency=args.concurrency, seconds=args.seconds,
                                  warmup=args.warmup, start=(i + 1) * 10_000_000,
                                  headers=headers, body=body)
                    rows[name].append(result)
                    print(f"run {i + 1} {name:8s} {result['rps']:7.1f} req/s  "
                          f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                          f"statuses {result['statuses']}  server CPU {result['server_cpu']:.0%} "
                          f"({result['cpu_ms_per_request']:.2f} ms/request)  "
                          f"client CPU {result['client_cpu']:.0%}", flush=True)
    finally:
        baseline.terminate()
        baseline.wait(20)
        asyncio.run(drop_database(baseline_db))

    base = statistics.median(r["rps"] for r in rows["baseline"])
    svc = statistics.median(r["rps"] for r in rows["service"])
    ratios = [s["rps"] / b["rps"] for s, b in zip(rows["service"], rows["baseline"], strict=True)]
    bad = sum(v for r in rows["service"] for k, v in r["statuses"].items() if k != "201")
    print(f"\nmedian of {args.runs} runs: baseline {base:.1f} req/s, POST /referrals {svc:.1f} req/s")
    print(f"ratio (median/median) {svc / base:.2f}; median of per-run ratios "
          f"{statistics.median(ratios):.2f}")
    base_cpu = statistics.median(r["cpu_ms_per_request"] for r in rows["baseline"])
    svc_cpu = statistics.median(r["cpu_ms_per_request"] for r in rows["service"])
    print(f"server CPU per request (median): baseline {base_cpu:.2f} ms, service {svc_cpu:.2f} ms: "
          f"CPU-bound ratio {base_cpu / svc_cpu:.2f} (what the ratio is when both servers are "
          f"limited by one core; less sensitive to a busy machine)")
    print(f"client CPU at most {max(r['client_cpu'] for v in rows.values() for r in v):.0%} of a core "
          f"(the client is not the bottleneck while well under 100%)")
    if bad:
        print(f"WARNING: {bad} service answers were not 201")
    goal("1. POST /referrals vs bare FastAPI + asyncpg", f"ratio {svc / base:.2f} "
         f"({svc:.1f} vs {base:.1f} req/s)", ">= 0.5", svc / base >= 0.5)


if __name__ == "__main__":
    main()
