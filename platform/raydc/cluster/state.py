"""Cluster nodes and their capacity, read from the Ray dashboard's state API."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

_BYTES_PER_GB = 1024**3
_STANDARD = {"CPU", "GPU", "memory", "object_store_memory"}


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    is_head: bool
    alive: bool
    cpu: float
    gpu: float
    memory_gb: float
    custom: dict[str, float] = field(default_factory=dict)


def list_nodes(
    dashboard_url: str, auth_token: str | None, timeout_s: float = 10.0
) -> list[NodeInfo]:
    headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
    response = httpx.get(
        f"{dashboard_url}/api/v0/nodes",
        params={"detail": "1", "limit": "10000"},
        headers=headers,
        timeout=timeout_s,
    )
    response.raise_for_status()
    rows = response.json()["data"]["result"]["result"]
    nodes = []
    for row in rows:
        total = row.get("resources_total") or {}
        custom = {
            name: float(amount)
            for name, amount in total.items()
            if name not in _STANDARD and not name.startswith("node:")
            and not name.startswith("accelerator_type:")
        }  # fmt: skip
        nodes.append(
            NodeInfo(
                node_id=row["node_id"],
                ip=row.get("node_ip", ""),
                is_head=bool(row.get("is_head_node")),
                alive=row.get("state") == "ALIVE",
                cpu=float(total.get("CPU", 0.0)),
                gpu=float(total.get("GPU", 0.0)),
                memory_gb=float(total.get("memory", 0.0)) / _BYTES_PER_GB,
                custom=custom,
            )
        )
    return nodes
