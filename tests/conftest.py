"""The whole system as outside systems see it: the five services as real processes
(`python -m <service>`, uvicorn) on PostgreSQL and NATS, a real SMTP sink and a real webhook
receiver, all on loopback. Tests drive it only through HTTP and NATS."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathways_shared.harness import NATS_URL, System, system_running

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_RECEIVER = ROOT / "tests" / "support" / "webhook_receiver.py"


def _system(workdir: Path, nats_url: str = NATS_URL, extra_env: dict[str, str] | None = None):
    """The harness (`pathways_shared.harness`, which the benchmarks use too) as these tests
    run it: every service, a webhook receiver, and four connections a service (two systems
    may run at once within PostgreSQL's 100)."""
    return system_running(
        workdir, nats_url=nats_url, extra_env=extra_env, pool_size=4,
        webhook_receiver=WEBHOOK_RECEIVER,
    )


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> System:
    with _system(tmp_path_factory.mktemp("system")) as running_system:
        yield running_system


@pytest.fixture(scope="session")
def system_factory(tmp_path_factory):
    """`with system_factory(nats_url) as s:` a system of its own (e.g. on a private NATS)."""

    def factory(nats_url: str = NATS_URL, extra_env: dict[str, str] | None = None):
        return _system(tmp_path_factory.mktemp("system"), nats_url, extra_env)

    return factory
