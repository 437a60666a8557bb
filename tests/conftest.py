"""The whole system as outside systems see it: the four services as real processes
(`python -m <service>`, uvicorn) on PostgreSQL and NATS, a real SMTP sink and a real webhook
receiver, all on loopback. Tests drive it only through HTTP and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pathways_shared.testing import (
    TEST_JWT_SECRET,
    _drop_database,
    _recreate_database,
    database_url_for,
    free_port,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SERVICES = ["referrals", "providers", "cohorts", "notifications"]
NATS_URL = os.environ.get("PATHWAYS_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class System:
    workdir: Path
    prefix: str
    ports: dict[str, int]
    env: dict[str, str]
    smtp_port: int
    webhook_port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    nats_url: str = NATS_URL
    databases: dict[str, str] = field(default_factory=dict)

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
        log = open(self.workdir / f"{service}.log", "ab")
        self.processes[service] = subprocess.Popen(
            [PY, "-m", service], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(service)
        process.send_signal(sig)
        process.wait(20)

    def wait_ready(self, service: str, timeout: float = 60) -> None:
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


def _wait_port(port: int, timeout: float = 15) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@contextlib.contextmanager
def system_running(workdir: Path, nats_url: str = NATS_URL, extra_env: dict[str, str] | None = None):
    """Start the whole system (own databases, own subject prefix) and stop it afterwards."""
    run = uuid.uuid4().hex[:6]
    prefix = f"sys{run}."
    ports = {s: free_port() for s in SERVICES}
    smtp_port, webhook_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFERRALS_", "PROVIDERS_", "COHORTS_", "NOTIFICATIONS_"))}
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
    databases = {}
    for service in SERVICES:
        dbname = f"pathways_sys_{service}_{run}"
        asyncio.run(_recreate_database(dbname))
        url = database_url_for(dbname)
        databases[service] = dbname
        env[f"{service.upper()}_DATABASE_URL"] = url
        env[f"{service.upper()}_PORT"] = str(ports[service])
        env.setdefault(f"{service.upper()}_RELAY_POLL_SECONDS", "0.5")
        # Two systems may run at once (the session's and a test's own): keep within
        # PostgreSQL's 100 connections.
        env.setdefault(f"{service.upper()}_DATABASE_POOL_SIZE", "4")
        subprocess.run([PY, "-m", "pathways_shared.cli", "migrate", service, "--url", url],
                       cwd=ROOT, env=env, check=True, capture_output=True)
    system = System(workdir, prefix, ports, env, smtp_port, webhook_port)
    system.nats_url = nats_url
    system.databases = databases
    helpers = [
        subprocess.Popen([PY, str(ROOT / "scripts" / "mailsink.py"), "--host", "127.0.0.1", "--port",
                          str(smtp_port), "--directory", str(system.mail_dir)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([PY, str(ROOT / "tests" / "support" / "webhook_receiver.py"), str(webhook_port),
                          str(system.webhook_log)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        _wait_port(smtp_port)
        _wait_port(webhook_port)
        for service in SERVICES:
            system.start(service)
        for service in SERVICES:
            system.wait_ready(service, timeout=120)  # a loaded CI machine starts slowly
        yield system
    finally:
        for service in list(system.processes):
            with contextlib.suppress(Exception):
                system.kill(service, signal.SIGTERM)
        for helper in helpers:
            helper.terminate()
            with contextlib.suppress(Exception):
                helper.wait(10)
        for dbname in databases.values():
            with contextlib.suppress(Exception):
                asyncio.run(_drop_database(dbname))
        with contextlib.suppress(Exception):
            asyncio.run(_delete_streams(prefix, nats_url))


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> System:
    with system_running(tmp_path_factory.mktemp("system")) as running_system:
        yield running_system


@pytest.fixture(scope="session")
def system_factory(tmp_path_factory):
    """`with system_factory(nats_url) as s:` a system of its own (e.g. on a private NATS)."""

    def factory(nats_url: str = NATS_URL, extra_env: dict[str, str] | None = None):
        return system_running(tmp_path_factory.mktemp("system"), nats_url, extra_env)

    return factory


async def _delete_streams(prefix: str, nats_url: str = NATS_URL) -> None:
    import nats

    from pathways_shared.events import STREAMS, stream_name

    nc = await nats.connect(nats_url, connect_timeout=2)
    js = nc.jetstream()
    for name in STREAMS:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream_name(name, prefix))
    await nc.close()
