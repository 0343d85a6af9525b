"""What `raydc cluster up|down|status` decides before it starts anything."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from raydc.cluster import launcher
from raydc.cluster.autoscaler import node_types_from_cluster_config
from raydc.cluster.local_head import is_fake_cluster
from raydc.specs.capacity import ClusterCapacity, largest
from raydc.specs.demand import Demand
from tests.conftest import REPO

LOCAL = REPO / "cluster_configs" / "local-autoscaling.yaml"


def test_the_local_config_is_a_fake_cluster_and_the_cloud_ones_are_not() -> None:
    assert is_fake_cluster(launcher.load_config(LOCAL))
    assert is_fake_cluster({"provider": {"type": "fake_multinode"}})
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml", "onprem.yaml"):
        path = REPO / "cluster_configs" / name
        if path.exists():
            assert not is_fake_cluster(launcher.load_config(path)), name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", "a cluster config is a mapping"),
        ("cluster_name: x\nprovider: {type: aws}\navailable_node_types: {}\n",
         "'head_node_type' is missing"),
        ("cluster_name: x\nprovider: {type: aws}\navailable_node_types: {a: {}}\n"
         "head_node_type: b\n", "head_node_type 'b' is not a node type"),
        ("key: [unclosed", "cannot read the cluster config"),
    ],
)  # fmt: skip
def test_a_bad_config_is_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        launcher.load_config(path)
    assert launcher.main(["up", str(path)]) == 2  # before anything is started


def test_secrets_go_to_a_private_file_never_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYDC_DATABASE_URL", "postgresql://raydc:it's-secret@db:5432/raydc")
    monkeypatch.delenv("RAYDC_ADMIN_TOKEN", raising=False)
    target = tmp_path / "cluster.env"
    assert launcher.write_secrets(target) == ["RAYDC_DATABASE_URL"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # Sourced by the head's shell (`set -a; . ~/raydc-cluster.env`): quoted for it.
    assert target.read_text() == (
        "RAYDC_DATABASE_URL='postgresql://raydc:it'\"'\"'s-secret@db:5432/raydc'\n"
    )


def test_an_autoscaling_cluster_is_judged_at_its_largest_size() -> None:
    """A job too big for today's nodes is admitted to the queue when a node type of the
    cluster config could hold it; one no node type could hold is still refused."""
    today = ClusterCapacity(total=Demand(1, 0, 8), nodes=(Demand(1, 0, 8),))
    types = node_types_from_cluster_config(LOCAL)
    grown = largest(today, types)
    assert grown.worker_fits_a_node(Demand(2, 0, 0))
    assert not grown.worker_fits_a_node(Demand(3, 0, 0))
    # Every node type at its max count on top of today's nodes (the head type included:
    # generous, it only decides what to refuse at submission): 1 + 1 + 3 x 2 CPUs.
    assert [(t.cpu, t.max_count) for t in types] == [(1.0, 1), (2.0, 3)]
    assert grown.total.cpu == 8
    assert not today.worker_fits_a_node(Demand(2, 0, 0))
