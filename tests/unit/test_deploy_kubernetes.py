"""deploy/kubernetes, checked offline: no kubectl or cluster.

Every manifest against the Kubernetes 1.31 schemas that kubernetes-validate ships, the
RayCluster against KubeRay v1.6.2's (tests/fixtures/schemas), the kustomizations' file
lists, and what the objects say of each other: names, ports, secrets, settings, node
types, who the NetworkPolicies let in.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from referencing import Registry, Resource

from raydc.cluster.autoscaler import node_types_from_cluster_config
from raydc.settings import Settings
from tests.conftest import FIXTURES, REPO
from tests.unit.deploy_helpers import (
    BASE,
    CONFIG,
    DEPLOYMENT,
    K8S,
    RAYCLUSTER,
    copy_destination,
    dockerfile,
    kustomization,
    load_all,
    manifests,
    one,
    patch_files,
    pod_templates,
    rendered,
)

KUBERNETES_VERSION = "1.31"
RAYCLUSTER_SCHEMA = FIXTURES / "schemas" / "kuberay-v1.6.2-raycluster.yaml"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def listed(directory: Path) -> list[str]:
    k = kustomization(directory)
    patches = [patch["path"] for patch in k.get("patches", [])]
    return [*k.get("resources", []), *k.get("components", []), *patches]


def all_pod_templates() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{o['kind']}/{name}", t) for _, o in manifests() for name, t in pod_templates(o)]


def quantity(value: str | int) -> float:
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, f"not a quantity: {value}"
    return float(match[1]) * suffixes.get(match[2], 1.0) if match[2] else float(match[1])


# ---- schemas ----------------------------------------------------------------------------


@cache
def raycluster_validator() -> jsonschema.Draft202012Validator:
    """KubeRay's RayCluster schema, its Kubernetes types resolved in kubernetes-validate's."""
    folder = f"v{KUBERNETES_VERSION}.0-local-strict"
    definitions = importlib.resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", folder, "_definitions.json"
    )
    k8s = Resource.from_contents(json.loads(definitions.read_text()))
    schema = yaml.safe_load(RAYCLUSTER_SCHEMA.read_text())
    registry: Registry = Registry().with_resource(K8S_DEFINITIONS, k8s)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    if obj["kind"] == "RayCluster":
        errors = raycluster_validator().iter_errors(obj)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


@pytest.mark.parametrize(("where", "obj"), manifests(), ids=[w for w, _ in manifests()])
def test_every_manifest_matches_its_schema(where: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []


def test_the_schemas_reject_mistakes() -> None:
    typo = json.loads(json.dumps(DEPLOYMENT))
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    assert any("replica" in e for e in schema_errors(typo))

    cluster = json.loads(json.dumps(RAYCLUSTER))
    group = cluster["spec"]["workerGroupSpecs"][0]
    group["maxReplica"] = group.pop("maxReplicas")
    errors = schema_errors(cluster)
    assert any("maxReplica" in e for e in errors)  # unknown field
    assert any("'maxReplicas' is a required property" in e for e in errors)

    # Inside the pod template: Kubernetes' own types, through the $ref.
    cluster = json.loads(json.dumps(RAYCLUSTER))
    container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "6379"
    where = "spec.headGroupSpec.template.spec.containers.0.ports.0"
    assert any(e.startswith(where) for e in schema_errors(cluster))

    cluster["spec"]["authOptions"]["mode"] = "tokens"
    assert any("authOptions.mode" in e for e in schema_errors(cluster))


# ---- kustomize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "directory", sorted(p.parent for p in K8S.rglob("kustomization.yaml")), ids=str
)
def test_kustomization_lists_exactly_its_files(directory: Path) -> None:
    entries = listed(directory)
    for entry in entries:
        path = directory / entry
        assert path.exists(), f"{directory.name}/kustomization.yaml lists missing {entry}"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{entry} is no kustomization"
    named = {(directory / entry).resolve() for entry in entries}
    for path in directory.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in named, f"{path.name} is not in {directory.name}'s list"
    for component in kustomization(directory).get("components", []):
        assert kustomization(directory / component)["kind"] == "Component"


def test_images_are_this_version_of_raydc() -> None:
    images = {image["name"]: image for image in kustomization(K8S)["images"]}
    for name, template in all_pod_templates():
        for container in template["spec"]["containers"]:
            repository, tag = container["image"].rsplit(":", 1)
            if repository.startswith("raydc"):
                assert repository in images, f"{name}: {repository} has no kustomize image"
                assert tag == VERSION, f"{name}: {container['image']} is not {VERSION}"
    assert {image["newTag"] for image in images.values()} == {VERSION}


# ---- what the objects say of each other -------------------------------------------------


def references(node: Any) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key) of every Secret, ConfigMap and claim an object refers to."""
    if isinstance(node, list):
        for item in node:
            yield from references(item)
    elif isinstance(node, dict):
        for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if field in node:
                yield kind, node[field]["name"], node[field]["key"]
        for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if field in node:
                yield kind, node[field]["name"], None
        if "persistentVolumeClaim" in node:
            yield "PersistentVolumeClaim", node["persistentVolumeClaim"]["claimName"], None
        if "configMap" in node:
            yield "ConfigMap", node["configMap"]["name"], None
        if node.get("authOptions", {}).get("secretName"):
            yield "Secret", node["authOptions"]["secretName"], "auth_token"  # KubeRay's key
        for value in node.values():
            yield from references(value)


