"""ClusterLink: the control plane's view of its Ray cluster's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from raydc.cluster.client import RayCluster
from raydc.cluster.state import NodeInfo
from raydc.server.cluster_link import ClusterLink
from raydc.settings import Settings

HEAD = NodeInfo(node_id="n1", ip="10.0.0.1", is_head=True, alive=True,
                cpu=4.0, gpu=0.0, memory_gb=8.0)  # fmt: skip


def link_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClusterLink:
    # The Jobs client would dial the dashboard on construction.
    monkeypatch.setattr("raydc.cluster.client.RayJobs", lambda url, token: None)
    return ClusterLink(Settings(home=tmp_path, ray_address="http://127.0.0.1:1"))


def test_a_connected_link_already_knows_the_cluster_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dashboard is what a unit test cannot run; the integration suite reads a real one.
    link = link_to(tmp_path, monkeypatch)
    seen_connected: list[bool] = []

    def nodes(self: RayCluster) -> list[NodeInfo]:
        seen_connected.append(link.cluster is not None)
        return [HEAD]

    monkeypatch.setattr(RayCluster, "nodes", nodes)
    link.connect()
    assert seen_connected == [False]  # read before the link shows itself connected
    assert link.cluster is not None and link.capacity is not None
    assert link.capacity.total.cpu == 4.0 and [n.node_id for n in link.nodes] == ["n1"]


def test_a_failed_first_read_leaves_the_size_unknown_until_a_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = link_to(tmp_path, monkeypatch)
    answers: list[Exception | list[NodeInfo]] = [OSError("dashboard busy"), [HEAD]]

    def nodes(self: RayCluster) -> list[NodeInfo]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(RayCluster, "nodes", nodes)
    link.connect()
    assert link.cluster is not None and link.capacity is None
    assert link.last_error == "cannot list Ray nodes: dashboard busy"
    link.refresh_nodes_if_due(every_s=60)
    assert link.capacity is not None and link.capacity.total.cpu == 4.0
