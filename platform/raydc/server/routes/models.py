"""The model registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from raydc.server.addressing import TenantQuery
from raydc.server.deps import ControlPlaneDep, Reader
from raydc.server.schemas import ModelOut, ModelVersionOut
from raydc.server.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])
# A version number as the database stores it (a 32-bit integer column); beyond, a 422.
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("")
def list_models(
    cp: ControlPlaneDep, principal: Reader, tenant: TenantQuery = None
) -> list[ModelOut]:
    with cp.tx() as session:
        return [
            ModelOut(name=row.name, tenant=row.tenant, versions=count, latest_version=latest,
                     created_at=row.created_at)
            for row, count, latest in models.list_models(session, principal, tenant)
        ]  # fmt: skip


@router.get("/{name}/versions")
def list_versions(
    name: str, cp: ControlPlaneDep, principal: Reader, tenant: TenantQuery = None
) -> list[ModelVersionOut]:
    with cp.tx() as session:
        model, versions = models.list_versions(session, principal, name, tenant)
        return [ModelVersionOut.of(model, row) for row in versions]


@router.get("/{name}/versions/{version}")
def get_version(
    name: str,
    version: VersionPath,
    cp: ControlPlaneDep,
    principal: Reader,
    tenant: TenantQuery = None,
) -> ModelVersionOut:
    with cp.tx() as session:
        return ModelVersionOut.of(*models.get_version(session, principal, name, version, tenant))
