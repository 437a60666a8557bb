"""Diagnostic (not one of the four benchmarks): where the machine's CPU goes per referral.

Starts the five services as `bench_allocation_latency.py` does, sends referrals at a modest
open-loop rate the system keeps up with, waits until every one shows allocated in the
referrals service and the system is quiet, and prints the CPU each process spent (from
/proc) per referral: each service's worker, PostgreSQL (every backend and helper process),
nats-server and the SMTP sink. The sum says what rate the 2 cores can carry at all; the
split says where to cut.

    .venv/bin/python bench/cpu_per_referral.py [--rate 10] [--seconds 30] [--runs 3] [--settle 8]

Goal: <= 35 ms of the whole machine's CPU per referral (2 cores then carry 57/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from _system import (
    PY,
    SERVICES,
    asyncpg_dsn,
    cpu_seconds,
    goal,
    machine_report,
    referral_body,
    system_running,
    token,
)
from bench_allocation_latency import install_trigger

TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds (user + system) so far."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                name = Path(f"/proc/{entry}/comm").read_text().strip()
                out[int(entry)] = (name, cpu_seconds(int(entry)))
    return out


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return (sum(parts) - parts[3] - parts[4]) / TICKS  # all but idle and iowait


def _group(pid: int, name: str, services: dict[int, str]) -> str:
    if pid in services:
        return services[pid]
    if name.startswith("postgres"):
        return "postgresql"
    if name.startswith("nats-server"):
        return "nats-server"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return "smtp sink" if b"mailsink" in f.read() else ""
    except OSError:
        return ""


async def _drive(system, rate: float, seconds: float) -> tuple[int, float]:
    run = uuid.uuid4().hex[:6]
    allocated: set[str] = set()
    listener = await asyncpg.connect(asyncpg_dsn(system.urls["referrals"]))
    await listener.add_listener(
        "bench_allocated", lambda _c, _pid, _ch, payload: allocated.add(payload)
    )
    created: list[str] = []
    headers = {"Authorization": f"Bearer {token('probation')}"}
    async with httpx.AsyncClient(base_url=system.url("referrals"), headers=headers,
                                 timeout=30) as client:

        async def submit(n: int) -> None:
            response = await client.post("/referrals", json=referral_body(n, run))
            if response.status_code == 201:
                created.append(response.json()["id"])

        started = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit(n)))
        await asyncio.gather(*tasks)
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and not set(created) <= allocated:
            await asyncio.sleep(0.2)
        took = time.perf_counter() - started
    await listener.close()
    return len(set(created) & allocated), took


def _record(services: dict[int, str], into: Path) -> list[subprocess.Popen]:
    """py-spy, sampling each service from outside (no pause of the process), until stopped."""
    into.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(
        [str(Path(PY).parent / "py-spy"), "record", "--nonblocking", "--rate", "100",
         "--format", "raw", "--output", str(into / f"{service}.txt"), "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid, service in services.items()]


def _one_run(system, services: dict[int, str], args) -> tuple[dict[str, float], float, int]:
    """Per process group the CPU seconds of one run, the whole machine's, and the referrals."""
    before, busy_before = _proc_cpu(), _machine_busy()
    count, took = asyncio.run(_drive(system, args.rate, args.seconds))
    time.sleep(args.settle)
    after, busy_after = _proc_cpu(), _machine_busy()
    totals: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        group = _group(pid, name, services)
        if group:
            totals[group] = totals.get(group, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    print(f"run: {args.rate:g}/s for {args.seconds:g}s, {count} referrals allocated in "
          f"{took:.1f}s (+{args.settle:g}s settle), load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return totals, busy_after - busy_before, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds to wait after the last allocation (notifications finish)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also record each service with py-spy during the runs "
                             "(collapsed stacks, DIR/<service>.txt)")
    args = parser.parse_args()
    machine_report("CPU per referral, by process (all five services)")
    workdir = Path(tempfile.mkdtemp(prefix="pathways-bench-cpu-"))
    per_run: list[dict[str, float]] = []  # ms per referral, by group
    with system_running(workdir, SERVICES) as system:
        asyncio.run(install_trigger(system))
        asyncio.run(_drive(system, min(args.rate, 10.0), 3))  # warm-up
        time.sleep(args.settle)
        services = {p.pid: s for s, p in system.processes.items()}
        recorders = _record(services, args.profile) if args.profile else []
        for _ in range(args.runs):
            totals, machine, count = _one_run(system, services, args)
            ms = {group: cpu / max(count, 1) * 1000 for group, cpu in totals.items()}
            ms["five services"] = sum(ms.get(s, 0.0) for s in SERVICES)
            ms["system processes"] = sum(v for g, v in ms.items() if g != "five services")
            ms["whole machine"] = machine / max(count, 1) * 1000
            per_run.append(ms)
        for recorder in recorders:  # py-spy writes its file on SIGINT
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)

    sums = ["five services", "system processes", "whole machine"]
    groups = sorted({g for run in per_run for g in run} - set(sums),
                    key=lambda g: -statistics.median(r.get(g, 0.0) for r in per_run)) + sums
    print(f"\nms of CPU per referral (median of {len(per_run)} runs; then each run)")
    for group in groups:
        values = [run.get(group, 0.0) for run in per_run]
        print(f"  {group:<18}{statistics.median(values):8.1f}   "
              + " ".join(f"{v:6.1f}" for v in values))
    whole = statistics.median(run["whole machine"] for run in per_run)
    own = statistics.median(run["system processes"] for run in per_run)
    print("('system processes' is the services, PostgreSQL, nats-server and the SMTP sink; "
          "'whole machine' adds everything else that ran meanwhile: on a shared machine others' "
          "work too, and PostgreSQL and nats-server then serve others as well)")
    goal("CPU per referral, whole machine, five services", f"{whole:.1f} ms "
         f"(system processes {own:.1f} ms): 2 cores carry {2000 / whole:.0f}/s", "<= 35 ms",
         whole <= 35)


if __name__ == "__main__":
    main()
