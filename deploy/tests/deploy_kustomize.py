"""A small kustomize, enough for deploy/k8s: so the manifests can be checked with no cluster and
no kustomize binary. Supports what the base and overlays use and nothing more, and refuses
what it does not know (so a new feature in a kustomization fails the tests rather than being
silently ignored):

- `resources` (files and directories with a kustomization), `namespace`, `labels` (pairs,
  includeSelectors false, includeTemplates), `images` (newName/newTag),
- `configMapGenerator` with `files`; names are kept without
  kustomize's hash suffix (`normalise_name` strips it from real kustomize output to compare);
  `generatorOptions` labels and annotations,
- `patches`: `path:` files of strategic-merge patches (lists of objects merge by `name`, ports
  by `containerPort`) and `patch:` JSON 6902 operations (test, replace, add, remove) with a
  `target` of kind and name.

It was checked by hand against `kubectl kustomize` (not installed on the build machines).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import yaml

KNOWN_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "labels", "images", "configMapGenerator",
    "generatorOptions", "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
MERGE_KEYS = {"ports": "containerPort"}


class KustomizeError(Exception):
    pass


def load_yaml_docs(path: Path) -> list[dict]:
    # through JSON: YAML anchors would otherwise share one object between two places
    return [json.loads(json.dumps(doc)) for doc in yaml.safe_load_all(path.read_text()) if doc]


def find_kustomization(directory: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).exists():
            return directory / name
    raise KustomizeError(f"no kustomization in {directory}")


def pod_templates(resource: dict) -> list[dict]:
    """The pod template specs of a workload (CronJob not used here)."""
    if resource.get("kind") in WORKLOADS:
        template = resource.get("spec", {}).get("template")
        return [template] if template else []
    return []


def strategic_merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge_field(key, merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def merge_field(key: str, base, patch):
    if isinstance(base, list) and isinstance(patch, list):
        merge_key = MERGE_KEYS.get(key, "name")
        if all(isinstance(i, dict) and merge_key in i for i in base + patch) and base:
            merged = [copy.deepcopy(i) for i in base]
            for item in patch:
                for index, existing in enumerate(merged):
                    if existing[merge_key] == item[merge_key]:
                        merged[index] = strategic_merge(existing, item)
                        break
                else:
                    merged.append(copy.deepcopy(item))
            return merged
        return copy.deepcopy(patch)
    return strategic_merge(base, patch)


def json_pointer(path: str) -> list:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    return [int(p) if p.isdigit() else p for p in parts]


def json_patch(resource: dict, operations: list[dict]) -> dict:
    resource = copy.deepcopy(resource)
    for op in operations:
        *parents, last = json_pointer(op["path"])
        node = resource
        for part in parents:
            node = node[part]
        kind = op["op"]
        if kind == "test":
            if node[last] != op["value"]:
                raise KustomizeError(f"json patch test failed at {op['path']}: {node[last]!r}")
        elif kind == "replace":
            node[last]  # must exist
            node[last] = op["value"]
        elif kind == "add":
            if isinstance(node, list):
                node.insert(len(node) if last == "-" else last, op["value"])
            else:
                node[last] = op["value"]
        elif kind == "remove":
            del node[last]
        else:
            raise KustomizeError(f"unsupported json patch op {kind}")
    return resource


def same_object(resource: dict, kind: str, name: str) -> bool:
    return resource.get("kind") == kind and resource["metadata"]["name"] == name


def render(directory: Path) -> list[dict]:
    directory = Path(directory)
    kustomization = yaml.safe_load(find_kustomization(directory).read_text())
    unknown = set(kustomization) - KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{directory}: this renderer does not know {sorted(unknown)}")

    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources.extend(render(path) if path.is_dir() else load_yaml_docs(path))

    options = kustomization.get("generatorOptions", {})
    if set(options) - {"labels", "annotations"}:
        raise KustomizeError(f"{directory}: generatorOptions {sorted(options)}")
    for generator in kustomization.get("configMapGenerator", []):
        if set(generator) - {"name", "files"}:
            raise KustomizeError(f"{directory}: configMapGenerator {sorted(generator)}")
        data = {}
        for file_entry in generator.get("files", []):
            key, _, rel = file_entry.rpartition("=")
            path = directory / rel
            data[key or path.name] = path.read_text()
        metadata = {"name": generator["name"]}
        for field in ("labels", "annotations"):
            if options.get(field):
                metadata[field] = dict(options[field])
        resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})

    for patch in kustomization.get("patches", []):
        if "path" in patch:
            for doc in load_yaml_docs(directory / patch["path"]):
                kind, name = doc["kind"], doc["metadata"]["name"]
                matches = [i for i, r in enumerate(resources) if same_object(r, kind, name)]
                if len(matches) != 1:
                    raise KustomizeError(f"patch {patch['path']}: {kind}/{name} matches {len(matches)}")
                resources[matches[0]] = strategic_merge(resources[matches[0]], doc)
        elif "patch" in patch:
            target = patch.get("target", {})
            if set(target) - {"kind", "name"}:
                raise KustomizeError(f"patch target {target}")
            operations = yaml.safe_load(patch["patch"])
            hits = 0
            for index, resource in enumerate(resources):
                if same_object(resource, target["kind"], target["name"]):
                    resources[index] = json_patch(resource, operations)
                    hits += 1
            if hits != 1:
                raise KustomizeError(f"patch target {target} matches {hits}")
        else:
            raise KustomizeError(f"unsupported patch {patch}")

    for image in kustomization.get("images", []):
        for resource in resources:
            for template in pod_templates(resource):
                spec = template.get("spec", {})
                for container in spec.get("containers", []) + spec.get("initContainers", []):
                    name, _, tag = container["image"].partition(":")
                    if name == image["name"]:
                        container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"

    for label_set in kustomization.get("labels", []):
        if label_set.get("includeSelectors"):
            raise KustomizeError("labels with includeSelectors are not supported")
        pairs = label_set["pairs"]
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(pairs)
            if label_set.get("includeTemplates"):
                for template in pod_templates(resource):
                    template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
                for claim in resource.get("spec", {}).get("volumeClaimTemplates", []):
                    claim.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)

    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def normalise_name(name: str, generated: set[str]) -> str:
    """`nats-config-hf5b9fghkk` -> `nats-config` when `nats-config` is a generated name."""
    stripped = HASH_SUFFIX.sub("", name)
    return stripped if stripped in generated else name


def strip_hashes(value, generated: set[str]):
    if isinstance(value, dict):
        return {k: strip_hashes(v, generated) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_hashes(v, generated) for v in value]
    if isinstance(value, str):
        return normalise_name(value, generated)
    return value


def by_key(resources: list[dict]) -> dict[tuple[str, str], dict]:
    keyed = {}
    for resource in resources:
        key = (resource["kind"], resource["metadata"]["name"])
        if key in keyed:
            raise KustomizeError(f"duplicate {key}")
        keyed[key] = resource
    return keyed


def container_env(resources: list[dict], container: dict) -> dict[str, object]:
    """Every variable a container gets: the ConfigMaps it loads whole (envFrom), then its env
    list (a literal value, or the valueFrom reference)."""
    names: dict[str, object] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]  # only ConfigMaps: secrets go one key at a time
        (config,) = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == ref]
        names.update(config["data"])
    for var in container.get("env", []):
        names[var["name"]] = var.get("value", var.get("valueFrom"))
    return names
