"""The `ray up` configs in cluster_configs/: Ray's own checks, raydc's reading, spot first.

Ray's checks are the offline part of what `ray up` runs (``prepare_config``: the
provider's defaults.yaml merged in, setup commands merged, per-type worker counts; then
``validate_config``: ray-schema.json) and what the head's autoscaler v2 builds from the
config. The cloud part of `ray up` (key pairs, subnets, IAM, images) needs credentials
and is not exercised here.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import (
    _default_utilization_scorer,
    get_nodes_for,
)
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig
from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
from ray.autoscaler.v2.utils import ResourceRequestUtil

from raydc.cluster.autoscaler import node_types_from_cluster_config
from raydc.security.tokens import generate_token
from raydc.settings import Settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "cluster_configs"
# Every config, including ones added later (local-autoscaling.yaml comes from issue #6 too).
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
CLOUD = ["aws-gpu.yaml", "gcp-gpu.yaml"]
# Configs `ray up` brings up, whose head start commands run the control plane. The fake
# multi-node provider runs no commands: `raydc cluster up` starts its server itself.
RAY_UP = [*CLOUD, "onprem.yaml"]
GPU_IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"
CPU_IMAGE = f"rayproject/ray:{ray.__version__}-py311-cpu"
# (cpu, gpu, max_count) of each node type as raydc's scheduler reads it.
EXPECTED_TYPES = {
    "aws-gpu.yaml": {
        "head": (0, 0, 1),
        "gpu-inference-ondemand": (8, 1, 4),
        "gpu-inference-spot": (8, 1, 8),
        "gpu-train-ondemand": (96, 8, 2),
        "gpu-train-spot": (96, 8, 2),
        "cpu-ondemand": (16, 0, 4),
        "cpu-spot": (16, 0, 4),
    },
    "gcp-gpu.yaml": {
        "head": (0, 0, 1),
        "gpu-inference-ondemand": (8, 1, 4),
        "gpu-inference-spot": (8, 1, 8),
        "gpu-train-ondemand": (96, 8, 2),
        "gpu-train-spot": (96, 8, 2),
        "cpu-ondemand": (16, 0, 4),
        "cpu-spot": (16, 0, 4),
    },
    "onprem.yaml": {"local.cluster.node": (64, 8, 1)},
}
CLASSES = ["gpu-inference", "gpu-train", "cpu"]
# What a bundle of each class asks for: it fits only that class's node types.
CLASS_BUNDLE: dict[str, dict[str, float]] = {
    "gpu-inference": {"CPU": 8, "GPU": 1},
    "gpu-train": {"CPU": 8, "GPU": 8},
    "cpu": {"CPU": 16},
}
SECRET_PATTERNS = {
    "database URL with a password": re.compile(r"\w+(\+\w+)?://[^\s:/@]+:[^\s@]+@"),
    "raydc token": re.compile(r"rdc_[A-Za-z0-9_-]{16,}"),
    "RAYDC_DATABASE_URL set in the file": re.compile(r"RAYDC_DATABASE_URL="),
    "RAYDC_ADMIN_TOKEN set in the file": re.compile(r"RAYDC_ADMIN_TOKEN="),
    "Ray token set in the file": re.compile(r"RAY_AUTH_TOKEN="),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bA(KI|SI)A[0-9A-Z]{16}\b"),
}


def load(name: str) -> dict[str, Any]:
    config = yaml.safe_load((CONFIG_DIR / name).read_text())
    assert isinstance(config, dict), name
    return config


def autoscaler_config(config: dict[str, Any], tmp_path: Path) -> AutoscalingConfig:
    """What the head's autoscaler v2 builds; it hashes the SSH key, so give it one."""
    config = copy.deepcopy(config)
    if config.get("auth", {}).get("ssh_private_key"):
        key = tmp_path / "key.pem"
        key.write_text("not a key")
        config["auth"]["ssh_private_key"] = str(key)
    return AutoscalingConfig(config, skip_content_hash=True)


