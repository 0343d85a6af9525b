"""The deployment reconciler: the only writer of a deployment's status and replica counts.

Each pass reads every deployment, builds the whole Serve config from them (the control
plane owns it: an application not listed is removed by Serve), applies it when it differs
from the last one applied, then reads Serve's status back into the rows. A deleted
deployment's row goes once Serve no longer lists its application.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from raydc.cluster.client import RayCluster
from raydc.cluster.serve import (
    CANARY,
    STABLE,
    AppStatus,
    ModelDeploymentOptions,
    RayServe,
    ServeConfigRejected,
    application_config,
)
from raydc.server.cluster_link import ClusterLink
from raydc.server.loop import ReconcileLoop
from raydc.server.services.deployments import (
    DELETING,
    DEPLOYING,
    HEALTHY,
    UNHEALTHY,
    app_name,
    route_prefix,
)
from raydc.server.services.launch import RAYDC_PACKAGE_DIR
from raydc.server.services.models import app_of
from raydc.settings import Settings
from raydc.specs.deployments import DeploymentSpec
from raydc.store.db import transaction
from raydc.store.models import DeploymentRow, ModelVersionRow, utcnow

log = logging.getLogger(__name__)
_BYTES_PER_GB = 1024**3
_SERVE_STATUS = {"RUNNING": HEALTHY, "DEPLOY_FAILED": UNHEALTHY, "UNHEALTHY": UNHEALTHY}


@dataclass(frozen=True)
class Wanted:
    """One deployment as the pass read it: enough to write its Serve application."""

    id: int
    tenant: str
    name: str
    generation: int
    deleting: bool
    spec: DeploymentSpec
    checkpoint: str
    canary_checkpoint: str | None
    app: str  # the bundled app whose predictor serves it

    @property
    def app_name(self) -> str:
        return app_name(self.tenant, self.name)


def _options(spec: DeploymentSpec, model: str, checkpoint: str) -> ModelDeploymentOptions:
    scaling, per = spec.autoscaling, spec.resources
    actor: dict[str, Any] = {"num_cpus": per.cpus_per_replica}
    if per.gpus_per_replica > 0:
        actor["num_gpus"] = per.gpus_per_replica
    if per.memory_gb_per_replica > 0:
        actor["memory"] = int(per.memory_gb_per_replica * _BYTES_PER_GB)
    return ModelDeploymentOptions(
        user_config={
            "model_version": model, "checkpoint_dir": checkpoint,
            "max_batch_size": spec.batching.max_batch_size,
            "batch_wait_timeout_s": spec.batching.batch_wait_timeout_s,
        },
        min_replicas=scaling.min_replicas, max_replicas=scaling.max_replicas,
        target_ongoing_requests=scaling.target_ongoing_requests,
        upscale_delay_s=scaling.upscale_delay_s, downscale_delay_s=scaling.downscale_delay_s,
        ray_actor_options=actor,
    )  # fmt: skip


def application(want: Wanted, auth_url: str, runtime_env: dict[str, Any]) -> dict[str, Any]:
    spec = want.spec
    canary = None
    if spec.canary is not None and want.canary_checkpoint is not None:
        canary = _options(spec, spec.canary.model, want.canary_checkpoint)
    assert spec.predictor is not None  # resolved when the deployment was written
    return application_config(
        app_name=want.app_name,
        route_prefix=route_prefix(want.tenant, want.name),
        args={
            "tenant": want.tenant,
            "name": want.name,
            "auth_url": auth_url,
            "predictor": spec.predictor,
            "canary": canary is not None,
        },
        runtime_env=runtime_env,
        stable=_options(spec, spec.model, want.checkpoint),
        canary=canary,
        canary_percent=spec.canary.percent if spec.canary else 0.0,
    )


def read_wanted(session: Session) -> list[Wanted]:
    wanted = []
    for row in session.scalars(select(DeploymentRow).order_by(DeploymentRow.id)):
        stable = session.get(ModelVersionRow, row.version_id)
        canary = (
            session.get(ModelVersionRow, row.canary_version_id) if row.canary_version_id else None
        )
        app = (app_of(session, stable) if stable is not None else None) or ""
        wanted.append(Wanted(
            row.id, row.tenant, row.name, row.generation, row.status == DELETING,
            DeploymentSpec.model_validate(row.spec), stable.uri if stable else "",
            canary.uri if canary else None, app,
        ))  # fmt: skip
    return wanted


class DeploymentReconciler(ReconcileLoop):
    thread_name = "raydc-deployer"

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], link: ClusterLink
    ) -> None:
        super().__init__()
        self.settings = settings
        self.sessions = sessions
        self.link = link
        self._serve: RayServe | None = None
        self._serve_of: RayCluster | None = None
        self._applied_key: str | None = None
        self._refused = False  # Serve refused the config of _applied_key

    def interval_s(self) -> float:
        return self.settings.deploy_reconcile_interval_s

    def _serve_for(self, cluster: RayCluster) -> RayServe:
        if self._serve is None or self._serve_of is not cluster:
            self._serve = RayServe(cluster.dashboard_url, cluster.auth_token)
            self._serve_of = cluster
            self._applied_key = None  # a new connection: apply once again
        return self._serve

    def run_once(self) -> None:
        cluster = self.link.cluster  # the job reconciler connects; this one only uses it
        if cluster is None:
            return
        serve = self._serve_for(cluster)
        with self.sessions() as session:
            wanted = read_wanted(session)
        live = [w for w in wanted if not w.deleting]
        self._apply(serve, live, wanted)
        self._sync(serve.status(), wanted)

    def _apply(self, serve: RayServe, live: list[Wanted], wanted: list[Wanted]) -> None:
        if not wanted and self._applied_key is None:
            # Nothing was ever deployed through this control plane: leave Serve alone
            # (and do not start it).
            return
        auth_url = self.settings.resolved_public_url
        # The key leaves the runtime env out: packages are hashed and uploaded only when
        # the config changed.
        key = json.dumps([application(w, auth_url, {}) for w in live], sort_keys=True)
        if key == self._applied_key:
            if not self._refused:
                # A change that leaves the config as Serve runs it (a PATCH to the same
                # values, or one undone before this pass): that generation is applied too.
                self._record_applied(wanted)
            return
        uris: dict[str, list[str]] = {}
        for app in sorted({w.app for w in live}):
            uris[app] = serve.upload_modules([RAYDC_PACKAGE_DIR, self.settings.apps_dir / app])
        applications = [
            application(
                w, auth_url, {"py_modules": uris[w.app], "env_vars": {"HF_HUB_OFFLINE": "1"}}
            )
            for w in live
        ]
        try:
            serve.apply(applications, self.settings.serve_host, self.settings.serve_port)
        except ServeConfigRejected as error:
            self._record_rejection(wanted, str(error))
            self._applied_key = key  # the same config will be refused again: wait for a change
            self._refused = True
            return
        self._applied_key, self._refused = key, False
        self._record_applied(wanted)
        log.info("Serve config applied: %d application(s)", len(applications))

    def _record_applied(self, wanted: list[Wanted]) -> None:
        with transaction(self.sessions) as session:
            for want in wanted:
                row = session.get(DeploymentRow, want.id)
                if row is not None and row.generation == want.generation != row.applied_generation:
                    row.applied_generation = want.generation

    def _record_rejection(self, wanted: list[Wanted], message: str) -> None:
        log.warning("Serve refused the config: %s", message)
        with transaction(self.sessions) as session:
            for want in wanted:
                row = session.get(DeploymentRow, want.id)
                if row is not None and row.applied_generation != row.generation:
                    row.status, row.message = UNHEALTHY, f"Serve refused the config: {message}"

    def _sync(self, apps: dict[str, AppStatus], wanted: list[Wanted]) -> None:
        with transaction(self.sessions) as session:
            for want in wanted:
                row = session.get(DeploymentRow, want.id)
                if row is None or row.generation != want.generation:
                    continue  # changed meanwhile: the next pass reads it again
                app = apps.get(want.app_name)
                if want.deleting:
                    if app is None:
                        session.delete(row)
                    continue
                if row.applied_generation != row.generation:
                    continue  # not applied yet, or refused: leave its status as it is
                status, message = DEPLOYING, None
                if app is not None:
                    status = _SERVE_STATUS.get(app.status, DEPLOYING)
                    message = app.message or None
                    stable = app.deployments.get(STABLE)
                    canary = app.deployments.get(CANARY)
                    row.replicas = stable.running_replicas if stable else 0
                    row.target_replicas = stable.target_replicas if stable else None
                    row.canary_replicas = canary.running_replicas if canary else 0
                if (row.status, row.message) != (status, message):
                    row.status, row.message = status, message
                    row.updated_at = utcnow()
