"""GET /metrics for Prometheus: every tenant's counts, so an admin or monitor token only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from raydc.server.deps import ControlPlaneDep, Monitor
from raydc.server.metrics import render_metrics

router = APIRouter(tags=["health"])


@router.get("/metrics")
def metrics(cp: ControlPlaneDep, _: Monitor) -> Response:
    return Response(render_metrics(cp), media_type=CONTENT_TYPE_LATEST)
