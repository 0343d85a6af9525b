"""The model registry."""

from __future__ import annotations

from fastapi import APIRouter

from raydc.server.deps import ControlPlaneDep, Reader
from raydc.server.schemas import ModelOut, ModelVersionOut
from raydc.server.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(cp: ControlPlaneDep, principal: Reader) -> list[ModelOut]:
    with cp.tx() as session:
        return [
            ModelOut(name=row.name, tenant=row.tenant, versions=count, latest_version=latest,
                     created_at=row.created_at)
            for row, count, latest in models.list_models(session, principal)
        ]  # fmt: skip


@router.get("/{name}/versions")
def list_versions(name: str, cp: ControlPlaneDep, principal: Reader) -> list[ModelVersionOut]:
    with cp.tx() as session:
        return [ModelVersionOut.of(row) for row in models.list_versions(session, principal, name)]


@router.get("/{name}/versions/{version}")
def get_version(name: str, version: int, cp: ControlPlaneDep, principal: Reader) -> ModelVersionOut:
    with cp.tx() as session:
        return ModelVersionOut.of(models.get_version(session, principal, name, version))
