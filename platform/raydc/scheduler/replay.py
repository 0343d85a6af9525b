"""Every policy the simulator can replay, by name: the baselines and raydc's own."""

from __future__ import annotations

from raydc.scheduler.sim_policies import POLICIES
from raydc.scheduler.sim_raydc import RaydcPolicy, proportional_quotas
from raydc.scheduler.simulator import Policy
from raydc.scheduler.traces import TraceJob

POLICY_NAMES = (*POLICIES, "raydc")


def make_policy(
    name: str, trace: list[TraceJob], nodes: int, gpus_per_node: int,
    cpus_per_node: float | None = None,
) -> Policy:  # fmt: skip
    """A fresh policy; raydc's gets tenant quotas by each tenant's share of GPU-time."""
    if name == "raydc":
        quotas = proportional_quotas(trace, nodes * gpus_per_node)
        return RaydcPolicy(nodes, gpus_per_node, cpus_per_node, quotas)
    return POLICIES[name]()
