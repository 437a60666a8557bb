"""Shared helpers of the benchmarks: the machine report, scratch databases, the services as
real processes (`python -m <service>`, uvicorn, as in tests/conftest.py), tokens, referral
bodies and percentiles. Loopback only.

PostgreSQL: `PATHWAYS_TEST_PG_URL` (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
NATS: `NATS_URL` (default nats://127.0.0.1:4222).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PY = sys.executable
PG_ADMIN_URL = os.environ.get(
    "PATHWAYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
JWT_SECRET = "pathways-bench-secret-0123456789abcdef0123456789"
SERVICES = ["referrals", "providers", "cohorts", "notifications"]


# --------------------------------------------------------------------------- machine


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url(dbname: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)


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


async def recreate_database(dbname: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    return database_url(dbname)


async def drop_database(dbname: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await conn.close()


async def database_exists(dbname: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname))
    finally:
        await conn.close()


def migrate(service: str, url: str) -> None:
    subprocess.run(
        [PY, "-m", "pathways_shared.cli", "migrate", service, "--url", url],
        cwd=ROOT, env=os.environ.copy(), check=True, capture_output=True,
    )


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class System:
    workdir: Path
    prefix: str
    ports: dict[str, int]
    env: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)  # database URLs
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str) -> None:
        log = open(self.workdir / f"{service}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.processes[service] = subprocess.Popen(
            [PY, "-m", service], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, service: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url(service)}/health/ready", timeout=1).status_code == 200:
                    return
            if self.processes[service].poll() is not None:
                break
            time.sleep(0.2)
        log = (self.workdir / f"{service}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{service} did not become ready:\n{log}")

    def pid(self, service: str) -> int:
        return self.processes[service].pid


@contextlib.contextmanager
def system_running(
    workdir: Path,
    services: list[str],
    *,
    databases: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
):
    """Start `services` as real processes, each on a fresh PostgreSQL database (or on the
    database URL given in `databases`, kept afterwards), with a subject prefix of their own.
    Everything started here is stopped (and the fresh databases dropped) on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    # `kill <pid>` of a benchmark still stops its services and drops its databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = uuid.uuid4().hex[:6]
    prefix = f"bench{run}."
    ports = {s: free_port() for s in SERVICES}
    smtp_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REFERRALS_", "PROVIDERS_", "COHORTS_", "NOTIFICATIONS_"))
    }
    env.update(
        PATHWAYS_ENV="development",
        PATHWAYS_JWT_SECRET=JWT_SECRET,
        PATHWAYS_SUBJECT_PREFIX=prefix,
        PATHWAYS_LOG_JSON="true",
        PATHWAYS_LOG_LEVEL="WARNING",
        NATS_URL=NATS_URL,
        PATHWAYS_REFERRALS_URL=f"http://127.0.0.1:{ports['referrals']}",
        PATHWAYS_PROVIDERS_URL=f"http://127.0.0.1:{ports['providers']}",
        PATHWAYS_COHORTS_URL=f"http://127.0.0.1:{ports['cohorts']}",
        NOTIFICATIONS_SMTP_HOST="127.0.0.1",
        NOTIFICATIONS_SMTP_PORT=str(smtp_port),
    )
    env.update(extra_env or {})
    given = dict(databases or {})
    made: list[str] = []
    urls: dict[str, str] = {}
    for service in services:
        if service in given:
            url = given[service]
        else:
            dbname = f"pathways_bench_{service}_{run}"
            url = asyncio.run(recreate_database(dbname))
            made.append(dbname)
        urls[service] = url
        env[f"{service.upper()}_DATABASE_URL"] = url
        env[f"{service.upper()}_PORT"] = str(ports[service])
        env[f"{service.upper()}_HOST"] = "127.0.0.1"
        env.setdefault(f"{service.upper()}_RELAY_POLL_SECONDS", "0.5")
        subprocess.run(
            [PY, "-m", "pathways_shared.cli", "migrate", service, "--url", url],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )
    system = System(workdir, prefix, ports, env, urls)
    helpers: list[subprocess.Popen] = []
    try:
        if "notifications" in services:
            helpers.append(
                subprocess.Popen(
                    [PY, str(ROOT / "scripts" / "mailsink.py"), "--host", "127.0.0.1", "--port",
                     str(smtp_port), "--directory", str(workdir / "mail")],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
            wait_port(smtp_port)
        for service in services:
            system.start(service)
        for service in services:
            system.wait_ready(service)
        yield system
    finally:
        for service, process in list(system.processes.items()):
            with contextlib.suppress(Exception):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        for helper in helpers:
            helper.terminate()
            with contextlib.suppress(Exception):
                helper.wait(10)
        for dbname in made:
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(dbname))
        with contextlib.suppress(Exception):
            asyncio.run(delete_streams(prefix))


async def delete_streams(prefix: str) -> None:
    import nats

    from pathways_shared.events import STREAMS, stream_name

    nc = await nats.connect(NATS_URL, connect_timeout=2)
    js = nc.jetstream()
    for name in STREAMS:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream_name(name, prefix))
    await nc.close()


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