def launches(
    config: AutoscalingConfig,
    bundles: list[dict[str, float]],
    only: tuple[str, ...],
    unavailable: tuple[str, ...] = (),
) -> dict[str, int]:
    """Node types autoscaler v2 launches for these bundles on an empty cluster of the
    `only` node types; the types in `unavailable` just failed to come up."""
    types = {n: t for n, t in config.get_node_type_configs().items() if n in only}
    request = SchedulingRequest(
        disable_launch_config_check=True,
        node_type_configs=types,
        max_num_nodes=config.get_max_num_worker_nodes(),
        resource_requests=ResourceRequestUtil.group_by_count(
            [ResourceRequestUtil.make(bundle) for bundle in bundles]
        ),
        recoverable_resource_availabilities=dict.fromkeys(unavailable, 0.0),
    )
    reply = ResourceDemandScheduler().schedule(request)
    return {launch.instance_type: launch.count for launch in reply.to_launch}


def head_commands(config: dict[str, Any]) -> list[str]:
    return [str(command) for command in config["head_start_ray_commands"]]


def server_command(config: dict[str, Any]) -> str:
    found = [c for c in head_commands(config) if "raydc server" in c]
    assert len(found) == 1, "exactly one head start command runs `raydc server`"
    return found[0]


def test_the_cloud_and_on_prem_configs_are_there() -> None:
    assert {path.name for path in CONFIGS} >= set(RAY_UP)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ray_accepts_the_config(path: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    types = autoscaler_config(raw, tmp_path).get_node_type_configs()
    assert set(types) == set(raw["available_node_types"])
    # Every worker count is written out, so what Ray launches does not depend on defaults.
    for name, node_type in raw["available_node_types"].items():
        assert isinstance(node_type.get("max_workers"), int), f"{path.name}: {name}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_raydc_reads_every_node_type(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    types = {t.name: t for t in node_types_from_cluster_config(path)}
    assert set(types) == set(config["available_node_types"])
    expected = EXPECTED_TYPES.get(path.name)
    if expected is not None:
        assert {n: (t.cpu, t.gpu, t.max_count) for n, t in types.items()} == expected
        # memory is declared (bytes), so raydc's scheduler can count it.
        assert all(4 <= t.memory_gb < 1200 for t in types.values())


@pytest.mark.parametrize("name", CLOUD)
def test_spot_is_taken_first_and_on_demand_takes_the_overflow(name: str, tmp_path: Path) -> None:
    config = autoscaler_config(load(name), tmp_path)
    types = config.get_node_type_configs()
    for cls in CLASSES:
        spot, ondemand = f"{cls}-spot", f"{cls}-ondemand"
        # A pile of 1-GPU requests rightly packs onto an 8-GPU node: look at one class's
        # pair alone. Each bundle fills a node; the first ones go to the on-demand nodes
        # min_workers keeps up, which are launched anyway.
        pair = (spot, ondemand)
        bundle, kept = CLASS_BUNDLE[cls], types[ondemand].min_worker_nodes
        one_more = launches(config, [bundle] * (kept + 1), pair)
        assert one_more.get(spot) == 1 and one_more.get(ondemand, 0) == kept, (cls, one_more)
        # One node more than the spot type may have.
        most = types[spot].max_worker_nodes
        overflow = launches(config, [bundle] * (kept + most + 1), pair)
        assert (overflow.get(spot), overflow.get(ondemand)) == (most, kept + 1), (cls, overflow)
        # A spot type that just failed to come up: on-demand for now.
        fallback = launches(config, [bundle] * (kept + 1), pair, unavailable=(spot,))
        assert spot not in fallback and fallback.get(ondemand) == kept + 1, (cls, fallback)
    # With every type on offer, a request still lands on its own class, spot first.
    everything = tuple(types)
    assert launches(config, [CLASS_BUNDLE["gpu-train"]], everything).get("gpu-train-spot") == 1
    assert launches(config, [CLASS_BUNDLE["gpu-inference"]], everything) == {
        "gpu-inference-spot": 1,
        "cpu-ondemand": types["cpu-ondemand"].min_worker_nodes,
    }


@pytest.mark.parametrize("name", CLOUD)
def test_autoscaler_v1_also_prefers_spot(name: str) -> None:
    # v1 ignores `priority`; among equal fits it takes the greatest node type name.
    config = prepare_config(load(name))
    scorer = partial(
        _default_utilization_scorer,
        node_availability_summary=NodeAvailabilitySummary(node_availabilities={}),
    )
    for cls in CLASSES:
        bundles: list[Any] = [CLASS_BUNDLE[cls]]  # Ray annotates them as dict[str, Real]
        chosen, left = get_nodes_for(
            config["available_node_types"], {}, config["head_node_type"], 10, bundles, scorer
        )
        assert dict(chosen) == {f"{cls}-spot": 1} and not left, cls


@pytest.mark.parametrize("name", CLOUD)
def test_spot_twins_differ_only_in_how_they_are_bought(name: str) -> None:
    market_keys = {"InstanceMarketOptions", "scheduling"}
    types = load(name)["available_node_types"]
    for cls in CLASSES:
        spot, ondemand = types[f"{cls}-spot"], types[f"{cls}-ondemand"]
        assert spot["resources"] == ondemand["resources"], cls
        assert spot["priority"] > ondemand["priority"], cls
        same = {k: v for k, v in spot["node_config"].items() if k not in market_keys}
        assert same == {k: v for k, v in ondemand["node_config"].items() if k not in market_keys}
        if name.startswith("aws"):
            assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
        else:
            assert spot["node_config"]["scheduling"]["provisioningModel"] == "SPOT", cls
        assert "provisioningModel" not in ondemand["node_config"].get("scheduling", {}), cls
        assert "InstanceMarketOptions" not in ondemand["node_config"], cls


@pytest.mark.parametrize("name", CLOUD)
def test_gpu_nodes_get_the_cuda_image_and_the_rest_the_cpu_image(name: str, tmp_path: Path) -> None:
    raw = load(name)
    config = autoscaler_config(raw, tmp_path)
    for node_type, spec in raw["available_node_types"].items():
        image = config.get_docker_config(node_type)["image"]
        assert image == (GPU_IMAGE if spec["resources"].get("GPU") else CPU_IMAGE), node_type


def test_gcp_gpu_nodes_allow_no_live_migration() -> None:
    for name, spec in load("gcp-gpu.yaml")["available_node_types"].items():
        if spec["resources"].get("GPU"):
            assert spec["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE", name
            accelerators = spec["node_config"]["guestAccelerators"]
            assert sum(a["acceleratorCount"] for a in accelerators) == spec["resources"]["GPU"]


def test_on_prem_counts_are_what_ray_makes_of_the_worker_ips() -> None:
    config = load("onprem.yaml")
    ips = config["provider"]["worker_ips"]
    bare = {k: v for k, v in config.items() if k not in ("available_node_types", "max_workers")}
    bare.pop("head_node_type")
    ray_made = prepare_config(bare)["available_node_types"]["local.cluster.node"]
    ours = config["available_node_types"]["local.cluster.node"]
    assert ours["min_workers"] == ours["max_workers"] == ray_made["max_workers"] == len(ips)
    assert config["max_workers"] == len(ips)
    # Ray takes this form as prepared and fills in nothing: every default field is here.
    defaults = yaml.safe_load(
        (Path(ray.__file__).parent / "autoscaler" / "local" / "defaults.yaml").read_text()
    )
    assert set(defaults) <= set(config)


def secrets_in(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_the_secret_scan_finds_secrets() -> None:
    assert secrets_in("db: postgresql+psycopg://raydc:hunter2@db:5432/raydc") == [
        "database URL with a password"
    ]
    assert secrets_in(f"token: {generate_token()}") == ["raydc token"]
    assert secrets_in("- RAYDC_ADMIN_TOKEN=x raydc server") == ["RAYDC_ADMIN_TOKEN set in the file"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_config_holds_a_secret(path: Path) -> None:
    assert secrets_in(path.read_text()) == []


@pytest.mark.parametrize("name", RAY_UP)
def test_secrets_reach_the_head_from_the_env_file_only(name: str) -> None:
    config = load(name)
    assert config["file_mounts"]["~/raydc-cluster.env"] == "~/.raydc/cluster.env"
    assert config["file_mounts"]["~/raydc"] == "."
    assert "set -a; . ~/raydc-cluster.env; set +a;" in server_command(config)
    # Ray copies file mounts to every node: each worker setup empties its copy.
    worker_lists = [config["worker_setup_commands"]] + [
        spec["worker_setup_commands"]
        for spec in config["available_node_types"].values()
        if "worker_setup_commands" in spec
    ]
    for commands in worker_lists:
        assert ": > ~/raydc-cluster.env" in commands


@pytest.mark.parametrize("name", RAY_UP)
def test_the_head_starts_ray_then_the_control_plane(name: str) -> None:
    commands = head_commands(load(name))
    ray_start = [i for i, c in enumerate(commands) if "ray start --head" in c]
    server = [i for i, c in enumerate(commands) if "raydc server" in c]
    assert ray_start and server and ray_start[0] < server[0]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in commands[ray_start[0]]
    assert "RAYDC_RAY_ADDRESS=http://127.0.0.1:8265" in commands[server[0]]


@pytest.mark.parametrize("name", RAY_UP)
def test_every_node_reads_the_ray_token_the_head_writes(name: str) -> None:
    config = load(name)
    created = re.findall(r"> (\S+/auth_token)", " ".join(config["head_setup_commands"]))
    assert len(created) == 1
    starts = [*head_commands(config), *config["worker_start_ray_commands"]]
    for command in starts:
        if "ray start" in command or "raydc server" in command:
            assert f"RAY_AUTH_TOKEN_PATH={created[0]}" in command, command
            if "ray start" in command:
                assert "RAY_AUTH_MODE=token" in command, command


STUB_RAYDC = """#!{python}
import os, sys, time
with open({seen!r} + ".tmp", "w") as out:
    out.write(repr((sys.argv[1:], dict(os.environ))))
os.replace({seen!r} + ".tmp", {seen!r})
time.sleep(120)
"""


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    # A killed process stays a zombie until its parent reaps it: look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("name", RAY_UP)
def test_the_server_command_runs_raydc_with_the_secrets_and_real_settings(
    name: str, tmp_path: Path
) -> None:
    """Run the head's server command in bash twice (as two `ray up` would), with a
    stand-in `raydc` that records how it was started and keeps running."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    stub = bin_dir / "raydc"
    stub.write_text(STUB_RAYDC.format(python=sys.executable, seen=str(seen)))
    stub.chmod(0o755)
    (home / "raydc-cluster.env").write_text(
        "RAYDC_DATABASE_URL='postgresql://raydc:p&ss word@db/raydc'\nRAYDC_ADMIN_TOKEN='rdc_x'\n"
    )
    path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = ["bash", "-c", server_command(load(name))]
    pid_file = home / "raydc-server.pid"
    pids: list[int] = []
    try:
        for _ in range(2):
            seen.unlink(missing_ok=True)
            subprocess.run(command, env={"HOME": str(home), "PATH": path}, check=True, timeout=60)
            pids.append(int(pid_file.read_text()))
            wait_for(seen.exists)
        # The second start stopped the first server.
        wait_for(lambda: not alive(pids[0]))
        assert alive(pids[1])
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    args, got = ast.literal_eval(seen.read_text())
    assert args == ["server"]
    assert got["RAYDC_DATABASE_URL"] == "postgresql://raydc:p&ss word@db/raydc"
    assert got["RAYDC_ADMIN_TOKEN"] == "rdc_x"
    assert got["RAYDC_RAY_ADDRESS"] == "http://127.0.0.1:8265"
    assert got["RAYDC_HOST"] == "0.0.0.0"
    # What the cluster's nodes and users are told: this machine's address, not 0.0.0.0.
    public = re.fullmatch(r"http://([\d.]+):8080", got["RAYDC_PUBLIC_URL"])
    assert public and public.group(1) != "0.0.0.0"
    if name in CLOUD:
        assert got["RAYDC_CLUSTER_CONFIG"] == f"{home}/ray_bootstrap_config.yaml"
    # Every RAYDC_ variable the command sets is one of raydc's settings.
    fields = {f"RAYDC_{field.upper()}" for field in Settings.model_fields}
    assert {k for k in got if k.startswith("RAYDC_")} <= fields
