"""The deployment agrees with the services' own code: images, ports, probe paths and every
environment variable set by the Dockerfile, compose.yaml and the Kubernetes manifests are
ones the services' settings classes (ReferralsSettings, ...) actually read."""

from __future__ import annotations

import re
from pathlib import Path

import deploy_kustomize
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
SERVICES = ("referrals", "providers", "cohorts", "notifications", "insights")
# Read by something other than the settings: OpenSSL (the CA bundle for tls:// to NATS).
NOT_SETTINGS = {"SSL_CERT_FILE"}
ENVIRONMENTS = ("base", "staging", "production")


def find(resources, kind, name):
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def main_container(resources, service):
    deployment = find(resources, "Deployment", service)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, next(c for c in containers if c["name"] == service)


def env_of(resources, container) -> dict[str, object]:
    return deploy_kustomize.container_env(resources, container)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile():
    """The Dockerfile as stages: target name -> list of (instruction, arguments)."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            current = match.group(2) or match.group(1)
            stages[current] = [("FROM", match.group(1))]
        else:
            assert current is not None, f"{instruction} before FROM"
            stages[current].append((instruction, " ".join(args.split())))
    return stages


def instructions(stage, name):
    return [args for instruction, args in stage if instruction == name]


# --- the services themselves ------------------------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_the_service_answers_on_the_probe_paths(service_info, service):
    probes = service_info[service]["probes"]
    assert probes["/health/live"] == 200
    assert probes["/health/ready"] in (200, 503)  # 503 here: nothing is connected
    assert probes["/metrics"] == 200
    assert probes["/no-such-path"] == 404  # so the three above are real routes


@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_accept_what_each_deployment_gives_them(service_info, service):
    """Not only the names: the service's real settings class, in production mode, accepts the
    values that compose.yaml and each overlay set (secrets by stand-ins)."""
    built = service_info[service]["settings_built"]
    assert set(built) == {"compose", "staging", "production"}
    assert built == {where: "ok" for where in built}


# --- Kubernetes -------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_ports_probes_and_image_agree_with_the_service(rendered, service_info, env, service):
    info = service_info[service]
    resources = rendered[env]
    deployment, container = main_container(resources, service)
    port = info["port"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": port}

    def probe_port(probe):
        value = probe["httpGet"]["port"]
        return named.get(value, value)

    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert probe_port(container[kind]) == port, kind
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    service_port = find(resources, "Service", service)["spec"]["ports"][0]
    assert service_port["port"] == port
    assert named.get(service_port["targetPort"], service_port["targetPort"]) == port

    image, _, tag = container["image"].rpartition(":")
    assert image.split("/")[-2:] == ["pathways", service] and tag
    if env == "production":
        assert tag[0].isdigit(), "production runs a released version, not a moving tag"

    # the network policy lets traffic in on this port
    policy = find(resources, "NetworkPolicy", service)
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {port}


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_sets_only_variables_the_settings_read(rendered, service_info, env, service):
    info = service_info[service]
    resources = rendered[env]
    _, container = main_container(resources, service)
    variables = env_of(resources, container)
    unknown = set(variables) - set(info["env"]) - NOT_SETTINGS
    assert not unknown, f"{service} does not read {sorted(unknown)}"
    prefix = service.upper()
    assert variables[f"{prefix}_HOST"] == "0.0.0.0"
    assert variables[f"{prefix}_PORT"] == str(info["port"])
    for required in (f"{prefix}_DATABASE_URL", "NATS_URL", "PATHWAYS_ENV", f"{prefix}_PUBLIC_URL"):
        assert required in variables, required
    assert variables["PATHWAYS_ENV"] == "production"
    assert "PATHWAYS_JWKS_URL" in variables or "PATHWAYS_JWT_SECRET" in variables
    if "PATHWAYS_JWKS_URL" in variables:  # production refuses JWKS without an audience
        assert variables.get("PATHWAYS_JWT_AUDIENCE"), "PATHWAYS_JWT_AUDIENCE"
    # peers are reached at their Services, on their ports
    for peer in ("referrals", "providers", "cohorts"):
        assert variables[f"PATHWAYS_{peer.upper()}_URL"] == f"http://{peer}:{service_info[peer]['port']}"

    job = find(resources, "Job", f"{service}-migrate")
    job_container = job["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in job_container["env"]} == {f"{prefix}_DATABASE_URL"}
    assert job_container["workingDir"] == "/app"  # where the image keeps services/<svc>/alembic.ini


# --- the image ----------------------------------------------------------------------------------

def test_every_base_image_is_pinned(dockerfile):
    for name, stage in dockerfile.items():
        base = stage[0][1]
        if base in dockerfile:  # an earlier stage
            continue
        image, _, tag = base.rpartition(":")
        assert image and re.match(r"\d+\.\d+", tag), f"stage {name}: {base} is not pinned by version"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_of_each_service(dockerfile, service_info, service):
    port = service_info[service]["port"]
    assert service in dockerfile, f"no target {service} in deploy/docker/Dockerfile"
    final = dockerfile[service]
    build = dockerfile[f"build-{service}"]
    runs = " ".join(instructions(build, "RUN"))
    assert f"uv sync --frozen --no-dev --package pathways-{service}" in runs
    assert instructions(final, "EXPOSE") == [str(port)]
    assert instructions(final, "CMD") == [f'["python", "-m", "{service}"]']
    user = instructions(final, "USER")[-1]
    assert user.split(":")[0] not in ("0", "root")
    (healthcheck,) = instructions(final, "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/health/live" in healthcheck
    env = " ".join(instructions(final, "ENV"))
    assert f"{service.upper()}_HOST=0.0.0.0" in env and f"{service.upper()}_PORT={port}" in env
    for name in re.findall(r"([A-Z][A-Z0-9_]+)=", env):
        assert name in service_info[service]["env"], f"the image sets {name}, unread"
    copies = " ".join(instructions(final, "COPY"))
    assert f"services/{service}/alembic.ini" in copies and f"services/{service}/migrations" in copies
    # the runtime stage sets only what every service reads
    for name in re.findall(r"([A-Z][A-Z0-9_]+)=", " ".join(instructions(dockerfile["runtime"], "ENV"))):
        assert name in service_info[service]["env"] or name in {"PATH", "PYTHONDONTWRITEBYTECODE",
                                                                 "PYTHONUNBUFFERED"}, name


# --- compose --------------------------------------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_each_service_after_its_migration(compose, service_info, service):
    services = compose["services"]
    info = service_info[service]
    prefix = service.upper()
    migrate = services[f"migrate-{service}"]
    assert migrate["command"] == ["pathways", "migrate", service]
    assert migrate["build"]["target"] == service
    assert migrate["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    app = services[service]
    assert app["image"] == migrate["image"] and app["image"].startswith(f"pathways/{service}:")
    assert app["depends_on"][f"migrate-{service}"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["nats"]["condition"] == "service_healthy"
    assert app["ports"] == [f"127.0.0.1:{info['port']}:{info['port']}"]

    env = app["environment"]
    unknown = set(env) - set(info["env"]) - NOT_SETTINGS
    assert not unknown, f"{service} does not read {sorted(unknown)}"
    assert env[f"{prefix}_HOST"] == "0.0.0.0" and env[f"{prefix}_PORT"] == str(info["port"])
    # its own database, as its own role; its own NATS user
    url = env[f"{prefix}_DATABASE_URL"]
    assert url == migrate["environment"][f"{prefix}_DATABASE_URL"]
    assert url.startswith(f"postgresql+asyncpg://{service}:") and url.endswith(f"@postgres:5432/{service}")
    assert env["NATS_URL"] == f"nats://{service}:${{{prefix}_NATS_PASSWORD}}@nats:4222"
    for peer in ("referrals", "providers", "cohorts"):
        assert env[f"PATHWAYS_{peer.upper()}_URL"] == f"http://{peer}:{service_info[peer]['port']}"


def test_compose_infrastructure(compose):
    services = compose["services"]
    postgres = services["postgres"]
    init = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    script = DEPLOY / init[0].split(":")[0]
    text = script.read_text()
    assert "for service in referrals providers cohorts notifications insights" in text
    for service in SERVICES:
        assert f"{service.upper()}_DB_PASSWORD" in postgres["environment"]

    nats = services["nats"]
    mounted = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in nats["volumes"] if v.startswith("./")}
    conf = mounted["/etc/nats/nats-server.conf"]
    assert conf.name == "nats-server.dev.conf" and "jetstream" in conf.read_text()
    assert mounted["/etc/nats/accounts.conf"] == DEPLOY / "nats" / "accounts.conf"
    accounts = (DEPLOY / "nats" / "accounts.conf").read_text()
    assert set(re.findall(r"password: \$(\w+)", accounts)) == set(nats["environment"])

    mail = services["mail"]
    smtp = services["notifications"]["environment"]
    assert "mail" in smtp["NOTIFICATIONS_SMTP_HOST"] and "1025" in str(smtp["NOTIFICATIONS_SMTP_PORT"])
    assert "mailpit" in mail["image"]
    for name, service in services.items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_env_example_lists_every_variable_compose_requires(compose):
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required <= example, sorted(required - example)


def test_the_build_context_keeps_what_the_image_copies(dockerfile):
    """deploy/docker/Dockerfile.dockerignore ignores everything, then lets back in what the
    Dockerfile copies from the repository: each COPY source must exist and its metadata, code
    and migrations be let back in (tests, benchmarks and caches stay out)."""
    import fnmatch

    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    root = DEPLOY.parent

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            if fnmatch.fnmatch(path, pattern.lstrip("!")) or fnmatch.fnmatch(path, pattern.lstrip("!") + "/**"):
                keep = negate
        return keep

    sources = []
    for stage in dockerfile.values():
        for args in instructions(stage, "COPY"):
            if "--from=" in args:
                continue
            sources.extend(args.split()[:-1])
    assert sources
    for source in sources:
        path = root / source
        assert path.exists(), source
        # of a directory, what the package needs: its metadata, code and migrations
        files = [path] if path.is_file() else [
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and (p.name in ("pyproject.toml", "alembic.ini")
                 or {"src", "migrations"} & set(p.relative_to(path).parts[:1]))]
        assert files, source
        for file in files:
            assert included(file.relative_to(root).as_posix()), f"{file} is ignored by the build context"
    assert not included("services/referrals/tests/conftest.py")
    assert not included(".venv/bin/python")