@pytest.mark.parametrize("root", [K8S, K8S / "with-postgres"], ids=lambda p: p.name)
def test_every_reference_resolves(root: Path) -> None:
    objects, patches = rendered(root)
    for kind, name, key in references([*objects, *patches]):
        target = one(objects, kind, name)
        if key is not None:
            keys = {**target.get("data", {}), **target.get("stringData", {})}
            assert key in keys, f"{kind} {name} has no key {key}"


def raydc_env_names() -> Iterator[tuple[str, str]]:
    patches = [(path.name, patch) for path in patch_files() for patch in load_all(path)]
    for where, obj in [*manifests(), *patches]:
        if obj["kind"] in ("ConfigMap", "Secret"):
            for key in {**obj.get("data", {}), **obj.get("stringData", {})}:
                yield where, key
        for name, template in pod_templates(obj):
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    yield f"{where} {name}", env["name"]
    for key in dockerfile().envs:
        yield "Dockerfile", key


def test_every_raydc_variable_is_a_setting() -> None:
    settings = {f"RAYDC_{field.upper()}" for field in Settings.model_fields}
    names = [(where, name) for where, name in raydc_env_names() if name.startswith("RAYDC_")]
    assert len(names) > 10
    for where, name in names:
        assert name in settings, f"{where}: {name} is no raydc setting"


def test_the_control_plane_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = one(BASE, "Secret", "raydc-secrets")["stringData"]
    for key, value in {**dockerfile().envs, **CONFIG, **secrets}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RAYDC_RAY_AUTH_TOKEN", "x")
    # secret.yaml's admin token is a placeholder the server refuses (test_admin_token.py).
    monkeypatch.setenv("RAYDC_ADMIN_TOKEN", "rdc_" + "k" * 43)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert str(settings.apps_dir) == copy_destination("apps/").rstrip("/")
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


def container_port(template: dict[str, Any], name: str) -> int:
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            if port["name"] == name:
                return int(port["containerPort"])
    raise AssertionError(f"no container port named {name}")


def test_the_control_plane_reaches_ray_and_ray_reaches_it() -> None:
    head = RAYCLUSTER["spec"]["headGroupSpec"]["template"]
    head_service = f"http://{RAYCLUSTER['metadata']['name']}-head-svc"  # KubeRay's name
    assert CONFIG["RAYDC_RAY_ADDRESS"] == f"{head_service}:{container_port(head, 'dashboard')}"
    assert container_port(head, "dashboard") == 8265
    serve_port = container_port(head, "serve")
    assert CONFIG["RAYDC_SERVE_URL"] == f"{head_service}:{serve_port}"
    assert int(CONFIG["RAYDC_SERVE_PORT"]) == serve_port
    assert CONFIG["RAYDC_SERVE_HOST"] == "0.0.0.0"
    service = one(BASE, "Service", "raydc")
    (port,) = service["spec"]["ports"]
    assert CONFIG["RAYDC_PUBLIC_URL"] == f"http://{service['metadata']['name']}:{port['port']}"
    assert container_port(DEPLOYMENT["spec"]["template"], port["targetPort"]) == int(
        CONFIG["RAYDC_PORT"]
    )


