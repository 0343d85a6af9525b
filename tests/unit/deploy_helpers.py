"""Reading deploy/ for the deploy tests: the Kubernetes objects a kustomization renders
and the Dockerfile's instructions, stage by stage.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"


# ---- Kubernetes objects -----------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


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
