"""deploy/kubernetes/: every manifest validates offline against one pinned Kubernetes version's schemas,
the kustomizations render (a small, offline stand-in for `kustomize build`), and the objects agree with
each other and with the gateway's settings: non-root, read-only root, probes on the gateway's own
paths, a grace period that covers the drain, selectors that select the Deployment's pods."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.clerk.keys import make_publishable_key
from gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
SIDECAR = KUBE / "sidecar"
KUSTOMIZATIONS = [BASE, OVERLAY, SIDECAR]
# One pinned version the installed kubernetes-validate ships schemas for.
KUBERNETES_VERSION = "1.33.0"
CLERK_SECRET = "session-gateway-clerk"
CLERK_KEYS = {"CLERK_SECRET_KEY", "CLERK_PUBLISHABLE_KEY"}
HEALTHZ, READYZ, METRICS = "/__gateway/healthz", "/__gateway/readyz", "/__gateway/metrics"

Doc = dict[str, Any]

# The fields of monitoring.coreos.com/v1 ServiceMonitor this repo uses (a CRD, not in the core schemas).
SERVICE_MONITOR_SCHEMA: Doc = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}, "labels": {"type": "object"}},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}

KUSTOMIZATION_SCHEMA: Doc = {
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "namespace": {"type": "string"},
        "resources": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "newName": {"type": "string"}, "newTag": {"type": "string"}},
            },
        },
        "replicas": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "count"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
            },
        },
        "patches": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path"],
                "additionalProperties": False,
                "properties": {"path": {"type": "string"}},
            },
        },
    },
}


# --- reading and rendering -------------------------------------------------------------------------


def load_documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> Doc:
    document: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return document


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as these patches need it: maps merge, lists of named items merge by
    name (containers, env, ports), any other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    )
    if named and base:
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old["name"] == item["name"]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def render(directory: Path) -> list[Doc]:
    """A kustomization's objects: its resources (files or other kustomizations), then its patches,
    images, replicas and namespace."""
    spec = kustomization(directory)
    documents: list[Doc] = []
    for resource in spec["resources"]:
        target = (directory / resource).resolve()
        documents.extend(render(target) if target.is_dir() else load_documents(target))
    for patch_ref in spec.get("patches", []):
        for patch in load_documents(directory / patch_ref["path"]):
            matches = [i for i, doc in enumerate(documents) if same_object(doc, patch)]
            assert len(matches) == 1, f"{patch_ref['path']} patches {patch['kind']}/{patch['metadata']['name']}"
            documents[matches[0]] = merge(documents[matches[0]], patch)
    for image in spec.get("images", []):
        for doc in documents:
            for container in containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for replicas in spec.get("replicas", []):
        targets = [doc for doc in documents if doc["kind"] == "Deployment" and name_of(doc) == replicas["name"]]
        assert targets, f"replicas names no Deployment {replicas['name']}"
        for doc in targets:
            doc["spec"]["replicas"] = replicas["count"]
    if "namespace" in spec:
        for doc in documents:
            doc["metadata"]["namespace"] = spec["namespace"]
    return documents


def same_object(doc: Doc, patch: Doc) -> bool:
    return doc["kind"] == patch["kind"] and name_of(doc) == name_of(patch)


def name_of(doc: Doc) -> str:
    name: str = doc["metadata"]["name"]
    return name


def containers(doc: Doc) -> list[Doc]:
    if doc.get("kind") != "Deployment":
        return []
    found: list[Doc] = doc["spec"]["template"]["spec"]["containers"]
    return found


def the(documents: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: list[Doc], kind: str) -> Doc:
    found = the(documents, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def gateway_container(deployment: Doc) -> Doc:
    return next(c for c in containers(deployment) if c["name"] == "gateway")


def env_value(container: Doc, name: str) -> str:
    for entry in container.get("env", []):
        if entry["name"] == name:
            value: str = entry["value"]
            return value
    raise AssertionError(f"{name} is not set in the container's env")


def every_manifest() -> Iterator[Path]:
    for path in sorted(KUBE.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield path


def validate(doc: Doc) -> None:
    """Raise on a document that is not a valid object of its kind."""
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def rendered() -> list[tuple[str, list[Doc]]]:
    return [(str(directory.relative_to(KUBE)), render(directory)) for directory in KUSTOMIZATIONS]


RENDERED = rendered()
each_rendered = pytest.mark.parametrize(("name", "documents"), RENDERED, ids=[name for name, _ in RENDERED])


# --- schemas ---------------------------------------------------------------------------------------


def test_the_pinned_kubernetes_version_is_shipped_by_the_validator() -> None:
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("path", list(every_manifest()), ids=lambda path: str(path.relative_to(KUBE)))
def test_every_manifest_file_validates_against_the_schemas(path: Path) -> None:
    documents = load_documents(path)
    assert documents
    for doc in documents:
        if path.name.endswith("-patch.yaml"):
            # A patch is a partial object: it is validated once merged, in the rendered overlay.
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
            continue
        validate(doc)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(KUBE)))
def test_every_kustomization_is_well_formed_and_its_files_exist(directory: Path) -> None:
    spec = kustomization(directory)
    jsonschema.validate(spec, KUSTOMIZATION_SCHEMA)
    for resource in spec["resources"]:
        target = (directory / resource).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    for patch in spec.get("patches", []):
        assert (directory / patch["path"]).is_file(), patch["path"]
    listed = {*spec["resources"], *(patch["path"] for patch in spec.get("patches", []))}
    for path in directory.glob("*.yaml"):
        if path.name not in {"kustomization.yaml", "secret.example.yaml"}:
            assert path.name in listed, f"{path.name} is not used by {directory.name}/kustomization.yaml"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(KUBE)))
def test_every_rendered_object_validates_against_the_schemas(directory: Path) -> None:
    documents = render(directory)
    keys = [(doc["kind"], name_of(doc)) for doc in documents]
    assert len(keys) == len(set(keys)), "two objects of the same kind and name"
    for doc in documents:
        validate(doc)


def test_a_broken_manifest_is_caught() -> None:
    """The validator is not a rubber stamp: a missing required field, a misspelt one or a wrong type fails."""
    deployment = one(render(BASE), "Deployment")
    validate(deployment)
    missing = copy.deepcopy(deployment)
    del missing["spec"]["selector"]
    misspelt = copy.deepcopy(deployment)
    gateway_container(misspelt)["readOnlyRootFileSystem"] = True
    wrong_type = copy.deepcopy(deployment)
    gateway_container(wrong_type)["ports"][0]["containerPort"] = "eighty"
    for broken in (missing, misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken)
    monitor = copy.deepcopy(one(render(BASE), "ServiceMonitor"))
    del monitor["spec"]["endpoints"][0]["path"]
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


# --- the Pod ---------------------------------------------------------------------------------------


@each_rendered
def test_every_container_runs_locked_down(name: str, documents: list[Doc]) -> None:
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    mounts_needed = {"/tmp"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security.get("privileged", False) is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert not security["capabilities"].get("add"), container["name"]
        assert security["seccompProfile"]["type"] == "RuntimeDefault", container["name"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys() <= resources["limits"].keys(), container["name"]
        mounted = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        assert mounts_needed <= mounted.keys(), container["name"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert "emptyDir" in volumes[mounted["/tmp"]], container["name"]


@each_rendered
def test_the_gateway_listens_on_8080_and_is_probed_on_its_own_paths(name: str, documents: list[Doc]) -> None:
    gateway = gateway_container(one(documents, "Deployment"))
    assert env_value(gateway, "GATEWAY_LISTEN") == "0.0.0.0:8080"
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    assert ports == {"http": 8080}
    for probe, path in (("livenessProbe", HEALTHZ), ("readinessProbe", READYZ)):
        http_get = gateway[probe]["httpGet"]
        assert http_get["path"] == path, probe
        assert ports.get(http_get["port"], http_get["port"]) == 8080, probe
    if "startupProbe" in gateway:
        assert gateway["startupProbe"]["httpGet"]["path"] == HEALTHZ


@each_rendered
def test_the_grace_period_covers_the_drain(name: str, documents: list[Doc]) -> None:
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    gateway = gateway_container(deployment)
    shutdown = float(env_value(gateway, "GATEWAY_SHUTDOWN_TIMEOUT"))
    pause = gateway.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] >= shutdown + pause + 5, "leave a margin after the drain"


@each_rendered
def test_pods_spread_across_nodes_and_zones(name: str, documents: list[Doc]) -> None:
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = {c["topologyKey"]: c["labelSelector"]["matchLabels"] for c in pod["topologySpreadConstraints"]}
    assert spread.keys() == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(selects(selector, labels) for selector in spread.values())
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
        for term in terms
    )


@each_rendered
def test_the_settings_the_pod_gets_are_valid_for_serving(name: str, documents: list[Doc]) -> None:
    """The ConfigMap's and the env's values, with the Secret's keys, pass the gateway's own settings check."""
    gateway = gateway_container(one(documents, "Deployment"))
    environ: dict[str, str] = {}
    for source in gateway.get("envFrom", []):
        assert "configMapRef" in source, "settings come from a ConfigMap; keys only through secretKeyRef"
        config_map = [doc for doc in the(documents, "ConfigMap") if name_of(doc) == source["configMapRef"]["name"]]
        assert config_map, f"ConfigMap {source['configMapRef']['name']} is not part of {name}"
        environ.update(config_map[0]["data"])
    secret_values = {
        "CLERK_PUBLISHABLE_KEY": make_publishable_key("clerk.example.com", "production"),
        "CLERK_SECRET_KEY": "sk_live_manifest_check",
    }
    for entry in gateway["env"]:
        environ[entry["name"]] = entry["value"] if "value" in entry else secret_values[entry["name"]]
    assert not CLERK_KEYS & set().union(*(doc["data"].keys() for doc in the(documents, "ConfigMap"))), (
        "keys belong in the Secret"
    )
    known = {key for key in environ if key.startswith(("GATEWAY_", "CLERK_"))}
    settings = load_settings(None, {key: environ[key] for key in known}, require_upstream=True)
    assert settings.gateway.listen.port == 8080
    assert settings.gateway.shutdown_timeout == float(env_value(gateway, "GATEWAY_SHUTDOWN_TIMEOUT"))
    assert settings.gateway.public_origin and settings.gateway.upstream


# --- references between objects --------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@each_rendered
def test_selectors_select_the_deployments_pods(name: str, documents: list[Doc]) -> None:
    deployment = one(documents, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    service = one(documents, "Service")
    assert selects(service["spec"]["selector"], labels)
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    assert selects(one(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(documents, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    for monitor in the(documents, "ServiceMonitor"):
        assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", METRICS)]
    for hpa in the(documents, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", name_of(deployment))
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@each_rendered
def test_every_referenced_config_map_and_secret_exists_or_is_the_documented_secret(
    name: str, documents: list[Doc]
) -> None:
    config_maps = {name_of(doc) for doc in the(documents, "ConfigMap")}
    assert not the(documents, "Secret"), "no Secret is shipped in a kustomization, only referenced"
    for container in containers(one(documents, "Deployment")):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            if "secretRef" in source:
                assert source["secretRef"]["name"] == CLERK_SECRET
        for entry in container.get("env", []):
            reference = entry.get("valueFrom", {})
            if "configMapKeyRef" in reference:
                assert reference["configMapKeyRef"]["name"] in config_maps
            if "secretKeyRef" in reference:
                assert reference["secretKeyRef"]["name"] == CLERK_SECRET
                assert reference["secretKeyRef"]["key"] in CLERK_KEYS
                assert entry["name"] == reference["secretKeyRef"]["key"]


def test_the_example_secret_is_a_placeholder_outside_every_kustomization() -> None:
    (secret,) = load_documents(OVERLAY / "secret.example.yaml")
    validate(secret)
    assert name_of(secret) == CLERK_SECRET
    assert set(secret["stringData"]) == CLERK_KEYS
    assert all("REPLACE_ME" in value for value in secret["stringData"].values())
    for directory in KUSTOMIZATIONS:
        spec = kustomization(directory)
        assert "secret.example.yaml" not in {*spec["resources"], *(p["path"] for p in spec.get("patches", []))}
    assert [path.name for path in KUBE.rglob("secret*.yaml")] == ["secret.example.yaml"]


# --- the network -----------------------------------------------------------------------------------


def egress_ports(policy: Doc) -> list[tuple[Doc, set[tuple[str, int]]]]:
    return [
        (rule, {(port.get("protocol", "TCP"), port["port"]) for port in rule.get("ports", [])})
        for rule in policy["spec"]["egress"]
    ]


@each_rendered
def test_the_network_policy_lets_in_8080_only_and_out_the_app_dns_and_https(name: str, documents: list[Doc]) -> None:
    policy = one(documents, "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = [(p.get("protocol", "TCP"), p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == [("TCP", 8080)]
    rules = egress_ports(policy)
    assert any(ports == {("UDP", 53), ("TCP", 53)} for _, ports in rules), "DNS"
    https = [rule for rule, ports in rules if ports == {("TCP", 443)}]
    assert https and all("ipBlock" in peer for rule in https for peer in rule["to"]), "HTTPS to Clerk"
    assert all("10.0.0.0/8" in peer["ipBlock"]["except"] for rule in https for peer in rule["to"])
    environ = one(documents, "ConfigMap")["data"]
    upstream = urlsplit(environ["GATEWAY_UPSTREAM"])
    host, port = upstream.hostname, upstream.port
    if host == "127.0.0.1":
        # The sidecar: the app is on the Pod's loopback, which no policy filters and nothing outside reaches.
        assert all(("TCP", port) not in ports for _, ports in rules)
        return
    app_rules = [rule for rule, ports in rules if ports == {("TCP", port)}]
    assert app_rules, f"no egress to the app's port {port}"
    app_names = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in app_rules for peer in rule["to"]
    }
    assert app_names == {host}, "the egress to the app selects the upstream Service's app"


def test_the_sidecar_exposes_only_the_gateway() -> None:
    documents = render(SIDECAR)
    deployment = one(documents, "Deployment")
    pod_containers = containers(deployment)
    assert [c["name"] for c in pod_containers] == ["gateway", "app"]
    app = pod_containers[1]
    assert "ports" not in app
    command = app["command"]
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert one(documents, "ConfigMap")["data"]["GATEWAY_UPSTREAM"] == f"http://127.0.0.1:{command[3]}"
    service = one(documents, "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_the_overlay_sets_image_replicas_origin_and_upstream() -> None:
    base, overlay = render(BASE), render(OVERLAY)
    spec = kustomization(OVERLAY)
    assert spec["resources"] == ["../../base"]
    deployment = one(overlay, "Deployment")
    image = gateway_container(deployment)["image"]
    assert image == f"{spec['images'][0]['newName']}:{spec['images'][0]['newTag']}"
    assert deployment["spec"]["replicas"] == spec["replicas"][0]["count"]
    hpa = one(overlay, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    base_config, config = one(base, "ConfigMap")["data"], one(overlay, "ConfigMap")["data"]
    for key in ("GATEWAY_PUBLIC_ORIGIN", "GATEWAY_UPSTREAM"):
        assert config[key] != base_config[key], key
    assert config["CLERK_AUTHORIZED_PARTIES"] == config["GATEWAY_PUBLIC_ORIGIN"]
    assert gateway_container(deployment)["resources"] != gateway_container(one(base, "Deployment"))["resources"]
    # The patch merged into the container, it did not replace it.
    assert gateway_container(deployment)["readinessProbe"]["httpGet"]["path"] == READYZ
    assert {doc["metadata"]["namespace"] for doc in overlay} == {spec["namespace"]}


def test_the_readme_apply_command_and_files_exist() -> None:
    readme = (KUBE / "README.md").read_text()
    assert "kubectl apply -k deploy/kubernetes/overlays/example" in readme
    assert (REPO / "deploy/kubernetes/overlays/example/kustomization.yaml").is_file()
    for path in every_manifest():
        if path.parent == BASE:
            assert f"`{path.name}`" in readme, f"{path.name} is not described in deploy/kubernetes/README.md"
    assert "GATEWAY_REDIS_URL" in readme and "not implemented yet" not in readme  # Redis as it is, from a chart
