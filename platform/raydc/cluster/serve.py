"""Ray Serve through the dashboard's REST API: declare applications, read their status.

The whole Serve config is declared at once (``PUT /api/serve/applications/``): Serve
deletes every application the config does not list. The application itself is
``raydc.workloads.serving:build_app``; this module only writes its config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from raydc.cluster.jobs import _TimedJobSubmissionClient

log = logging.getLogger(__name__)

IMPORT_PATH = "raydc.workloads.serving:build_app"
STABLE, CANARY = "Stable", "Canary"
PACKAGE_EXCLUDES = ["__pycache__", "*.pyc", ".git"]
# Serve's replicas and handles report their load every 10 s by default, which alone delays
# a scale-up by up to 10 s; raydc's report every second. (Ray marks `metrics_interval_s`
# deprecated in favour of two environment variables that Ray 2.60 does not read yet.)
METRICS_INTERVAL_S = 1.0


class ServeConfigRejected(Exception):
    """Serve refused the config (bad schema or options): retrying the same one will not help."""


@dataclass(frozen=True)
class ModelDeploymentOptions:
    user_config: dict[str, Any]
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float
    ray_actor_options: dict[str, Any]  # num_cpus, num_gpus, memory (bytes)
    max_ongoing_requests: int | None = None


@dataclass(frozen=True)
class DeploymentState:
    status: str  # UPDATING | HEALTHY | UNHEALTHY | UPSCALING | DOWNSCALING | ...
    running_replicas: int
    target_replicas: int | None
    message: str = ""  # why it is unhealthy: the last line of Serve's message


@dataclass(frozen=True)
class AppStatus:
    status: str  # NOT_STARTED | DEPLOYING | RUNNING | DEPLOY_FAILED | DELETING | UNHEALTHY
    message: str
    deployments: dict[str, DeploymentState]


# When every replica holds max_ongoing_requests, Serve's router retries with a backoff of up
# to 0.5 s, and a replica that frees up meanwhile sits idle: 32 clients on one unbatched
# replica got 8-14 predictions/s with Serve's 5, 44/s with 32 (benchmarks/serve_batching.py).
# Waiting in the replica's own queue costs nothing; autoscaling counts requests either way.
MIN_MAX_ONGOING_REQUESTS = 32


def _max_ongoing(options: ModelDeploymentOptions) -> int:
    """Room for one batch being computed and the next one filling, for the target, and
    for requests to queue at the replica rather than in the router."""
    if options.max_ongoing_requests is not None:
        return options.max_ongoing_requests
    batch = int(options.user_config.get("max_batch_size", 1))
    return max(2 * batch, math.ceil(options.target_ongoing_requests) + 1, MIN_MAX_ONGOING_REQUESTS)


def model_deployment(
    name: str, options: ModelDeploymentOptions, extra_user_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One model deployment's entry in an application's ``deployments``."""
    return {
        "name": name,
        "user_config": {**options.user_config, **(extra_user_config or {})},
        "max_ongoing_requests": _max_ongoing(options),
        "autoscaling_config": {
            "min_replicas": options.min_replicas,
            # With scale-to-zero, start one replica anyway: the first request is not a
            # cold start, and a broken model fails the deploy instead of that request.
            "initial_replicas": max(options.min_replicas, 1),
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
            "upscale_delay_s": options.upscale_delay_s,
            "downscale_delay_s": options.downscale_delay_s,
            # Load is averaged over this window; longer than the downscale delay, a
            # deployment would stay scaled up for the window after the load has gone.
            "look_back_period_s": min(30.0, max(2.0, options.downscale_delay_s)),
            "metrics_interval_s": METRICS_INTERVAL_S,
        },
        "ray_actor_options": options.ray_actor_options,
    }


def application_config(
    *,
    app_name: str,
    route_prefix: str,
    args: dict[str, Any],
    runtime_env: dict[str, Any],
    stable: ModelDeploymentOptions,
    canary: ModelDeploymentOptions | None,
    canary_percent: float = 0.0,
) -> dict[str, Any]:
    """One entry of the Serve config's ``applications`` for a raydc model deployment.

    ``Stable`` is the ingress and the stable model; its user config also carries
    ``canary_percent``. ``args`` are :class:`raydc.workloads.serving.ServeArgs`; its
    ``canary`` must agree with whether ``canary`` options are given. Changing ``args`` or
    ``runtime_env`` rebuilds the application (adding or removing a canary restarts the
    stable replicas); changing only options or user configs updates it in place.
    """
    if bool(args.get("canary")) != (canary is not None):
        raise ValueError("args.canary must be true exactly when canary options are given")
    deployments = [model_deployment(STABLE, stable, {"canary_percent": canary_percent})]
    if canary is not None:
        deployments.append(model_deployment(CANARY, canary))
    return {
        "name": app_name,
        "route_prefix": route_prefix,
        "import_path": IMPORT_PATH,
        "args": args,
        "runtime_env": runtime_env,
        "deployments": deployments,
    }


