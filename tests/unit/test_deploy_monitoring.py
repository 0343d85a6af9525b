"""deploy/prometheus and deploy/grafana, checked offline: no Prometheus or Grafana.

The scrape jobs against the pods' annotations, labels and ports, and every metric a
dashboard panel asks for: raydc's own (README.md's Metrics table) or in Ray's dashboards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray._private import ray_constants

from raydc.settings import Settings
from tests.unit.deploy_helpers import (
    DEPLOY,
    DEPLOYMENT,
    K8S,
    RAYCLUSTER,
    kustomization,
    load_all,
    pod_templates,
)

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


def test_prometheus_sends_a_monitor_token_to_raydc_only() -> None:
    """/metrics needs a bearer token (admin or monitor); Ray's endpoints take none."""
    secrets = {obj["metadata"]["name"]: obj for obj in load_all(K8S / "secret.yaml")}
    token_secret = secrets["raydc-prometheus"]
    for name in ("prometheus.yml", "prometheus-ray-up.yml"):
        config = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        authorization = jobs["raydc"]["authorization"]
        assert authorization["type"] == "Bearer", name
        assert authorization["credentials_file"].startswith("/"), name
        assert "authorization" not in jobs["ray"], name
        if name == "prometheus.yml":
            # The Secret's key is the file's name where its volume is mounted.
            assert Path(authorization["credentials_file"]).name in token_secret["stringData"]
    text = (K8S / "secret.yaml").read_text()
    assert "--role monitor" in text and "raydc-prometheus" in text
