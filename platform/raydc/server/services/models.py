"""The model registry: every successful training job adds a version with its lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.security.rbac import Principal
from raydc.server.errors import InvalidInput, NotFound
from raydc.server.services.addressing import addressed_tenants, the_one
from raydc.specs.deployments import split_model_ref
from raydc.store.models import VERSION_READY, VERSION_REJECTED, JobRow, ModelRow, ModelVersionRow


@dataclass(frozen=True)
class ResolvedVersion:
    row: ModelVersionRow
    ref: str  # name:version
    code: dict[str, Any]  # the code of the job that made it: {app: ...} or {ref: ...}

    @property
    def app(self) -> str | None:
        """The bundled app whose code made it (its predictor serves it), if any."""
        return self.code.get("app")


def resolve_version(
    session: Session, tenant: str, ref: str, field: tuple[str, ...]
) -> ResolvedVersion:
    """The tenant's model version ``ref`` names; a 422 naming ``field`` if there is none."""
    name, number = split_model_ref(ref)
    model = session.scalar(select(ModelRow).where(ModelRow.tenant == tenant, ModelRow.name == name))
    if model is None:
        raise InvalidInput.field(field, f"tenant '{tenant}' has no model '{name}'")
    if number is None:  # the latest one a compression gate did not reject
        number = session.scalar(
            select(func.max(ModelVersionRow.version)).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.status == VERSION_READY
            )
        )
    version = session.scalar(
        select(ModelVersionRow).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.version == number
        )
    )
    if version is None:
        raise InvalidInput.field(field, f"model '{name}' has no version {number or ''}".strip())
    if version.status == VERSION_REJECTED:
        raise InvalidInput.field(
            field, f"'{name}:{version.version}' was rejected by its compression gate: "
            f"{version.status_reason}",
        )  # fmt: skip
    return ResolvedVersion(version, f"{name}:{version.version}", code_of(session, version))


def resolve_servable_version(
    session: Session, tenant: str, ref: str, field: tuple[str, ...]
) -> ResolvedVersion:
    """:func:`resolve_version`, of a bundled app: its predictor is what serves it."""
    resolved = resolve_version(session, tenant, ref, field)
    if not resolved.app:
        raise InvalidInput.field(
            field, f"'{resolved.ref}' was trained from uploaded code; only models of bundled "
            "apps (code: {app: ...}) can be deployed so far",
        )  # fmt: skip
    return resolved


def code_of(session: Session, version: ModelVersionRow) -> dict[str, Any]:
    """The code spec of the job that made ``version``: ``{app: ...}`` or ``{ref: ...}``."""
    job = session.get(JobRow, version.job_id)
    return dict((job.spec if job is not None else {}).get("code") or {})


def app_of(session: Session, version: ModelVersionRow) -> str | None:
    """The bundled app whose code trained ``version`` (its predictor serves it), if any."""
    return code_of(session, version).get("app")


def register_version(
    session: Session,
    tenant: str,
    name: str,
    uri: str,
    metrics: dict[str, Any],
    job_id: str,
    lineage: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    rejected_reason: str | None = None,
) -> ModelVersionRow:
    """Add the next version of ``name``; idempotent per job (a replayed completion).

    ``lineage`` says what produced it (job, kind, the config it trained with, ...); a
    compress job adds its ``report``, and ``rejected_reason`` when its gate refused it.
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
        lineage=lineage, report=report, status_reason=rejected_reason,
        status=VERSION_REJECTED if rejected_reason else VERSION_READY,
    )  # fmt: skip
    session.add(version)
    session.flush()
    return version


def list_models(
    session: Session, principal: Principal, tenant: str | None = None
) -> list[tuple[ModelRow, int, int]]:
    """Each visible model (of ``tenant`` if given) with its number of versions and latest."""
    query = (
        select(ModelRow, func.count(ModelVersionRow.id), func.max(ModelVersionRow.version))
        .join(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id, isouter=True)
        .group_by(ModelRow.id)
        .order_by(ModelRow.tenant, ModelRow.name)
    )
    tenants = addressed_tenants(principal, tenant)
    if tenants is not None:
        query = query.where(ModelRow.tenant.in_(tenants))
    return [(row, count, latest or 0) for row, count, latest in session.execute(query)]


def get_model(
    session: Session, principal: Principal, name: str, tenant: str | None = None
) -> ModelRow:
    """The visible model ``name`` (of ``tenant`` if given): see services.addressing."""
    query = select(ModelRow).where(ModelRow.name == name).order_by(ModelRow.tenant)
    tenants = addressed_tenants(principal, tenant)
    if tenants is not None:
        query = query.where(ModelRow.tenant.in_(tenants))
    return the_one(list(session.scalars(query)), lambda row: row.tenant, f"model '{name}'")


def list_versions(
    session: Session, principal: Principal, name: str, tenant: str | None = None
) -> tuple[ModelRow, list[ModelVersionRow]]:
    """A visible model and its versions, oldest first."""
    model = get_model(session, principal, name, tenant)
    versions = session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.model_id == model.id)
        .order_by(ModelVersionRow.version)
    )
    return model, list(versions)


def get_version(
    session: Session, principal: Principal, name: str, number: int, tenant: str | None = None
) -> tuple[ModelRow, ModelVersionRow]:
    """Version ``number`` of the visible model ``name`` (of ``tenant`` if given)."""
    model = get_model(session, principal, name, tenant)
    version = session.scalar(
        select(ModelVersionRow).where(
            ModelVersionRow.model_id == model.id, ModelVersionRow.version == number
        )
    )
    if version is None:
        raise NotFound(f"model '{name}' has no version {number}")
    return model, version


def version_uri(session: Session, tenant: str, ref: str) -> str | None:
    """Where the tenant's version ``name:version`` is stored, or None if it is gone."""
    name, number = split_model_ref(ref)
    return session.scalar(
        select(ModelVersionRow.uri)
        .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
        .where(ModelRow.tenant == tenant, ModelRow.name == name, ModelVersionRow.version == number)
    )