def mounts_of(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """mountPath -> (volume name, volume) of a pod template's first container."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    container = template["spec"]["containers"][0]
    return {m["mountPath"]: (m["name"], volumes[m["name"]]) for m in container["volumeMounts"]}


def test_artifacts_and_node_types_are_mounted_where_the_settings_say() -> None:
    artifact_dir = Path(CONFIG["RAYDC_ARTIFACT_DIR"])
    claims = set()
    for name, template in [*pod_templates(DEPLOYMENT), *pod_templates(RAYCLUSTER)]:
        mounts = mounts_of(template)
        shared = [path for path in mounts if artifact_dir.is_relative_to(path)]
        assert shared, f"{name}: nothing mounted at {artifact_dir}"
        claims.add((shared[0], mounts[shared[0]][1]["persistentVolumeClaim"]["claimName"]))
    assert len(claims) == 1, f"the artifact volume differs between pods: {claims}"
    pvc = one(BASE, "PersistentVolumeClaim", claims.pop()[1])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    config_path = Path(CONFIG["RAYDC_CLUSTER_CONFIG"])
    _, volume = mounts_of(DEPLOYMENT["spec"]["template"])[str(config_path.parent)]
    config_map = one(BASE, "ConfigMap", volume["configMap"]["name"])
    assert config_path.name in config_map["data"]


def test_node_types_mirror_the_ray_cluster(tmp_path: Path) -> None:
    text = one(BASE, "ConfigMap", "raydc-node-types")["data"]["node-types.yaml"]
    (tmp_path / "node-types.yaml").write_text(text)
    types = {t.name: t for t in node_types_from_cluster_config(tmp_path / "node-types.yaml")}
    spec = RAYCLUSTER["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(types) == {"head", *groups}
    assert yaml.safe_load(text)["max_workers"] == sum(g["maxReplicas"] for g in groups.values())
    head_cpus = float(spec["headGroupSpec"]["rayStartParams"]["num-cpus"])
    assert types["head"].cpu == head_cpus
    for name, template in pod_templates(RAYCLUSTER):
        limits = template["spec"]["containers"][0]["resources"]["limits"]
        node = types[name]
        if name != "head":
            assert node.cpu == quantity(limits["cpu"]), name
            assert node.max_count == groups[name]["maxReplicas"], name
        assert node.gpu == quantity(limits.get("nvidia.com/gpu", 0)), name
        pod_gb = quantity(limits["memory"]) / 2**30
        assert 0.5 * pod_gb < node.memory_gb < pod_gb, name  # the rest is the object store


def test_control_plane_deployment() -> None:
    spec = DEPLOYMENT["spec"]
    assert spec["replicas"] == 2
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        obj = one(BASE, kind)
        selector = obj["spec"]["selector"]
        assert selector.get("matchLabels", selector).items() <= labels.items(), kind
    (container,) = template["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert container_port(template, get["port"]) == int(CONFIG["RAYDC_PORT"]), probe
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == CONFIG["RAYDC_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize(
    ("name", "template"), all_pod_templates(), ids=[name for name, _ in all_pod_templates()]
)
def test_every_pod_is_sized_and_runs_as_non_root(name: str, template: dict[str, Any]) -> None:
    pod = template["spec"]
    # Without this, a Service named raydc puts RAYDC_PORT=tcp://... into the environment.
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    for container in pod["containers"]:
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container["name"]
        assert {"cpu", "memory"} <= resources["limits"].keys(), container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "ALL" in container["securityContext"]["capabilities"]["drop"]


def test_ray_cluster_autoscales_with_gpu_groups_and_token_auth() -> None:
    spec = RAYCLUSTER["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    scaler = spec["autoscalerOptions"]["resources"]
    assert scaler["requests"] == scaler["limits"]
    gpu_groups = 0
    for group in spec["workerGroupSpecs"]:
        name = group["groupName"]
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], name
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        gpus = quantity(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        tolerated = {t["key"] for t in pod.get("tolerations", [])}
        image = container["image"].rsplit(":", 1)[0]
        if gpus:
            gpu_groups += 1
            assert image == "raydc-gpu", name
            assert "nvidia.com/gpu" in tolerated and pod["nodeSelector"], name
        else:
            assert image == "raydc", name
            assert "nvidia.com/gpu" not in tolerated, name
    assert gpu_groups >= 2


# ---- network policies -------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    namespace: str = "raydc"


def kuberay_pod(node_type: str, group: str, template: dict[str, Any]) -> Pod:
    """The labels KubeRay gives a Ray pod, on top of its template's."""
    name = RAYCLUSTER["metadata"]["name"]
    ray_labels = {"ray.io/cluster": name, "ray.io/node-type": node_type, "ray.io/group": group}
    return Pod(
        {**template["metadata"].get("labels", {}), **ray_labels, "ray.io/is-ray-node": "yes"}
    )


HEAD = kuberay_pod("head", "headgroup", RAYCLUSTER["spec"]["headGroupSpec"]["template"])
WORKER = kuberay_pod("worker", "cpu", RAYCLUSTER["spec"]["workerGroupSpecs"][0]["template"])
CONTROL_PLANE = Pod(DEPLOYMENT["spec"]["template"]["metadata"]["labels"])
STRANGER = Pod({"app": "something-else"})
OTHER_NAMESPACE = Pod(CONTROL_PLANE.labels, namespace="elsewhere")


def selects(selector: dict[str, Any], pod: Pod) -> bool:
    assert set(selector) <= {"matchLabels"}, "this evaluator knows matchLabels only"
    return bool(selector.get("matchLabels", {}).items() <= pod.labels.items())


def reachable(objects: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether the NetworkPolicies among `objects` let `source` open `port` on `target`."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    policies = [p for p in policies if selects(p["spec"]["podSelector"], target)]
    if not policies:
        return True
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
                continue
            if "from" not in rule:
                return True
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, "this evaluator knows podSelector only"
                if source.namespace == target.namespace and selects(peer["podSelector"], source):
                    return True
    return False


def test_only_the_control_plane_reaches_the_ray_dashboard() -> None:
    assert reachable(BASE, CONTROL_PLANE, HEAD, 8265)
    for outsider in (STRANGER, OTHER_NAMESPACE):
        assert not reachable(BASE, outsider, HEAD, 8265)
        assert not reachable(BASE, outsider, HEAD, 6379)  # GCS
        assert not reachable(BASE, outsider, HEAD, 10001)  # Ray client
        assert not reachable(BASE, outsider, WORKER, 10002)
        assert reachable(BASE, outsider, HEAD, 8000)  # Serve, for users
    # Ray's own pods still talk to each other, on any port.
    for source, target in ((WORKER, HEAD), (HEAD, WORKER), (WORKER, WORKER)):
        assert reachable(BASE, source, target, 6379)
        assert reachable(BASE, source, target, 8265)
        assert reachable(BASE, source, target, 12345)


def test_prometheus_reaches_every_metrics_port() -> None:
    spec = RAYCLUSTER["spec"]
    head, worker = spec["headGroupSpec"]["template"], spec["workerGroupSpecs"][0]["template"]
    for pod, template in ((HEAD, head), (WORKER, worker)):
        ports = [p for p in template["spec"]["containers"][0]["ports"] if "metrics" in p["name"]]
        assert ports
        for port in ports:
            assert reachable(BASE, STRANGER, pod, port["containerPort"]), port["name"]


def test_only_the_control_plane_reaches_postgres() -> None:
    objects, _ = rendered(K8S / "with-postgres")
    postgres = Pod(one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"])
    assert reachable(objects, CONTROL_PLANE, postgres, 5432)
    assert not reachable(objects, WORKER, postgres, 5432)
    assert not reachable(objects, STRANGER, postgres, 5432)


def test_postgres_component_points_the_control_plane_at_its_database() -> None:
    objects, patches = rendered(K8S / "with-postgres")
    (patch,) = patches
    assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment", "raydc")
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] == DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["name"]
    names = [env["name"] for env in container["env"]]
    url = container["env"][names.index("RAYDC_DATABASE_URL")]["value"]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("POSTGRES_PASSWORD") < names.index("RAYDC_DATABASE_URL")
    statefulset = one(objects, "StatefulSet")
    (postgres,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in postgres["env"]}
    service = one(objects, "Service", statefulset["spec"]["serviceName"])
    user, database = env["POSTGRES_USER"], env["POSTGRES_DB"]
    port = service["spec"]["ports"][0]["port"]
    host = service["metadata"]["name"]
    expected = f"postgresql+psycopg://{user}:$(POSTGRES_PASSWORD)@{host}:{port}/{database}"
    assert url == expected


def test_only_the_control_plane_pod_gets_the_control_planes_secret() -> None:
    """The admin token and database URL (raydc-secrets) reach the control plane's pod
    only: a Ray pod runs tenants' code (SECURITY.md)."""
    holders = {
        name
        for name, template in all_pod_templates()
        if ("Secret", "raydc-secrets") in {(kind, n) for kind, n, _ in references(template)}
    }
    assert holders == {"Deployment/raydc"}, holders
