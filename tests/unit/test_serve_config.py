"""The Serve config raydc writes for a model deployment, checked against Serve's own schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ray.serve.schema import ServeDeploySchema

from raydc.cluster.serve import ModelDeploymentOptions, RayServe, application_config

ARGS = {
    "tenant": "team-a",
    "name": "intent",
    "auth_url": "http://127.0.0.1:8080",
    "predictor": "intent.serve:Predictor",
    "canary": False,
}


def options(**changes: Any) -> ModelDeploymentOptions:
    values: dict[str, Any] = {
        "user_config": {
            "model_version": "intent:3",
            "checkpoint_dir": "/runs/intent/3",
            "max_batch_size": 32,
            "batch_wait_timeout_s": 0.01,
        },
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 8.0,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0, "memory": 2 * 1024**3},
    }
    values.update(changes)
    return ModelDeploymentOptions(**values)


def config(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "app_name": "team-a--intent",
        "route_prefix": "/team-a/intent",
        "args": ARGS,
        "runtime_env": {"py_modules": ["gcs://_ray_pkg_a.zip"], "env_vars": {"X": "1"}},
        "stable": options(),
        "canary": None,
        "canary_percent": 0.0,
    }
    values.update(changes)
    return application_config(**values)


def deployments(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in app["deployments"]}


def test_serve_accepts_the_config_it_is_sent() -> None:
    app = config()
    parsed = ServeDeploySchema.model_validate(
        {"http_options": {"host": "127.0.0.1", "port": 8000}, "applications": [app]}
    )
    [parsed_app] = parsed.applications
    assert parsed_app.import_path == "raydc.workloads.serving:build_app"
    assert parsed_app.route_prefix == "/team-a/intent"
    assert parsed_app.args == ARGS
    # One deployment is the HTTP ingress and the model: no second hop per request.
    assert parsed_app.deployment_names == ["Stable"]


def test_stable_carries_model_config_autoscaling_and_resources() -> None:
    stable = deployments(config())["Stable"]
    assert stable["user_config"]["model_version"] == "intent:3"
    scaling = stable["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 4)
    assert scaling["target_ongoing_requests"] == 8.0
    assert (scaling["upscale_delay_s"], scaling["downscale_delay_s"]) == (5.0, 60.0)
    assert stable["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0, "memory": 2 * 1024**3}
    # A replica must admit a whole batch plus the next one filling, or batches stay small.
    assert stable["max_ongoing_requests"] >= 2 * 32


def test_an_unbatched_replica_queues_requests_itself_not_in_the_router() -> None:
    unbatched = options(user_config={**options().user_config, "max_batch_size": 1})
    stable = deployments(config(stable=unbatched))["Stable"]
    assert stable["max_ongoing_requests"] >= 32


def test_explicit_max_ongoing_requests_wins() -> None:
    stable = deployments(config(stable=options(max_ongoing_requests=7)))["Stable"]
    assert stable["max_ongoing_requests"] == 7


def test_scale_to_zero_starts_with_one_replica() -> None:
    scaling = deployments(config(stable=options(min_replicas=0)))["Stable"]["autoscaling_config"]
    assert scaling["min_replicas"] == 0
    assert scaling["initial_replicas"] == 1


def test_the_canary_share_rides_in_stables_user_config() -> None:
    # A user config changes in place: a new canary weight restarts no replica.
    canary_user_config = {**options().user_config, "model_version": "intent:4"}
    app = config(args={**ARGS, "canary": True}, canary=options(user_config=canary_user_config),
                 canary_percent=20.0)  # fmt: skip
    stable, canary = deployments(app)["Stable"], deployments(app)["Canary"]
    assert stable["user_config"] == {**options().user_config, "canary_percent": 20.0}
    assert "canary_percent" not in canary["user_config"]


def test_canary_is_a_second_model_deployment() -> None:
    canary_user_config = {**options().user_config, "model_version": "intent:4"}
    app = config(
        args={**ARGS, "canary": True},
        canary=options(user_config=canary_user_config, max_replicas=1),
    )
    ServeDeploySchema.model_validate({"applications": [app]})
    canary = deployments(app)["Canary"]
    assert canary["user_config"]["model_version"] == "intent:4"
    assert canary["autoscaling_config"]["max_replicas"] == 1


@pytest.mark.parametrize("canary_flag", [True, False])
def test_canary_flag_and_options_must_agree(canary_flag: bool) -> None:
    with pytest.raises(ValueError, match=r"args\.canary"):
        config(args={**ARGS, "canary": canary_flag}, canary=None if canary_flag else options())


def test_runtime_env_is_passed_as_given() -> None:
    assert config()["runtime_env"] == {
        "py_modules": ["gcs://_ray_pkg_a.zip"],
        "env_vars": {"X": "1"},
    }


def test_load_is_reported_every_second() -> None:
    # Serve's default (10 s) alone would delay a scale-up by up to 10 s.
    scaling = deployments(config())["Stable"]["autoscaling_config"]
    assert scaling["metrics_interval_s"] == 1.0
    assert scaling["look_back_period_s"] > scaling["metrics_interval_s"]


def test_load_window_follows_the_downscale_delay() -> None:
    short = deployments(config(stable=options(downscale_delay_s=5.0)))["Stable"]
    long = deployments(config(stable=options(downscale_delay_s=600.0)))["Stable"]
    assert short["autoscaling_config"]["look_back_period_s"] == 5.0
    assert long["autoscaling_config"]["look_back_period_s"] == 30.0


def test_status_says_why_a_deployment_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    details = {
        "applications": {
            "team-a--intent": {
                "status": "DEPLOY_FAILED",
                "message": "Failed to update the deployments ['Stable'].",
                "deployments": {
                    "Canary": {
                        "status": "HEALTHY",
                        "message": "",
                        "target_num_replicas": 1,
                        "replicas": [{"state": "RUNNING"}],
                    },
                    "Stable": {
                        "status": "DEPLOY_FAILED",
                        "message": "Traceback (most recent call last):\n  File ...\n"
                        "EntrypointError: cannot import entrypoint module 'intent.nope'\n",
                        "target_num_replicas": 2,
                        "replicas": [{"state": "STARTING"}, {"state": "RUNNING"}],
                    },
                },
            }
        }
    }

    def fake_get(url: str, **_: Any) -> httpx.Response:
        return httpx.Response(200, json=details, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", fake_get)
    [(name, app)] = RayServe("http://dashboard", "token").status().items()
    assert name == "team-a--intent"
    assert app.status == "DEPLOY_FAILED"
    assert app.message == (
        "Failed to update the deployments ['Stable']. "
        "Stable: EntrypointError: cannot import entrypoint module 'intent.nope'"
    )
    assert app.deployments["Stable"].running_replicas == 1
    assert app.deployments["Stable"].target_replicas == 2
    assert app.deployments["Canary"].message == ""