def _last_line(text: str) -> str:
    """A replica's failure comes as a whole traceback; its last line says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _deployment_state(row: dict[str, Any]) -> DeploymentState:
    replicas = row.get("replicas") or []
    target = row.get("target_num_replicas")
    return DeploymentState(
        status=str(row.get("status", "")),
        running_replicas=sum(1 for r in replicas if r.get("state") == "RUNNING"),
        target_replicas=int(target) if target is not None else None,
        message=_last_line(str(row.get("message") or "")),
    )


def _app_status(app: dict[str, Any]) -> AppStatus:
    deployments = {
        name: _deployment_state(row) for name, row in (app.get("deployments") or {}).items()
    }
    # Serve's application message only names the failed deployments; add why they failed.
    reasons = [
        f"{name}: {state.message}"
        for name, state in deployments.items()
        if state.message and state.status in ("DEPLOY_FAILED", "UNHEALTHY")
    ]
    message = " ".join([_last_line(str(app.get("message") or "")), *reasons]).strip()
    return AppStatus(status=str(app.get("status", "")), message=message, deployments=deployments)


class RayServe:
    def __init__(self, dashboard_url: str, auth_token: str | None) -> None:
        self.dashboard_url = dashboard_url.rstrip("/")
        self.auth_token = auth_token
        self._headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        self._uploader: _TimedJobSubmissionClient | None = None

    def apply(self, applications: list[dict[str, Any]], http_host: str, http_port: int) -> None:
        """Make Serve run exactly these applications; an empty list removes every one.

        Serve's HTTP host and port are fixed once Serve runs on a cluster: a different
        value here is ignored by Serve (it logs a warning).
        """
        if not applications and not self._serve_running():
            return  # nothing to remove, and no reason to start Serve for it
        config = {
            "http_options": {"host": http_host, "port": http_port},
            "applications": applications,
        }
        response = httpx.put(
            f"{self.dashboard_url}/api/serve/applications/",
            json=config,
            headers=self._headers,
            timeout=120.0,  # the first call starts Serve's controller and proxy
        )
        if response.status_code == 400:
            raise ServeConfigRejected(response.text)
        response.raise_for_status()

    def status(self) -> dict[str, AppStatus]:
        """Every application Serve runs, by name; empty when Serve is not running."""
        apps = self._details().get("applications") or {}
        return {name: _app_status(app) for name, app in apps.items()}

    def upload_modules(self, paths: list[Path]) -> list[str]:
        """Local package dirs -> ``gcs://`` URIs for a runtime env's ``py_modules``.

        A URI is the hash of the dir's content, and a package already on the cluster is
        not uploaded again. The check is made on every call rather than remembered: Ray
        deletes an uploaded package that nothing has used for 10 minutes.
        """
        runtime_env: dict[str, Any] = {
            "py_modules": [str(path) for path in paths],
            "excludes": PACKAGE_EXCLUDES,
        }
        self._package_client()._upload_py_modules_if_needed(runtime_env)
        return [str(uri) for uri in runtime_env["py_modules"]]

    def _details(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.dashboard_url}/api/serve/applications/", headers=self._headers, timeout=30.0
        )
        response.raise_for_status()
        details: dict[str, Any] = response.json()
        return details

    def _serve_running(self) -> bool:
        details = self._details()
        return bool(details.get("applications")) or bool(
            (details.get("controller_info") or {}).get("actor_id")
        )

    def _package_client(self) -> _TimedJobSubmissionClient:
        # Ray's own packaging (hashing, zipping, the dashboard's package endpoint), as
        # `ray job submit` does it. Created on first use: it checks the cluster's version.
        if self._uploader is None:
            self._uploader = _TimedJobSubmissionClient(
                self.dashboard_url, headers=self._headers or None
            )
        return self._uploader
