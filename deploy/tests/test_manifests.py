"""Every YAML under deploy/ parses; every Kubernetes manifest, as each overlay renders it,
validates against the Kubernetes JSON schemas offline (kubernetes-validate ships them, strict:
unknown fields are errors); and the shape issue 9 asks for is there in each overlay."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import deploy_kustomize
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
SERVICES = ("referrals", "providers", "cohorts", "notifications", "insights")
ENVIRONMENTS = ("base", "staging", "production")
# The oldest Kubernetes minor we promise to run on (HPA v2, PDB v1, Job TTL are all GA).
KUBERNETES_VERSION = "1.29"
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|NATS_URL|_KEY$")
CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:[^@\s]+@")

# kubernetes-validate reads the (large) definitions file on every call: read each file once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_there_are_yaml_files():
    names = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()}
    assert {"compose.yaml", "k8s/base/kustomization.yaml",
            "k8s/overlays/staging/kustomization.yaml",
            "k8s/overlays/production/kustomization.yaml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_file_parses(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    assert any(docs), f"{path} is empty"


def pod_specs(resources):
    for r in resources:
        if r["kind"] in deploy_kustomize.WORKLOADS:
            yield r, r["spec"]["template"]["spec"]


def find(resources, kind, name):
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_manifest_validates_against_the_kubernetes_schemas(rendered, env):
    errors = []
    for resource in rendered[env]:
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{resource['kind']}/{resource['metadata']['name']}: "
                          f"{str(exc).splitlines()[0]}")
    assert not errors, "\n".join(errors)


def test_the_validator_rejects_a_broken_manifest(rendered):
    """The schema check can fail: a misspelt field and a wrong type are both caught."""
    deployment = find(rendered["production"], "Deployment", "referrals")
    broken = deploy_kustomize.strategic_merge(deployment, {"spec": {"replica": 2}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = deploy_kustomize.strategic_merge(deployment, {"spec": {"replicas": "two"}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("env", ("staging", "production"))
def test_each_service_has_its_set_of_objects(rendered, env):
    resources = rendered[env]
    for service in SERVICES:
        deployment = find(resources, "Deployment", service)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()

        svc = find(resources, "Service", service)
        assert svc["spec"]["selector"].items() <= pod_labels.items()

        hpa = find(resources, "HorizontalPodAutoscaler", service)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": service}
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

        pdb = find(resources, "PodDisruptionBudget", service)
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        # a drain can always evict one pod: minAvailable below the autoscaler's minimum
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]

        policy = find(resources, "NetworkPolicy", service)
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}

        job = find(resources, "Job", f"{service}-migrate")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["pathways", "migrate", service]
        # the same build as the Deployment it prepares
        assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        # before the roll-out: an earlier Argo CD wave than the Deployment
        wave = int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        assert wave < int(deployment["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    # a namespace-wide default deny under the per-workload policies
    deny = find(resources, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_pod_runs_unprivileged_with_bounded_resources(rendered, env):
    for resource, spec in pod_specs(rendered[env]):
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context.get("readOnlyRootFilesystem") is True, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name} {bound}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_secrets_are_only_referenced(rendered, env):
    resources = rendered[env]
    assert not [r for r in resources if r["kind"] == "Secret"], "a Secret in the manifests"
    for resource, spec in pod_specs(resources):
        for container in spec["containers"]:
            for var in container.get("env", []):
                if SECRETISH.search(var["name"]):
                    assert "value" not in var, f"{resource['metadata']['name']}: {var['name']}"
                    assert "secretKeyRef" in var["valueFrom"], var["name"]
    for config in (r for r in resources if r["kind"] == "ConfigMap"):
        for key, value in config.get("data", {}).items():
            if key.endswith((".conf", ".py")):
                continue
            assert not SECRETISH.search(key), f"{config['metadata']['name']}: {key}"
            assert not CREDENTIAL_IN_URL.search(value), f"{config['metadata']['name']}: {key}"


def test_production_database_egress_is_narrowed(rendered):
    for policy in (r for r in rendered["production"] if r["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            cidrs = {t["ipBlock"]["cidr"] for t in rule.get("to", []) if "ipBlock" in t}
            if 5432 in ports:
                assert "0.0.0.0/0" not in cidrs, policy["metadata"]["name"]


@pytest.mark.parametrize("env", ("staging", "production"))
def test_nats_is_a_three_node_jetstream_cluster(rendered, env):
    resources = rendered[env]
    nats = find(resources, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["serviceName"] == "nats"
    claims = nats["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    spec = nats["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    config = find(resources, "ConfigMap", "nats-config")["data"]
    server_conf = config["nats-server.conf"]
    assert f'store_dir: "{mounts["data"]}/jetstream"' in server_conf
    assert f'--config", "{mounts["config"]}/nats-server.conf' in str(spec["containers"][0]["args"]).replace("'", '"')
    for i in range(3):
        assert f"nats-route://nats-{i}.nats:6222" in server_conf
    assert "include ./accounts.conf" in server_conf and "accounts.conf" in config
    # TLS material where the configuration looks for it
    tls_mount = mounts["tls"]
    assert f'cert_file: "{tls_mount}/tls.crt"' in server_conf
    # every password the accounts use is given to the server from the Secret
    needed = set(re.findall(r"password: \$(\w+)", config["accounts.conf"]))
    given = {e["name"] for e in spec["containers"][0]["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert needed and needed == given
    # the streams job: three replicas, after NATS, before the services
    job = find(resources, "Job", "nats-streams")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["PATHWAYS_STREAM_REPLICAS"] == "3"
    waves = {
        "nats": int(nats["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]),
        "streams": int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]),
        "migrate": int(find(resources, "Job", "referrals-migrate")["metadata"]["annotations"]
                       ["argocd.argoproj.io/sync-wave"]),
    }
    assert waves["nats"] < waves["streams"] < waves["migrate"]
    # the shared CLI from a service image (deploy/tests/test_nats_config runs the same command)
    assert container["command"] == ["pathways", "streams", "ensure"]
    pdb = find(resources, "PodDisruptionBudget", "nats")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_kubernetes_nats_files_are_the_deploy_nats_files():
    for name in ("nats-server.conf", "accounts.conf"):
        assert (DEPLOY / "k8s/base/nats" / name).read_text() == (DEPLOY / "nats" / name).read_text(), (
            f"deploy/k8s/base/nats/{name} differs from deploy/nats/{name}: copy it over")


@pytest.mark.parametrize("env", ("staging", "production"))
def test_namespace_enforces_the_restricted_pod_security_standard(rendered, env):
    namespaces = [r for r in rendered[env] if r["kind"] == "Namespace"]
    assert len(namespaces) == 1
    labels = namespaces[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    names = {r["metadata"].get("namespace") for r in rendered[env] if r["kind"] != "Namespace"}
    assert names == {namespaces[0]["metadata"]["name"]}


# The roll-out order (docs/deploy.md): Argo CD applies by sync wave; by hand, kubectl applies
# one component label at a time in this order.
ROLL_OUT = ["namespace", "config", "nats", "streams", "migration", "api"]


@pytest.mark.parametrize("env", ("staging", "production"))
def test_every_object_has_its_place_in_the_roll_out(rendered, env):
    waves: dict[str, set[int]] = {}
    for resource in rendered[env]:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        component = resource["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        assert component in ROLL_OUT, f"{name}: component {component!r}"
        wave = resource["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave")
        assert wave is not None, f"{name}: no sync wave"
        waves.setdefault(component, set()).add(int(wave))
    assert all(len(w) == 1 for w in waves.values()), waves
    order = [next(iter(waves[c])) for c in ROLL_OUT]
    assert order == sorted(order) and len(set(order)) == len(order), dict(zip(ROLL_OUT, order))
    # what a Job's pods use exists before the Job: its service account, config and policy
    for job in (r for r in rendered[env] if r["kind"] == "Job"):
        spec = job["spec"]["template"]["spec"]
        job_wave = int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        needed = [("ServiceAccount", spec.get("serviceAccountName"))] + [
            ("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", []) if "configMap" in v]
        for kind, name in needed:
            if name is None or (kind == "ConfigMap" and name == "pathways-ca-bundle"):
                continue  # the default account; the CA bundle comes from outside (trust-manager)
            dep = find(rendered[env], kind, name)
            assert int(dep["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < job_wave


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_autoscalers_own_the_replica_counts(rendered, env):
    """A Deployment with replicas set would be reset to that number by every apply."""
    for deployment in (r for r in rendered[env] if r["kind"] == "Deployment"):
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]
