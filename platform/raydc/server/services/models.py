"""The model registry: every successful training job adds a version with its lineage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.security.rbac import Principal
from raydc.server.errors import NotFound
from raydc.store.models import ModelRow, ModelVersionRow


def register_version(
    session: Session,
    tenant: str,
    name: str,
    uri: str,
    metrics: dict[str, Any],
    job_id: str,
    lineage: dict[str, Any] | None = None,
) -> ModelVersionRow:
    """Add the next version of ``name``; idempotent per job (a replayed completion).

    ``lineage`` says what produced it (job, kind, the config it trained with, ...).
    """
    existing = session.scalar(select(ModelVersionRow).where(ModelVersionRow.job_id == job_id))
    if existing is not None:
        return existing
    model = session.scalar(select(ModelRow).where(ModelRow.tenant == tenant, ModelRow.name == name))
    if model is None:
        model = ModelRow(tenant=tenant, name=name)
        session.add(model)
        session.flush()
    latest = session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
    )
    version = ModelVersionRow(
        model_id=model.id, version=(latest or 0) + 1, uri=uri, metrics=metrics, job_id=job_id,
        lineage=lineage,
    )  # fmt: skip
    session.add(version)
    session.flush()
    return version


def list_models(session: Session, principal: Principal) -> list[tuple[ModelRow, int, int]]:
    """Each visible model with its number of versions and latest version."""
    query = (
        select(ModelRow, func.count(ModelVersionRow.id), func.max(ModelVersionRow.version))
        .join(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id, isouter=True)
        .group_by(ModelRow.id)
        .order_by(ModelRow.tenant, ModelRow.name)
    )
    if not principal.is_admin:
        query = query.where(ModelRow.tenant == principal.tenant)
    return [(row, count, latest or 0) for row, count, latest in session.execute(query)]


def list_versions(session: Session, principal: Principal, name: str) -> list[ModelVersionRow]:
    query = select(ModelRow).where(ModelRow.name == name)
    if not principal.is_admin:
        query = query.where(ModelRow.tenant == principal.tenant)
    models = list(session.scalars(query))
    if not models:
        raise NotFound(f"model '{name}' not found")
    return list(
        session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.model_id.in_([m.id for m in models]))
            .order_by(ModelVersionRow.model_id, ModelVersionRow.version)
        )
    )
