"""Model deployments: what users ask for. The deployment reconciler makes Serve match it.

A deployment names a model version (``name:version`` or ``name`` = the latest, resolved
once, when it is written) and is served by the predictor of the app that trained it.
Every change bumps ``generation``; the reconciler applies the whole Serve config and
records which generation it applied.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from raydc.security.rbac import Principal
from raydc.server.errors import Conflict, InvalidInput
from raydc.server.services.addressing import addressed_tenants, the_one
from raydc.server.services.models import ResolvedVersion, resolve_servable_version
from raydc.server.validation import invalid_input
from raydc.specs.deployments import DeploymentPatch, DeploymentSpec, split_model_ref
from raydc.store.models import (
    DeploymentRow,
    TenantRow,
    utcnow,
)

DEPLOYING, HEALTHY, UNHEALTHY, DELETING = "DEPLOYING", "HEALTHY", "UNHEALTHY", "DELETING"


def parse_spec(data: Any) -> DeploymentSpec:
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as error:
        raise invalid_input(error) from error


def parse_patch(data: Any) -> DeploymentPatch:
    try:
        return DeploymentPatch.model_validate(data)
    except ValidationError as error:
        raise invalid_input(error) from error


def _check_quota(tenant: TenantRow, spec: DeploymentSpec) -> None:
    """Refuse a deployment whose replicas could never fit the tenant's quota and borrowing."""
    replicas = spec.autoscaling.max_replicas
    per = spec.resources
    for amount, quota, borrow, what in (
        (per.cpus_per_replica, tenant.quota_cpu, tenant.borrow_cpu, "cpu"),
        (per.gpus_per_replica, tenant.quota_gpu, tenant.borrow_gpu, "gpu"),
        (per.memory_gb_per_replica, tenant.quota_memory_gb, tenant.borrow_memory_gb, "memory_gb"),
    ):
        if quota is None or borrow is None or amount <= 0:
            continue
        if amount * replicas > quota + borrow + 1e-9:
            raise InvalidInput.field(
                ("autoscaling", "max_replicas"),
                f"{replicas} replicas need {amount * replicas:g} {what}; tenant "
                f"'{tenant.name}' may use at most {quota + borrow:g} (quota plus borrowing)",
            )


def _resolve(session: Session, tenant: str, spec: DeploymentSpec) -> tuple[
    DeploymentSpec, ResolvedVersion, ResolvedVersion | None
]:  # fmt: skip
    stable = resolve_servable_version(session, tenant, spec.model, ("model",))
    canary = None
    if spec.canary is not None:
        canary = resolve_servable_version(session, tenant, spec.canary.model, ("canary", "model"))
        if canary.app != stable.app:
            raise InvalidInput.field(
                ("canary", "model"),
                f"the canary was trained by app '{canary.app}', the deployment serves app "
                f"'{stable.app}': both versions must come from the same app",
            )
    resolved = spec.model_copy(update={"model": stable.ref})
    if canary is not None and spec.canary is not None:
        resolved.canary = spec.canary.model_copy(update={"model": canary.ref})
    if resolved.predictor is None:
        resolved.predictor = f"{stable.app}.serve:Predictor"
    tenant_row = session.get(TenantRow, tenant)
    if tenant_row is not None:
        _check_quota(tenant_row, resolved)
    return resolved, stable, canary


def create_deployment(
    session: Session, principal: Principal, spec: DeploymentSpec
) -> DeploymentRow:
    tenant = principal.tenant
    exists = session.scalar(
        select(DeploymentRow.id).where(
            DeploymentRow.tenant == tenant, DeploymentRow.name == spec.name
        )
    )
    if exists is not None:
        raise Conflict(f"deployment '{spec.name}' already exists; PATCH it to change it")
    resolved, stable, canary = _resolve(session, tenant, spec)
    now = utcnow()
    row = DeploymentRow(
        tenant=tenant, name=spec.name, spec=resolved.model_dump(mode="json"),
        version_id=stable.row.id, canary_version_id=canary.row.id if canary else None,
        status=DEPLOYING, generation=1, applied_generation=0, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def get_deployment(
    session: Session, principal: Principal, name: str, tenant: str | None = None
) -> DeploymentRow:
    """The visible deployment ``name`` (of ``tenant`` if given): see services.addressing."""
    query = select(DeploymentRow).where(DeploymentRow.name == name)
    tenants = addressed_tenants(principal, tenant)
    if tenants is not None:
        query = query.where(DeploymentRow.tenant.in_(tenants))
    rows = list(session.scalars(query.order_by(DeploymentRow.tenant)))
    return the_one(rows, lambda row: row.tenant, f"deployment '{name}'")


def list_deployments(
    session: Session, principal: Principal, tenant: str | None = None
) -> list[DeploymentRow]:
    query = select(DeploymentRow).order_by(DeploymentRow.tenant, DeploymentRow.name)
    tenants = addressed_tenants(principal, tenant)
    if tenants is not None:
        query = query.where(DeploymentRow.tenant.in_(tenants))
    return list(session.scalars(query))


def patch_deployment(
    session: Session,
    principal: Principal,
    name: str,
    patch: DeploymentPatch,
    tenant: str | None = None,
) -> DeploymentRow:
    row = get_deployment(session, principal, name, tenant)
    if row.status == DELETING:
        raise Conflict(f"deployment '{name}' is being deleted")
    current = DeploymentSpec.model_validate(row.spec)
    changes = {field: getattr(patch, field) for field in patch.model_fields_set}
    if "model" in changes and changes["model"] is None:
        raise InvalidInput.field(("model",), "must not be null")
    if "model" in changes:
        old, _ = split_model_ref(current.model)
        new, _ = split_model_ref(changes["model"])
        if new != old:
            raise InvalidInput.field(
                ("model",), f"this deployment serves model '{old}'; give one of its versions"
            )
    for field in ("autoscaling", "batching", "resources"):
        if field in changes and changes[field] is None:
            raise InvalidInput.field((field,), "must not be null")
    merged = current.model_copy(update=changes)
    resolved, stable, canary = _resolve(session, row.tenant, merged)
    row.spec = resolved.model_dump(mode="json")
    row.version_id = stable.row.id
    row.canary_version_id = canary.row.id if canary else None
    row.generation += 1
    row.status = DEPLOYING
    row.updated_at = utcnow()
    return row


def delete_deployment(
    session: Session, principal: Principal, name: str, tenant: str | None = None
) -> DeploymentRow:
    row = get_deployment(session, principal, name, tenant)
    if row.status != DELETING:
        row.status = DELETING
        row.generation += 1
        row.updated_at = utcnow()
    return row


def predict_url(serve_url: str, tenant: str, name: str) -> str:
    return f"{serve_url}{route_prefix(tenant, name)}/predict"


def route_prefix(tenant: str, name: str) -> str:
    return f"/serve/{tenant}/{name}"


def app_name(tenant: str, name: str) -> str:
    """Serve application name: tenant and deployment names never hold a '.'."""
    return f"{tenant}.{name}"
