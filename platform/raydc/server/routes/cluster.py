"""The cluster as the control plane sees it, and the queue in scheduling order."""

from __future__ import annotations

from fastapi import APIRouter

from raydc.server.deps import ControlPlaneDep, Reader
from raydc.server.schemas import ClusterOut, NodeOut, QueueEntry
from raydc.server.services.queue import pending_in_order, usage_and_pending, wait_reason
from raydc.specs.demand import Demand

router = APIRouter(prefix="/v1", tags=["cluster"])


@router.get("/cluster")
def get_cluster(cp: ControlPlaneDep, principal: Reader) -> ClusterOut:
    with cp.tx() as session:
        in_use, pending = usage_and_pending(session)
    link = cp.link
    cluster = link.cluster
    return ClusterOut(
        connected=cluster is not None,
        # Where Ray is and what went wrong reaching it are for the platform team.
        dashboard_url=cluster.dashboard_url if cluster and principal.is_admin else None,
        nodes=[NodeOut.model_validate(node) for node in link.nodes],
        capacity=(link.capacity.total if link.capacity else Demand()).as_dict(),
        in_use=in_use.as_dict(),
        pending_demand=pending.as_dict(),
        last_error=link.last_error if principal.is_admin else None,
    )


@router.get("/queue")
def get_queue(cp: ControlPlaneDep, principal: Reader) -> list[QueueEntry]:
    view = cp.reconciler.last_queue
    with cp.tx() as session:
        queued = pending_in_order(session, principal, view)
    entries = []
    for q in queued:
        code, reason = wait_reason(view, q.id, principal)
        entries.append(
            QueueEntry(id=q.id, name=q.name, tenant=q.tenant, priority=q.priority,
                       created_at=q.created_at, reason=reason, reason_code=code)
        )  # fmt: skip
    return entries
