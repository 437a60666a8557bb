"""Fixtures of the deployment checks: where deploy/ is, and a private nats-server started
with the project's own NATS configuration (deploy/nats) on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# deploy_kustomize.py (the small kustomize) and deploy_nats_server.py are imported by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_nats_server import ConfiguredNats

DEPLOY = Path(__file__).resolve().parents[1]
ROOT = DEPLOY.parent
SERVICES = ("referrals", "providers", "cohorts", "notifications", "insights")


@pytest.fixture(scope="module")
def dev_nats():
    """The development configuration (deploy/nats/nats-server.dev.conf): JetStream, the
    production accounts and permissions, no TLS."""
    server = ConfiguredNats("nats-server.dev.conf")
    server.start()
    yield server
    server.cleanup()


_introspection: subprocess.Popen | None = None


def stand_in(name: str) -> str:
    """A plausible value for a secret the manifests only reference, or a compose ${VAR}."""
    if name.endswith("DATABASE_URL"):
        return "postgresql+asyncpg://svc:pw@db.internal:5432/svc"
    if name.endswith("NATS_URL"):
        return "tls://svc:pw@nats:4222"
    if name.endswith("_PORT"):
        return "1025"
    if name.endswith("_URL"):
        return "https://stand-in.example.org"
    return "stand-in-" + "s" * 40


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message}, with stand-ins for the unset."""
    import re

    def one(match):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        return arg if op == ":-" else stand_in(name)

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def deployment_environments() -> dict[str, dict[str, dict[str, str]]]:
    """service -> {where: the environment the service gets there}: compose.yaml, the image's
    ENV under it, and each Kubernetes overlay (secrets replaced by stand-ins)."""
    import deploy_kustomize
    import yaml

    out: dict[str, dict[str, dict[str, str]]] = {s: {} for s in SERVICES}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in SERVICES:
        env = compose["services"][service]["environment"]
        out[service]["compose"] = {k: interpolate(str(v)) for k, v in env.items()}
    for overlay in OVERLAYS:
        resources = deploy_kustomize.render(DEPLOY / "k8s" / "overlays" / overlay)
        for service in SERVICES:
            (deployment,) = [r for r in resources
                             if r["kind"] == "Deployment" and r["metadata"]["name"] == service]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            env = deploy_kustomize.container_env(resources, container)
            out[service][overlay] = {
                k: (v if isinstance(v, str) else stand_in(k)) for k, v in env.items()
                if not (isinstance(v, dict) and v.get("secretKeyRef", {}).get("optional"))
            }
    return out


def start_introspection() -> subprocess.Popen:
    """deploy/tests/introspect.py for every service, in one other process; it also builds each
    service's settings from the environment every deployment gives it."""
    import json

    script = Path(__file__).with_name("introspect.py")
    prefixes = tuple(s.upper() + "_" for s in SERVICES) + ("PATHWAYS_", "NATS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(script), *SERVICES], cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    process.stdin_text = json.dumps(deployment_environments())
    return process


def pytest_collection_finish(session) -> None:
    # Importing four services takes seconds: start now, while the other tests run.
    global _introspection
    if any("service_info" in getattr(item, "fixturenames", ()) for item in session.items):
        _introspection = start_introspection()


@pytest.fixture(scope="session")
def service_info() -> dict[str, dict]:
    """What each service's own code says: its settings' port and variables, probe paths,
    durable subscriptions (see introspect.py)."""
    import json

    process = _introspection or start_introspection()
    out, err = process.communicate(process.stdin_text, timeout=180)
    assert process.returncode == 0, f"introspecting the services failed:\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


OVERLAYS = ("staging", "production")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Each overlay (and the base) rendered by deploy_kustomize, by name."""
    import deploy_kustomize

    k8s = DEPLOY / "k8s"
    out = {"base": deploy_kustomize.render(k8s / "base")}
    for overlay in OVERLAYS:
        out[overlay] = deploy_kustomize.render(k8s / "overlays" / overlay)
    return out
